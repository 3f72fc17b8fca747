// The supervisor's records in the registry, written over one SyncRecords
// stream instead of a call per create and update: a call costs both ends
// far more than a message on a stream that is already open.
//
//   RecordStream records(&loop, registry_stub.get(), absl::Seconds(5));
//   // on the loop thread:
//   records.Create(std::move(request), [](absl::StatusOr<ProcessStatus> r) {
//     ...  // the record, or why not
//   });
//
// `done` runs exactly once: on a gRPC thread with the registry's answer
// (its error code and message as the unary call would give them), or with
// UNAVAILABLE when the stream breaks first; or on the loop thread with
// DEADLINE_EXCEEDED when the registry has not answered within `timeout`.
// A registry that slow is presumed stuck: the stream is cancelled, and the
// next op opens a new one (so does the first op after a break). Ops on one
// stream are applied in the order sent.
#ifndef PM_SUPERVISOR_RECORD_STREAM_H_
#define PM_SUPERVISOR_RECORD_STREAM_H_

#include <functional>
#include <memory>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "pm/internal/v1/internal.grpc.pb.h"
#include "supervisor/event_loop.h"

namespace pm::supervisor {

class RecordStream {
 public:
  using Done = std::function<void(absl::StatusOr<pm::v1::ProcessStatus>)>;

  // `loop` and `stub` must outlive this object, and the loop must run (or
  // have stopped for good) while ops are in flight. Destroy it only once the
  // loop has stopped: the timeout's timer refers to it.
  RecordStream(EventLoop* loop, pm::internal::v1::Registry::Stub* stub,
               absl::Duration timeout);
  RecordStream(const RecordStream&) = delete;
  RecordStream& operator=(const RecordStream&) = delete;
  ~RecordStream();

  // Loop thread only.
  void Create(pm::internal::v1::CreateRecordRequest request, Done done);
  void Update(pm::internal::v1::UpdateRecordRequest request, Done done);

  // Any thread. No more ops (they fail UNAVAILABLE); the stream is
  // half-closed once what was sent is written, and ends when the registry
  // has answered it all.
  void Close();
  // Any thread, after Close: ends the stream now; what the registry has not
  // answered fails UNAVAILABLE. For a shutdown that cannot wait on a stuck
  // registry.
  void Cancel();

 private:
  class Call;

  void Send(pm::internal::v1::RecordOp op, Done done);
  void Watchdog();

  EventLoop* const loop_;
  pm::internal::v1::Registry::Stub* const stub_;
  const absl::Duration timeout_;
  absl::Mutex mu_;
  std::shared_ptr<Call> call_ ABSL_GUARDED_BY(mu_);
  std::shared_ptr<Call> closing_ ABSL_GUARDED_BY(mu_);  // after Close
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
  // Loop thread only.
  uint64_t next_tag_ = 1;
  bool watchdog_armed_ = false;
};

}  // namespace pm::supervisor

#endif  // PM_SUPERVISOR_RECORD_STREAM_H_
