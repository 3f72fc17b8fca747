// ClusterRouter: what a gateway of a cluster of pm hosts (issue 17; README,
// "Running on several hosts") needs to serve the whole cluster: where a
// process is (its host, and that host's gateway), which hosts are up, and
// a channel to each other host's gateway to forward a call to.
//
//   ClusterRouter::Options options{.node = "a", .runtime_dir = dir,
//                                  .peer_tls = {ca, client_cert, client_key}};
//   PM_ASSIGN_OR_RETURN(std::unique_ptr<ClusterRouter> router,
//                       ClusterRouter::Create(options));
//   router->Locate(context, ref, owner_user, [](auto located) { ... });
//   pm::v1::ProcessManager::Stub* peer = router->Peer(located->gateway());
//   router->PrepareForward(caller, &forward_context);
//
// A forwarded call carries the caller's own `authorization` header: the
// host that owns the process authenticates and authorizes the user itself,
// against its own users file (every host of a cluster has the same one).
// The forwarding gateway presents its peer certificate (mutual TLS, the
// cluster's CA, the peers' OU) and marks the call forwarded, for the
// caller's certificate subject (forwarding.h); a forwarded call is never
// forwarded again, so two hosts whose views differ for a moment cannot
// bounce a call between them.
//
// Thread-safe.
#ifndef PM_GATEWAY_CLUSTER_ROUTER_H_
#define PM_GATEWAY_CLUSTER_ROUTER_H_

#include <grpcpp/grpcpp.h>

#include <functional>
#include <map>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "gateway/basic_auth.h"
#include "pm/internal/v1/internal.grpc.pb.h"
#include "pm/v1/process_manager.grpc.pb.h"

namespace pm::gateway {

class ClusterRouter {
 public:
  struct PeerTls {
    // The CA the other hosts' gateway certificates chain to, and the
    // certificate (clientAuth) and key this gateway presents to them.
    std::string ca_file;
    std::string cert_file;
    std::string key_file;
  };
  struct Options {
    // This host's node (the stack's --node).
    std::string node;
    // Where the registry's socket is.
    std::string runtime_dir;
    PeerTls peer_tls;
    // The OU the peer certificate must have (forwarding.h): the other
    // hosts refuse the calls it forwards otherwise.
    std::string peer_unit;
  };

  // Reads the TLS files (errors name the file). INVALID_ARGUMENT for a
  // missing node, or a peer certificate without the OU `peer_unit`.
  static absl::StatusOr<std::unique_ptr<ClusterRouter>> Create(const Options& options);

  const std::string& node() const { return node_; }

  // Where the process `ref` (a full id, a name or an id prefix, among
  // `owner_user`'s when set) is: its full id, its node, and its host's
  // gateway when that is another host that is up. The registry's errors
  // as it gives them (NOT_FOUND, FAILED_PRECONDITION for an ambiguous
  // prefix). `done` runs once, on a gRPC thread.
  void Locate(grpc::ClientContext* context, const std::string& ref,
              const std::string& owner_user,
              std::function<void(absl::StatusOr<pm::internal::v1::ResolveResponse>)> done);

  // The hosts that are up, this one first, each with its gateway and its
  // live processes.
  void ListNodes(grpc::ClientContext* context,
                 std::function<void(absl::StatusOr<pm::internal::v1::ListNodesResponse>)> done);

  // A stub for the gateway at `address` ("host:port"), made once and kept.
  pm::v1::ProcessManager::Stub* Peer(const std::string& address);

  // Readies `context` for a call forwarded on behalf of `caller`: the
  // caller's authorization header, and the marks that this host forwards
  // it for the caller's certificate subject and address (forwarding.h).
  void PrepareForward(const Caller& caller, grpc::ClientContext* context) const;
  // Whether the call came from another host's gateway.
  static bool IsForwarded(const grpc::CallbackServerContext& context);

 private:
  ClusterRouter(std::string node, std::string registry_socket,
                std::shared_ptr<grpc::ChannelCredentials> peer_credentials);

  const std::string node_;
  const std::string registry_socket_;
  std::unique_ptr<pm::internal::v1::Registry::Stub> registry_;
  const std::shared_ptr<grpc::ChannelCredentials> peer_credentials_;
  absl::Mutex mutex_;
  std::map<std::string, std::unique_ptr<pm::v1::ProcessManager::Stub>> peers_
      ABSL_GUARDED_BY(mutex_);
};

// Where a Start goes: the host `requested` names (INVALID_ARGUMENT, as
// ValidateNodeName says, for a name no host can have; FAILED_PRECONDITION
// when it is not up, naming the hosts that are; UNAVAILABLE, a
// ClusterUnavailableError naming etcd, when another host is named while etcd
// is out of reach), else the host with the fewest
// live processes among those that are up (ties: this host, then by name).
// `nodes` is ListNodes's answer (this host first).
absl::StatusOr<pm::internal::v1::ClusterNode> PlaceStart(
    const pm::internal::v1::ListNodesResponse& nodes, absl::string_view requested);

}  // namespace pm::gateway

#endif  // PM_GATEWAY_CLUSTER_ROUTER_H_
