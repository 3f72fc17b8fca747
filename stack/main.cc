// The local stack launcher behind `make up` (bazel run //:stack): runs the
// registry, log_store, supervisor and gateway in the foreground until
// Ctrl+C, restarting a service that dies (with backoff) and reaping the
// orphans reparented to it. SIGHUP restarts every service on the binaries
// on disk; `stack --upgrade` (make upgrade) sends it to the running launcher
// through its pid file. On its first run it makes the dev PKI and the demo
// user in certs/dev/ (see stack/dev_certs.h). With --etcd (make up ETCD=...
// NODE=...) this host joins a cluster: the registry keeps its records in
// that etcd as node --node (default: the host name), and the supervisor
// runs that node's Starts only (stack/cluster.h).
#include <signal.h>
#include <stdio.h>
#include <unistd.h>

#include <gflags/gflags.h>

#include "absl/strings/str_cat.h"
#include "common/exit_status.h"
#include "common/file_limit.h"
#include "common/log.h"
#include "common/log_flags.h"
#include "common/runtime_dir.h"
#include "common/server.h"
#include "common/state_dir.h"
#include "common/version.h"
#include "stack/cluster.h"
#include "stack/dev_certs.h"
#include "stack/launcher_pid.h"
#include "stack/stack.h"

DEFINE_string(runtime_dir, "",
              "Directory of the services' unix sockets (default: "
              "$PM_RUNTIME_DIR, else $XDG_RUNTIME_DIR/pm, else /tmp/pm-<uid>)");

DEFINE_string(state_dir, "",
              "Directory of what pm keeps across restarts, passed to the "
              "services (default: $PM_STATE_DIR, else /var/lib/pm for root, "
              "else $XDG_STATE_HOME/pm, else ~/.local/state/pm)");

DEFINE_bool(gateway, true, "Also run the gateway (mutual TLS + basic auth)");
DEFINE_string(metrics_listen, "127.0.0.1:9464",
              "Serve every service's Prometheus metrics on this TCP address "
              "(GET /metrics; host:port, port 0 picks a free one); empty: off");
DEFINE_string(gateway_listen, "0.0.0.0:8080", "The gateway's TCP address");
DEFINE_string(gateway_advertise, "",
              "In a cluster (--etcd): where the other hosts' gateways reach "
              "this one (host:port); default: --gateway_listen, its wildcard "
              "host replaced by this host's name");
DEFINE_bool(restart, true,
            "Restart a service that dies (100 ms doubling to 10 s); "
            "--norestart: stop the whole stack instead");
DEFINE_bool(upgrade, false,
            "Do not run a stack: tell the launcher running on --runtime_dir "
            "to restart every service on the binaries on disk (SIGHUP)");
DEFINE_string(etcd, "",
              "Join a cluster of pm hosts on these etcd endpoints "
              "(host:port, comma separated), passed to the registry; empty: "
              "a single host, as before");
DEFINE_string(etcd_prefix, "",
              "With --etcd: the cluster's keys in etcd, /pm/<cluster>/ "
              "(default: the registry's, /pm/default/)");
DEFINE_string(node, "",
              "With --etcd: this host's name in the cluster, passed to the "
              "registry and the supervisor (default: the host name)");
DEFINE_int64(etcd_lease_seconds, 0,
             "With --etcd: a host whose registry stops renewing its lease in "
             "etcd is reported unreachable by the others this long after (at "
             "least 2), passed to the registry; 0: the registry's default (10)");
DEFINE_string(etcd_ca_file, "",
              "With --etcd: TLS to etcd (one run with --client-cert-auth), "
              "passed to the registry: the CA that signed every etcd member's "
              "certificate; with --etcd_cert_file and --etcd_key_file, all "
              "three or none (plaintext). certs/make_pki.sh makes a PKI of "
              "etcd's own: etcd-ca.pem, etcd-client.pem/.key");
DEFINE_string(etcd_cert_file, "",
              "With --etcd_ca_file: the registry's client certificate for etcd, "
              "signed by a CA etcd trusts (never the gateway's users' CA)");
DEFINE_string(etcd_key_file, "", "With --etcd_ca_file: the key of --etcd_cert_file");
DEFINE_string(etcd_server_name, "",
              "With --etcd_ca_file: the name every etcd member's certificate "
              "carries, checked by the registry for all of them (default: the "
              "registry's, etcd)");
DEFINE_string(certs_dir, "",
              "The dev PKI and users (default: certs/dev in the workspace); "
              "made on first run");

namespace {

// Relative paths are the user's: `bazel run` starts us in the runfiles.
// A file named on the command line, as the user meant it.
std::string UserPath(const std::string& path) {
  const char* cwd = getenv("BUILD_WORKING_DIRECTORY");
  if (path.empty() || path.front() == '/' || cwd == nullptr || *cwd == '\0') return path;
  return absl::StrCat(cwd, "/", path);
}

std::string DefaultCertsDir() {
  if (const char* workspace = getenv("BUILD_WORKSPACE_DIRECTORY");
      workspace != nullptr && *workspace) {
    return absl::StrCat(workspace, "/certs/dev");
  }
  return "certs/dev";
}

void PrintGatewayBanner(const pm::stack::Stack& stack,
                        const pm::stack::DevCredentials& dev) {
  std::string password = "(see " + dev.password_file + ")";
  if (FILE* f = fopen(dev.password_file.c_str(), "re")) {
    char line[256] = {};
    if (fgets(line, sizeof(line), f) != nullptr) {
      password = line;
      if (!password.empty() && password.back() == '\n') password.pop_back();
    }
    fclose(f);
  }
  const std::string port = absl::StrCat(stack.gateway_port());
  const std::string certs_flag =
      FLAGS_certs_dir.empty() ? "" : absl::StrCat(" --certs=", dev.dir);
  std::string text = absl::StrCat(
      "Gateway: ", FLAGS_gateway_listen, " (port ", port,
      "), mutual TLS + basic auth\n"
      "  user demo, password ", password, "  (in ", dev.password_file, ")\n"
      "  certificates in ", dev.dir, (dev.created ? " (made now)" : ""), "\n"
      "Call it from another terminal (in the repo):\n"
      "  id=$(bazel run //gateway/examples:pm_remote -- --target=localhost:",
      port, certs_flag, " start -- sh -c 'echo hello; sleep 2; echo bye')\n"
      "  bazel run //gateway/examples:pm_remote -- --target=localhost:", port,
      certs_flag, " logs -f $id\n"
      "  bazel run //gateway/examples:pm_remote -- --target=localhost:", port,
      certs_flag, " list\n"
      "  echo | openssl s_client -connect localhost:", port, " -alpn h2 -CAfile ",
      dev.File("ca.pem"), " -cert ", dev.File("client.pem"), " -key ",
      dev.File("client.key"), " 2>/dev/null | grep -E '^(New|Verify)'\n\n");
  fputs(text.c_str(), stdout);
  fflush(stdout);
}

void PrintBanner(const pm::stack::Stack& stack,
                 const absl::optional<pm::stack::ClusterOptions>& cluster) {
  std::string text =
      absl::StrCat("\npm stack is up (runtime dir ", stack.runtime_dir(),
                   ", state dir ", stack.state_dir(), ")\n");
  if (cluster.has_value()) {
    absl::StrAppend(&text, "Cluster: this host is node ", cluster->node,
                    ", on etcd ", cluster->etcd,
                    cluster->etcd_ca_file.empty() ? " (plaintext)" : " (TLS)",
                    cluster->etcd_prefix.empty() ? "" : " under ",
                    cluster->etcd_prefix, "\n");
  }
  for (const auto& service : stack.services()) {
    absl::StrAppend(&text, "  ", service.name,
                    std::string(12 - service.name.size(), ' '), "pid ",
                    service.pid, "  unix:", service.socket, "\n");
  }
  if (stack.metrics_port() != 0) {
    const std::string host = FLAGS_metrics_listen.substr(0, FLAGS_metrics_listen.rfind(':'));
    absl::StrAppend(&text, "Metrics (Prometheus): http://", host, ":", stack.metrics_port(),
                    "/metrics\n");
  }
  absl::StrAppend(
      &text,
      "Use it from another terminal (in the repo):\n"
      "  id=$(bazel run //cli:pm -- start -- sh -c 'for i in 1 2 3; do echo "
      "tick $i; sleep 1; done')\n"
      "  bazel run //cli:pm -- logs -f $id\n"
      "  bazel run //cli:pm -- status $id\n"
      "  bazel run //cli:pm -- list\n"
      "A service that dies is restarted; make upgrade restarts them all on "
      "new binaries.\n"
      "Ctrl+C stops everything.\n\n");
  fputs(text.c_str(), stdout);
  fflush(stdout);
}

int SignalUpgrade(const std::string& runtime_dir) {
  absl::Status sent = pm::stack::SignalLauncher(runtime_dir, SIGHUP);
  if (!sent.ok()) {
    fprintf(stderr, "pm: cannot ask for an upgrade: %s\n",
            std::string(sent.message()).c_str());
    return 1;
  }
  fprintf(stderr,
          "pm: asked the launcher on %s to restart every service on the new "
          "binaries (its log says how it goes)\n",
          runtime_dir.c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  // Blocked before any thread exists: the launcher reads them from a
  // signalfd (stop in order, upgrade, reap).
  pm::BlockTerminationSignals({SIGHUP, SIGCHLD});
  gflags::SetUsageMessage(
      "pm stack: runs registry, log_store, supervisor and gateway");
  gflags::SetVersionString(pm::VersionLine());
  gflags::ParseCommandLineFlags(&argc, &argv, true);
  if (!pm::ApplyLogFlags()) return 2;
  pm::SetLogTag("stack");
  pm::stack::ClusterFlags cluster_flags;
  cluster_flags.etcd = FLAGS_etcd;
  cluster_flags.etcd_prefix = FLAGS_etcd_prefix;
  cluster_flags.node = FLAGS_node;
  cluster_flags.etcd_lease_seconds = FLAGS_etcd_lease_seconds;
  cluster_flags.etcd_ca_file = UserPath(FLAGS_etcd_ca_file);
  cluster_flags.etcd_cert_file = UserPath(FLAGS_etcd_cert_file);
  cluster_flags.etcd_key_file = UserPath(FLAGS_etcd_key_file);
  cluster_flags.etcd_server_name = FLAGS_etcd_server_name;
  absl::StatusOr<absl::optional<pm::stack::ClusterOptions>> cluster =
      pm::stack::ClusterFromFlags(cluster_flags, pm::stack::HostName());
  if (!cluster.ok()) {
    fprintf(stderr, "pm: %s\n", std::string(cluster.status().message()).c_str());
    return 2;
  }
  const std::string runtime_dir =
      FLAGS_runtime_dir.empty() ? pm::DefaultRuntimeDir() : FLAGS_runtime_dir;
  if (FLAGS_upgrade) return SignalUpgrade(runtime_dir);
  // Before anything starts: a second stack on the same sockets would only
  // crash-loop its services against the first one's.
  absl::StatusOr<pm::Fd> lock = pm::stack::LockRuntimeDir(runtime_dir);
  if (!lock.ok()) {
    fprintf(stderr, "pm: %s\n", std::string(lock.status().message()).c_str());
    return 1;
  }
  const absl::StatusOr<rlimit> file_limit = pm::RaiseFileLimit();
  pm::LogFileLimitRaise(file_limit);

  pm::stack::StackOptions options;
  options.cluster = *cluster;
  // The services start with the limit we had, as from a shell.
  if (file_limit.ok()) options.service_file_limit = *file_limit;
  options.runtime_dir = runtime_dir;
  options.state_dir = pm::StateDirFlagOrDefault(FLAGS_state_dir);
  options.on_death = FLAGS_restart ? pm::stack::OnServiceDeath::kRestart
                                   : pm::stack::OnServiceDeath::kStopAll;
  options.subreaper = true;
  options.metrics_listen = FLAGS_metrics_listen;
  pm::stack::DevCredentials dev;
  if (FLAGS_gateway) {
    absl::StatusOr<std::string> root = pm::stack::FindBinaryRoot();
    absl::StatusOr<pm::stack::DevCredentials> made =
        root.ok() ? pm::stack::EnsureDevCredentials(
                        FLAGS_certs_dir.empty() ? DefaultCertsDir() : FLAGS_certs_dir,
                        *root + "/certs/make_pki.sh")
                  : root.status();
    if (!made.ok()) {
      fprintf(stderr, "pm: cannot make the dev certificates: %s\n",
              std::string(made.status().message()).c_str());
      return 1;
    }
    dev = *std::move(made);
    options.gateway = dev.GatewayFlags(FLAGS_gateway_listen);
    if (options.cluster.has_value()) {
      absl::StatusOr<std::string> host = pm::stack::HostName();
      options.cluster->gateway_address = pm::stack::GatewayAddress(
          FLAGS_gateway_listen, FLAGS_gateway_advertise, host.ok() ? *host : "localhost");
    }
  }
  absl::StatusOr<std::unique_ptr<pm::stack::Stack>> stack =
      pm::stack::Stack::Start(options);
  if (!stack.ok()) {
    fprintf(stderr, "pm: cannot start the stack: %s\n",
            std::string(stack.status().message()).c_str());
    return 1;
  }
  if (absl::Status written = pm::stack::WriteLauncherPidFile(options.runtime_dir);
      !written.ok()) {
    // Only `make upgrade` needs it; the stack runs on.
    fprintf(stderr, "pm: %s (make upgrade will not find this launcher)\n",
            std::string(written.message()).c_str());
  }
  PrintBanner(**stack, options.cluster);
  if (FLAGS_gateway) PrintGatewayBanner(**stack, dev);

  absl::StatusOr<pm::stack::Stack::Event> event = (*stack)->Run();
  pm::stack::RemoveLauncherPidFile(options.runtime_dir);
  int code = 0;
  if (!event.ok()) {
    fprintf(stderr, "pm: %s\n", std::string(event.status().message()).c_str());
    code = 1;
  } else if (event->signal != 0) {
    fprintf(stderr, "\npm: got %s, stopping gateway, supervisor, log_store, registry\n",
            strsignal(event->signal));
  } else {
    fprintf(stderr, "pm: %s %s unexpectedly; stopping the rest\n",
            event->service.c_str(), event->exit->ToString().c_str());
    code = 1;
  }
  absl::Status stopped = (*stack)->StopAll();
  if (!stopped.ok()) {
    fprintf(stderr, "pm: %s\n", std::string(stopped.message()).c_str());
    code = 1;
  } else {
    fprintf(stderr, "pm: stack stopped\n");
  }
  return code;
}
