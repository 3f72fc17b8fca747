#include "gateway/gateway.h"

#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

#include <grpcpp/ext/proto_server_reflection_plugin.h>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/fd.h"
#include "common/log.h"
#include "common/runtime_dir.h"
#include "common/state_dir.h"
#include "common/server.h"
#include "common/status.h"

namespace pm::gateway {
namespace {

absl::Status WritePortFile(const std::string& path, int port) {
  return WriteFileAtomically(path, absl::StrCat(port, "\n"), 0644);
}

void ApplyHttp2Limits(const Http2Limits& limits, grpc::ServerBuilder& builder) {
  builder.AddChannelArgument(GRPC_ARG_MAX_CONCURRENT_STREAMS,
                             limits.max_concurrent_streams);
  builder.SetMaxReceiveMessageSize(limits.max_receive_message_bytes);
  builder.AddChannelArgument(GRPC_ARG_MAX_METADATA_SIZE, limits.max_metadata_bytes);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS, limits.keepalive_time_ms);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS,
                             limits.keepalive_timeout_ms);
  builder.AddChannelArgument(GRPC_ARG_MAX_CONNECTION_IDLE_MS,
                             limits.max_connection_idle_ms);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS,
                             limits.min_ping_interval_ms);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MAX_PING_STRIKES, 2);
}

}  // namespace

absl::StatusOr<std::unique_ptr<Gateway>> Gateway::Start(GatewayOptions options) {
  std::unique_ptr<Gateway> gateway(new Gateway());
  // Bad files fail here, at start, with the file's name: gRPC itself would
  // only fail each handshake later.
  PM_RETURN_IF_ERROR(CheckTlsFiles(options.tls));
  PM_ASSIGN_OR_RETURN(gateway->users_, UserStore::Open(options.users_file));
  if (options.client != nullptr) {
    gateway->client_ = std::move(options.client);
  } else {
    PM_ASSIGN_OR_RETURN(gateway->client_,
                        pm::Client::ConnectLocal(options.runtime_dir));
  }
  PM_RETURN_IF_ERROR(EnsureRuntimeDir(options.runtime_dir));
  AuditLogOptions audit;
  audit.path = options.audit_log;
  if (audit.path.empty()) {
    if (options.state_dir.empty()) {
      return absl::InvalidArgumentError(
          "no audit log: neither an audit log path nor a state dir is set");
    }
    PM_RETURN_IF_ERROR(EnsureStateDir(options.state_dir));
    audit.path = absl::StrCat(options.state_dir, "/gateway-audit.jsonl");
  }
  audit.max_bytes = options.audit_log_max_bytes;
  PM_ASSIGN_OR_RETURN(gateway->audit_, AuditLog::Open(audit));
  gateway->throttle_ = std::make_unique<AuthThrottle>();
  gateway->quotas_ = std::make_unique<UserQuotas>(options.quotas);
  if (!options.node.empty()) {
    ClusterRouter::Options cluster;
    cluster.node = options.node;
    cluster.runtime_dir = options.runtime_dir;
    cluster.peer_tls = options.peer_tls;
    cluster.peer_unit = options.peer_unit;
    PM_ASSIGN_OR_RETURN(gateway->router_, ClusterRouter::Create(cluster));
  }
  if (!options.node.empty() && !options.peer_ca_file.empty()) {
    PM_ASSIGN_OR_RETURN(
        gateway->trusted_cas_,
        TrustedCas::Load({options.tls.ca_file, options.peer_ca_file,
                          absl::StrCat(options.runtime_dir, "/gateway-client-cas.pem"),
                          options.tls.refresh_interval_s}));
    PM_ASSIGN_OR_RETURN(std::string peer_pem, ReadFile(options.peer_tls.cert_file));
    PM_RETURN_IF_ERROR(
        gateway->trusted_cas_->CheckPeerCertificate(peer_pem, options.peer_tls.cert_file));
  } else if (!options.node.empty()) {
    PM_LOG(WARNING) << "no --peer_ca_file: the gateways' certificates come from the users' "
                       "CA and are told apart by OU="
                    << options.peer_unit
                    << " alone, so whoever that CA signs a certificate with that OU for "
                       "can forward calls as any user; give the gateways a CA of their own "
                       "(README, \"Running on several hosts\")";
  }

  GatewayEnv env{gateway->client_.get(), gateway->users_.get(),
                 gateway->audit_.get(), gateway->quotas_.get(), gateway->router_.get()};
  gateway->remote_service_ = std::make_unique<GatewayService>(env, Door::kRemote);
  gateway->local_service_ = std::make_unique<GatewayService>(env, Door::kLocal);

  gateway->socket_path_ = SocketPath(options.runtime_dir, Service::kGateway);
  PM_RETURN_IF_ERROR(ClaimSocketPath(gateway->socket_path_));
  TlsFiles tls = options.tls;
  if (gateway->trusted_cas_ != nullptr) {
    // The door trusts both CAs; each call is checked for the right one.
    PM_RETURN_IF_ERROR(gateway->trusted_cas_->WriteBundleAndWatch());
    tls.ca_file = gateway->trusted_cas_->bundle_file();
  }

  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  {
    grpc::ServerBuilder builder;
    ConfigureServerBuilder(builder);  // health, SO_REUSEPORT off
    ApplyHttp2Limits(options.http2, builder);
    builder.AddListeningPort(
        options.listen,
        MakeServerCredentials(
            tls, std::make_shared<BasicAuthProcessor>(
                     gateway->users_.get(), gateway->throttle_.get(), gateway->audit_.get(),
                     options.node.empty() ? "" : options.peer_unit,
                     gateway->trusted_cas_.get())),
        &gateway->port_);
    builder.RegisterService(gateway->remote_service_.get());
    gateway->tcp_server_ = builder.BuildAndStart();
    if (gateway->tcp_server_ == nullptr || gateway->port_ == 0) {
      gateway->tcp_server_.reset();
      return absl::UnavailableError(absl::StrCat(
          "cannot listen on ", options.listen,
          ": in use by another process, or not an address of this machine "
          "(gRPC's log line above says which)"));
    }
  }
  if (!options.port_file.empty()) {
    PM_RETURN_IF_ERROR(WritePortFile(options.port_file, gateway->port_));
    gateway->port_file_ = options.port_file;
  }
  absl::StatusOr<std::unique_ptr<grpc::Server>> local =
      StartUnixServer(gateway->socket_path_, {gateway->local_service_.get()});
  if (!local.ok()) return local.status();
  gateway->local_server_ = *std::move(local);
  return gateway;
}

Gateway::~Gateway() { Shutdown(); }

void Gateway::Shutdown(absl::Duration grace) {
  const auto deadline = absl::ToChronoTime(absl::Now() + grace);
  for (std::unique_ptr<grpc::Server>* server : {&tcp_server_, &local_server_}) {
    if (*server == nullptr) continue;
    (*server)->Shutdown(deadline);
    (*server)->Wait();
    server->reset();
  }
  for (std::string* path : {&socket_path_, &port_file_}) {
    if (!path->empty()) unlink(path->c_str());
    path->clear();
  }
}

}  // namespace pm::gateway
