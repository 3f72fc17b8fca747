#include "gateway/cluster_router.h"

#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/fd.h"
#include "common/names.h"
#include "common/runtime_dir.h"
#include "common/status.h"
#include "common/status_core.h"
#include "gateway/forwarding.h"

namespace pm::gateway {
namespace {

using ::pm::internal::v1::ClusterNode;
using ::pm::internal::v1::ListNodesRequest;
using ::pm::internal::v1::ListNodesResponse;
using ::pm::internal::v1::ResolveRequest;
using ::pm::internal::v1::ResolveResponse;

absl::StatusOr<std::string> ReadTlsFile(const std::string& path, const char* what) {
  if (path.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "no ", what, " given for the calls to the cluster's other gateways"));
  }
  absl::StatusOr<std::string> text = ReadFile(path);
  if (!text.ok()) {
    return absl::Status(text.status().code(),
                        absl::StrCat(what, ": ", text.status().message()));
  }
  return text;
}

absl::Status RegistryStatus(const grpc::Status& rpc, const std::string& socket) {
  return absl::Status(static_cast<absl::StatusCode>(rpc.error_code()),
                      rpc.error_code() == grpc::StatusCode::UNAVAILABLE
                          ? absl::StrCat("registry at ", socket, ": ", rpc.error_message())
                          : rpc.error_message());
}

}  // namespace

absl::StatusOr<std::unique_ptr<ClusterRouter>> ClusterRouter::Create(
    const Options& options) {
  if (options.node.empty()) {
    return absl::InvalidArgumentError("a gateway of a cluster needs its node");
  }
  grpc::SslCredentialsOptions tls;
  PM_ASSIGN_OR_RETURN(tls.pem_root_certs, ReadTlsFile(options.peer_tls.ca_file, "CA"));
  PM_ASSIGN_OR_RETURN(tls.pem_cert_chain,
                      ReadTlsFile(options.peer_tls.cert_file, "peer certificate"));
  absl::StatusOr<bool> is_peer = CertificateHasUnit(tls.pem_cert_chain, options.peer_unit);
  if (!is_peer.ok() || !*is_peer) {
    return absl::InvalidArgumentError(absl::StrCat(
        "peer certificate ", options.peer_tls.cert_file,
        is_peer.ok() ? absl::StrCat(": its subject has no OU=", options.peer_unit,
                                    ", so the other hosts' gateways would refuse "
                                    "every call it forwards (certs/make_pki.sh "
                                    "makes peer.pem with it)")
                     : absl::StrCat(": ", is_peer.status().message())));
  }
  absl::StatusOr<std::optional<std::string>> named = CertificateNode(tls.pem_cert_chain);
  if (!named.ok() || (named->has_value() && **named != options.node)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "peer certificate ", options.peer_tls.cert_file, " is ",
        named.ok() ? absl::StrCat("host ", **named, "'s (CN=", kNodeNamePrefix, **named, ")")
                   : std::string(named.status().message()),
        ", not this host's (--node ", options.node,
        "): the other hosts' gateways would refuse every call it forwards"));
  }
  PM_ASSIGN_OR_RETURN(tls.pem_private_key,
                      ReadTlsFile(options.peer_tls.key_file, "peer key"));
  return std::unique_ptr<ClusterRouter>(new ClusterRouter(
      options.node, SocketPath(options.runtime_dir, Service::kRegistry),
      grpc::SslCredentials(tls)));
}

ClusterRouter::ClusterRouter(std::string node, std::string registry_socket,
                             std::shared_ptr<grpc::ChannelCredentials> peer_credentials)
    : node_(std::move(node)),
      registry_socket_(std::move(registry_socket)),
      peer_credentials_(std::move(peer_credentials)) {
  registry_ = pm::internal::v1::Registry::NewStub(grpc::CreateChannel(
      UnixAddress(registry_socket_), grpc::InsecureChannelCredentials()));
}

void ClusterRouter::Locate(grpc::ClientContext* context, const std::string& ref,
                           const std::string& owner_user,
                           std::function<void(absl::StatusOr<ResolveResponse>)> done) {
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
        if (!rpc.ok()) return done(RegistryStatus(rpc, socket));
        done(std::move(call->response));
      });
}

void ClusterRouter::ListNodes(grpc::ClientContext* context,
                              std::function<void(absl::StatusOr<ListNodesResponse>)> done) {
  struct Call {
    ListNodesRequest request;
    ListNodesResponse response;
  };
  auto call = std::make_shared<Call>();
  registry_->async()->ListNodes(
      context, &call->request, &call->response,
      [call, socket = registry_socket_, done = std::move(done)](grpc::Status rpc) {
        if (!rpc.ok()) return done(RegistryStatus(rpc, socket));
        done(std::move(call->response));
      });
}

pm::v1::ProcessManager::Stub* ClusterRouter::Peer(const std::string& address) {
  absl::MutexLock lock(&mutex_);
  std::unique_ptr<pm::v1::ProcessManager::Stub>& stub = peers_[address];
  if (stub == nullptr) {
    grpc::ChannelArguments arguments;
    // The cluster's hosts talk directly, never through a web proxy.
    arguments.SetInt(GRPC_ARG_ENABLE_HTTP_PROXY, 0);
    // A host that vanishes ends the calls forwarded to it (a follow, a
    // Wait) within half a minute, not when TCP gives up.
    arguments.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 10000);
    arguments.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 20000);
    arguments.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 0);
    stub = pm::v1::ProcessManager::NewStub(
        grpc::CreateCustomChannel(address, peer_credentials_, arguments));
  }
  return stub.get();
}

void ClusterRouter::PrepareForward(const Caller& caller, grpc::ClientContext* context) const {
  context->AddMetadata("authorization", caller.authorization);
  AddForwardHeaders(node_, caller.subject, caller.peer, context);
}

bool ClusterRouter::IsForwarded(const grpc::CallbackServerContext& context) {
  return context.client_metadata().count(
             grpc::string_ref(kForwardedByHeader.data(), kForwardedByHeader.size())) != 0;
}

absl::StatusOr<ClusterNode> PlaceStart(const ListNodesResponse& nodes,
                                       absl::string_view requested) {
  if (nodes.nodes().empty()) {
    return absl::UnavailableError("the registry knows no host of the cluster");
  }
  if (!requested.empty()) {
    // As a single host's supervisor refuses it: a name no host can have is
    // the caller's mistake, not a host that is down.
    PM_RETURN_IF_ERROR(ValidateNodeName(requested));
    if (requested != nodes.self() && !nodes.etcd_unreachable().empty()) {
      return ClusterUnavailableError(absl::StrCat(
          "host \"", requested, "\" cannot be reached from host ", nodes.self(),
          ": whether it is up is not known while ", nodes.etcd_unreachable()));
    }
    std::vector<std::string> up;
    for (const ClusterNode& node : nodes.nodes()) {
      if (node.node() == requested) return node;
      up.push_back(node.node());
    }
    return absl::FailedPreconditionError(absl::StrCat(
        "host \"", requested, "\" is not up in the cluster (it holds no lease in "
        "etcd); the hosts up are: ", absl::StrJoin(up, ", ")));
  }
  // This host is first: among equals, it keeps the Start. Another host
  // that publishes no gateway address cannot be forwarded to.
  const ClusterNode* best = &nodes.nodes(0);
  for (const ClusterNode& node : nodes.nodes()) {
    if (node.node() != nodes.self() && node.gateway().empty()) continue;
    if (node.live() < best->live() ||
        (node.live() == best->live() && best->node() != nodes.self() &&
         node.node() < best->node())) {
      best = &node;
    }
  }
  return *best;
}

}  // namespace pm::gateway
