// The remote implementation of pm::Client: the gateway's pm.v1.ProcessManager
// over mutual TLS, with basic auth on every call.
#include <fcntl.h>
#include <unistd.h>

#include <grpcpp/grpcpp.h>
#include <grpcpp/security/credentials.h>

#include <chrono>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "client/checked_client.h"
#include "client/client.h"
#include "client/reader_stream.h"
#include "common/channel.h"
#include "common/fd.h"
#include "common/status.h"
#include "common/stop_request.h"
#include "pm/v1/process_manager.grpc.pb.h"

namespace pm {
namespace {

using pm::v1::ProcessManager;

constexpr auto kShortCall = std::chrono::seconds(30);
constexpr auto kStopSlack = std::chrono::seconds(60);

std::chrono::system_clock::time_point In(std::chrono::seconds d) {
  return std::chrono::system_clock::now() + d;
}

absl::StatusOr<std::string> ReadNamedFile(const std::string& path,
                                     absl::string_view what) {
  if (path.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("no ", what, " file given"));
  }
  return pm::ReadFile(path);
}

// The gateway's status; UNAVAILABLE names the gateway.
absl::Status GatewayStatus(const grpc::Status& rpc, const std::string& target) {
  absl::Status status = FromGrpcStatus(rpc);
  // A cluster's (etcd, another host) comes from a gateway that answered.
  if (status.code() == absl::StatusCode::kUnavailable &&
      !IsClusterUnavailableMessage(status.message())) {
    return absl::UnavailableError(absl::StrCat(
        "gateway is unavailable at ", target, ": ", status.message()));
  }
  return status;
}

// Adds `authorization: Basic ...` to every call. Runs inline (non-blocking):
// it only copies a string.
class BasicAuthPlugin final : public grpc::MetadataCredentialsPlugin {
 public:
  BasicAuthPlugin(absl::string_view user, absl::string_view password)
      : header_(absl::StrCat(
            "Basic ", absl::Base64Escape(absl::StrCat(user, ":", password)))) {}
  bool IsBlocking() const override { return false; }
  const char* GetType() const override { return "pm-basic-auth"; }
  grpc::Status GetMetadata(grpc::string_ref, grpc::string_ref,
                           const grpc::AuthContext&,
                           std::multimap<std::string, std::string>* metadata) override {
    metadata->insert({"authorization", header_});
    return grpc::Status::OK;
  }
  // Never the password: gRPC may print credentials in debug output.
  std::string DebugString() override { return "pm basic auth"; }

 private:
  const std::string header_;
};

class RemoteClient final : public Client {
 public:
  RemoteClient(std::string target, std::shared_ptr<grpc::Channel> channel)
      : target_(std::move(target)), channel_(channel),
        stub_(ProcessManager::NewStub(channel)) {}

  absl::StatusOr<pm::v1::StartResponse> Start(
      const pm::v1::StartRequest& request) override {
    grpc::ClientContext context;
    context.set_deadline(In(kShortCall));
    pm::v1::StartResponse response;
    AwaitReconnect(*channel_);
    grpc::Status rpc = stub_->Start(&context, request, &response);
    if (!rpc.ok()) return GatewayStatus(rpc, target_);
    return response;
  }

  absl::StatusOr<pm::v1::StartResponse> StartWithOptions(
      const pm::v1::StartRequest& request,
      const StartOptions& options) override {
    if (!options.owner.empty() || !options.owner_user.empty()) {
      return absl::InvalidArgumentError(
          "the gateway records the owner itself (the authenticated user)");
    }
    return Start(request);
  }

  absl::StatusOr<pm::v1::StopResponse> Stop(
      const pm::v1::StopRequest& request) override {
    grpc::ClientContext context;
    // The grace the server will wait (none when forced; a grace above the
    // maximum is refused at once, so it never counts for more), then slack
    // for the kill and the answer.
    context.set_deadline(
        absl::ToChronoTime(absl::Now() + StopGrace(request, kDefaultGracePeriod)) +
        kStopSlack);
    pm::v1::StopResponse response;
    AwaitReconnect(*channel_);
    grpc::Status rpc = stub_->Stop(&context, request, &response);
    if (!rpc.ok()) return GatewayStatus(rpc, target_);
    return response;
  }

  absl::StatusOr<pm::v1::SignalResponse> Signal(
      const pm::v1::SignalRequest& request) override {
    grpc::ClientContext context;
    context.set_deadline(In(kShortCall));
    pm::v1::SignalResponse response;
    AwaitReconnect(*channel_);
    grpc::Status rpc = stub_->Signal(&context, request, &response);
    if (!rpc.ok()) return GatewayStatus(rpc, target_);
    return response;
  }

  absl::StatusOr<pm::v1::RemoveResponse> Remove(
      const pm::v1::RemoveRequest& request) override {
    grpc::ClientContext context;
    // A forced removal stops first: as a forced Stop.
    context.set_deadline(absl::ToChronoTime(absl::Now()) + kStopSlack);
    pm::v1::RemoveResponse response;
    AwaitReconnect(*channel_);
    grpc::Status rpc = stub_->Remove(&context, request, &response);
    if (!rpc.ok()) return GatewayStatus(rpc, target_);
    return response;
  }

  absl::StatusOr<pm::v1::ProcessStatus> GetStatus(absl::string_view id) override {
    grpc::ClientContext context;
    context.set_deadline(In(kShortCall));
    pm::v1::GetStatusRequest request;
    request.set_id(std::string(id));
    pm::v1::ProcessStatus response;
    AwaitReconnect(*channel_);
    grpc::Status rpc = stub_->GetStatus(&context, request, &response);
    if (!rpc.ok()) return GatewayStatus(rpc, target_);
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
    AwaitReconnect(*channel_);
    grpc::Status rpc = stub_->List(&context, request, &response);
    if (!rpc.ok()) return GatewayStatus(rpc, target_);
    return response;
  }

  absl::StatusOr<pm::v1::ProcessStatus> Wait(absl::string_view id,
                                             absl::Duration timeout) override {
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + timeout));
    pm::v1::WaitRequest request;
    request.set_id(std::string(id));
    pm::v1::ProcessStatus response;
    AwaitReconnect(*channel_);
    grpc::Status rpc = stub_->Wait(&context, request, &response);
    if (!rpc.ok()) return GatewayStatus(rpc, target_);
    return response;
  }

  std::unique_ptr<OutputStream> StreamOutput(
      const pm::v1::StreamOutputRequest& request) override {
    // A follower reopens its stream on this channel after the gateway
    // restarted: let the channel find the gateway again first.
    AwaitReconnect(*channel_);
    return std::make_unique<ReaderOutputStream>(
        [&](grpc::ClientContext* context) {
          return stub_->StreamOutput(context, request);
        },
        [target = target_](const grpc::Status& rpc) {
          return GatewayStatus(rpc, target);
        });
  }

  absl::Status StreamOutputAsync(
      grpc::ClientContext* context, const pm::v1::StreamOutputRequest* request,
      grpc::ClientReadReactor<pm::v1::OutputChunk>* reactor) override {
    stub_->async()->StreamOutput(context, request, reactor);
    return absl::OkStatus();
  }

  std::unique_ptr<EventStream> Watch(const pm::v1::WatchRequest& request) override {
    AwaitReconnect(*channel_);
    return std::make_unique<ReaderEventStream>(
        [&](grpc::ClientContext* context) { return stub_->Watch(context, request); },
        [target = target_](const grpc::Status& rpc) {
          return GatewayStatus(rpc, target);
        });
  }

  absl::Status WaitAsync(grpc::ClientContext* context,
                         const pm::v1::WaitRequest* request,
                         pm::v1::ProcessStatus* response,
                         std::function<void(grpc::Status)> done) override {
    stub_->async()->Wait(
        context, request, response,
        [target = target_, done = std::move(done)](grpc::Status rpc) {
          done(ToGrpcStatus(GatewayStatus(rpc, target)));
        });
    return absl::OkStatus();
  }

 private:
  const std::string target_;
  const std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<ProcessManager::Stub> stub_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Client>> Client::ConnectRemote(
    const RemoteOptions& options) {
  if (options.target.empty()) {
    return absl::InvalidArgumentError("no gateway target (host:port) given");
  }
  if (options.user.empty()) return absl::InvalidArgumentError("no user given");
  grpc::SslCredentialsOptions tls;
  PM_ASSIGN_OR_RETURN(tls.pem_root_certs, ReadNamedFile(options.ca_file, "CA"));
  PM_ASSIGN_OR_RETURN(tls.pem_cert_chain,
                      ReadNamedFile(options.cert_file, "client certificate"));
  PM_ASSIGN_OR_RETURN(tls.pem_private_key,
                      ReadNamedFile(options.key_file, "client key"));
  std::string password = options.password;
  if (password.empty()) {
    PM_ASSIGN_OR_RETURN(password, ReadNamedFile(options.password_file, "password"));
    if (size_t end = password.find_first_of("\r\n"); end != std::string::npos) {
      password.resize(end);
    }
  }
  if (password.empty()) return absl::InvalidArgumentError("empty password");
  std::shared_ptr<grpc::ChannelCredentials> credentials =
      grpc::CompositeChannelCredentials(
          grpc::SslCredentials(tls),
          grpc::MetadataCredentialsFromPlugin(
              std::make_unique<BasicAuthPlugin>(options.user, password)));
  grpc::ChannelArguments args = BulkChannelArguments();
  // A restarted gateway is found again within a second (a follower's
  // retries would otherwise wait out gRPC's growing backoff).
  SetQuickReconnect(args);
  return WithRequestChecks(std::make_unique<RemoteClient>(
      options.target,
      grpc::CreateCustomChannel(options.target, credentials, args)));
}

}  // namespace pm
