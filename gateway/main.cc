// pm gateway: the door for external gRPC clients (mutual TLS + basic auth).
// See gateway.h; flags below.
#include <unistd.h>

#include <gflags/gflags.h>

#include "absl/strings/str_cat.h"

#include "common/file_limit.h"
#include "common/log.h"
#include "common/names.h"
#include "common/log_flags.h"
#include "common/memory_trimmer.h"
#include "common/metrics_flags.h"
#include "common/runtime_dir.h"
#include "common/state_dir.h"
#include "common/server.h"
#include "common/version.h"
#include "gateway/forwarding.h"
#include "gateway/gateway.h"
#include "gateway/metrics.h"
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
DEFINE_string(audit_log, "",
              "The audit log: a JSON line per call and per refused "
              "authentication (default: gateway-audit.jsonl in the state dir)");
DEFINE_string(state_dir, "",
              "Directory of what pm keeps across restarts: the audit log's "
              "default home (default: $PM_STATE_DIR, else /var/lib/pm for "
              "root, else $XDG_STATE_HOME/pm, else ~/.local/state/pm)");
DEFINE_uint64(audit_log_max_bytes, 16 << 20,
              "Size at which the audit log is rotated (3 old files are kept)");
DEFINE_int64(max_streams_per_user, 256,
             "StreamOutput and Wait calls one user may have open at once "
             "(0: no cap)");
DEFINE_int64(max_calls_per_user, 1000,
             "Start, Stop, GetStatus and List calls one user may have in "
             "flight at once (0: no cap)");
DEFINE_double(max_starts_per_second_per_user, 50,
              "Starts per second one user may make, on average (0: no cap)");
DEFINE_double(start_burst_per_user, 100,
              "Starts one user may make at once before the rate applies");
DEFINE_int32(max_concurrent_streams_per_connection, 1000,
             "HTTP/2 streams (calls) open at once on one connection");
DEFINE_int32(max_message_bytes, 4 << 20, "Largest request message");
DEFINE_int32(keepalive_time_ms, 60000,
             "Ping a silent connection after this long; drop it when the "
             "ping is not answered in --keepalive_timeout_ms");
DEFINE_int32(keepalive_timeout_ms, 20000, "See --keepalive_time_ms");
DEFINE_int32(max_connection_idle_ms, 30 * 60 * 1000,
             "Close a connection with no call for this long");

DEFINE_string(node, "",
              "This host's name in its cluster (the stack's --node): calls on "
              "other hosts' processes are forwarded to their gateways, and a "
              "Start goes to the host it names or the least busy one. Empty: "
              "a single host.");
DEFINE_string(peer_cert_file, "",
              "In a cluster: the client certificate (PEM, from the CA of "
              "--peer_ca_file) this gateway presents to the other hosts' gateways");
DEFINE_string(peer_key_file, "", "The key of --peer_cert_file");
DEFINE_string(peer_ca_file, "",
              "In a cluster: the CA (PEM) of the gateways' certificates alone, "
              "not the users' (--ca_file). --peer_cert_file must come from it; "
              "a call marked forwarded is accepted only with a certificate from "
              "it, and any other call only with one from --ca_file. Empty: "
              "gateways and users are told apart by --peer_unit alone (warned)");
DEFINE_string(peer_unit, pm::gateway::kDefaultPeerUnit,
              "In a cluster: the organizational unit (OU) of the peer "
              "certificates. --peer_cert_file must have it, and a call marked "
              "forwarded by another host is accepted only on a connection whose "
              "client certificate has it (users' certificates must not)");

int main(int argc, char** argv) {
  pm::BlockTerminationSignals();
  pm::KeepGrpcInitialized();
  gflags::SetUsageMessage(
      "pm gateway: pm.v1.ProcessManager for external clients over mutual TLS "
      "with basic auth");
  gflags::SetVersionString(pm::VersionLine());
  gflags::ParseCommandLineFlags(&argc, &argv, true);
  if (!pm::ApplyLogFlags()) return 2;
  // Memory a burst of calls left free goes back to the OS.
  std::unique_ptr<pm::MemoryTrimmer> trimmer = pm::MemoryTrimmer::Start();
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
  options.state_dir = pm::StateDirFlagOrDefault(FLAGS_state_dir);
  options.audit_log = FLAGS_audit_log;
  options.audit_log_max_bytes = FLAGS_audit_log_max_bytes;
  options.quotas.max_streams = FLAGS_max_streams_per_user;
  options.quotas.max_calls = FLAGS_max_calls_per_user;
  options.quotas.starts_per_second = FLAGS_max_starts_per_second_per_user;
  options.quotas.start_burst = FLAGS_start_burst_per_user;
  options.http2.max_concurrent_streams = FLAGS_max_concurrent_streams_per_connection;
  options.http2.max_receive_message_bytes = FLAGS_max_message_bytes;
  options.http2.keepalive_time_ms = FLAGS_keepalive_time_ms;
  options.http2.keepalive_timeout_ms = FLAGS_keepalive_timeout_ms;
  options.http2.max_connection_idle_ms = FLAGS_max_connection_idle_ms;
  if (!FLAGS_node.empty()) {
    if (absl::Status valid = pm::ValidateNodeName(FLAGS_node); !valid.ok()) {
      PM_LOG(ERROR) << "--node: " << valid.message();
      return 2;
    }
    options.node = FLAGS_node;
    options.peer_tls = {FLAGS_ca_file, FLAGS_peer_cert_file, FLAGS_peer_key_file};
    options.peer_unit = FLAGS_peer_unit;
    options.peer_ca_file = FLAGS_peer_ca_file;
  } else if (!FLAGS_peer_ca_file.empty()) {
    PM_LOG(ERROR) << "--peer_ca_file without --node: a single host has no peers";
    return 2;
  }
  absl::StatusOr<std::unique_ptr<pm::gateway::Gateway>> gateway =
      pm::gateway::Gateway::Start(std::move(options));
  if (!gateway.ok()) {
    PM_LOG(ERROR) << "cannot start: " << gateway.status();
    return 1;
  }
  pm::gateway::Metrics();  // every metric shown from the first scrape
  std::unique_ptr<pm::MetricsHttpServer> metrics;
  if (!pm::ServeMetricsIfAsked(metrics)) return 1;
  PM_LOG(INFO) << "audit log: " << (*gateway)->audit_log_path();
  PM_LOG(INFO) << "serving on " << FLAGS_listen << " (port " << (*gateway)->port()
               << ", mutual TLS + basic auth) and unix:"
               << (*gateway)->socket_path() << " (pid " << getpid() << ")";
  pm::NotifyReady(absl::StrCat("serving on ", FLAGS_listen, " (port ", (*gateway)->port(),
                                ") and unix:", (*gateway)->socket_path()));
  std::unique_ptr<pm::Watchdog> watchdog = pm::WatchdogOfHealthCheck((*gateway)->socket_path());
  int sig = pm::WaitForTerminationSignal();
  PM_LOG(INFO) << "got " << strsignal(sig) << ", shutting down";
  watchdog.reset();
  pm::NotifyStopping(absl::StrCat("got ", strsignal(sig), ", shutting down"));
  (*gateway)->Shutdown();
  PM_LOG(INFO) << "stopped";
  return 0;
}
