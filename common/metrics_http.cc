#include "common/metrics_http.h"

#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cstring>

#include <microhttpd.h>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/metrics.h"
#include "common/status_core.h"

namespace pm {

namespace {

// host and port of "host:port" or "[v6]:port".
absl::Status SplitHostPort(const std::string& listen, std::string& host, std::string& port) {
  const auto bad = [&](absl::string_view why) {
    return absl::InvalidArgumentError(absl::StrCat(
        "metrics address \"", listen, "\": ", why, " (want host:port, e.g. 127.0.0.1:9464)"));
  };
  size_t colon = listen.rfind(':');
  if (colon == std::string::npos) return bad("no port");
  host = listen.substr(0, colon);
  port = listen.substr(colon + 1);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  } else if (host.find(':') != std::string::npos) {
    return bad("an IPv6 address goes in brackets");
  }
  if (host.empty()) return bad("no host");
  uint32_t number = 0;
  if (!absl::SimpleAtoi(port, &number) || number > 65535 ||
      port.find_first_not_of("0123456789") != std::string::npos) {
    return bad("the port is not a number from 0 to 65535");
  }
  return absl::OkStatus();
}

absl::StatusOr<Fd> Listen(const std::string& address, int& port) {
  std::string host, service;
  if (absl::Status split = SplitHostPort(address, host, service); !split.ok()) return split;
  addrinfo hints = {};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* found = nullptr;
  if (int rc = getaddrinfo(host.c_str(), service.c_str(), &hints, &found); rc != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("getaddrinfo(", host, "): ", gai_strerror(rc)));
  }
  std::unique_ptr<addrinfo, decltype(&freeaddrinfo)> held(found, freeaddrinfo);
  Fd fd(socket(found->ai_family, found->ai_socktype | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return ErrnoError("socket", address);
  const int one = 1;
  if (setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0) {
    return ErrnoError("setsockopt(SO_REUSEADDR)", address);
  }
  if (bind(fd.get(), found->ai_addr, found->ai_addrlen) != 0) return ErrnoError("bind", address);
  if (::listen(fd.get(), 64) != 0) return ErrnoError("listen", address);
  sockaddr_storage bound = {};
  socklen_t length = sizeof(bound);
  if (getsockname(fd.get(), reinterpret_cast<sockaddr*>(&bound), &length) != 0) {
    return ErrnoError("getsockname", address);
  }
  port = bound.ss_family == AF_INET6
             ? ntohs(reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port)
             : ntohs(reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
  return fd;
}

MHD_Result Respond(MHD_Connection* connection, unsigned status, const std::string& body,
                   const char* content_type) {
  MHD_Response* response = MHD_create_response_from_buffer(
      body.size(), const_cast<char*>(body.data()), MHD_RESPMEM_MUST_COPY);
  if (response == nullptr) return MHD_NO;
  MHD_add_response_header(response, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
  if (status == MHD_HTTP_METHOD_NOT_ALLOWED) {
    MHD_add_response_header(response, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
  }
  MHD_Result queued = MHD_queue_response(connection, status, response);
  MHD_destroy_response(response);
  return queued;
}

MHD_Result OnRequest(void* cls, MHD_Connection* connection, const char* url,
                     const char* method, const char* /*version*/,
                     const char* /*upload_data*/, size_t* upload_data_size,
                     void** /*con_cls*/) {
  const auto& render = *static_cast<const std::function<std::string()>*>(cls);
  // A body (there should be none) is ignored.
  *upload_data_size = 0;
  if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 && strcmp(method, MHD_HTTP_METHOD_HEAD) != 0) {
    return Respond(connection, MHD_HTTP_METHOD_NOT_ALLOWED,
                   "only GET /metrics is served here\n", "text/plain; charset=utf-8");
  }
  if (strcmp(url, "/metrics") != 0) {
    return Respond(connection, MHD_HTTP_NOT_FOUND, "not found: the metrics are at /metrics\n",
                   "text/plain; charset=utf-8");
  }
  return Respond(connection, MHD_HTTP_OK, render(), metrics::kContentType);
}

}  // namespace

absl::StatusOr<std::unique_ptr<MetricsHttpServer>> MetricsHttpServer::Start(
    const std::string& listen, std::function<std::string()> render) {
  int port = 0;
  absl::StatusOr<Fd> fd = Listen(listen, port);
  if (!fd.ok()) return fd.status();
  std::unique_ptr<MetricsHttpServer> server(new MetricsHttpServer(std::move(render), port));
  server->daemon_ = MHD_start_daemon(
      MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_USE_ERROR_LOG, 0, nullptr,
      nullptr, &OnRequest, const_cast<std::function<std::string()>*>(&server->render_),
      MHD_OPTION_LISTEN_SOCKET, fd->get(), MHD_OPTION_CONNECTION_LIMIT, kMaxConnections,
      MHD_OPTION_PER_IP_CONNECTION_LIMIT, kMaxConnectionsPerIp,
      MHD_OPTION_CONNECTION_TIMEOUT, kConnectionTimeoutSeconds, MHD_OPTION_END);
  if (server->daemon_ == nullptr) {
    // Whether libmicrohttpd closed the socket on its way out is not said:
    // left open rather than closed twice (the caller exits on this error).
    (void)fd->release();
    return absl::InternalError(absl::StrCat(
        "MHD_start_daemon on ", listen,
        " failed (libmicrohttpd's reason, if it gave one, is logged just before)"));
  }
  server->listen_fd_ = *std::move(fd);
  return server;
}

MetricsHttpServer::~MetricsHttpServer() {
  if (daemon_ == nullptr) return;
  // MHD_stop_daemon closes the listen socket it was given.
  MHD_stop_daemon(daemon_);
  (void)listen_fd_.release();
}

}  // namespace pm
