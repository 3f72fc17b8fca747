// The edge gateway as a server: pm.v1.ProcessManager for external clients
// on TCP with mutual TLS and basic auth, plus grpc.health.v1 and server
// reflection; the same services on a unix socket in the runtime dir for the
// trusted local side (the stack's health checks, local tools). The unix
// socket serves last, so "healthy on the socket" means the TCP port is
// bound (and in the port file).
//
//   PM_RETURN_IF_ERROR(pm::gateway::ApplyTlsPolicy());  // before any creds
//   pm::gateway::GatewayOptions options;
//   options.listen = "0.0.0.0:8080";
//   options.tls = {"ca.pem", "server.pem", "server.key"};
//   options.users_file = "users";
//   options.runtime_dir = pm::DefaultRuntimeDir();
//   PM_ASSIGN_OR_RETURN(auto gateway, pm::gateway::Gateway::Start(options));
//   PM_LOG(INFO) << "port " << gateway->port();
//   ...
//   gateway->Shutdown();
//
// SO_REUSEPORT is off (GRPC_ARG_ALLOW_REUSEPORT = 0): a second gateway on
// the same port fails to start instead of silently sharing it.
//
// The TCP door's HTTP/2 limits are set on purpose (see Http2Limits): the
// streams one connection may have open at once, the largest message and
// header block, keepalive pings (and how often a client may ping), and how
// long an idle connection is kept.
#ifndef PM_GATEWAY_GATEWAY_H_
#define PM_GATEWAY_GATEWAY_H_

#include <memory>
#include <string>

#include <grpcpp/grpcpp.h>

#include "absl/status/statusor.h"
#include "client/client.h"
#include "gateway/audit_log.h"
#include "gateway/auth_throttle.h"
#include "gateway/basic_auth.h"
#include "gateway/forwarding.h"
#include "gateway/gateway_service.h"
#include "gateway/tls_policy.h"
#include "gateway/trusted_cas.h"
#include "gateway/user_quotas.h"
#include "gateway/users.h"

namespace pm::gateway {

// The TCP door's HTTP/2 and gRPC limits.
struct Http2Limits {
  // Streams (calls) open at once on one connection; more wait in the
  // client's queue (HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS).
  int max_concurrent_streams = 1000;
  // Largest request message (a StartRequest with its args and env).
  int max_receive_message_bytes = 4 << 20;
  // Largest header block a client may send.
  int max_metadata_bytes = 16 << 10;
  // The server pings a connection silent this long, and drops it when the
  // ping is not answered within the timeout (a vanished client).
  int keepalive_time_ms = 60000;
  int keepalive_timeout_ms = 20000;
  // A connection with no call for this long is closed (GOAWAY).
  int max_connection_idle_ms = 30 * 60 * 1000;
  // Clients may ping at most this often without data; faster pings are
  // strikes, and after 2 the connection is closed (a ping flood).
  int min_ping_interval_ms = 10000;
};

struct GatewayOptions {
  // host:port; port 0 picks a free port (see Gateway::port()).
  std::string listen = "0.0.0.0:8080";
  TlsFiles tls;
  std::string users_file;
  // Where the local services' sockets are; the gateway's own unix socket
  // (gateway.sock) goes there too.
  std::string runtime_dir;
  // What outlives the gateway (common/state_dir.h); created 0700 when the
  // audit log goes there.
  std::string state_dir;
  // The audit log (JSON lines, audit_log.h); empty: gateway-audit.jsonl in
  // the state dir (INVALID_ARGUMENT if that is empty too).
  std::string audit_log;
  uint64_t audit_log_max_bytes = 16 << 20;
  // Per-user caps on the TCP door (user_quotas.h).
  UserQuotaOptions quotas;
  Http2Limits http2;
  // If set, the bound TCP port is written here (atomically, as "PORT\n")
  // before the unix socket serves: whoever saw the gateway healthy on its
  // socket can read the port.
  std::string port_file;
  // The backend; null: ConnectLocal(runtime_dir).
  std::unique_ptr<pm::Client> client;
  // A member of a cluster of hosts (cluster_router.h): this host's node
  // (empty: a single host) and what this gateway presents to the others.
  std::string node;
  ClusterRouter::PeerTls peer_tls;
  // In a cluster, the OU of the certificates the gateways present to each
  // other: only a call on a connection with such a certificate may be
  // marked forwarded (forwarding.h).
  std::string peer_unit = kDefaultPeerUnit;
  // In a cluster, the CA of the gateways' certificates alone (trusted_cas.h):
  // the TLS door trusts it beside tls.ca_file, a forwarded call needs a
  // certificate from it and any other call one from tls.ca_file. Empty:
  // peers and users are told apart by peer_unit alone (warned at start).
  std::string peer_ca_file;
};

class Gateway {
 public:
  // Checks the TLS files and the users file, binds both listeners and starts
  // serving. ApplyTlsPolicy() must have run. Errors name what failed: a bad
  // file (NOT_FOUND / INVALID_ARGUMENT), the listen address in use or
  // unusable (UNAVAILABLE), a live gateway on the socket (ALREADY_EXISTS).
  static absl::StatusOr<std::unique_ptr<Gateway>> Start(GatewayOptions options);
  ~Gateway();

  // The bound TCP port.
  int port() const { return port_; }
  const std::string& socket_path() const { return socket_path_; }
  const std::string& audit_log_path() const { return audit_->path(); }

  // Stops accepting; calls in flight get `grace`, then are cancelled.
  void Shutdown(absl::Duration grace = absl::Seconds(2));

 private:
  Gateway() = default;

  std::unique_ptr<UserStore> users_;
  std::unique_ptr<pm::Client> client_;
  std::unique_ptr<AuditLog> audit_;
  std::unique_ptr<AuthThrottle> throttle_;
  std::unique_ptr<UserQuotas> quotas_;
  std::unique_ptr<ClusterRouter> router_;
  std::unique_ptr<TrustedCas> trusted_cas_;  // with a peer CA only
  std::unique_ptr<GatewayService> remote_service_;
  std::unique_ptr<GatewayService> local_service_;
  std::unique_ptr<grpc::Server> tcp_server_;
  std::unique_ptr<grpc::Server> local_server_;
  std::string socket_path_;
  std::string port_file_;
  int port_ = 0;
};

}  // namespace pm::gateway

#endif  // PM_GATEWAY_GATEWAY_H_
