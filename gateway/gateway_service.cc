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
#include "common/names.h"
#include "common/command_line.h"
#include "common/status.h"
#include "common/utf8_fields.h"
#include "gateway/metrics.h"

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

// What a backend's failure tells a remote caller: not where pm's sockets
// are. The detail goes to the gateway's log.
grpc::Status Outward(const Caller& caller, const grpc::Status& status) {
  if (caller.local || status.error_code() != grpc::StatusCode::UNAVAILABLE ||
      IsClusterUnavailableMessage(status.error_message())) {
    // A cluster's (etcd, another host) is meant for the caller.
    return status;
  }
  PM_LOG(WARNING) << "a backend is unavailable: " << status.error_message();
  return grpc::Status(grpc::StatusCode::UNAVAILABLE,
                      "a pm service behind the gateway is unavailable (the "
                      "gateway's log says which); try again shortly");
}

// What a call forwarded to host `node` ended with, for the caller: the
// owner's answer as it gave it, but an UNAVAILABLE one (the host, or a
// service behind its gateway, out of reach) told as the cluster's, naming
// the host, so that Outward passes it on.
grpc::Status FromPeer(const std::string& node, const grpc::Status& status) {
  if (status.error_code() != grpc::StatusCode::UNAVAILABLE ||
      IsClusterUnavailableMessage(status.error_message())) {
    return status;
  }
  return ToGrpcStatus(ClusterUnavailableError(
      absl::StrCat("host ", node, " (the call was forwarded to its gateway): ",
                   status.error_message())));
}

void Audit(AuditLog* audit, const Caller& caller, const char* method,
           const std::string& id, const grpc::Status& status) {
  Metrics()
      .calls.With({method, absl::StatusCodeToString(static_cast<absl::StatusCode>(
                               status.error_code()))})
      .Increment();
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

// What a call on a process of another host does when it cannot be
// forwarded there (the host is down, the caller is local).
enum class Elsewhere {
  kOwnerOnly,    // answers why (Stop, Signal, Remove, output)
  kOwnerOrCopy,  // goes on with this host's copy of the record (GetStatus, Wait)
};

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

  // `out` is where the answer's bytes go (the raw method's response).
  Call(const GatewayEnv& env, grpc::CallbackServerContext* context,
       Caller caller, const char* method, grpc::ByteBuffer* out)
      : env_(env), context_(context), caller_(std::move(caller)),
        method_(method), out_(out) {}

  const Caller& caller() const { return caller_; }
  void set_id(std::string id) { id_ = std::move(id); }
  // The other host's gateway the call goes to (Resolve set it), or null.
  pm::v1::ProcessManager::Stub* forward() const { return forward_; }
  const std::string& forward_node() const { return forward_node_; }
  void set_forward(pm::v1::ProcessManager::Stub* peer, std::string node) {
    forward_ = peer;
    forward_node_ = std::move(node);
  }
  // Readies `backend` for the call forwarded there on the caller's behalf.
  void PrepareForward(grpc::ClientContext* backend) const {
    env_.router->PrepareForward(caller_, backend);
  }
  const grpc::CallbackServerContext& context() const { return *context_; }
  void Hold(UserQuotas::Lease lease) { lease_ = std::move(lease); }

  // The request, parsed strictly into a message this call owns; null (and
  // the call answered INVALID_ARGUMENT naming the field) when it is not one.
  template <typename T>
  T* Parse(const grpc::ByteBuffer& raw) {
    absl::StatusOr<T> parsed = ParseStrict<T>(raw);
    if (!parsed.ok()) {
      Answer(ToGrpcStatus(parsed.status()));
      return nullptr;
    }
    return Own(std::make_unique<T>(*std::move(parsed)));
  }
  // The answer's message, serialized into `out` when the call ends OK.
  template <typename T>
  T* Reply() {
    T* reply = Own(std::make_unique<T>());
    reply_ = reply;
    return reply;
  }

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

  // Replaces `*ref` (a full id, a name or an id prefix) by the full id it
  // names among the processes the caller may see, then runs `then`;
  // otherwise answers (NOT_FOUND, or FAILED_PRECONDITION for an ambiguous
  // prefix, which lists only the caller's own processes).
  //
  // In a cluster, a process of another host: the call is set to go to
  // that host's gateway (forward()), or, when it cannot go there, answered
  // as `elsewhere` says.
  void Resolve(std::string* ref, std::function<void()> then,
               Elsewhere elsewhere = Elsewhere::kOwnerOnly) {
    if (env_.router != nullptr) return Locate(ref, std::move(then), elsewhere);
    auto resolved = std::make_shared<std::string>();
    Run(
        [this, ref, resolved](grpc::ClientContext* backend,
                              std::function<void(grpc::Status)> done) {
          return env_.client->ResolveAsync(
              backend, *ref, caller_.admin ? "" : caller_.user,
              [resolved, done = std::move(done)](absl::StatusOr<std::string> id) {
                if (id.ok()) *resolved = *std::move(id);
                done(ToGrpcStatus(id.status()));
              });
        },
        [this, ref, resolved, then = std::move(then)](grpc::Status status) {
          if (!status.ok()) return Answer(Hidden(caller_, *ref, status));
          *ref = *resolved;
          id_ = *resolved;
          then();
        });
  }

  // Resolve in a cluster: the registry says where the process is.
  void Locate(std::string* ref, std::function<void()> then, Elsewhere elsewhere) {
    auto located = std::make_shared<pm::internal::v1::ResolveResponse>();
    Run(
        [this, ref, located](grpc::ClientContext* backend,
                             std::function<void(grpc::Status)> done) {
          env_.router->Locate(
              backend, *ref, caller_.admin ? "" : caller_.user,
              [located, done = std::move(done)](
                  absl::StatusOr<pm::internal::v1::ResolveResponse> where) {
                if (where.ok()) *located = *std::move(where);
                done(ToGrpcStatus(where.status()));
              });
          return absl::OkStatus();
        },
        [this, ref, located, elsewhere, then = std::move(then)](grpc::Status status) {
          if (!status.ok()) return Answer(Hidden(caller_, *ref, status));
          *ref = located->id();
          id_ = located->id();
          if (located->node().empty() || located->node() == env_.router->node()) {
            return then();
          }
          absl::Status routed = Route(*located);
          if (routed.ok() || elsewhere == Elsewhere::kOwnerOrCopy) return then();
          Answer(ToGrpcStatus(routed));
        });
  }

  // Sets the call to go to the gateway of the host the process is on, or
  // says why it cannot.
  absl::Status Route(const pm::internal::v1::ResolveResponse& located) {
    const std::string& node = located.node();
    if (ClusterRouter::IsForwarded(*context_)) {
      // Never forwarded twice: the hosts' views differ for a moment.
      return ClusterUnavailableError(absl::StrCat(
          "process ", located.id(), " is on host ", node, " as this host (",
          env_.router->node(), ") sees it, and the call was forwarded here from "
          "another host's gateway; try again"));
    }
    if (caller_.authorization.empty()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "process ", located.id(), " is on host ", node, ": a call on the local "
          "socket carries no user to forward there; call that host, or a "
          "gateway of the cluster with a user"));
    }
    if (located.gateway().empty()) {
      return ClusterUnavailableError(absl::StrCat(
          "process ", located.id(), " is on host ", node, ", which is unreachable "
          "(it holds no lease in etcd, or publishes no gateway address)"));
    }
    set_forward(env_.router->Peer(located.gateway()), node);
    return absl::OkStatus();
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

  // The slot is given back first: once a client has its answer, the slot
  // is free for its next call.
  void Answer(const grpc::Status& status) {
    const grpc::Status answer = Outward(caller_, status);
    Audit(env_.audit, caller_, method_, id_, answer);
    lease_ = UserQuotas::Lease();
    if (answer.ok() && reply_ != nullptr) *out_ = SerializeToByteBuffer(*reply_);
    Finish(answer);
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
  template <typename T>
  T* Own(std::unique_ptr<T> message) {
    T* raw = message.get();
    owned_.push_back(std::move(message));
    return raw;
  }

  const Caller caller_;
  const char* const method_;
  grpc::ByteBuffer* const out_;
  std::string id_;
  pm::v1::ProcessManager::Stub* forward_ = nullptr;
  std::string forward_node_;
  UserQuotas::Lease lease_;
  std::vector<std::unique_ptr<google::protobuf::Message>> owned_;
  const google::protobuf::Message* reply_ = nullptr;
  pm::v1::GetStatusRequest lookup_;
  pm::v1::ProcessStatus record_;
  absl::Mutex mu_;
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::unique_ptr<grpc::ClientContext>> backends_ ABSL_GUARDED_BY(mu_);
};

// The two server streams, StreamOutput and Watch, differ only in these.
struct OutputStream {
  using Request = pm::v1::StreamOutputRequest;
  using Message = pm::v1::OutputChunk;
  static constexpr char kMethod[] = "StreamOutput";
  // A stream of one process: its id is required.
  static constexpr bool kIdOptional = false;
  static void Scope(const Caller&, Request&) {}
  static absl::Status Open(pm::Client& client, grpc::ClientContext* context,
                           const Request* request,
                           grpc::ClientReadReactor<Message>* reactor) {
    return client.StreamOutputAsync(context, request, reactor);
  }
  static void OpenPeer(pm::v1::ProcessManager::Stub* peer, grpc::ClientContext* context,
                       const Request* request, grpc::ClientReadReactor<Message>* reactor) {
    peer->async()->StreamOutput(context, request, reactor);
  }
};

struct EventStream {
  using Request = pm::v1::WatchRequest;
  using Message = pm::v1::Event;
  static constexpr char kMethod[] = "Watch";
  // Without an id, every process's events (the caller's own).
  static constexpr bool kIdOptional = true;
  // A user who is not an admin watches its own processes only, whatever the
  // request says: the registry filters by owner, so another user's events
  // never reach the gateway.
  static void Scope(const Caller& caller, Request& request) {
    if (!caller.admin) request.set_owner_user(caller.user);
  }
  static absl::Status Open(pm::Client& client, grpc::ClientContext* context,
                           const Request* request,
                           grpc::ClientReadReactor<Message>* reactor) {
    return client.WatchAsync(context, request, reactor);
  }
  static void OpenPeer(pm::v1::ProcessManager::Stub* peer, grpc::ClientContext* context,
                       const Request* request, grpc::ClientReadReactor<Message>* reactor) {
    peer->async()->Watch(context, request, reactor);
  }
};

// A server stream (StreamOutput, Watch): first the process's id resolved
// among the caller's and the owner check (a GetStatus, unless the caller is
// an admin; neither for a Watch of every process), then the backend stream
// relayed message by message. One chunk is in
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
template <typename Stream>
class StreamRelay {
 public:
  using Request = typename Stream::Request;
  using Message = typename Stream::Message;

  StreamRelay(const GatewayEnv& env, grpc::CallbackServerContext* context,
              Request request, Caller caller, UserQuotas::Lease lease)
      : env_(env), writer_(this), reader_(this), request_(std::move(request)),
        caller_(std::move(caller)), lease_(std::move(lease)) {
    CopyDeadline(*context, backend_);
    CopyDeadline(*context, lookup_context_);
    CopyDeadline(*context, resolve_context_);
    Stream::Scope(caller_, request_);
    if (Stream::kIdOptional && request_.id().empty()) {
      BeginStream();
      return;
    }
    // In a cluster, the registry says which host the process is on.
    if (env_.router != nullptr) {
      env_.router->Locate(
          &resolve_context_, request_.id(), caller_.admin ? "" : caller_.user,
          [this, context](absl::StatusOr<pm::internal::v1::ResolveResponse> where) {
            OnLocated(*context, std::move(where));
          });
      return;
    }
    // A name or an id prefix becomes the full id first (among the caller's
    // processes); a full id is taken as it is, at once.
    absl::Status started = env_.client->ResolveAsync(
        &resolve_context_, request_.id(), caller_.admin ? "" : caller_.user,
        [this](absl::StatusOr<std::string> id) { OnResolved(std::move(id)); });
    if (!started.ok()) EndBeforeStream(ToGrpcStatus(started));
  }

  grpc::ServerWriteReactor<grpc::ByteBuffer>* writer() { return &writer_; }

 private:
  class Writer final : public grpc::ServerWriteReactor<grpc::ByteBuffer> {
   public:
    explicit Writer(StreamRelay* relay) : relay_(relay) {}
    void OnWriteDone(bool ok) override {
      if (ok) {
        relay_->reader_.StartRead(&relay_->message_);
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
    StreamRelay* relay_;
  };

  class Reader final : public grpc::ClientReadReactor<Message> {
   public:
    explicit Reader(StreamRelay* relay) : relay_(relay) {}
    void OnReadInitialMetadataDone(bool ok) override {
      if (ok) relay_->BackendAttached();
    }
    void OnReadDone(bool ok) override {
      if (ok) {
        relay_->MessageRead();
        return;
      }
      this->RemoveHold();  // the stream has ended; OnDone brings its status
    }
    // Only after RemoveHold, so no write is in flight.
    void OnDone(const grpc::Status& status) override {
      relay_->FinishWriter(status);
      relay_->Release();
    }

   private:
    StreamRelay* relay_;
  };

  void OnResolved(absl::StatusOr<std::string> id) {
    if (!id.ok()) {
      return EndBeforeStream(Hidden(caller_, request_.id(), ToGrpcStatus(id.status())));
    }
    request_.set_id(*std::move(id));
    if (caller_.admin) return BeginStream();
    lookup_.set_id(request_.id());
    absl::Status started = env_.client->GetStatusAsync(
        &lookup_context_, &lookup_, &record_,
        [this](grpc::Status status) { OnLookedUp(status); });
    if (!started.ok()) EndBeforeStream(ToGrpcStatus(started));
  }

  void OnLocated(const grpc::CallbackServerContext& context,
                 absl::StatusOr<pm::internal::v1::ResolveResponse> where) {
    if (!where.ok() || where->node().empty() || where->node() == env_.router->node()) {
      return OnResolved(where.ok() ? absl::StatusOr<std::string>(where->id())
                                   : absl::StatusOr<std::string>(where.status()));
    }
    // Another host's: relayed from its gateway, which authorizes the
    // caller itself.
    request_.set_id(where->id());
    const std::string& node = where->node();
    if (ClusterRouter::IsForwarded(context)) {
      return EndBeforeStream(ToGrpcStatus(ClusterUnavailableError(
          absl::StrCat("process ", where->id(), " is on host ", node,
                       " as this host sees it, and the call was forwarded here "
                       "from another host's gateway; try again"))));
    }
    if (caller_.authorization.empty()) {
      return EndBeforeStream(grpc::Status(
          grpc::StatusCode::FAILED_PRECONDITION,
          absl::StrCat("process ", where->id(), " is on host ", node,
                       ": a call on the local socket carries no user to forward "
                       "there; call that host, or a gateway of the cluster with a user")));
    }
    if (where->gateway().empty()) {
      return EndBeforeStream(ToGrpcStatus(ClusterUnavailableError(
          absl::StrCat("process ", where->id(), " is on host ", node,
                       ", which is unreachable (it holds no lease in etcd, or "
                       "publishes no gateway address)"))));
    }
    peer_ = env_.router->Peer(where->gateway());
    peer_node_ = node;
    env_.router->PrepareForward(caller_, &backend_);
    BeginStream();
  }

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
    if (peer_ != nullptr) {
      Stream::OpenPeer(peer_, &backend_, &request_, &reader_);
    } else {
      absl::Status started = Stream::Open(*env_.client, &backend_, &request_, &reader_);
      if (!started.ok()) return EndBeforeStream(ToGrpcStatus(started));
    }
    reader_.AddHold();
    reader_.StartRead(&message_);
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
    const grpc::Status answer =
        Outward(caller_, peer_ != nullptr ? FromPeer(peer_node_, status) : status);
    Audit(env_.audit, caller_, Stream::kMethod, request_.id(), answer);
    lease_ = UserQuotas::Lease();
    writer_.Finish(answer);
  }

  // TryCancel outside the lock: an end may run inline and take it.
  void Cancel() {
    bool streaming;
    {
      absl::MutexLock lock(&mu_);
      cancelled_ = true;
      streaming = streaming_;
    }
    resolve_context_.TryCancel();
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

  void MessageRead() {
    absl::MutexLock lock(&mu_);
    metadata_sent_ = true;
    out_ = SerializeToByteBuffer(message_);
    writer_.StartWrite(&out_);
  }

  void Release() {
    if (pending_.fetch_sub(1) == 1) delete this;
  }

  const GatewayEnv env_;
  Writer writer_;
  Reader reader_;
  // Its id resolved (OnResolved) before the stream begins.
  Request request_;
  const Caller caller_;
  UserQuotas::Lease lease_;
  grpc::ClientContext resolve_context_;
  grpc::ClientContext lookup_context_;
  pm::v1::GetStatusRequest lookup_;
  pm::v1::ProcessStatus record_;
  grpc::ClientContext backend_;
  // Another host's gateway the stream comes from (a cluster), or null.
  pm::v1::ProcessManager::Stub* peer_ = nullptr;
  std::string peer_node_;
  Message message_;
  grpc::ByteBuffer out_;  // message_'s bytes, being written
  absl::Mutex mu_;
  bool metadata_sent_ ABSL_GUARDED_BY(mu_) = false;
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
  bool streaming_ ABSL_GUARDED_BY(mu_) = false;
  std::atomic<int> pending_{2};  // the writer's and the reader's OnDone
};

// A unary call's first steps: a call slot for a remote user, then the
// parsed request. Null when the call has been answered already.
template <typename Request>
Request* Begin(const GatewayEnv& env, Call* call, const grpc::ByteBuffer& raw) {
  const Caller& caller = call->caller();
  if (!caller.local && env.quotas != nullptr) {
    absl::StatusOr<UserQuotas::Lease> slot = env.quotas->OpenCall(caller.user);
    if (!slot.ok()) {
      call->Answer(ToGrpcStatus(slot.status()));
      return nullptr;
    }
    call->Hold(*std::move(slot));
  }
  return call->Parse<Request>(raw);
}

// The last steps of a call on one process: its id resolved among the
// caller's processes, the caller's right to act on it checked, then
// `method` of the Library, whose status is the answer.
template <typename Request, typename Response>
using AsyncMethod = absl::Status (pm::Client::*)(
    grpc::ClientContext*, const Request*, Response*,
    std::function<void(grpc::Status)>);

// The same method on another host's gateway.
template <typename Request, typename Response>
using PeerMethod = void (*)(pm::v1::ProcessManager::Stub*, grpc::ClientContext*,
                            const Request*, Response*, std::function<void(grpc::Status)>);

void PeerStart(pm::v1::ProcessManager::Stub* peer, grpc::ClientContext* context,
               const pm::v1::StartRequest* request, pm::v1::StartResponse* response,
               std::function<void(grpc::Status)> done) {
  peer->async()->Start(context, request, response, std::move(done));
}
void PeerStop(pm::v1::ProcessManager::Stub* peer, grpc::ClientContext* context,
              const pm::v1::StopRequest* request, pm::v1::StopResponse* response,
              std::function<void(grpc::Status)> done) {
  peer->async()->Stop(context, request, response, std::move(done));
}
void PeerSignal(pm::v1::ProcessManager::Stub* peer, grpc::ClientContext* context,
                const pm::v1::SignalRequest* request, pm::v1::SignalResponse* response,
                std::function<void(grpc::Status)> done) {
  peer->async()->Signal(context, request, response, std::move(done));
}
void PeerRemove(pm::v1::ProcessManager::Stub* peer, grpc::ClientContext* context,
                const pm::v1::RemoveRequest* request, pm::v1::RemoveResponse* response,
                std::function<void(grpc::Status)> done) {
  peer->async()->Remove(context, request, response, std::move(done));
}
void PeerWait(pm::v1::ProcessManager::Stub* peer, grpc::ClientContext* context,
              const pm::v1::WaitRequest* request, pm::v1::ProcessStatus* response,
              std::function<void(grpc::Status)> done) {
  peer->async()->Wait(context, request, response, std::move(done));
}
void PeerGetStatus(pm::v1::ProcessManager::Stub* peer, grpc::ClientContext* context,
                   const pm::v1::GetStatusRequest* request, pm::v1::ProcessStatus* response,
                   std::function<void(grpc::Status)> done) {
  peer->async()->GetStatus(context, request, response, std::move(done));
}

// Runs `method` on the gateway the call was routed to, with the caller's
// credentials (that gateway authorizes the call itself); its status is the
// answer.
template <typename Request, typename Response>
void Forward(Call* call, Request* request, Response* response,
             PeerMethod<Request, Response> method) {
  call->Run(
      [call, request, response, method](grpc::ClientContext* backend,
                                        std::function<void(grpc::Status)> done) {
        call->PrepareForward(backend);
        method(call->forward(), backend, request, response, std::move(done));
        return absl::OkStatus();
      },
      [call](grpc::Status status) { call->Answer(FromPeer(call->forward_node(), status)); });
}

template <typename Request, typename Response>
void ActOnProcess(const GatewayEnv& env, Call* call, Request* request,
                  Response* response, AsyncMethod<Request, Response> method,
                  PeerMethod<Request, Response> peer_method,
                  Elsewhere elsewhere = Elsewhere::kOwnerOnly) {
  call->Resolve(request->mutable_id(), [&env, call, request, response, method, peer_method] {
    if (call->forward() != nullptr) return Forward(call, request, response, peer_method);
    call->Authorize([&env, call, request, response, method] {
      call->Run(
          [&env, request, response, method](
              grpc::ClientContext* backend,
              std::function<void(grpc::Status)> done) {
            return (env.client->*method)(backend, request, response,
                                         std::move(done));
          },
          [call](grpc::Status status) { call->Answer(status); });
    });
  }, elsewhere);
}

// A write reactor that only answers.
class Refusal final : public grpc::ServerWriteReactor<grpc::ByteBuffer> {
 public:
  explicit Refusal(const grpc::Status& status) { Finish(status); }
  void OnDone() override { delete this; }
};

void StartHere(const GatewayEnv& env, Call* call, pm::v1::StartRequest* request,
               pm::v1::StartResponse* response);

}  // namespace

grpc::Status NoSuchProcess(const std::string& id) {
  if (!IsFullId(id)) {
    return grpc::Status(grpc::StatusCode::NOT_FOUND,
                        absl::StrCat("no process has the id, name or id prefix \"",
                                     Printable(id), "\""));
  }
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

grpc::ServerUnaryReactor* GatewayService::Start(grpc::CallbackServerContext* context,
                                                const grpc::ByteBuffer* raw,
                                                grpc::ByteBuffer* out) {
  auto* call = new Call(env_, context, CallerOf(*context), "Start", out);
  auto* request = Begin<pm::v1::StartRequest>(env_, call, *raw);
  if (request == nullptr) return call;
  const Caller& caller = call->caller();
  if (!caller.local && env_.quotas != nullptr) {
    if (absl::Status allowed = env_.quotas->TakeStart(caller.user); !allowed.ok()) {
      call->Answer(ToGrpcStatus(allowed));
      return call;
    }
  }
  auto* response = call->Reply<pm::v1::StartResponse>();
  if (env_.router == nullptr || ClusterRouter::IsForwarded(*context)) {
    StartHere(env_, call, request, response);
    return call;
  }
  // A cluster: the host it names, else the least busy one.
  auto nodes = std::make_shared<pm::internal::v1::ListNodesResponse>();
  call->Run(
      [this, nodes](grpc::ClientContext* backend, std::function<void(grpc::Status)> done) {
        env_.router->ListNodes(
            backend, [nodes, done = std::move(done)](
                         absl::StatusOr<pm::internal::v1::ListNodesResponse> listed) {
              if (listed.ok()) *nodes = *std::move(listed);
              done(ToGrpcStatus(listed.status()));
            });
        return absl::OkStatus();
      },
      [this, call, request, response, nodes](grpc::Status status) {
        if (!status.ok()) return call->Answer(status);
        absl::StatusOr<pm::internal::v1::ClusterNode> place =
            PlaceStart(*nodes, request->node());
        if (!place.ok()) return call->Answer(ToGrpcStatus(place.status()));
        request->set_node(place->node());
        if (place->node() == env_.router->node()) {
          return StartHere(env_, call, request, response);
        }
        if (call->caller().authorization.empty()) {
          return call->Answer(grpc::Status(
              grpc::StatusCode::FAILED_PRECONDITION,
              absl::StrCat("the start goes to host ", place->node(),
                           ": a call on the local socket carries no user to "
                           "forward there; name this host (--node ",
                           env_.router->node(), ") or call a gateway of the "
                           "cluster with a user")));
        }
        if (place->gateway().empty()) {
          return call->Answer(ToGrpcStatus(ClusterUnavailableError(
              absl::StrCat("host ", place->node(),
                           " publishes no gateway address to forward the start to"))));
        }
        PM_LOG(INFO) << "start for " << call->caller().Owner() << " forwarded to host "
                     << place->node() << " (" << place->gateway() << ")";
        call->set_forward(env_.router->Peer(place->gateway()), place->node());
        Forward(call, request, response, &PeerStart);
      });
  return call;
}

namespace {

// A Start on this host: the Library's, with the caller as its owner.
void StartHere(const GatewayEnv& env, Call* call, pm::v1::StartRequest* request,
               pm::v1::StartResponse* response) {
  pm::StartOptions options;
  options.owner = call->caller().Owner();
  options.owner_user = call->caller().user;
  call->Run(
      [&env, request, response, options](grpc::ClientContext* backend,
                                         std::function<void(grpc::Status)> done) {
        return env.client->StartAsync(backend, request, options, response,
                                      std::move(done));
      },
      [call, response](grpc::Status status) {
        if (status.ok()) {
          call->set_id(response->id());
          // The executable only: arguments and environment may hold secrets.
          PM_LOG(INFO) << "start " << response->id() << " for "
                       << (call->caller().local ? "local" : call->caller().Owner())
                       << ": "
                       << Printable(ResolvedExecutableOf(response->status()));
        }
        call->Answer(status);
      });
}

}  // namespace

grpc::ServerUnaryReactor* GatewayService::Stop(grpc::CallbackServerContext* context,
                                               const grpc::ByteBuffer* raw,
                                               grpc::ByteBuffer* out) {
  auto* call = new Call(env_, context, CallerOf(*context), "Stop", out);
  auto* request = Begin<pm::v1::StopRequest>(env_, call, *raw);
  if (request == nullptr) return call;
  call->set_id(request->id());
  auto* response = call->Reply<pm::v1::StopResponse>();
  // Escaped: the id is the client's, and may hold a newline.
  PM_LOG(INFO) << "stop " << Printable(request->id()) << " for "
               << (call->caller().local ? "local" : call->caller().Owner());
  ActOnProcess(env_, call, request, response, &pm::Client::StopAsync, &PeerStop);
  return call;
}

grpc::ServerUnaryReactor* GatewayService::Signal(grpc::CallbackServerContext* context,
                                                 const grpc::ByteBuffer* raw,
                                                 grpc::ByteBuffer* out) {
  auto* call = new Call(env_, context, CallerOf(*context), "Signal", out);
  auto* request = Begin<pm::v1::SignalRequest>(env_, call, *raw);
  if (request == nullptr) return call;
  call->set_id(request->id());
  auto* response = call->Reply<pm::v1::SignalResponse>();
  PM_LOG(INFO) << "signal "
               << (request->signal_name().empty()
                       ? absl::StrCat(request->signal())
                       : Printable(request->signal_name()))
               << " to "
               << Printable(request->id()) << " for "
               << (call->caller().local ? "local" : call->caller().Owner());
  ActOnProcess(env_, call, request, response, &pm::Client::SignalAsync, &PeerSignal);
  return call;
}

grpc::ServerUnaryReactor* GatewayService::Remove(grpc::CallbackServerContext* context,
                                                 const grpc::ByteBuffer* raw,
                                                 grpc::ByteBuffer* out) {
  auto* call = new Call(env_, context, CallerOf(*context), "Remove", out);
  auto* request = Begin<pm::v1::RemoveRequest>(env_, call, *raw);
  if (request == nullptr) return call;
  call->set_id(request->id());
  auto* response = call->Reply<pm::v1::RemoveResponse>();
  PM_LOG(INFO) << "remove " << Printable(request->id())
               << (request->force() ? " (force)" : "") << " for "
               << (call->caller().local ? "local" : call->caller().Owner());
  ActOnProcess(env_, call, request, response, &pm::Client::RemoveAsync, &PeerRemove);
  return call;
}

grpc::ServerUnaryReactor* GatewayService::GetStatus(
    grpc::CallbackServerContext* context, const grpc::ByteBuffer* raw,
    grpc::ByteBuffer* out) {
  auto* call = new Call(env_, context, CallerOf(*context), "GetStatus", out);
  auto* request = Begin<pm::v1::GetStatusRequest>(env_, call, *raw);
  if (request == nullptr) return call;
  call->set_id(request->id());
  auto* response = call->Reply<pm::v1::ProcessStatus>();
  call->Resolve(request->mutable_id(), [this, call, request, response] {
    // Its host's answer has the live view; without that host, this host's
    // copy of the record says what is known.
    if (call->forward() != nullptr) return Forward(call, request, response, &PeerGetStatus);
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
  }, Elsewhere::kOwnerOrCopy);
  return call;
}

grpc::ServerUnaryReactor* GatewayService::List(grpc::CallbackServerContext* context,
                                               const grpc::ByteBuffer* raw,
                                               grpc::ByteBuffer* out) {
  auto* call = new Call(env_, context, CallerOf(*context), "List", out);
  auto* request = Begin<pm::v1::ListRequest>(env_, call, *raw);
  if (request == nullptr) return call;
  // The registry copies only the caller's own records: another user's,
  // however large, cost this call nothing.
  if (!call->caller().admin) request->set_owner_user(call->caller().user);
  auto* response = call->Reply<pm::v1::ListResponse>();
  call->Run(
      [this, request, response](grpc::ClientContext* backend,
                                std::function<void(grpc::Status)> done) {
        return env_.client->ListAsync(backend, request, response, std::move(done));
      },
      [call, response](grpc::Status status) {
        if (status.ok() && !call->caller().admin) {
          // Again here, in case a registry does not know the filter.
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
                                               const grpc::ByteBuffer* raw,
                                               grpc::ByteBuffer* out) {
  auto* call = new Call(env_, context, CallerOf(*context), "Wait", out);
  absl::StatusOr<UserQuotas::Lease> lease = OpenStream(call->caller());
  if (!lease.ok()) {
    call->Answer(ToGrpcStatus(lease.status()));
    return call;
  }
  call->Hold(*std::move(lease));
  auto* request = call->Parse<pm::v1::WaitRequest>(*raw);
  if (request == nullptr) return call;
  call->set_id(request->id());
  auto* response = call->Reply<pm::v1::ProcessStatus>();
  ActOnProcess(env_, call, request, response, &pm::Client::WaitAsync, &PeerWait,
               Elsewhere::kOwnerOrCopy);
  return call;
}

template <typename Stream>
grpc::ServerWriteReactor<grpc::ByteBuffer>* GatewayService::Relay(
    grpc::CallbackServerContext* context, const grpc::ByteBuffer& raw) {
  Caller caller = CallerOf(*context);
  absl::StatusOr<typename Stream::Request> request =
      ParseStrict<typename Stream::Request>(raw);
  absl::StatusOr<UserQuotas::Lease> lease =
      request.ok() ? OpenStream(caller) : request.status();
  if (!lease.ok()) {
    grpc::Status refused = ToGrpcStatus(lease.status());
    Audit(env_.audit, caller, Stream::kMethod, request.ok() ? request->id() : "",
          refused);
    return new Refusal(refused);
  }
  return (new StreamRelay<Stream>(env_, context, *std::move(request),
                                  std::move(caller), *std::move(lease)))
      ->writer();
}

grpc::ServerWriteReactor<grpc::ByteBuffer>* GatewayService::StreamOutput(
    grpc::CallbackServerContext* context, const grpc::ByteBuffer* raw) {
  return Relay<OutputStream>(context, *raw);
}

grpc::ServerWriteReactor<grpc::ByteBuffer>* GatewayService::Watch(
    grpc::CallbackServerContext* context, const grpc::ByteBuffer* raw) {
  return Relay<EventStream>(context, *raw);
}

}  // namespace pm::gateway
