#include "gateway/gateway_service.h"

#include <atomic>
#include <chrono>
#include <functional>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/log.h"
#include "common/status.h"
#include "gateway/basic_auth.h"

namespace pm::gateway {
namespace {

template <typename T>
grpc::Status Reply(absl::StatusOr<T> result, T* response) {
  if (!result.ok()) return ToGrpcStatus(result.status());
  *response = *std::move(result);
  return grpc::Status::OK;
}

// The caller's deadline for the backend call (none when the caller has none).
void CopyDeadline(const grpc::CallbackServerContext& from,
                  grpc::ClientContext& to) {
  if (from.deadline() != std::chrono::system_clock::time_point::max()) {
    to.set_deadline(from.deadline());
  }
}

// A unary call answered by one backend call (a Library callback form), with
// the caller's deadline, and cancelled with the caller's call: Wait (a long
// poll) and Start hold no thread meanwhile.
class UnaryRelay final : public grpc::ServerUnaryReactor {
 public:
  // Starts the backend call on `backend`; `done` is its end.
  using StartCall = std::function<absl::Status(
      grpc::ClientContext* backend, std::function<void(grpc::Status)> done)>;

  UnaryRelay(grpc::CallbackServerContext* context, const StartCall& start) {
    CopyDeadline(*context, backend_);
    absl::Status started =
        start(&backend_, [this](grpc::Status status) { Finish(status); });
    if (!started.ok()) Finish(ToGrpcStatus(started));
  }

  // Finish is still called, by the backend call ending with CANCELLED.
  void OnCancel() override { backend_.TryCancel(); }
  void OnDone() override { delete this; }

 private:
  grpc::ClientContext backend_;
};

// StreamOutput: relays the backend stream chunk by chunk. One chunk is in
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
// have run.
class OutputRelay {
 public:
  OutputRelay(pm::Client* client, grpc::CallbackServerContext* context,
              const pm::v1::StreamOutputRequest* request)
      : writer_(this), reader_(this), request_(*request) {
    CopyDeadline(*context, backend_);
    absl::Status started =
        client->StreamOutputAsync(&backend_, &request_, &reader_);
    if (!started.ok()) {
      Release();  // the reader never runs
      writer_.Finish(ToGrpcStatus(started));
      return;
    }
    reader_.AddHold();
    reader_.StartRead(&chunk_);
    reader_.StartCall();
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
    void OnCancel() override { relay_->backend_.TryCancel(); }
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
      relay_->writer_.Finish(status);
      relay_->Release();
    }

   private:
    OutputRelay* relay_;
  };

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

  Writer writer_;
  Reader reader_;
  const pm::v1::StreamOutputRequest request_;
  grpc::ClientContext backend_;
  pm::v1::OutputChunk chunk_;
  absl::Mutex mu_;
  bool metadata_sent_ ABSL_GUARDED_BY(mu_) = false;
  std::atomic<int> pending_{2};  // the writer's and the reader's OnDone
};

}  // namespace

grpc::ServerUnaryReactor* GatewayService::Start(
    grpc::CallbackServerContext* context, const pm::v1::StartRequest* request,
    pm::v1::StartResponse* response) {
  pm::StartOptions options;
  options.owner = OwnerOf(*context->auth_context());
  return new UnaryRelay(context, [&](grpc::ClientContext* backend,
                                     std::function<void(grpc::Status)> done) {
    return client_->StartAsync(
        backend, request, options, response,
        [response, owner = options.owner, done = std::move(done)](grpc::Status status) {
          // The executable only: arguments and environment may hold secrets.
          if (status.ok()) {
            PM_LOG(INFO) << "start " << response->id() << " for "
                         << (owner.empty() ? "local" : owner) << ": "
                         << response->status().resolved_executable();
          }
          done(status);
        });
  });
}

grpc::Status GatewayService::Stop(grpc::ServerContext* context,
                                  const pm::v1::StopRequest* request,
                                  pm::v1::StopResponse* response) {
  const std::string owner = OwnerOf(*context->auth_context());
  PM_LOG(INFO) << "stop " << request->id() << " for "
               << (owner.empty() ? "local" : owner);
  return Reply(client_->Stop(*request), response);
}

grpc::Status GatewayService::GetStatus(grpc::ServerContext*,
                                       const pm::v1::GetStatusRequest* request,
                                       pm::v1::ProcessStatus* response) {
  return Reply(client_->GetStatus(request->id()), response);
}

grpc::Status GatewayService::List(grpc::ServerContext*,
                                  const pm::v1::ListRequest*,
                                  pm::v1::ListResponse* response) {
  return Reply(client_->List(), response);
}

grpc::ServerUnaryReactor* GatewayService::Wait(
    grpc::CallbackServerContext* context, const pm::v1::WaitRequest* request,
    pm::v1::ProcessStatus* response) {
  return new UnaryRelay(context, [&](grpc::ClientContext* backend,
                                     std::function<void(grpc::Status)> done) {
    return client_->WaitAsync(backend, request, response, std::move(done));
  });
}

grpc::ServerWriteReactor<pm::v1::OutputChunk>* GatewayService::StreamOutput(
    grpc::CallbackServerContext* context,
    const pm::v1::StreamOutputRequest* request) {
  return (new OutputRelay(client_, context, request))->writer();
}

}  // namespace pm::gateway
