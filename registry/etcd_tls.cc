#include "registry/etcd_tls.h"

#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/fd.h"
#include "common/flag_groups.h"
#include "common/status_core.h"

namespace pm::registry {
namespace {

// The text of `path`, given as `flag`, which must hold a PEM block of
// `kind` ("CERTIFICATE", "PRIVATE KEY"): gRPC would otherwise find out only
// at the first handshake, and say less.
absl::StatusOr<std::string> ReadPem(const std::string& path, absl::string_view flag,
                                    absl::string_view kind) {
  absl::StatusOr<std::string> text = ReadFile(path);
  if (!text.ok()) {
    return absl::Status(text.status().code(),
                        absl::StrCat(flag, ": ", text.status().message()));
  }
  if (!absl::StrContains(*text, "-----BEGIN ") ||
      !absl::StrContains(*text, absl::StrCat(kind, "-----"))) {
    return absl::InvalidArgumentError(absl::StrCat(
        flag, "=", path, ": no PEM ", kind, " in it"));
  }
  return text;
}

// gRPC's words for a connection the server ended, seen when the TLS of
// the two sides does not agree.
bool ClosedByPeer(absl::string_view message) {
  for (absl::string_view closed : {"Socket closed", "Endpoint read failed",
                                   "Connection reset by peer", "Ssl handshake failed"}) {
    if (absl::StrContains(message, closed)) return true;
  }
  return false;
}

// Why a connection to etcd could not be made, when gRPC's message tells
// of TLS (gRPC words a refused handshake as a connection that failed);
// empty otherwise. It names flags, not their files: the answer may reach a
// client of another host, to whom this host's paths are none of its
// business (the registry logs its flags at startup). Only for calls that found no connection at all: a
// member lost in the middle of a call ("Socket closed" too) is not TLS's
// doing.
std::string TlsFailure(const EtcdTls& tls, absl::string_view message) {
  if (!absl::StartsWith(message, "failed to connect to all addresses")) return "";
  if (!tls.enabled()) {
    if (!ClosedByPeer(message)) return "";
    return "etcd closed the plaintext connection, as an etcd that requires TLS "
           "(https client URLs) does: give --etcd_ca_file, --etcd_cert_file and "
           "--etcd_key_file";
  }
  if (absl::StrContains(message, "certificate verify failed")) {
    return "TLS to etcd failed: etcd's certificate is not signed by the CA of "
           "--etcd_ca_file";
  }
  if (absl::StrContains(message, "not in peer certificate")) {
    return absl::StrCat("TLS to etcd failed: etcd's certificate does not carry the "
                        "name \"", tls.server_name,
                        "\" (--etcd_server_name; every member's must)");
  }
  if (ClosedByPeer(message)) {
    // Which of the two gRPC cannot tell: with TLS 1.3 the client's side of
    // the handshake is done before etcd checks the client certificate, and
    // its refusal arrives as a connection closed or reset, as a plaintext
    // server's does.
    return "TLS to etcd failed: etcd closed the connection in or right after the "
           "handshake, as it does when it does not trust the client certificate "
           "of --etcd_cert_file (it must be signed by the CA of etcd's "
           "--trusted-ca-file), or when it serves plaintext (http client URLs)";
  }
  return "";
}

// All three files, or none (plaintext).
absl::Status CheckFiles(const EtcdTls& tls) {
  return CheckAllOrNone({{"--etcd_ca_file", tls.ca_file},
                         {"--etcd_cert_file", tls.cert_file},
                         {"--etcd_key_file", tls.key_file}},
                        "TLS to etcd");
}

}  // namespace

std::string EtcdTls::Describe() const {
  return enabled() ? "over TLS" : "in plaintext";
}

absl::StatusOr<EtcdTls> EtcdTlsFromFlags(const std::string& ca_file,
                                         const std::string& cert_file,
                                         const std::string& key_file,
                                         const std::string& server_name) {
  EtcdTls tls;
  tls.ca_file = ca_file;
  tls.cert_file = cert_file;
  tls.key_file = key_file;
  PM_RETURN_IF_ERROR(CheckFiles(tls));
  if (!server_name.empty()) {
    if (!tls.enabled()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--etcd_server_name=", server_name,
          " means nothing in plaintext: give --etcd_ca_file, --etcd_cert_file "
          "and --etcd_key_file too"));
    }
    tls.server_name = server_name;
  }
  return tls;
}

absl::StatusOr<std::shared_ptr<grpc::Channel>> NewEtcdChannel(
    const std::string& target, const EtcdTls& tls, grpc::ChannelArguments arguments) {
  // A proxy in the environment is for the web, not for the cluster's etcd.
  arguments.SetInt(GRPC_ARG_ENABLE_HTTP_PROXY, 0);
  // No retry filter: gRPC 1.51's aborts the process when a call ends
  // without a grpc-status, which etcd members that go away over TLS make
  // happen (retry_filter's GetCallStatus, grpc/grpc#34683). Callers retry
  // on their own (the Cluster: through the next member, then every
  // `retry`).
  arguments.SetInt(GRPC_ARG_ENABLE_RETRIES, 0);
  PM_RETURN_IF_ERROR(CheckFiles(tls));
  if (!tls.enabled()) {
    return grpc::CreateCustomChannel(target, grpc::InsecureChannelCredentials(),
                                     arguments);
  }
  if (tls.server_name.empty()) {
    return absl::InvalidArgumentError(
        "no name to check on etcd's certificate (--etcd_server_name is empty)");
  }
  grpc::SslCredentialsOptions files;
  PM_ASSIGN_OR_RETURN(files.pem_root_certs,
                      ReadPem(tls.ca_file, "--etcd_ca_file", "CERTIFICATE"));
  PM_ASSIGN_OR_RETURN(files.pem_cert_chain,
                      ReadPem(tls.cert_file, "--etcd_cert_file", "CERTIFICATE"));
  PM_ASSIGN_OR_RETURN(files.pem_private_key,
                      ReadPem(tls.key_file, "--etcd_key_file", "PRIVATE KEY"));
  // Every member is checked for this one name, whichever address of the
  // target it is reached at (an "ipv4:a,b,c" target has no host name).
  arguments.SetSslTargetNameOverride(tls.server_name);
  return grpc::CreateCustomChannel(target, grpc::SslCredentials(files), arguments);
}

absl::Status EtcdCallError(absl::string_view endpoints, const EtcdTls& tls,
                           absl::string_view what, const grpc::Status& rpc) {
  std::string message = absl::StrCat("etcd at ", endpoints, " ", tls.Describe(), ": ",
                                     what, ": ", rpc.error_message());
  if (rpc.error_code() == grpc::StatusCode::UNAVAILABLE) {
    const std::string failure = TlsFailure(tls, rpc.error_message());
    if (!failure.empty()) absl::StrAppend(&message, "; ", failure);
  }
  return absl::Status(static_cast<absl::StatusCode>(rpc.error_code()), message);
}

}  // namespace pm::registry
