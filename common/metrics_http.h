// The Prometheus endpoint: GET /metrics over HTTP/1.1 on a TCP address,
// served by Debian's libmicrohttpd (its own thread; no HTTP parsing of
// ours).
//
//   PM_ASSIGN_OR_RETURN(std::unique_ptr<MetricsHttpServer> server,
//                       MetricsHttpServer::Start("127.0.0.1:9464", [] {
//                         return metrics::Global().Render();
//                       }));
//   server->port();   // the bound port (useful with port 0)
//
// Only GET and HEAD of /metrics: 404 for another path, 405 for another
// method. The caps (README, "Metrics"): kMaxConnections open at once
// (more wait in the kernel's backlog), kMaxConnectionsPerIp of them from
// one address, a connection silent for kConnectionTimeoutSeconds is
// closed, and a request larger than libmicrohttpd's per-connection memory
// (32 KiB) gets 431/413; none of these stops the server.
#ifndef PM_COMMON_METRICS_HTTP_H_
#define PM_COMMON_METRICS_HTTP_H_

#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "common/fd.h"

struct MHD_Daemon;

namespace pm {

class MetricsHttpServer {
 public:
  static constexpr unsigned kMaxConnections = 32;
  static constexpr unsigned kMaxConnectionsPerIp = 8;
  static constexpr unsigned kConnectionTimeoutSeconds = 10;

  // Listens on `listen` ("host:port"; host a name or an address, IPv6 in
  // brackets; port 0: a free one) and serves `render()`'s text, called on
  // the server's thread for each scrape. INVALID_ARGUMENT for a malformed
  // address; the failing call (getaddrinfo, socket, bind, listen,
  // MHD_start_daemon) otherwise.
  static absl::StatusOr<std::unique_ptr<MetricsHttpServer>> Start(
      const std::string& listen, std::function<std::string()> render);
  // Stops the server's thread; in-flight scrapes are cut.
  ~MetricsHttpServer();
  MetricsHttpServer(const MetricsHttpServer&) = delete;
  MetricsHttpServer& operator=(const MetricsHttpServer&) = delete;

  int port() const { return port_; }

 private:
  MetricsHttpServer(std::function<std::string()> render, int port)
      : render_(std::move(render)), port_(port) {}

  const std::function<std::string()> render_;
  const int port_;
  Fd listen_fd_;  // closed after the daemon stopped
  MHD_Daemon* daemon_ = nullptr;
};

}  // namespace pm

#endif  // PM_COMMON_METRICS_HTTP_H_
