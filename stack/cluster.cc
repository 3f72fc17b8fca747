#include "stack/cluster.h"

#include <errno.h>
#include <limits.h>
#include <unistd.h>

#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/flag_groups.h"
#include "common/names.h"
#include "common/status_core.h"

namespace pm::stack {
namespace {

absl::Status CheckEndpoints(absl::string_view etcd) {
  for (absl::string_view endpoint : absl::StrSplit(etcd, ',')) {
    if (endpoint.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--etcd=", etcd, ": an empty endpoint (want host:port, separated by "
          "commas)"));
    }
  }
  return absl::OkStatus();
}

// The flags of TLS to etcd: the three files, then the server name.
std::vector<FlagValue> TlsFlags(const ClusterFlags& flags) {
  return {{"--etcd_ca_file", flags.etcd_ca_file},
          {"--etcd_cert_file", flags.etcd_cert_file},
          {"--etcd_key_file", flags.etcd_key_file},
          {"--etcd_server_name", flags.etcd_server_name}};
}

// The node: as given, else this host's name, which must make a node name.
absl::StatusOr<std::string> NodeOf(absl::string_view node,
                                   const absl::StatusOr<std::string>& host_name) {
  if (!node.empty()) {
    if (absl::Status valid = ValidateNodeName(node); !valid.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("--node: ", valid.message()));
    }
    return std::string(node);
  }
  if (!host_name.ok()) {
    return absl::Status(host_name.status().code(),
                        absl::StrCat("--node is not given and this host's name is "
                                     "unknown: ", host_name.status().message()));
  }
  if (absl::Status valid = ValidateNodeName(*host_name); !valid.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "this host's name cannot name its node (", valid.message(),
        "): give --node"));
  }
  return *host_name;
}

}  // namespace

absl::StatusOr<absl::optional<ClusterOptions>> ClusterFromFlags(
    const ClusterFlags& flags, const absl::StatusOr<std::string>& host_name) {
  if (flags.etcd.empty()) {
    // Not a cluster: a node name, a prefix or a lease would silently mean
    // nothing.
    if (!flags.node.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--node=", flags.node, " needs a cluster: give --etcd=ENDPOINTS too (a "
          "single host has no node name)"));
    }
    if (!flags.etcd_prefix.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--etcd_prefix=", flags.etcd_prefix,
          " needs a cluster: give --etcd=ENDPOINTS too"));
    }
    if (flags.etcd_lease_seconds != 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--etcd_lease_seconds=", flags.etcd_lease_seconds,
          " needs a cluster: give --etcd=ENDPOINTS too"));
    }
    for (const FlagValue& tls : TlsFlags(flags)) {
      if (!tls.value.empty()) {
        return absl::InvalidArgumentError(absl::StrCat(
            tls.flag, "=", tls.value, " needs a cluster: give --etcd=ENDPOINTS too"));
      }
    }
    return absl::nullopt;
  }
  PM_RETURN_IF_ERROR(CheckEndpoints(flags.etcd));
  // The registry would refuse them too, but only once started (and a
  // restarted registry again and again).
  const std::vector<FlagValue> tls = TlsFlags(flags);
  PM_RETURN_IF_ERROR(CheckAllOrNone({tls[0], tls[1], tls[2]}, "TLS to etcd"));
  if (!flags.etcd_server_name.empty() && flags.etcd_ca_file.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--etcd_server_name=", flags.etcd_server_name,
        " means nothing in plaintext: give --etcd_ca_file, --etcd_cert_file and "
        "--etcd_key_file too"));
  }
  if (flags.etcd_lease_seconds != 0 && flags.etcd_lease_seconds < 2) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--etcd_lease_seconds=", flags.etcd_lease_seconds,
        ": a lease is 2 s or more (0: the registry's default)"));
  }
  ClusterOptions cluster;
  cluster.etcd = flags.etcd;
  cluster.etcd_prefix = flags.etcd_prefix;
  cluster.etcd_lease_seconds = flags.etcd_lease_seconds;
  cluster.etcd_ca_file = flags.etcd_ca_file;
  cluster.etcd_cert_file = flags.etcd_cert_file;
  cluster.etcd_key_file = flags.etcd_key_file;
  cluster.etcd_server_name = flags.etcd_server_name;
  PM_ASSIGN_OR_RETURN(cluster.node, NodeOf(flags.node, host_name));
  return cluster;
}

std::string GatewayAddress(absl::string_view listen, absl::string_view advertise,
                           absl::string_view host_name) {
  if (!advertise.empty()) return std::string(advertise);
  const size_t colon = listen.rfind(':');
  if (colon == absl::string_view::npos) return "";
  absl::string_view host = listen.substr(0, colon);
  const absl::string_view port = listen.substr(colon + 1);
  if (port.empty() || port == "0") return "";
  if (host.empty() || host == "0.0.0.0" || host == "[::]" || host == "::") host = host_name;
  return absl::StrCat(host, ":", port);
}

absl::StatusOr<std::string> HostName() {
  char name[HOST_NAME_MAX + 1] = {};
  if (gethostname(name, sizeof(name) - 1) != 0) return ErrnoError("gethostname");
  return std::string(name);
}

}  // namespace pm::stack
