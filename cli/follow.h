// OutputFollower: copies a process's output to stdout and rides through a
// restart of the service that serves it (the log_store, or the gateway).
//
//   OutputFollower follower(client, context, absl::Seconds(60));
//   InterruptScope scope(interrupts, [&](int) { follower.Cancel(); return true; });
//   absl::Status copied = follower.Copy(request);   // from_start, follow
//
// When the stream fails with UNAVAILABLE, the follower says once on stderr
// "pm: output stream lost (UNAVAILABLE: ...); reconnecting", opens it again
// with `from_offset` set to the offset after the last byte it printed
// (50 ms apart, doubling to 1 s; each opening first lets the Library's
// channel reconnect for up to 1 s, so a Cancel() during an outage may take
// that long), and says "pm: resumed at offset N" when bytes flow again. No
// byte is printed twice; bytes the store no longer has are announced as
// every gap is ("pm: [N bytes not retained before offset X]"), and the
// start of each later run of a restarting process as "pm: [run N started
// at T]", once each, also across a reconnection. After
// `reconnect_timeout` without getting the stream back it gives up with
// UNAVAILABLE saying so. Within an outage, NOT_FOUND is tried again too: a
// log_store that has just restarted (keeping output in memory) learns of
// the process only when the supervisor reopens its log.
#ifndef PM_CLI_FOLLOW_H_
#define PM_CLI_FOLLOW_H_

#include <stdint.h>

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "absl/types/optional.h"
#include "cli/commands.h"
#include "client/client.h"

namespace pm::cli {

class OutputFollower {
 public:
  OutputFollower(pm::Client& client, const Context& context,
                 absl::Duration reconnect_timeout)
      : client_(client),
        context_(context),
        reconnect_timeout_(reconnect_timeout) {}

  // Copies the output `request` asks for to context.out, reconnecting as
  // above. Returns the stream's end status: OK at its end, CANCELLED after
  // Cancel(), UNKNOWN when stdout cannot be written, UNAVAILABLE after
  // giving up reconnecting, or the service's error.
  absl::Status Copy(pm::v1::StreamOutputRequest request);

  // Any thread (a Ctrl+C handler): ends Copy soon, with CANCELLED.
  void Cancel();

  // Begin each line with the time its first byte was read, in RFC 3339 with
  // nanoseconds, UTC, and a space (as `docker logs -t`). Lines are counted
  // per stream: a line of stdout cut by a piece of stderr is not prefixed
  // again when it goes on.
  void set_timestamps(bool on) { timestamps_ = on; }

 private:
  // Whether a stream that ended with `status` is opened again.
  bool Retryable(const absl::Status& status) const;
  // Writes `chunk` with a time stamp at each line start (set_timestamps).
  void WriteWithTimestamps(const pm::v1::OutputChunk& chunk);
  // One stream's life: copies until it ends; what it ended with.
  absl::Status CopyOne(pm::OutputStream& stream);
  // Waits `delay`, or less if cancelled. True when cancelled.
  bool WaitOrCancelled(absl::Duration delay);

  pm::Client& client_;
  const Context& context_;
  const absl::Duration reconnect_timeout_;
  // The offset after the last byte printed; unset before the first.
  absl::optional<uint64_t> next_offset_;
  // Set while the stream is lost: "resumed" is said with the next bytes.
  bool lost_ = false;
  bool timestamps_ = false;
  // The last run whose start was said ("pm: [run N started at T]").
  uint32_t last_run_started_ = 1;
  // Per stream (stdout, stderr): whether the next byte begins a line.
  bool at_line_start_[2] = {true, true};

  absl::Mutex mu_;
  pm::OutputStream* stream_ ABSL_GUARDED_BY(mu_) = nullptr;
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace pm::cli

#endif  // PM_CLI_FOLLOW_H_
