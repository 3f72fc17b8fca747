// How the registry reaches the cluster's etcd: over TLS with a client
// certificate (etcd run with --client-cert-auth, as Kubernetes runs it) or
// in plaintext; the one function that makes its gRPC channel to etcd, and
// the one that words a failed call (the Cluster's).
//
//   PM_ASSIGN_OR_RETURN(EtcdTls tls,
//                       EtcdTlsFromFlags(FLAGS_etcd_ca_file, FLAGS_etcd_cert_file,
//                                        FLAGS_etcd_key_file, FLAGS_etcd_server_name));
//   PM_ASSIGN_OR_RETURN(std::shared_ptr<grpc::Channel> channel,
//                       NewEtcdChannel("ipv4:10.0.0.1:2379,10.0.0.2:2379", tls,
//                                      grpc::ChannelArguments()));
//   ... if (!rpc.ok()) return EtcdCallError(endpoints, tls, "Txn", rpc);
//
// The name checked on etcd's certificate is one fixed name, not each
// member's address: the registry's gRPC target lists every member
// (ipv4:a,b,c) and has no one host name, so every member's certificate must
// carry `server_name` ("etcd" unless told otherwise) as a DNS name in its
// subjectAltName, as certs/make_pki.sh's etcd-server.pem does. A
// certificate signed by etcd's CA for another name is refused.
#ifndef PM_REGISTRY_ETCD_TLS_H_
#define PM_REGISTRY_ETCD_TLS_H_

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace pm::registry {

// The name every etcd member's certificate carries unless
// --etcd_server_name says otherwise.
inline constexpr char kDefaultEtcdServerName[] = "etcd";

struct EtcdTls {
  // etcd's CA (PEM): it signed every member's certificate. Empty:
  // plaintext, and the other fields are unused.
  std::string ca_file;
  // This registry's client certificate and its key (PEM), from a CA that
  // etcd trusts for clients (its --trusted-ca-file).
  std::string cert_file;
  std::string key_file;
  // The name every member's certificate must carry.
  std::string server_name = kDefaultEtcdServerName;

  bool enabled() const { return !ca_file.empty(); }
  // How etcd is reached, for messages: "over TLS" or "in plaintext".
  std::string Describe() const;
};

// The registry's flags as an EtcdTls. INVALID_ARGUMENT for some but not all
// of the three files (naming the missing flags: common/flag_groups.h), or a
// server name without them.
absl::StatusOr<EtcdTls> EtcdTlsFromFlags(const std::string& ca_file,
                                         const std::string& cert_file,
                                         const std::string& key_file,
                                         const std::string& server_name);

// A channel to etcd at `target` (a gRPC target: EtcdTarget in
// registry/cluster.h), over TLS as `tls` says, else in plaintext, with
// `arguments` (HTTP proxies are turned off: a proxy is for the web; and
// gRPC's retry filter, which aborts the process on some TLS failures in
// gRPC 1.51: callers retry on their own). The files are read now: errors
// name the flag's file and why (NOT_FOUND, PERMISSION_DENIED, ...),
// INVALID_ARGUMENT for one that holds no PEM, or for `tls` with some files
// but not all.
absl::StatusOr<std::shared_ptr<grpc::Channel>> NewEtcdChannel(
    const std::string& target, const EtcdTls& tls, grpc::ChannelArguments arguments);

// A failed call `what` to etcd at `endpoints` as a status of its code:
// "etcd at <endpoints> <tls.Describe()>: <what>: <gRPC's message>", and,
// when no connection could be made and gRPC's message tells of TLS (a
// refused handshake reads to gRPC as a connection that failed), what
// failed: "; TLS to etcd failed: " and "etcd's certificate is not signed
// by the CA of --etcd_ca_file=...", "etcd's certificate does not carry
// the name ...", or "etcd closed the connection in or right after the
// handshake, as it does when it does not trust the client certificate
// ..., or when it serves plaintext ..."; in plaintext, "; etcd closed the
// plaintext connection, as an etcd that requires TLS ... does: give
// --etcd_ca_file, ...".
absl::Status EtcdCallError(absl::string_view endpoints, const EtcdTls& tls,
                           absl::string_view what, const grpc::Status& rpc);

}  // namespace pm::registry

#endif  // PM_REGISTRY_ETCD_TLS_H_
