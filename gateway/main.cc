// pm gateway: the door for external gRPC clients (mutual TLS + basic auth).
// See gateway.h; flags below.
#include <unistd.h>

#include <gflags/gflags.h>

#include "common/file_limit.h"
#include "common/log.h"
#include "common/runtime_dir.h"
#include "common/server.h"
#include "gateway/gateway.h"
#include "gateway/tls_policy.h"

DEFINE_string(listen, "0.0.0.0:8080",
              "TCP address for external clients (host:port; port 0 picks a "
              "free port, see --port_file)");
DEFINE_string(runtime_dir, "",
              "Directory of the local services' sockets (default: "
              "$PM_RUNTIME_DIR, else $XDG_RUNTIME_DIR/pm, else /tmp/pm-<uid>)");
DEFINE_string(ca_file, "", "CA bundle (PEM) that client certificates must chain to");
DEFINE_string(cert_file, "", "Server certificate chain (PEM)");
DEFINE_string(key_file, "", "Server private key (PEM)");
DEFINE_uint32(cert_refresh_interval_s, 10,
              "How often the CA, certificate and key files are re-read; "
              "replace them atomically (rename)");
DEFINE_string(users_file, "",
              "Users and password hashes (written by pm_users); re-read when "
              "it changes");
DEFINE_string(port_file, "",
              "If set, the bound TCP port is written here once listening");
DEFINE_int32(max_threads, 64, "Cap on threads serving synchronous calls");

int main(int argc, char** argv) {
  pm::BlockTerminationSignals();
  pm::KeepGrpcInitialized();
  gflags::SetUsageMessage(
      "pm gateway: pm.v1.ProcessManager for external clients over mutual TLS "
      "with basic auth");
  gflags::ParseCommandLineFlags(&argc, &argv, true);
  pm::SetLogTag("gateway");
  pm::LogFileLimitRaise(pm::RaiseFileLimit());  // a client connection is an fd

  // Before any credentials exist: gRPC reads the cipher list only once.
  if (absl::Status policy = pm::gateway::ApplyTlsPolicy(); !policy.ok()) {
    PM_LOG(ERROR) << "refusing to start: TLS policy: " << policy;
    return 1;
  }
  pm::gateway::GatewayOptions options;
  options.listen = FLAGS_listen;
  options.tls = {FLAGS_ca_file, FLAGS_cert_file, FLAGS_key_file,
                 FLAGS_cert_refresh_interval_s};
  options.users_file = FLAGS_users_file;
  options.runtime_dir =
      FLAGS_runtime_dir.empty() ? pm::DefaultRuntimeDir() : FLAGS_runtime_dir;
  options.port_file = FLAGS_port_file;
  options.max_threads = FLAGS_max_threads;
  absl::StatusOr<std::unique_ptr<pm::gateway::Gateway>> gateway =
      pm::gateway::Gateway::Start(std::move(options));
  if (!gateway.ok()) {
    PM_LOG(ERROR) << "cannot start: " << gateway.status();
    return 1;
  }
  PM_LOG(INFO) << "serving on " << FLAGS_listen << " (port " << (*gateway)->port()
               << ", mutual TLS + basic auth) and unix:"
               << (*gateway)->socket_path() << " (pid " << getpid() << ")";
  int sig = pm::WaitForTerminationSignal();
  PM_LOG(INFO) << "got " << strsignal(sig) << ", shutting down";
  (*gateway)->Shutdown();
  PM_LOG(INFO) << "stopped";
  return 0;
}
