#include "gateway/gateway_service.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/log.h"
#include "common/status.h"

namespace pm::gateway {
namespace {

// The caller's deadline for a backend call (none when the caller has none).
void CopyDeadline(const grpc::CallbackServerContext& from,
                  grpc::ClientContext& to) {
  if (from.deadline() != std::chrono::system_clock::time_point::max()) {
    to.set_deadline(from.deadline());
  }
}

// What a lookup's error tells `caller`: any NOT_FOUND is the plain unknown-id
// answer for a non-admin. The registry says more of an id it evicted (that
// it ended and was evicted), but not whose it was, and that would tell a
// user that another user's id existed.
grpc::Status Hidden(const Caller& caller, const std::string& id,
                    const grpc::Status& status) {
  if (caller.admin || status.error_code() != grpc::StatusCode::NOT_FOUND) {
    return status;
  }
  return NoSuchProcess(id);
}

void Audit(AuditLog* audit, const Caller& caller, const char* method,
           const std::string& id, const grpc::Status& status) {
  if (audit == nullptr) return;
  AuditEntry entry;
  entry.user = caller.local ? "(local)" : caller.user;
  entry.subject = caller.subject;
  entry.peer = caller.peer;
  entry.method = method;
  entry.id = id;
  entry.code = status.error_code();
  entry.message = status.error_message();
  audit->Record(entry);
}

// A unary call answered after one or more backend calls made one at a
// time (authorize, then act). Each backend call gets a context of its own
// with the caller's deadline; a caller that cancels cancels the one in
// flight, whose end then answers. The call is answered exactly once, and
// only when no backend call is in flight, so the contexts outlive them.
class Call final : public grpc::ServerUnaryReactor {
 public:
  // Starts a backend call on `backend`; `done` is its end.
  using Backend = std::function<absl::Status(
      grpc::ClientContext* backend, std::function<void(grpc::Status)> done)>;

  Call(const GatewayEnv& env, grpc::CallbackServerContext* context,
       Caller caller, const char* method, std::string id)
      : env_(env), context_(context), caller_(std::move(caller)),
        method_(method), id_(std::move(id)) {}

  const Caller& caller() const { return caller_; }
  void set_id(std::string id) { id_ = std::move(id); }
  void Hold(UserQuotas::Lease lease) { lease_ = std::move(lease); }

  // Runs `start`; `then` gets the backend's status, on a gRPC thread.
  void Run(const Backend& start, std::function<void(grpc::Status)> then) {
    grpc::ClientContext* backend = nullptr;
    {
      absl::MutexLock lock(&mu_);
      if (!cancelled_) {
        backends_.push_back(std::make_unique<grpc::ClientContext>());
        backend = backends_.back().get();
        CopyDeadline(*context_, *backend);
      }
    }
    if (backend == nullptr) {
      Answer(grpc::Status(grpc::StatusCode::CANCELLED, "the caller cancelled"));
      return;
    }
    absl::Status started = start(backend, std::move(then));
    if (!started.ok()) Answer(ToGrpcStatus(started));
  }

  // Runs `then` when the caller may act on process id_; otherwise answers
  // (NOT_FOUND for a process of another user, or the registry's error).
  void Authorize(std::function<void()> then) {
    if (caller_.admin) {
      then();
      return;
    }
    lookup_.set_id(id_);
    Run(
        [this](grpc::ClientContext* backend, std::function<void(grpc::Status)> done) {
          return env_.client->GetStatusAsync(backend, &lookup_, &record_,
                                             std::move(done));
        },
        [this, then = std::move(then)](grpc::Status status) {
          if (!status.ok()) return Answer(Hidden(caller_, id_, status));
          if (!caller_.MaySee(record_.owner_user())) {
            return Answer(NoSuchProcess(id_));
          }
          then();
        });
  }

  // The stream slot is given back first: once a client has its answer,
  // the slot is free for its next call.
  void Answer(const grpc::Status& status) {
    Audit(env_.audit, caller_, method_, id_, status);
    lease_ = UserQuotas::Lease();
    Finish(status);
  }

  // TryCancel outside the lock: a backend's end may run inline and go on
  // to Run. The contexts live until OnDone, which comes after this.
  void OnCancel() override {
    std::vector<grpc::ClientContext*> backends;
    {
      absl::MutexLock lock(&mu_);
      cancelled_ = true;
      for (auto& backend : backends_) backends.push_back(backend.get());
    }
    for (grpc::ClientContext* backend : backends) backend->TryCancel();
  }
  void OnDone() override { delete this; }

 private:
  const GatewayEnv env_;
  grpc::CallbackServerContext* const context_;
  const Caller caller_;
  const char* const method_;
  std::string id_;
  UserQuotas::Lease lease_;
  pm::v1::GetStatusRequest lookup_;
  pm::v1::ProcessStatus record_;
  absl::Mutex mu_;
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::unique_ptr<grpc::ClientContext>> backends_ ABSL_GUARDED_BY(mu_);
};

// StreamOutput: first the owner check (a GetStatus, unless the caller is an
// admin), then the backend stream relayed chunk by chunk. One chunk is in
// flight at a time (read it, write it, read the next), so a slow client
// slows only its own backend stream, and the relay holds one chunk.
//
// Two reactors, one object: the client-facing writer and the backend
// reader. The reader holds a hold (AddHold) for as long as the relay may
// still start a read: without it, the backend's end can run the reader's
// OnDone (and free its call) while the last chunk is still being written,
// and the read that follows that write would touch a finished call. So the
// order is always: last read fails (or a write fails) -> RemoveHold -> the
// reader's OnDone -> Finish the writer. The object goes when both OnDones
// have run (the reader's counts as run when the stream was never begun).
class OutputRelay {
 public:
  OutputRelay(const GatewayEnv& env, grpc::CallbackServerContext* context,
              const pm::v1::StreamOutputRequest* request, Caller caller,
              UserQuotas::Lease lease)
      : env_(env), writer_(this), reader_(this), request_(*request),
        caller_(std::move(caller)), lease_(std::move(lease)) {
    CopyDeadline(*context, backend_);
    CopyDeadline(*context, lookup_context_);
    if (caller_.admin) {
      BeginStream();
      return;
    }
    lookup_.set_id(request_.id());
    absl::Status started = env_.client->GetStatusAsync(
        &lookup_context_, &lookup_, &record_,
        [this](grpc::Status status) { OnLookedUp(status); });
    if (!started.ok()) EndBeforeStream(ToGrpcStatus(started));
  }

  grpc::ServerWriteReactor<pm::v1::OutputChunk>* writer() { return &writer_; }

 private:
  class Writer final : public grpc::ServerWriteReactor<pm::v1::OutputChunk> {
   public:
    explicit Writer(OutputRelay* relay) : relay_(relay) {}
    void OnWriteDone(bool ok) override {
      if (ok) {
        relay_->reader_.StartRead(&relay_->chunk_);
        return;
      }
      // The client is gone: end the backend stream. No read is in flight,
      // so after RemoveHold the reader's OnDone finishes this stream.
      relay_->backend_.TryCancel();
      relay_->reader_.RemoveHold();
    }
    void OnCancel() override { relay_->Cancel(); }
    void OnDone() override { relay_->Release(); }

   private:
    OutputRelay* relay_;
  };

  class Reader final : public grpc::ClientReadReactor<pm::v1::OutputChunk> {
   public:
    explicit Reader(OutputRelay* relay) : relay_(relay) {}
    void OnReadInitialMetadataDone(bool ok) override {
      if (ok) relay_->BackendAttached();
    }
    void OnReadDone(bool ok) override {
      if (ok) {
        relay_->ChunkRead();
        return;
      }
      RemoveHold();  // the stream has ended; OnDone brings its status
    }
    // Only after RemoveHold, so no write is in flight.
    void OnDone(const grpc::Status& status) override {
      relay_->FinishWriter(status);
      relay_->Release();
    }

   private:
    OutputRelay* relay_;
  };

  void OnLookedUp(const grpc::Status& status) {
    if (!status.ok()) return EndBeforeStream(Hidden(caller_, request_.id(), status));
    if (!caller_.MaySee(record_.owner_user())) {
      return EndBeforeStream(NoSuchProcess(request_.id()));
    }
    BeginStream();
  }

  void BeginStream() {
    bool cancelled;
    {
      absl::MutexLock lock(&mu_);
      cancelled = cancelled_;
      streaming_ = !cancelled;
    }
    if (cancelled) {
      return EndBeforeStream(
          grpc::Status(grpc::StatusCode::CANCELLED, "the caller cancelled"));
    }
    // A Cancel from here on cancels the stream (before or after it begins).
    absl::Status started =
        env_.client->StreamOutputAsync(&backend_, &request_, &reader_);
    if (!started.ok()) return EndBeforeStream(ToGrpcStatus(started));
    reader_.AddHold();
    reader_.StartRead(&chunk_);
    reader_.StartCall();
  }

  // Ends the call without a backend stream (the reader never runs).
  void EndBeforeStream(const grpc::Status& status) {
    Release();
    FinishWriter(status);
  }

  // Once, at the end. The stream slot is given back first: once a client
  // has seen its stream end, the slot is free for its next call.
  void FinishWriter(const grpc::Status& status) {
    Audit(env_.audit, caller_, "StreamOutput", request_.id(), status);
    lease_ = UserQuotas::Lease();
    writer_.Finish(status);
  }

  // TryCancel outside the lock: an end may run inline and take it.
  void Cancel() {
    bool streaming;
    {
      absl::MutexLock lock(&mu_);
      cancelled_ = true;
      streaming = streaming_;
    }
    lookup_context_.TryCancel();
    if (streaming) backend_.TryCancel();
  }

  // The backend has attached the stream: tell the client, so that its
  // "attached" (initial metadata) means the same as on the local socket.
  // Not once a write has started: that carries the metadata itself. The
  // two reader callbacks may run at once, hence the lock.
  void BackendAttached() {
    absl::MutexLock lock(&mu_);
    if (metadata_sent_) return;
    metadata_sent_ = true;
    writer_.StartSendInitialMetadata();
  }

  void ChunkRead() {
    absl::MutexLock lock(&mu_);
    metadata_sent_ = true;
    writer_.StartWrite(&chunk_);
  }

  void Release() {
    if (pending_.fetch_sub(1) == 1) delete this;
  }

  const GatewayEnv env_;
  Writer writer_;
  Reader reader_;
  const pm::v1::StreamOutputRequest request_;
  const Caller caller_;
  UserQuotas::Lease lease_;
  grpc::ClientContext lookup_context_;
  pm::v1::GetStatusRequest lookup_;
  pm::v1::ProcessStatus record_;
  grpc::ClientContext backend_;
  pm::v1::OutputChunk chunk_;
  absl::Mutex mu_;
  bool metadata_sent_ ABSL_GUARDED_BY(mu_) = false;
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
  bool streaming_ ABSL_GUARDED_BY(mu_) = false;
  std::atomic<int> pending_{2};  // the writer's and the reader's OnDone
};

// A write reactor that only answers.
class Refusal final : public grpc::ServerWriteReactor<pm::v1::OutputChunk> {
 public:
  explicit Refusal(const grpc::Status& status) { Finish(status); }
  void OnDone() override { delete this; }
};

}  // namespace

grpc::Status NoSuchProcess(const std::string& id) {
  return grpc::Status(grpc::StatusCode::NOT_FOUND,
                      absl::StrCat("no process with id ", id));
}

Caller GatewayService::CallerOf(const grpc::CallbackServerContext& context) const {
  return door_ == Door::kLocal ? LocalCaller(context)
                               : RemoteCaller(context, *env_.users);
}

absl::StatusOr<UserQuotas::Lease> GatewayService::OpenStream(
    const Caller& caller) const {
  if (caller.local || env_.quotas == nullptr) return UserQuotas::Lease();
  return env_.quotas->OpenStream(caller.user);
}

grpc::ServerUnaryReactor* GatewayService::Start(
    grpc::CallbackServerContext* context, const pm::v1::StartRequest* request,
    pm::v1::StartResponse* response) {
  auto* call = new Call(env_, context, CallerOf(*context), "Start", "");
  const Caller& caller = call->caller();
  if (!caller.local && env_.quotas != nullptr) {
    if (absl::Status allowed = env_.quotas->TakeStart(caller.user); !allowed.ok()) {
      call->Answer(ToGrpcStatus(allowed));
      return call;
    }
  }
  pm::StartOptions options;
  options.owner = caller.Owner();
  options.owner_user = caller.user;
  call->Run(
      [this, request, response, options](grpc::ClientContext* backend,
                                         std::function<void(grpc::Status)> done) {
        return env_.client->StartAsync(backend, request, options, response,
                                       std::move(done));
      },
      [call, response](grpc::Status status) {
        if (status.ok()) {
          call->set_id(response->id());
          // The executable only: arguments and environment may hold secrets.
          PM_LOG(INFO) << "start " << response->id() << " for "
                       << (call->caller().local ? "local" : call->caller().Owner())
                       << ": " << response->status().resolved_executable();
        }
        call->Answer(status);
      });
  return call;
}

grpc::ServerUnaryReactor* GatewayService::Stop(
    grpc::CallbackServerContext* context, const pm::v1::StopRequest* request,
    pm::v1::StopResponse* response) {
  auto* call = new Call(env_, context, CallerOf(*context), "Stop", request->id());
  PM_LOG(INFO) << "stop " << request->id() << " for "
               << (call->caller().local ? "local" : call->caller().Owner());
  call->Authorize([this, call, request, response] {
    call->Run(
        [this, request, response](grpc::ClientContext* backend,
                                  std::function<void(grpc::Status)> done) {
          return env_.client->StopAsync(backend, request, response, std::move(done));
        },
        [call](grpc::Status status) { call->Answer(status); });
  });
  return call;
}

grpc::ServerUnaryReactor* GatewayService::GetStatus(
    grpc::CallbackServerContext* context, const pm::v1::GetStatusRequest* request,
    pm::v1::ProcessStatus* response) {
  auto* call = new Call(env_, context, CallerOf(*context), "GetStatus", request->id());
  call->Run(
      [this, request, response](grpc::ClientContext* backend,
                                std::function<void(grpc::Status)> done) {
        return env_.client->GetStatusAsync(backend, request, response,
                                           std::move(done));
      },
      [call, request, response](grpc::Status status) {
        if (status.ok() && !call->caller().MaySee(response->owner_user())) {
          response->Clear();
          status = NoSuchProcess(request->id());
        }
        call->Answer(Hidden(call->caller(), request->id(), status));
      });
  return call;
}

grpc::ServerUnaryReactor* GatewayService::List(grpc::CallbackServerContext* context,
                                               const pm::v1::ListRequest* request,
                                               pm::v1::ListResponse* response) {
  auto* call = new Call(env_, context, CallerOf(*context), "List", "");
  call->Run(
      [this, request, response](grpc::ClientContext* backend,
                                std::function<void(grpc::Status)> done) {
        return env_.client->ListAsync(backend, request, response, std::move(done));
      },
      [call, response](grpc::Status status) {
        if (status.ok() && !call->caller().admin) {
          auto* processes = response->mutable_processes();
          processes->erase(
              std::remove_if(processes->begin(), processes->end(),
                             [call](const pm::v1::ProcessStatus& process) {
                               return !call->caller().MaySee(process.owner_user());
                             }),
              processes->end());
        }
        call->Answer(status);
      });
  return call;
}

grpc::ServerUnaryReactor* GatewayService::Wait(grpc::CallbackServerContext* context,
                                               const pm::v1::WaitRequest* request,
                                               pm::v1::ProcessStatus* response) {
  auto* call = new Call(env_, context, CallerOf(*context), "Wait", request->id());
  absl::StatusOr<UserQuotas::Lease> lease = OpenStream(call->caller());
  if (!lease.ok()) {
    call->Answer(ToGrpcStatus(lease.status()));
    return call;
  }
  call->Hold(*std::move(lease));
  call->Authorize([this, call, request, response] {
    call->Run(
        [this, request, response](grpc::ClientContext* backend,
                                  std::function<void(grpc::Status)> done) {
          return env_.client->WaitAsync(backend, request, response, std::move(done));
        },
        [call](grpc::Status status) { call->Answer(status); });
  });
  return call;
}

grpc::ServerWriteReactor<pm::v1::OutputChunk>* GatewayService::StreamOutput(
    grpc::CallbackServerContext* context,
    const pm::v1::StreamOutputRequest* request) {
  Caller caller = CallerOf(*context);
  absl::StatusOr<UserQuotas::Lease> lease = OpenStream(caller);
  if (!lease.ok()) {
    grpc::Status refused = ToGrpcStatus(lease.status());
    Audit(env_.audit, caller, "StreamOutput", request->id(), refused);
    return new Refusal(refused);
  }
  return (new OutputRelay(env_, context, request, std::move(caller),
                          *std::move(lease)))
      ->writer();
}

}  // namespace pm::gateway
