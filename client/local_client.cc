// The local implementation of pm::Client: the three services' unix sockets.
#include <grpcpp/grpcpp.h>

#include <chrono>
#include <functional>
#include <mutex>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "client/checked_client.h"
#include "client/client.h"
#include "client/h2_unary.h"
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

static_assert(kH2UnaryMaxAnswerBytes == kMaxMessageBytes,
              "a one-shot call takes the answers a gRPC channel takes");

using pm::internal::v1::LogStore;
using pm::internal::v1::Registry;
using pm::internal::v1::ResolveRequest;
using pm::internal::v1::ResolveResponse;
using pm::internal::v1::Supervisor;

// Deadlines: generous safety nets, not expectations.
constexpr absl::Duration kShortCall = absl::Seconds(30);
// Stop waits for the grace period plus the kill timeout on the server.
constexpr absl::Duration kStopSlack = absl::Seconds(60);

// A backend's status, with UNAVAILABLE naming the service and its socket.
absl::Status BackendStatus(absl::Status status, absl::string_view service,
                           const std::string& socket) {
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
    done(ToGrpcStatus(BackendStatus(FromGrpcStatus(rpc), service, socket)));
  };
}

using Metadata = std::vector<std::pair<std::string, std::string>>;

// The unix socket is trusted (a 0700 dir): the supervisor records what
// these headers say. Only the gateway sets an owner.
Metadata OwnerOf(const StartOptions& options) {
  Metadata metadata;
  if (!options.owner.empty()) metadata.emplace_back(kOwnerMetadataKey, options.owner);
  if (!options.owner_user.empty()) {
    metadata.emplace_back(kOwnerUserMetadataKey, options.owner_user);
  }
  return metadata;
}

// The gRPC channels and stubs of the three services, made at first use: a
// one-shot client whose calls all go over H2Unary never starts gRPC.
struct Channels {
  explicit Channels(const std::string& supervisor_socket, const std::string& registry_socket,
                    const std::string& log_store_socket)
      : supervisor_channel(UnixChannel(supervisor_socket)),
        supervisor(Supervisor::NewStub(supervisor_channel)),
        registry_channel(UnixChannel(registry_socket)),
        registry(Registry::NewStub(registry_channel)),
        log_store_channel(UnixChannel(log_store_socket)),
        log_store(LogStore::NewStub(log_store_channel)) {}

  std::shared_ptr<grpc::Channel> supervisor_channel;
  std::unique_ptr<Supervisor::Stub> supervisor;
  std::shared_ptr<grpc::Channel> registry_channel;
  std::unique_ptr<Registry::Stub> registry;
  std::shared_ptr<grpc::Channel> log_store_channel;
  std::unique_ptr<LogStore::Stub> log_store;
};

class LocalClient final : public Client {
 public:
  LocalClient(const std::string& dir, const LocalOptions& options)
      : supervisor_socket_(SocketPath(dir, Service::kSupervisor)),
        registry_socket_(SocketPath(dir, Service::kRegistry)),
        log_store_socket_(SocketPath(dir, Service::kLogStore)),
        one_shot_(options.one_shot) {}

  absl::StatusOr<pm::v1::StartResponse> Start(
      const pm::v1::StartRequest& request) override {
    return StartWithOptions(request, StartOptions());
  }

  absl::StatusOr<pm::v1::StartResponse> StartWithOptions(
      const pm::v1::StartRequest& request,
      const StartOptions& options) override {
    pm::v1::StartResponse response;
    PM_RETURN_IF_ERROR(Unary(Backend::kSupervisor, "Start", absl::Now() + kShortCall,
                             OwnerOf(options), request, &response,
                             [&](grpc::ClientContext* context) {
                               return grpc().supervisor->Start(context, request, &response);
                             }));
    return response;
  }

  absl::StatusOr<pm::v1::StopResponse> Stop(
      const pm::v1::StopRequest& given) override {
    pm::v1::StopRequest request = given;
    PM_ASSIGN_OR_RETURN(*request.mutable_id(), Resolve(given.id()));
    // The grace the server will wait (none when forced; a grace above the
    // maximum is refused at once, so it never counts for more), then slack
    // for the kill and the answer.
    const absl::Time deadline =
        absl::Now() + StopGrace(request, kDefaultGracePeriod) + kStopSlack;
    pm::v1::StopResponse response;
    PM_RETURN_IF_ERROR(Unary(Backend::kSupervisor, "Stop", deadline, {}, request, &response,
                             [&](grpc::ClientContext* context) {
                               return grpc().supervisor->Stop(context, request, &response);
                             }));
    return response;
  }

  absl::StatusOr<pm::v1::SignalResponse> Signal(
      const pm::v1::SignalRequest& given) override {
    pm::v1::SignalRequest request = given;
    PM_ASSIGN_OR_RETURN(*request.mutable_id(), Resolve(given.id()));
    pm::v1::SignalResponse response;
    PM_RETURN_IF_ERROR(Unary(Backend::kSupervisor, "Signal", absl::Now() + kShortCall, {},
                             request, &response, [&](grpc::ClientContext* context) {
                               return grpc().supervisor->Signal(context, request, &response);
                             }));
    return response;
  }

  absl::StatusOr<pm::v1::RemoveResponse> Remove(
      const pm::v1::RemoveRequest& given) override {
    pm::v1::RemoveRequest request = given;
    PM_ASSIGN_OR_RETURN(*request.mutable_id(), Resolve(given.id()));
    pm::v1::RemoveResponse response;
    // A forced removal stops first: as a forced Stop.
    PM_RETURN_IF_ERROR(Unary(Backend::kSupervisor, "Remove", absl::Now() + kStopSlack, {},
                             request, &response, [&](grpc::ClientContext* context) {
                               return grpc().supervisor->Remove(context, request, &response);
                             }));
    return response;
  }

  absl::StatusOr<pm::v1::ProcessStatus> GetStatus(
      absl::string_view ref) override {
    PM_ASSIGN_OR_RETURN(std::string id, Resolve(ref));
    pm::v1::GetStatusRequest request;
    request.set_id(id);
    pm::v1::ProcessStatus response;
    PM_RETURN_IF_ERROR(Unary(Backend::kRegistry, "GetStatus", absl::Now() + kShortCall, {},
                             request, &response, [&](grpc::ClientContext* context) {
                               return grpc().registry->GetStatus(context, request, &response);
                             }));
    return response;
  }

  absl::StatusOr<pm::v1::ListResponse> List() override {
    return List(pm::v1::ListRequest());
  }

  absl::StatusOr<pm::v1::ListResponse> List(
      const pm::v1::ListRequest& request) override {
    pm::v1::ListResponse response;
    PM_RETURN_IF_ERROR(Unary(Backend::kRegistry, "List", absl::Now() + kShortCall, {}, request,
                             &response, [&](grpc::ClientContext* context) {
                               return grpc().registry->List(context, request, &response);
                             }));
    return response;
  }

  absl::StatusOr<std::string> Resolve(absl::string_view ref) override {
    if (IsFullId(ref)) return std::string(ref);
    ResolveRequest request;
    request.set_ref(std::string(ref));
    ResolveResponse response;
    PM_RETURN_IF_ERROR(Unary(Backend::kRegistry, "Resolve", absl::Now() + kShortCall, {},
                             request, &response, [&](grpc::ClientContext* context) {
                               return grpc().registry->Resolve(context, request, &response);
                             }));
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
    grpc().registry->async()->Resolve(
        context, &call->request, &call->response,
        [call, socket = registry_socket_, done = std::move(done)](grpc::Status rpc) {
          if (!rpc.ok()) return done(BackendStatus(FromGrpcStatus(rpc), "registry", socket));
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
    AwaitReconnect(*grpc().registry_channel);
    grpc::Status rpc = grpc().registry->Wait(&context, request, &response);
    if (!rpc.ok()) return BackendStatus(FromGrpcStatus(rpc), "registry", registry_socket_);
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
    AwaitReconnect(*grpc().log_store_channel);
    return std::make_unique<ReaderOutputStream>(
        [&](grpc::ClientContext* context) {
          return grpc().log_store->StreamOutput(context, request);
        },
        [socket = log_store_socket_](const grpc::Status& rpc) {
          return BackendStatus(FromGrpcStatus(rpc), "log_store", socket);
        });
  }

  absl::Status StreamOutputAsync(
      grpc::ClientContext* context, const pm::v1::StreamOutputRequest* request,
      grpc::ClientReadReactor<pm::v1::OutputChunk>* reactor) override {
    grpc().log_store->async()->StreamOutput(context, request, reactor);
    return absl::OkStatus();
  }

  std::unique_ptr<EventStream> Watch(const pm::v1::WatchRequest& given) override {
    pm::v1::WatchRequest request = given;
    if (!given.id().empty()) {
      absl::StatusOr<std::string> id = Resolve(given.id());
      if (!id.ok()) return std::make_unique<RefusedEventStream>(id.status());
      request.set_id(*id);
    }
    AwaitReconnect(*grpc().registry_channel);
    return std::make_unique<ReaderEventStream>(
        [&](grpc::ClientContext* context) { return grpc().registry->Watch(context, request); },
        [socket = registry_socket_](const grpc::Status& rpc) {
          return BackendStatus(FromGrpcStatus(rpc), "registry", socket);
        });
  }

  absl::Status WatchAsync(grpc::ClientContext* context,
                          const pm::v1::WatchRequest* request,
                          grpc::ClientReadReactor<pm::v1::Event>* reactor) override {
    grpc().registry->async()->Watch(context, request, reactor);
    return absl::OkStatus();
  }

  absl::Status WaitAsync(grpc::ClientContext* context,
                         const pm::v1::WaitRequest* request,
                         pm::v1::ProcessStatus* response,
                         std::function<void(grpc::Status)> done) override {
    grpc().registry->async()->Wait(context, request, response,
                             Named("registry", registry_socket_, std::move(done)));
    return absl::OkStatus();
  }

  absl::Status StartAsync(grpc::ClientContext* context,
                          const pm::v1::StartRequest* request,
                          const StartOptions& options,
                          pm::v1::StartResponse* response,
                          std::function<void(grpc::Status)> done) override {
    for (const auto& [key, value] : OwnerOf(options)) context->AddMetadata(key, value);
    grpc().supervisor->async()->Start(context, request, response,
                                Named("supervisor", supervisor_socket_, std::move(done)));
    return absl::OkStatus();
  }

  absl::Status StopAsync(grpc::ClientContext* context,
                         const pm::v1::StopRequest* request,
                         pm::v1::StopResponse* response,
                         std::function<void(grpc::Status)> done) override {
    grpc().supervisor->async()->Stop(context, request, response,
                               Named("supervisor", supervisor_socket_, std::move(done)));
    return absl::OkStatus();
  }

  absl::Status SignalAsync(grpc::ClientContext* context,
                           const pm::v1::SignalRequest* request,
                           pm::v1::SignalResponse* response,
                           std::function<void(grpc::Status)> done) override {
    grpc().supervisor->async()->Signal(context, request, response,
                                 Named("supervisor", supervisor_socket_, std::move(done)));
    return absl::OkStatus();
  }

  absl::Status RemoveAsync(grpc::ClientContext* context,
                           const pm::v1::RemoveRequest* request,
                           pm::v1::RemoveResponse* response,
                           std::function<void(grpc::Status)> done) override {
    grpc().supervisor->async()->Remove(context, request, response,
                                 Named("supervisor", supervisor_socket_, std::move(done)));
    return absl::OkStatus();
  }

  absl::Status GetStatusAsync(grpc::ClientContext* context,
                              const pm::v1::GetStatusRequest* request,
                              pm::v1::ProcessStatus* response,
                              std::function<void(grpc::Status)> done) override {
    grpc().registry->async()->GetStatus(context, request, response,
                                  Named("registry", registry_socket_, std::move(done)));
    return absl::OkStatus();
  }

  absl::Status ListAsync(grpc::ClientContext* context,
                         const pm::v1::ListRequest* request,
                         pm::v1::ListResponse* response,
                         std::function<void(grpc::Status)> done) override {
    grpc().registry->async()->List(context, request, response,
                             Named("registry", registry_socket_, std::move(done)));
    return absl::OkStatus();
  }

 private:
  enum class Backend { kSupervisor, kRegistry };

  Channels& grpc() {
    // std::call_once (pthread_once), not absl's: TSan sees its ordering
    // (Debian's abseil is not instrumented), and calls on many threads
    // may come first at once.
    std::call_once(channels_once_, [this] {
      channels_ = std::make_unique<Channels>(supervisor_socket_, registry_socket_,
                                             log_store_socket_);
    });
    return *channels_;
  }

  // One unary call of `method` on `backend` until `deadline`: over H2Unary
  // for a one-shot client, else through `over_grpc` (the stub's method)
  // once the channel has found a restarted service again (bounded: 1.25 s).
  // UNAVAILABLE names the service and its socket.
  absl::Status Unary(Backend backend, absl::string_view method, absl::Time deadline,
                     const Metadata& metadata, const google::protobuf::Message& request,
                     google::protobuf::Message* response,
                     const std::function<grpc::Status(grpc::ClientContext*)>& over_grpc) {
    const bool supervisor = backend == Backend::kSupervisor;
    const char* name = supervisor ? "supervisor" : "registry";
    const std::string& socket = supervisor ? supervisor_socket_ : registry_socket_;
    if (one_shot_) {
      absl::Status called = H2Unary(
          {socket,
           absl::StrCat("/", supervisor ? Supervisor::service_full_name()
                                        : Registry::service_full_name(),
                        "/", method),
           metadata, deadline},
          request, response);
      return called.ok() ? called : BackendStatus(called, name, socket);
    }
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(deadline));
    for (const auto& [key, value] : metadata) context.AddMetadata(key, value);
    AwaitReconnect(supervisor ? *grpc().supervisor_channel : *grpc().registry_channel);
    grpc::Status rpc = over_grpc(&context);
    if (!rpc.ok()) return BackendStatus(FromGrpcStatus(rpc), name, socket);
    return absl::OkStatus();
  }

  const std::string supervisor_socket_;
  const std::string registry_socket_;
  const std::string log_store_socket_;
  const bool one_shot_;
  std::once_flag channels_once_;
  std::unique_ptr<Channels> channels_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Client>> Client::ConnectLocal(
    const std::string& runtime_dir, const LocalOptions& options) {
  if (runtime_dir.empty()) {
    return absl::InvalidArgumentError("empty runtime dir");
  }
  return WithRequestChecks(std::make_unique<LocalClient>(runtime_dir, options));
}

}  // namespace pm
