// The local implementation of pm::Client: the three services' unix sockets.
#include <grpcpp/grpcpp.h>

#include <chrono>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "client/checked_client.h"
#include "client/client.h"
#include "client/reader_stream.h"
#include "common/channel.h"
#include "common/metadata.h"
#include "common/names.h"
#include "common/runtime_dir.h"
#include "common/status.h"
#include "common/stop_request.h"
#include "pm/internal/v1/internal.grpc.pb.h"

namespace pm {
namespace {

using pm::internal::v1::LogStore;
using pm::internal::v1::Registry;
using pm::internal::v1::ResolveRequest;
using pm::internal::v1::ResolveResponse;
using pm::internal::v1::Supervisor;

// Deadlines: generous safety nets, not expectations.
constexpr auto kShortCall = std::chrono::seconds(30);
// Stop waits for the grace period plus the kill timeout on the server.
constexpr auto kStopSlack = std::chrono::seconds(60);

std::chrono::system_clock::time_point In(std::chrono::seconds d) {
  return std::chrono::system_clock::now() + d;
}

// A backend's status, with UNAVAILABLE naming the service and its socket.
absl::Status BackendStatus(const grpc::Status& rpc, absl::string_view service,
                           const std::string& socket) {
  absl::Status status = FromGrpcStatus(rpc);
  // A cluster's (etcd, another host) comes from a service that answered.
  if (status.code() == absl::StatusCode::kUnavailable &&
      !IsClusterUnavailableMessage(status.message())) {
    return absl::UnavailableError(absl::StrCat(
        service, " is unavailable at ", socket, ": ", status.message()));
  }
  return status;
}

// `done` with a backend's status, UNAVAILABLE naming the service.
std::function<void(grpc::Status)> Named(absl::string_view service,
                                        const std::string& socket,
                                        std::function<void(grpc::Status)> done) {
  return [service = std::string(service), socket, done = std::move(done)](grpc::Status rpc) {
    done(ToGrpcStatus(BackendStatus(rpc, service, socket)));
  };
}

// The unix socket is trusted (a 0700 dir): the supervisor records what
// these headers say. Only the gateway sets an owner.
void AddOwner(const StartOptions& options, grpc::ClientContext& context) {
  if (!options.owner.empty()) context.AddMetadata(kOwnerMetadataKey, options.owner);
  if (!options.owner_user.empty()) {
    context.AddMetadata(kOwnerUserMetadataKey, options.owner_user);
  }
}

class LocalClient final : public Client {
 public:
  explicit LocalClient(const std::string& dir)
      : supervisor_socket_(SocketPath(dir, Service::kSupervisor)),
        registry_socket_(SocketPath(dir, Service::kRegistry)),
        log_store_socket_(SocketPath(dir, Service::kLogStore)),
        supervisor_channel_(UnixChannel(supervisor_socket_)),
        supervisor_(Supervisor::NewStub(supervisor_channel_)),
        registry_channel_(UnixChannel(registry_socket_)),
        registry_(Registry::NewStub(registry_channel_)),
        log_store_channel_(UnixChannel(log_store_socket_)),
        log_store_(LogStore::NewStub(log_store_channel_)) {}

  absl::StatusOr<pm::v1::StartResponse> Start(
      const pm::v1::StartRequest& request) override {
    return StartWithOptions(request, StartOptions());
  }

  absl::StatusOr<pm::v1::StartResponse> StartWithOptions(
      const pm::v1::StartRequest& request,
      const StartOptions& options) override {
    grpc::ClientContext context;
    context.set_deadline(In(kShortCall));
    AddOwner(options, context);
    pm::v1::StartResponse response;
    // A service that restarted is found again first (bounded: 1.25 s).
    AwaitReconnect(*supervisor_channel_);
    grpc::Status rpc = supervisor_->Start(&context, request, &response);
    if (!rpc.ok()) return BackendStatus(rpc, "supervisor", supervisor_socket_);
    return response;
  }

  absl::StatusOr<pm::v1::StopResponse> Stop(
      const pm::v1::StopRequest& given) override {
    pm::v1::StopRequest request = given;
    PM_ASSIGN_OR_RETURN(*request.mutable_id(), Resolve(given.id()));
    grpc::ClientContext context;
    // The grace the server will wait (none when forced; a grace above the
    // maximum is refused at once, so it never counts for more), then slack
    // for the kill and the answer.
    context.set_deadline(
        absl::ToChronoTime(absl::Now() + StopGrace(request, kDefaultGracePeriod)) +
        kStopSlack);
    pm::v1::StopResponse response;
    // A service that restarted is found again first (bounded: 1.25 s).
    AwaitReconnect(*supervisor_channel_);
    grpc::Status rpc = supervisor_->Stop(&context, request, &response);
    if (!rpc.ok()) return BackendStatus(rpc, "supervisor", supervisor_socket_);
    return response;
  }

  absl::StatusOr<pm::v1::SignalResponse> Signal(
      const pm::v1::SignalRequest& given) override {
    pm::v1::SignalRequest request = given;
    PM_ASSIGN_OR_RETURN(*request.mutable_id(), Resolve(given.id()));
    grpc::ClientContext context;
    context.set_deadline(In(kShortCall));
    pm::v1::SignalResponse response;
    AwaitReconnect(*supervisor_channel_);
    grpc::Status rpc = supervisor_->Signal(&context, request, &response);
    if (!rpc.ok()) return BackendStatus(rpc, "supervisor", supervisor_socket_);
    return response;
  }

  absl::StatusOr<pm::v1::RemoveResponse> Remove(
      const pm::v1::RemoveRequest& given) override {
    pm::v1::RemoveRequest request = given;
    PM_ASSIGN_OR_RETURN(*request.mutable_id(), Resolve(given.id()));
    grpc::ClientContext context;
    // A forced removal stops first: as a forced Stop.
    context.set_deadline(absl::ToChronoTime(absl::Now()) + kStopSlack);
    pm::v1::RemoveResponse response;
    AwaitReconnect(*supervisor_channel_);
    grpc::Status rpc = supervisor_->Remove(&context, request, &response);
    if (!rpc.ok()) return BackendStatus(rpc, "supervisor", supervisor_socket_);
    return response;
  }

  absl::StatusOr<pm::v1::ProcessStatus> GetStatus(
      absl::string_view ref) override {
    PM_ASSIGN_OR_RETURN(std::string id, Resolve(ref));
    grpc::ClientContext context;
    context.set_deadline(In(kShortCall));
    pm::v1::GetStatusRequest request;
    request.set_id(id);
    pm::v1::ProcessStatus response;
    // A service that restarted is found again first (bounded: 1.25 s).
    AwaitReconnect(*registry_channel_);
    grpc::Status rpc = registry_->GetStatus(&context, request, &response);
    if (!rpc.ok()) return BackendStatus(rpc, "registry", registry_socket_);
    return response;
  }

  absl::StatusOr<pm::v1::ListResponse> List() override {
    return List(pm::v1::ListRequest());
  }

  absl::StatusOr<pm::v1::ListResponse> List(
      const pm::v1::ListRequest& request) override {
    grpc::ClientContext context;
    context.set_deadline(In(kShortCall));
    pm::v1::ListResponse response;
    AwaitReconnect(*registry_channel_);
    grpc::Status rpc = registry_->List(&context, request, &response);
    if (!rpc.ok()) return BackendStatus(rpc, "registry", registry_socket_);
    return response;
  }

  absl::StatusOr<std::string> Resolve(absl::string_view ref) override {
    if (IsFullId(ref)) return std::string(ref);
    grpc::ClientContext context;
    context.set_deadline(In(kShortCall));
    ResolveRequest request;
    request.set_ref(std::string(ref));
    ResolveResponse response;
    AwaitReconnect(*registry_channel_);
    grpc::Status rpc = registry_->Resolve(&context, request, &response);
    if (!rpc.ok()) return BackendStatus(rpc, "registry", registry_socket_);
    return response.id();
  }

  absl::Status ResolveAsync(
      grpc::ClientContext* context, const std::string& ref,
      const std::string& owner_user,
      std::function<void(absl::StatusOr<std::string>)> done) override {
    if (IsFullId(ref)) {
      done(ref);
      return absl::OkStatus();
    }
    struct Call {
      ResolveRequest request;
      ResolveResponse response;
    };
    auto call = std::make_shared<Call>();
    call->request.set_ref(ref);
    call->request.set_owner_user(owner_user);
    registry_->async()->Resolve(
        context, &call->request, &call->response,
        [call, socket = registry_socket_, done = std::move(done)](grpc::Status rpc) {
          if (!rpc.ok()) return done(BackendStatus(rpc, "registry", socket));
          done(call->response.id());
        });
    return absl::OkStatus();
  }

  absl::StatusOr<pm::v1::ProcessStatus> Wait(absl::string_view ref,
                                             absl::Duration timeout) override {
    PM_ASSIGN_OR_RETURN(std::string id, Resolve(ref));
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + timeout));
    pm::v1::WaitRequest request;
    request.set_id(id);
    pm::v1::ProcessStatus response;
    // A service that restarted is found again first (bounded: 1.25 s).
    AwaitReconnect(*registry_channel_);
    grpc::Status rpc = registry_->Wait(&context, request, &response);
    if (!rpc.ok()) return BackendStatus(rpc, "registry", registry_socket_);
    return response;
  }

  std::unique_ptr<OutputStream> StreamOutput(
      const pm::v1::StreamOutputRequest& given) override {
    pm::v1::StreamOutputRequest request = given;
    absl::StatusOr<std::string> id = Resolve(given.id());
    if (!id.ok()) return std::make_unique<RefusedOutputStream>(id.status());
    request.set_id(*id);
    // A follower reopens its stream on this channel after the log_store
    // restarted: let the channel find the log_store again first.
    AwaitReconnect(*log_store_channel_);
    return std::make_unique<ReaderOutputStream>(
        [&](grpc::ClientContext* context) {
          return log_store_->StreamOutput(context, request);
        },
        [socket = log_store_socket_](const grpc::Status& rpc) {
          return BackendStatus(rpc, "log_store", socket);
        });
  }

  absl::Status StreamOutputAsync(
      grpc::ClientContext* context, const pm::v1::StreamOutputRequest* request,
      grpc::ClientReadReactor<pm::v1::OutputChunk>* reactor) override {
    log_store_->async()->StreamOutput(context, request, reactor);
    return absl::OkStatus();
  }

  std::unique_ptr<EventStream> Watch(const pm::v1::WatchRequest& given) override {
    pm::v1::WatchRequest request = given;
    if (!given.id().empty()) {
      absl::StatusOr<std::string> id = Resolve(given.id());
      if (!id.ok()) return std::make_unique<RefusedEventStream>(id.status());
      request.set_id(*id);
    }
    AwaitReconnect(*registry_channel_);
    return std::make_unique<ReaderEventStream>(
        [&](grpc::ClientContext* context) { return registry_->Watch(context, request); },
        [socket = registry_socket_](const grpc::Status& rpc) {
          return BackendStatus(rpc, "registry", socket);
        });
  }

  absl::Status WatchAsync(grpc::ClientContext* context,
                          const pm::v1::WatchRequest* request,
                          grpc::ClientReadReactor<pm::v1::Event>* reactor) override {
    registry_->async()->Watch(context, request, reactor);
    return absl::OkStatus();
  }

  absl::Status WaitAsync(grpc::ClientContext* context,
                         const pm::v1::WaitRequest* request,
                         pm::v1::ProcessStatus* response,
                         std::function<void(grpc::Status)> done) override {
    registry_->async()->Wait(context, request, response,
                             Named("registry", registry_socket_, std::move(done)));
    return absl::OkStatus();
  }

  absl::Status StartAsync(grpc::ClientContext* context,
                          const pm::v1::StartRequest* request,
                          const StartOptions& options,
                          pm::v1::StartResponse* response,
                          std::function<void(grpc::Status)> done) override {
    AddOwner(options, *context);
    supervisor_->async()->Start(context, request, response,
                                Named("supervisor", supervisor_socket_, std::move(done)));
    return absl::OkStatus();
  }

  absl::Status StopAsync(grpc::ClientContext* context,
                         const pm::v1::StopRequest* request,
                         pm::v1::StopResponse* response,
                         std::function<void(grpc::Status)> done) override {
    supervisor_->async()->Stop(context, request, response,
                               Named("supervisor", supervisor_socket_, std::move(done)));
    return absl::OkStatus();
  }

  absl::Status SignalAsync(grpc::ClientContext* context,
                           const pm::v1::SignalRequest* request,
                           pm::v1::SignalResponse* response,
                           std::function<void(grpc::Status)> done) override {
    supervisor_->async()->Signal(context, request, response,
                                 Named("supervisor", supervisor_socket_, std::move(done)));
    return absl::OkStatus();
  }

  absl::Status RemoveAsync(grpc::ClientContext* context,
                           const pm::v1::RemoveRequest* request,
                           pm::v1::RemoveResponse* response,
                           std::function<void(grpc::Status)> done) override {
    supervisor_->async()->Remove(context, request, response,
                                 Named("supervisor", supervisor_socket_, std::move(done)));
    return absl::OkStatus();
  }

  absl::Status GetStatusAsync(grpc::ClientContext* context,
                              const pm::v1::GetStatusRequest* request,
                              pm::v1::ProcessStatus* response,
                              std::function<void(grpc::Status)> done) override {
    registry_->async()->GetStatus(context, request, response,
                                  Named("registry", registry_socket_, std::move(done)));
    return absl::OkStatus();
  }

  absl::Status ListAsync(grpc::ClientContext* context,
                         const pm::v1::ListRequest* request,
                         pm::v1::ListResponse* response,
                         std::function<void(grpc::Status)> done) override {
    registry_->async()->List(context, request, response,
                             Named("registry", registry_socket_, std::move(done)));
    return absl::OkStatus();
  }

 private:
  std::string supervisor_socket_;
  std::string registry_socket_;
  std::string log_store_socket_;
  std::shared_ptr<grpc::Channel> supervisor_channel_;
  std::unique_ptr<Supervisor::Stub> supervisor_;
  std::shared_ptr<grpc::Channel> registry_channel_;
  std::unique_ptr<Registry::Stub> registry_;
  std::shared_ptr<grpc::Channel> log_store_channel_;
  std::unique_ptr<LogStore::Stub> log_store_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Client>> Client::ConnectLocal(
    const std::string& runtime_dir) {
  if (runtime_dir.empty()) {
    return absl::InvalidArgumentError("empty runtime dir");
  }
  return WithRequestChecks(std::make_unique<LocalClient>(runtime_dir));
}

}  // namespace pm
