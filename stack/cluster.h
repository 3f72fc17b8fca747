// The launcher's place in a cluster of pm hosts (README, "Running on several
// hosts"): its --etcd, --etcd_prefix, --node and --etcd_lease_seconds flags,
// and --etcd_ca_file, --etcd_cert_file, --etcd_key_file and
// --etcd_server_name for TLS to etcd, checked and completed once at startup, as the value the stack passes on
// to its services (the registry gets them all, the supervisor the node; see
// ServiceArgs in stack/stack.h).
//
//   ClusterFlags flags;
//   flags.etcd = FLAGS_etcd;  // ... and the others
//   PM_ASSIGN_OR_RETURN(absl::optional<ClusterOptions> cluster,
//                       ClusterFromFlags(flags, HostName()));
//   options.cluster = cluster;   // unset: a single host, as before
#ifndef PM_STACK_CLUSTER_H_
#define PM_STACK_CLUSTER_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/optional.h"

namespace pm::stack {

struct ClusterOptions {
  // etcd's client endpoints, "host:port" separated by commas (the
  // registry's --etcd).
  std::string etcd;
  // The cluster's keys in etcd (the registry's --etcd_prefix); empty: the
  // registry's default, /pm/default/.
  std::string etcd_prefix;
  // This host's name in the cluster (the registry's and the supervisor's
  // --node); never empty.
  std::string node;
  // Where the other hosts' gateways reach this host's (host:port; the
  // registry's --gateway_address); empty: calls are not forwarded here.
  std::string gateway_address;
  // The lease on this host's node key, in seconds (the registry's
  // --etcd_lease_seconds: how soon the others see this host gone); 0: the
  // registry's default.
  int64_t etcd_lease_seconds = 0;
  // TLS to etcd with a client certificate (the registry's --etcd_ca_file,
  // --etcd_cert_file, --etcd_key_file): all three, or none (plaintext).
  std::string etcd_ca_file = "";
  std::string etcd_cert_file = "";
  std::string etcd_key_file = "";
  // The name every etcd member's certificate carries (the registry's
  // --etcd_server_name); empty: the registry's default, "etcd".
  std::string etcd_server_name = "";
};

// The launcher's flags that describe its cluster, as given (the ones
// after the lease default to empty: callers that predate TLS to etcd name
// the first ones only).
struct ClusterFlags {
  std::string etcd;
  std::string etcd_prefix;
  std::string node;
  int64_t etcd_lease_seconds = 0;
  std::string etcd_ca_file = "";
  std::string etcd_cert_file = "";
  std::string etcd_key_file = "";
  std::string etcd_server_name = "";
};

// The address the other hosts reach a gateway listening on `listen` at:
// `advertise` when given, else `listen` with a wildcard host (0.0.0.0, ::,
// empty) replaced by `host_name`. Empty when the port is 0 (not known
// before the gateway binds it).
std::string GatewayAddress(absl::string_view listen, absl::string_view advertise,
                           absl::string_view host_name);

// The cluster the flags describe: unset when `etcd` is empty (a single
// host: nothing changes). The node is `node`, else `host_name` (this
// machine's, from HostName()). INVALID_ARGUMENT, naming the flag, for
// --node, --etcd_prefix, --etcd_lease_seconds or any of the etcd TLS flags
// without --etcd (they mean nothing without a cluster), some but not all
// of --etcd_ca_file, --etcd_cert_file and --etcd_key_file (naming the
// missing ones), --etcd_server_name without them, an empty endpoint in
// `etcd`, a lease under 2 s (the registry's least), or a node (given or
// the host's name) that is no node name (common/names.h); the error of
// `host_name` when it is needed and failed. The files are read by the
// registry, not here.
absl::StatusOr<absl::optional<ClusterOptions>> ClusterFromFlags(
    const ClusterFlags& flags, const absl::StatusOr<std::string>& host_name);

// This machine's host name (gethostname). Errors name the call and errno.
absl::StatusOr<std::string> HostName();

}  // namespace pm::stack

#endif  // PM_STACK_CLUSTER_H_
