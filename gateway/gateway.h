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
#ifndef PM_GATEWAY_GATEWAY_H_
#define PM_GATEWAY_GATEWAY_H_

#include <memory>
#include <string>

#include <grpcpp/grpcpp.h>

#include "absl/status/statusor.h"
#include "client/client.h"
#include "gateway/basic_auth.h"
#include "gateway/gateway_service.h"
#include "gateway/tls_policy.h"
#include "gateway/users.h"

namespace pm::gateway {

struct GatewayOptions {
  // host:port; port 0 picks a free port (see Gateway::port()).
  std::string listen = "0.0.0.0:8080";
  TlsFiles tls;
  std::string users_file;
  // Where the local services' sockets are; the gateway's own unix socket
  // (gateway.sock) goes there too.
  std::string runtime_dir;
  // Cap on threads for the synchronous calls (Start, Stop, GetStatus, List).
  int max_threads = 64;
  // If set, the bound TCP port is written here (atomically, as "PORT\n")
  // before the unix socket serves: whoever saw the gateway healthy on its
  // socket can read the port.
  std::string port_file;
  // The backend; null: ConnectLocal(runtime_dir).
  std::unique_ptr<pm::Client> client;
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

  // Stops accepting; calls in flight get `grace`, then are cancelled.
  void Shutdown(absl::Duration grace = absl::Seconds(2));

 private:
  Gateway() = default;

  std::unique_ptr<UserStore> users_;
  std::unique_ptr<pm::Client> client_;
  std::unique_ptr<GatewayService> service_;
  std::unique_ptr<grpc::Server> tcp_server_;
  std::unique_ptr<grpc::Server> local_server_;
  std::string socket_path_;
  std::string port_file_;
  int port_ = 0;
};

}  // namespace pm::gateway

#endif  // PM_GATEWAY_GATEWAY_H_
