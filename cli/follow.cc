#include "cli/follow.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "common/proto_time.h"

namespace pm::cli {
namespace {

constexpr absl::Duration kFirstRetry = absl::Milliseconds(50);
constexpr absl::Duration kMaxRetry = absl::Seconds(1);

// RFC 3339 with nanoseconds, UTC (as `docker logs -t`).
std::string Rfc3339Nanos(absl::Time time) {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%E9SZ", time, absl::UTCTimeZone());
}

}  // namespace

bool OutputFollower::Retryable(const absl::Status& status) const {
  if (status.code() == absl::StatusCode::kUnavailable) return true;
  // A log_store just restarted does not know the process until the
  // supervisor has opened its log there again (its Append stream
  // reconnects): within an outage, "no output for process" is that.
  return lost_ && status.code() == absl::StatusCode::kNotFound;
}

absl::Status OutputFollower::Copy(pm::v1::StreamOutputRequest request) {
  absl::Duration retry = kFirstRetry;
  absl::Time lost_at;
  for (;;) {
    if (next_offset_) request.set_from_offset(*next_offset_);
    std::unique_ptr<pm::OutputStream> stream = client_.StreamOutput(request);
    {
      absl::MutexLock lock(&mu_);
      if (cancelled_) stream->Cancel();
      stream_ = stream.get();
    }
    absl::Status ended = CopyOne(*stream);
    {
      absl::MutexLock lock(&mu_);
      stream_ = nullptr;
      if (cancelled_) return absl::CancelledError("cancelled");
    }
    if (!Retryable(ended)) {
      if (ended.ok() && lost_) {
        *context_.err << "pm: resumed at offset " << next_offset_.value_or(0)
                      << "\n";
      }
      return ended;
    }
    const absl::Time now = absl::Now();
    if (!lost_) {
      lost_ = true;
      lost_at = now;
      retry = kFirstRetry;
      context_.out->flush();
      *context_.err << "pm: output stream lost ("
                    << absl::StatusCodeToString(ended.code()) << ": "
                    << ended.message() << "); reconnecting\n";
      context_.err->flush();
    }
    if (now - lost_at >= reconnect_timeout_) {
      return absl::UnavailableError(absl::StrCat(
          "output stream lost and not back within ",
          absl::FormatDuration(reconnect_timeout_),
          " (--reconnect-timeout): ", ended.message()));
    }
    if (WaitOrCancelled(std::min(retry, lost_at + reconnect_timeout_ - now))) {
      return absl::CancelledError("cancelled");
    }
    retry = std::min(retry * 2, kMaxRetry);
  }
}

absl::Status OutputFollower::CopyOne(pm::OutputStream& stream) {
  pm::v1::OutputChunk chunk;
  bool write_failed = false;
  while (stream.Next(&chunk)) {
    if (lost_) {
      // Said before the bytes, so that a gap notice follows it.
      *context_.err << "pm: resumed at offset " << next_offset_.value_or(0)
                    << "\n";
      context_.err->flush();
      lost_ = false;
    }
    if (chunk.dropped_before() > 0) {
      // Flushed first so that on a terminal the notice sits where the gap is.
      context_.out->flush();
      *context_.err << "pm: [" << chunk.dropped_before()
                    << " bytes not retained before offset " << chunk.offset()
                    << "]\n";
      context_.err->flush();
    }
    if (chunk.run_started() > last_run_started_) {
      // A mark comes again to a stream resumed at its offset: said once.
      last_run_started_ = chunk.run_started();
      context_.out->flush();
      *context_.err << "pm: [run " << chunk.run_started() << " started at "
                    << Rfc3339Nanos(FromProtoTimestamp(chunk.time())) << "]\n";
      context_.err->flush();
    }
    if (timestamps_ && !chunk.data().empty()) {
      WriteWithTimestamps(chunk);
    } else {
      context_.out->write(chunk.data().data(),
                          static_cast<std::streamsize>(chunk.data().size()));
    }
    context_.out->flush();
    if (!*context_.out) {
      write_failed = true;
      stream.Cancel();
      break;
    }
    next_offset_ = chunk.offset() + chunk.data().size();
  }
  absl::Status finished = stream.Finish();
  if (write_failed) return absl::UnknownError("writing to stdout failed");
  return finished;
}

void OutputFollower::WriteWithTimestamps(const pm::v1::OutputChunk& chunk) {
  const std::string stamp =
      absl::StrCat(Rfc3339Nanos(FromProtoTimestamp(chunk.time())), " ");
  bool& at_start =
      at_line_start_[chunk.stream() == pm::v1::OutputChunk::STREAM_STDERR ? 1 : 0];
  absl::string_view rest = chunk.data();
  while (!rest.empty()) {
    if (at_start) *context_.out << stamp;
    const size_t newline = rest.find('\n');
    const size_t take = newline == absl::string_view::npos ? rest.size() : newline + 1;
    context_.out->write(rest.data(), static_cast<std::streamsize>(take));
    at_start = newline != absl::string_view::npos;
    rest.remove_prefix(take);
  }
}

void OutputFollower::Cancel() {
  absl::MutexLock lock(&mu_);
  cancelled_ = true;
  if (stream_ != nullptr) stream_->Cancel();
}

bool OutputFollower::WaitOrCancelled(absl::Duration delay) {
  absl::MutexLock lock(&mu_);
  // The wait is the retry's delay, not a wait for an event: Cancel() is
  // the only event, and it ends the wait at once.
  mu_.AwaitWithTimeout(absl::Condition(&cancelled_), delay);
  return cancelled_;
}

}  // namespace pm::cli
