#include "registry/registry_service.h"

#include <deque>
#include <memory>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"

#include "common/status.h"
#include "common/utf8_fields.h"

namespace pm::registry {

using pm::internal::v1::RecordOp;
using pm::internal::v1::RecordOpResult;

namespace {

// Finishes the call with `result`: its value into `response`, or its status.
template <typename T>
grpc::ServerUnaryReactor* Finish(grpc::CallbackServerContext* context,
                                 absl::StatusOr<T> result, T* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  if (result.ok()) *response = *std::move(result);
  reactor->Finish(ToGrpcStatus(result.status()));
  return reactor;
}

}  // namespace

grpc::ServerUnaryReactor* RegistryService::CreateRecord(
    grpc::CallbackServerContext* context,
    const pm::internal::v1::CreateRecordRequest* request,
    pm::v1::ProcessStatus* response) {
  return Finish(context, registry_->CreateRecord(*request), response);
}

grpc::ServerUnaryReactor* RegistryService::UpdateRecord(
    grpc::CallbackServerContext* context,
    const pm::internal::v1::UpdateRecordRequest* request,
    pm::v1::ProcessStatus* response) {
  return Finish(context, registry_->UpdateRecord(*request), response);
}

grpc::ServerUnaryReactor* RegistryService::GetStatus(
    grpc::CallbackServerContext* context, const grpc::ByteBuffer* request,
    grpc::ByteBuffer* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  absl::StatusOr<pm::v1::GetStatusRequest> parsed =
      ParseStrict<pm::v1::GetStatusRequest>(*request);
  absl::StatusOr<pm::v1::ProcessStatus> status =
      parsed.ok() ? registry_->GetStatus(parsed->id()) : parsed.status();
  if (status.ok()) *response = SerializeToByteBuffer(*status);
  reactor->Finish(ToGrpcStatus(status.status()));
  return reactor;
}

grpc::ServerUnaryReactor* RegistryService::List(
    grpc::CallbackServerContext* context, const pm::v1::ListRequest* request,
    pm::v1::ListResponse* response) {
  return Finish(context, registry_->List(*request), response);
}

grpc::ServerUnaryReactor* RegistryService::Resolve(
    grpc::CallbackServerContext* context,
    const pm::internal::v1::ResolveRequest* request,
    pm::internal::v1::ResolveResponse* response) {
  return Finish(context, registry_->Resolve(*request), response);
}

grpc::ServerUnaryReactor* RegistryService::RemoveRecord(
    grpc::CallbackServerContext* context,
    const pm::internal::v1::RemoveRecordRequest* request,
    pm::v1::ProcessStatus* response) {
  return Finish(context,
                registry_->RemoveRecord(request->id(), request->owner_user()),
                response);
}

grpc::ServerUnaryReactor* RegistryService::ListNodes(
    grpc::CallbackServerContext* context,
    const pm::internal::v1::ListNodesRequest* /*request*/,
    pm::internal::v1::ListNodesResponse* response) {
  return Finish(context,
                absl::StatusOr<pm::internal::v1::ListNodesResponse>(registry_->ListNodes()),
                response);
}

grpc::ServerUnaryReactor* RegistryService::ListLive(
    grpc::CallbackServerContext* context,
    const pm::internal::v1::ListLiveRequest* /*request*/,
    pm::internal::v1::ListLiveResponse* response) {
  pm::internal::v1::ListLiveResponse live;
  for (pm::internal::v1::StoredRecord& record : registry_->ListLive()) {
    *live.add_records() = std::move(record);
  }
  return Finish(context, absl::StatusOr<pm::internal::v1::ListLiveResponse>(std::move(live)),
                response);
}

namespace {

// One Wait call: finished exactly once, by the record's end or by the
// caller's cancellation, whichever comes first.
class WaitReactor final : public grpc::ServerUnaryReactor {
 public:
  WaitReactor(Registry* registry, std::string id, grpc::ByteBuffer* response)
      : registry_(registry), id_(std::move(id)), response_(response) {}

  void Begin() {
    auto state = state_;
    uint64_t token = registry_->Wait(
        id_, [state](absl::StatusOr<pm::v1::ProcessStatus> result) {
          absl::MutexLock lock(&state->mu);
          if (state->reactor == nullptr) return;  // cancelled
          WaitReactor* self = state->reactor;
          state->reactor = nullptr;
          if (result.ok()) *self->response_ = SerializeToByteBuffer(*result);
          self->Finish(ToGrpcStatus(result.status()));
        });
    // `this` may be gone already (answered at once); only `state` is ours.
    absl::MutexLock lock(&state->mu);
    state->token = token;
  }

  void OnCancel() override {
    uint64_t token;
    {
      absl::MutexLock lock(&state_->mu);
      if (state_->reactor == nullptr) return;  // already answered
      state_->reactor = nullptr;
      token = state_->token;
    }
    registry_->CancelWait(id_, token);
    Finish(grpc::Status(grpc::StatusCode::CANCELLED, "wait cancelled"));
  }
  void OnDone() override { delete this; }

 private:
  struct State {
    absl::Mutex mu;
    WaitReactor* reactor = nullptr;  // null once answered or cancelled
    uint64_t token = 0;
  };
  Registry* registry_;
  std::string id_;
  grpc::ByteBuffer* response_;
  std::shared_ptr<State> state_ = [this] {
    auto state = std::make_shared<State>();
    state->reactor = this;
    return state;
  }();
};

}  // namespace

grpc::ServerUnaryReactor* RegistryService::Wait(
    grpc::CallbackServerContext* context, const grpc::ByteBuffer* request,
    grpc::ByteBuffer* response) {
  absl::StatusOr<pm::v1::WaitRequest> parsed =
      ParseStrict<pm::v1::WaitRequest>(*request);
  if (!parsed.ok()) {
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    reactor->Finish(ToGrpcStatus(parsed.status()));
    return reactor;
  }
  auto* reactor = new WaitReactor(registry_, parsed->id(), response);
  reactor->Begin();
  return reactor;
}

namespace {

// One SyncRecords stream. Each op is applied as it is read (the Registry
// never blocks), and its result queued; results go out one write at a time,
// in order. Reading pauses while kMaxQueued results wait, so a sender that
// does not read cannot grow the queue without bound. The stream ends with
// OK once the sender half-closes and every result is written, or with
// UNAVAILABLE at shutdown. gRPC runs the reactions on its threads, at most
// one read and one write reaction at a time; mu_ guards what they share.
// The reactor owns itself through self_ from Begin to OnDone.
class SyncRecordsReactor final
    : public grpc::ServerBidiReactor<RecordOp, RecordOpResult>,
      public pm::StreamReactor {
 public:
  SyncRecordsReactor(Registry* registry, StreamSet* streams)
      : registry_(registry), streams_(streams) {}

  void Begin(std::shared_ptr<SyncRecordsReactor> self) {
    self_ = std::move(self);
    if (!streams_->Add(self_)) {
      Finish(grpc::Status(grpc::StatusCode::UNAVAILABLE, kShuttingDown));
      return;
    }
    StartRead(&op_);
  }

  void OnReadDone(bool ok) override {
    if (!ok) {  // the sender half-closed, or the call broke
      absl::MutexLock lock(&mu_);
      read_done_ = true;
      FinishIfDone();
      return;
    }
    {
      // Once shutting down, nothing more is applied: the sender hears
      // UNAVAILABLE for it, which is true.
      absl::MutexLock lock(&mu_);
      if (shutting_down_ || finish_called_) {
        read_done_ = true;
        FinishIfDone();
        return;
      }
    }
    RecordOpResult result = Apply(op_);
    const RecordOpResult* write = nullptr;
    bool read_more = false;
    {
      absl::MutexLock lock(&mu_);
      // A shutdown may have finished the stream while this op was applied:
      // nothing may be started on it any more.
      if (finish_called_) return;
      queue_.push_back(std::move(result));
      if (!writing_) {
        writing_ = true;
        write = &queue_.front();  // deque: stays put while others are added
      }
      read_more = queue_.size() < kMaxQueued;
      read_paused_ = !read_more;
    }
    if (write != nullptr) StartWrite(write);
    if (read_more) StartRead(&op_);
  }

  void OnWriteDone(bool ok) override {
    const RecordOpResult* write = nullptr;
    bool resume_reading = false;
    {
      absl::MutexLock lock(&mu_);
      queue_.pop_front();
      writing_ = false;
      if (!ok) {
        write_failed_ = true;  // the sender is gone: OnDone follows
        FinishIfDone();
        return;
      }
      // At shutdown too: what was applied is answered before the end.
      if (!queue_.empty()) {
        writing_ = true;
        write = &queue_.front();
      }
      if (read_paused_ && !read_done_ && !finish_called_ && !shutting_down_) {
        read_paused_ = false;
        resume_reading = true;
      }
      if (write == nullptr) FinishIfDone();
    }
    if (write != nullptr) StartWrite(write);
    if (resume_reading) StartRead(&op_);
  }

  void RequestShutdown() override {
    absl::MutexLock lock(&mu_);
    shutting_down_ = true;
    FinishIfDone();
  }

  void OnDone() override {
    streams_->Remove(this);
    std::shared_ptr<SyncRecordsReactor> self = std::move(self_);  // may delete this
  }

 private:
  static constexpr size_t kMaxQueued = 1024;
  static constexpr char kShuttingDown[] = "registry shutting down";

  RecordOpResult Apply(const RecordOp& op) {
    absl::StatusOr<pm::v1::ProcessStatus> record =
        op.has_create()   ? registry_->CreateRecord(op.create())
        : op.has_update() ? registry_->UpdateRecord(op.update())
                          : absl::InvalidArgumentError(absl::StrCat(
                                "SyncRecords op ", op.tag(),
                                " is neither a create nor an update"));
    RecordOpResult result;
    result.set_tag(op.tag());
    if (record.ok()) {
      *result.mutable_record() = *std::move(record);
    } else {
      result.set_code(static_cast<int>(record.status().code()));
      result.set_message(std::string(record.status().message()));
    }
    return result;
  }

  // Finish once nothing is being written and the stream has nothing more to
  // say: the sender is done, the call broke, or the service shuts down (after
  // the answers to what was applied, unless writing failed).
  void FinishIfDone() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (finish_called_ || writing_) return;
    if (!queue_.empty() && !write_failed_) return;
    grpc::Status status;
    if (shutting_down_) {
      status = grpc::Status(grpc::StatusCode::UNAVAILABLE, kShuttingDown);
    } else if (!read_done_ && !write_failed_) {
      return;
    }
    finish_called_ = true;
    Finish(status);
  }

  Registry* const registry_;
  StreamSet* const streams_;
  std::shared_ptr<SyncRecordsReactor> self_;
  RecordOp op_;  // the read in flight; only the read reactions touch it
  absl::Mutex mu_;
  std::deque<RecordOpResult> queue_ ABSL_GUARDED_BY(mu_);  // front: writing
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool read_paused_ ABSL_GUARDED_BY(mu_) = false;
  bool read_done_ ABSL_GUARDED_BY(mu_) = false;
  bool write_failed_ ABSL_GUARDED_BY(mu_) = false;
  bool shutting_down_ ABSL_GUARDED_BY(mu_) = false;
  bool finish_called_ ABSL_GUARDED_BY(mu_) = false;
};

// A Watch: the registry's events after a cursor, one write at a time, then
// waiting for the next append (Registry::AddWatcher wakes it). It holds no
// queue: the registry's retained events are the buffer, so a slow watcher
// costs nothing but its cursor, and one that falls behind the cap is told
// how many it missed. Owns itself through self_ from Begin to OnDone.
class WatchReactor final : public grpc::ServerWriteReactor<pm::v1::Event>,
                           public pm::StreamReactor,
                           public std::enable_shared_from_this<WatchReactor> {
 public:
  WatchReactor(Registry* registry, StreamSet* streams, WatchFilter filter,
               uint64_t cursor)
      : registry_(registry), streams_(streams), filter_(std::move(filter)),
        cursor_(cursor) {}

  void Begin() {
    self_ = shared_from_this();
    if (!streams_->Add(self_)) {
      Finish(grpc::Status(grpc::StatusCode::UNAVAILABLE, "registry shutting down"));
      return;
    }
    watcher_ = registry_->AddWatcher([weak = weak_from_this()] {
      if (auto self = weak.lock()) self->Pump();
    });
    // Headers go out at once, so a client can tell that its watch is
    // attached (every later change reaches it) before any event comes.
    StartSendInitialMetadata();
    Pump();
  }

  void OnWriteDone(bool ok) override {
    {
      absl::MutexLock lock(&mu_);
      writing_ = false;
      if (!ok) cancelled_ = true;
    }
    Pump();
  }

  void OnCancel() override {
    {
      absl::MutexLock lock(&mu_);
      cancelled_ = true;
    }
    Pump();
  }

  void RequestShutdown() override {
    {
      absl::MutexLock lock(&mu_);
      shutting_down_ = true;
    }
    Pump();
  }

  void OnDone() override {
    registry_->RemoveWatcher(watcher_);
    streams_->Remove(this);
    std::shared_ptr<WatchReactor> self = std::move(self_);  // may delete this
  }

 private:
  // Writes the next event, finishes, or waits for the next wake. Wakes
  // that come while a write is in flight are caught by OnWriteDone's Pump.
  void Pump() {
    grpc::Status finish;
    bool do_finish = false;
    bool do_write = false;
    {
      absl::MutexLock lock(&mu_);
      if (finish_called_ || writing_) return;
      if (cancelled_ || shutting_down_) {
        finish = cancelled_ ? grpc::Status(grpc::StatusCode::CANCELLED, "Watch cancelled")
                            : grpc::Status(grpc::StatusCode::UNAVAILABLE,
                                           "registry shutting down");
        finish_called_ = do_finish = true;
      } else {
        Registry::NextEventResult next = registry_->NextEvent(cursor_, filter_);
        cursor_ = next.cursor;
        missed_ += next.missed;
        if (next.event) {
          event_ = *std::move(next.event);
          event_.set_missed_before(missed_);
          missed_ = 0;
          writing_ = do_write = true;
        }
      }
    }
    // Outside mu_: the reactions they lead to take it on other threads.
    if (do_write) StartWrite(&event_);
    if (do_finish) Finish(finish);
  }

  Registry* const registry_;
  StreamSet* const streams_;
  const WatchFilter filter_;
  std::shared_ptr<WatchReactor> self_;
  uint64_t watcher_ = 0;
  absl::Mutex mu_;
  uint64_t cursor_ ABSL_GUARDED_BY(mu_);
  uint64_t missed_ ABSL_GUARDED_BY(mu_) = 0;
  pm::v1::Event event_;  // the write in flight
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
  bool shutting_down_ ABSL_GUARDED_BY(mu_) = false;
  bool finish_called_ ABSL_GUARDED_BY(mu_) = false;
};

// A stream refused before it began.
class RefusedWatch final : public grpc::ServerWriteReactor<pm::v1::Event> {
 public:
  explicit RefusedWatch(grpc::Status status) { Finish(std::move(status)); }
  void OnDone() override { delete this; }
};

}  // namespace

grpc::ServerWriteReactor<pm::v1::Event>* RegistryService::Watch(
    grpc::CallbackServerContext*, const pm::v1::WatchRequest* request) {
  absl::StatusOr<WatchFilter> filter = ParseWatchFilter(*request);
  if (!filter.ok()) return new RefusedWatch(ToGrpcStatus(filter.status()));
  // Unset: from now on; else after the sequence given.
  const uint64_t cursor = request->has_after_sequence()
                              ? request->after_sequence()
                              : registry_->last_event_sequence();
  auto reactor = std::make_shared<WatchReactor>(registry_, &watches_,
                                                *std::move(filter), cursor);
  reactor->Begin();
  return reactor.get();
}

grpc::ServerBidiReactor<RecordOp, RecordOpResult>* RegistryService::SyncRecords(
    grpc::CallbackServerContext*) {
  auto reactor = std::make_shared<SyncRecordsReactor>(registry_, &syncs_);
  reactor->Begin(reactor);
  return reactor.get();
}

void RegistryService::Shutdown() {
  syncs_.Shutdown();
  watches_.Shutdown();
}

size_t RegistryService::sync_stream_count() const { return syncs_.size(); }

bool RegistryService::WaitForSyncStreams(size_t n, absl::Duration timeout) const {
  return syncs_.WaitForSize(n, timeout);
}

bool RegistryService::WaitForRefusedSyncStreams(size_t n, absl::Duration timeout) const {
  return syncs_.WaitForRefused(n, timeout);
}

}  // namespace pm::registry
