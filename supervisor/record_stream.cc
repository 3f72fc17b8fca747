#include "supervisor/record_stream.h"

#include <atomic>
#include <chrono>
#include <deque>
#include <map>
#include <optional>
#include <utility>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "absl/strings/str_cat.h"
#include "supervisor/async_ops.h"

namespace pm::supervisor {

using pm::internal::v1::RecordOp;
using pm::internal::v1::RecordOpResult;
using pm::v1::ProcessStatus;

// One SyncRecords call. Ops are written one at a time from a queue, by
// whichever thread finds the stream idle (the loop sending, or gRPC's
// thread finishing the last write); answers are matched to ops by tag.
//
// Lifetime: the call keeps itself alive (self_) until OnDone. A hold keeps
// gRPC from ending the call while a write may still be started: it is
// released once, when the stream breaks or is half-closed, and only when no
// write is being started (else by that write's OnWriteDone). StartWrite is
// never called under mu_: its reaction may run inline and take mu_.
class RecordStream::Call
    : public grpc::ClientBidiReactor<RecordOp, RecordOpResult> {
 public:
  void Begin(std::shared_ptr<Call> self, pm::internal::v1::Registry::Stub* stub) {
    self_ = std::move(self);
    PendingAsyncOps().Begin();
    stub->async()->SyncRecords(&context_, this);
    AddHold();
    StartRead(&result_);
    StartCall();
  }

  // Any thread. Takes `op` and `done` unless the stream can take no more
  // (then false, and both are left to the caller).
  bool Send(RecordOp& op, Done& done) {
    const RecordOp* write = nullptr;
    {
      absl::MutexLock lock(&mu_);
      if (dead_ || closing_) return false;
      pending_.emplace(op.tag(),
                       Pending{std::move(done), std::chrono::steady_clock::now()});
      queue_.push_back(std::move(op));
      if (!writing_) {
        writing_ = true;
        write = &queue_.front();  // a deque's elements stay put as it grows
      }
    }
    if (write != nullptr) StartWrite(write);
    return true;
  }

  // Any thread: no more ops; half-close once the queue is written.
  void Close() {
    bool release = false;
    {
      absl::MutexLock lock(&mu_);
      closing_ = true;
      release = !writing_ && EndWritesLocked();
    }
    if (release) HalfCloseAndRelease();
  }

  bool dead() {
    absl::MutexLock lock(&mu_);
    return dead_ || closing_;
  }

  // When the oldest unanswered op was sent; nullopt when none is.
  std::optional<std::chrono::steady_clock::time_point> OldestSent() {
    absl::MutexLock lock(&mu_);
    if (pending_.empty()) return std::nullopt;
    return pending_.begin()->second.sent;  // tags grow with time
  }

  // Fails every unanswered op with `status` and cancels the call.
  void Abandon(const absl::Status& status) {
    std::map<uint64_t, Pending> pending;
    bool release = false;
    {
      absl::MutexLock lock(&mu_);
      pending.swap(pending_);
      dead_ = true;
      release = !writing_ && EndWritesLocked();
    }
    context_.TryCancel();
    if (release) ReleaseHold();
    for (auto& [tag, p] : pending) p.done(status);
  }

  void OnWriteDone(bool ok) override {
    const RecordOp* write = nullptr;
    bool release = false, half_close = false;
    {
      absl::MutexLock lock(&mu_);
      queue_.pop_front();
      writing_ = false;
      if (!ok) dead_ = true;  // broken: OnDone answers what is pending
      if (!dead_ && !queue_.empty()) {
        writing_ = true;
        write = &queue_.front();
      } else if (EndWritesLocked()) {
        release = true;
        half_close = !dead_;  // closing with everything written
      }
    }
    if (write != nullptr) StartWrite(write);
    if (half_close) {
      HalfCloseAndRelease();
    } else if (release) {
      ReleaseHold();
    }
  }

  void OnReadDone(bool ok) override {
    if (!ok) {
      // The registry ended the stream or it broke: no more writes.
      bool release = false;
      {
        absl::MutexLock lock(&mu_);
        dead_ = true;
        release = !writing_ && EndWritesLocked();
      }
      if (release) ReleaseHold();
      return;
    }
    Done done;
    {
      absl::MutexLock lock(&mu_);
      auto it = pending_.find(result_.tag());
      if (it != pending_.end()) {  // else abandoned meanwhile
        done = std::move(it->second.done);
        pending_.erase(it);
      }
    }
    absl::StatusOr<ProcessStatus> answer =
        result_.code() == 0
            ? absl::StatusOr<ProcessStatus>(std::move(*result_.mutable_record()))
            : absl::Status(static_cast<absl::StatusCode>(result_.code()),
                           result_.message());
    StartRead(&result_);  // result_ is consumed
    if (done) done(std::move(answer));
  }

  void OnDone(const grpc::Status& status) override {
    std::map<uint64_t, Pending> pending;
    {
      absl::MutexLock lock(&mu_);
      pending.swap(pending_);
      dead_ = true;
    }
    const absl::Status ended = absl::UnavailableError(absl::StrCat(
        "the registry's record stream ended: ",
        status.ok() ? "closed" : status.error_message()));
    for (auto& [tag, p] : pending) p.done(ended);
    PendingAsyncOps().End();
    std::shared_ptr<Call> self = std::move(self_);  // may delete this
  }

 private:
  struct Pending {
    Done done;
    std::chrono::steady_clock::time_point sent;
  };

  // True once: the caller then releases the hold (and half-closes if the
  // stream is healthy). Only with no write being started.
  bool EndWritesLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (writes_ended_ || !(dead_ || closing_)) return false;
    writes_ended_ = true;
    return true;
  }
  void HalfCloseAndRelease() {
    StartWritesDone();
    ReleaseHold();
  }
  void ReleaseHold() {
    if (!hold_released_.exchange(true)) RemoveHold();
  }

  std::shared_ptr<Call> self_;
  grpc::ClientContext context_;
  RecordOpResult result_;  // the read in flight
  absl::Mutex mu_;
  std::deque<RecordOp> queue_ ABSL_GUARDED_BY(mu_);  // front: being written
  std::map<uint64_t, Pending> pending_ ABSL_GUARDED_BY(mu_);
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool dead_ ABSL_GUARDED_BY(mu_) = false;
  bool closing_ ABSL_GUARDED_BY(mu_) = false;
  bool writes_ended_ ABSL_GUARDED_BY(mu_) = false;
  std::atomic<bool> hold_released_{false};
};

RecordStream::RecordStream(EventLoop* loop,
                           pm::internal::v1::Registry::Stub* stub,
                           absl::Duration timeout)
    : loop_(loop), stub_(stub), timeout_(timeout) {}

RecordStream::~RecordStream() { Close(); }

void RecordStream::Create(pm::internal::v1::CreateRecordRequest request,
                          Done done) {
  RecordOp op;
  *op.mutable_create() = std::move(request);
  Send(std::move(op), std::move(done));
}

void RecordStream::Update(pm::internal::v1::UpdateRecordRequest request,
                          Done done) {
  RecordOp op;
  *op.mutable_update() = std::move(request);
  Send(std::move(op), std::move(done));
}

void RecordStream::Close() {
  std::shared_ptr<Call> call;
  {
    absl::MutexLock lock(&mu_);
    closed_ = true;
    call = std::move(call_);
    closing_ = call;
  }
  if (call) call->Close();
}

void RecordStream::Cancel() {
  std::shared_ptr<Call> call;
  {
    absl::MutexLock lock(&mu_);
    closed_ = true;
    call = call_ ? std::move(call_) : std::move(closing_);
  }
  if (call) call->Abandon(absl::UnavailableError("the supervisor is shutting down"));
}

void RecordStream::Send(RecordOp op, Done done) {
  op.set_tag(next_tag_++);
  // A stream found dead (broken, cancelled) is replaced; one that dies
  // between the check and the send gets one more try on a new one. Only
  // the loop thread sends, so only Close can race with this.
  for (int attempt = 0; attempt < 2; ++attempt) {
    std::shared_ptr<Call> call;
    {
      absl::MutexLock lock(&mu_);
      if (closed_) break;
      if (call_ && !call_->dead()) call = call_;
    }
    if (!call) {
      // Begun before anyone else can see it, so Close never meets a call
      // gRPC does not know yet.
      call = std::make_shared<Call>();
      call->Begin(call, stub_);
      bool closed = false;
      {
        absl::MutexLock lock(&mu_);
        closed = closed_;
        if (!closed) call_ = call;
      }
      if (closed) {
        call->Close();
        break;
      }
    }
    if (call->Send(op, done)) {
      if (!watchdog_armed_) {
        watchdog_armed_ = true;
        loop_->RunAfter(timeout_, [this] { Watchdog(); });
      }
      return;
    }
  }
  done(absl::UnavailableError(absl::StrCat(
      "the registry's record stream is closed (supervisor shutting down); ",
      op.has_create() ? "record not created: " : "record not updated: ",
      op.has_create() ? op.create().id() : op.update().id())));
}

void RecordStream::Watchdog() {
  watchdog_armed_ = false;
  std::shared_ptr<Call> call;
  {
    absl::MutexLock lock(&mu_);
    call = call_;
  }
  if (!call) return;
  std::optional<std::chrono::steady_clock::time_point> oldest = call->OldestSent();
  if (!oldest) return;  // the next op arms it again
  const auto due = *oldest + absl::ToChronoNanoseconds(timeout_);
  const auto now = std::chrono::steady_clock::now();
  if (now < due) {
    watchdog_armed_ = true;
    loop_->RunAfter(absl::FromChrono(due - now), [this] { Watchdog(); });
    return;
  }
  {
    absl::MutexLock lock(&mu_);
    if (call_ == call) call_.reset();
  }
  call->Abandon(absl::DeadlineExceededError(absl::StrCat(
      "the registry did not answer within ", absl::FormatDuration(timeout_))));
}

}  // namespace pm::supervisor
