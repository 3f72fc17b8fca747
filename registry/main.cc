// The registry service: the directory of process records, served on
// <runtime_dir>/registry.sock until SIGTERM or SIGINT, kept in
// <state_dir>/registry.sqlite across restarts; with --etcd, a member of a
// cluster of pm hosts (registry/cluster.h).
//
//   registry --runtime_dir=/run/user/1000/pm --state_dir=~/.local/state/pm
//   registry ... --etcd=10.0.0.1:2379,10.0.0.2:2379 --node=b
//   registry ... --etcd=... --node=b --etcd_ca_file=etcd-ca.pem
//       --etcd_cert_file=etcd-client.pem --etcd_key_file=etcd-client.key
#include <unistd.h>

#include <cstdint>
#include <fstream>

#include <gflags/gflags.h>

#include "common/file_limit.h"
#include "common/flag_groups.h"
#include "common/log.h"
#include "common/log_flags.h"
#include "common/memory_trimmer.h"
#include "common/metrics_flags.h"
#include "common/names.h"
#include "common/runtime_dir.h"
#include "common/server.h"
#include "common/state_dir.h"
#include "common/version.h"
#include "registry/cluster.h"
#include "registry/etcd_tls.h"
#include "registry/metrics.h"
#include "registry/registry.h"
#include "registry/registry_service.h"
#include "registry/sqlite_record_store.h"

DEFINE_string(runtime_dir, pm::DefaultRuntimeDir(),
              "Directory of the services' unix sockets.");
DEFINE_string(state_dir, "",
              "Directory of what pm keeps across restarts; the records are "
              "in registry.sqlite there (default: $PM_STATE_DIR, else "
              "/var/lib/pm for root, else $XDG_STATE_HOME/pm, else "
              "~/.local/state/pm)");
DEFINE_int64(max_ended_records, 10000,
             "How many ended process records to keep; past it, the record "
             "that ended first is dropped (asking for one of the last 65536 "
             "dropped says so and names this cap). Running ones are always "
             "kept.");
DEFINE_int64(max_events, 10000,
             "how many events (Watch) are kept, in memory and in the "
             "database; a watcher further behind is told how many it missed");
DEFINE_string(etcd, "",
              "etcd's client endpoints (host:port, separated by commas): this "
              "registry joins the cluster of pm hosts that share it (README, "
              "\"Running on several hosts\"). Empty: a single host.");
DEFINE_string(etcd_prefix, "/pm/default/",
              "the cluster's keys in etcd start with it (\"/pm/<cluster>/\")");
DEFINE_string(node, "",
              "this host's name in the cluster (1 to 64 of [A-Za-z0-9_.-]); "
              "needs --etcd");
DEFINE_string(gateway_address, "",
              "where this host's gateway is reached by the other hosts' "
              "gateways (host:port), published in etcd with the node; empty: "
              "calls on this host's processes are not forwarded here");
DEFINE_string(etcd_ca_file, "",
              "TLS to etcd (an etcd run with --client-cert-auth, as Kubernetes "
              "runs it): the CA (PEM) that signed every etcd member's "
              "certificate. Give --etcd_cert_file and --etcd_key_file with it; "
              "none of the three: etcd is reached in plaintext. Needs --etcd");
DEFINE_string(etcd_cert_file, "",
              "TLS to etcd: this registry's client certificate (PEM), signed by "
              "a CA etcd trusts for clients (its --trusted-ca-file): etcd's own, "
              "never the CA of the gateway's users (certs/make_pki.sh: "
              "etcd-client.pem)");
DEFINE_string(etcd_key_file, "", "TLS to etcd: the key (PEM) of --etcd_cert_file");
DEFINE_string(etcd_server_name, "",
              "TLS to etcd: the name every etcd member's certificate must carry "
              "(a DNS name of its subjectAltName). One name for all members, "
              "not each one's address: --etcd's addresses make one gRPC target, "
              "which has no host name to check. Empty: \"etcd\" (as "
              "certs/make_pki.sh's etcd-server.pem)");
DEFINE_int64(etcd_lease_seconds, 10,
             "a host whose registry stops renewing its lease in etcd (killed, "
             "cut off) is reported unreachable by the others this long after "
             "(at least 2)");

namespace {

// What tells this stack from another one claiming the same node name: the
// machine and the state dir. The same stack restarting takes its node back
// at once; another one waits for the old lease to expire.
std::string InstanceOf(const std::string& state_dir) {
  std::string machine;
  std::ifstream("/etc/machine-id") >> machine;
  if (machine.empty()) {
    char host[256] = {};
    gethostname(host, sizeof(host) - 1);
    machine = host;
  }
  return machine + ":" + state_dir;
}

}  // namespace

int main(int argc, char** argv) {
  // Before any thread exists, so every thread inherits the mask and only
  // ServeUntilSignal takes SIGTERM/SIGINT.
  pm::BlockTerminationSignals();
  pm::SetLogTag("registry");
  gflags::SetUsageMessage("pm registry: the directory of process records");
  gflags::SetVersionString(pm::VersionLine());
  gflags::ParseCommandLineFlags(&argc, &argv, true);
  if (!pm::ApplyLogFlags()) return 2;
  // Memory a burst of calls left free goes back to the OS.
  std::unique_ptr<pm::MemoryTrimmer> trimmer = pm::MemoryTrimmer::Start();
  pm::LogFileLimitRaise(pm::RaiseFileLimit());  // a connection is an fd
  if (FLAGS_max_ended_records < 0) {
    PM_LOG(ERROR) << "--max_ended_records must be >= 0, got "
                  << FLAGS_max_ended_records;
    return 2;
  }

  pm::registry::RegistryOptions options;
  options.max_ended_records = static_cast<size_t>(FLAGS_max_ended_records);
  if (FLAGS_max_events < 1) {
    PM_LOG(ERROR) << "--max_events must be >= 1, got " << FLAGS_max_events;
    return 2;
  }
  options.max_events = static_cast<size_t>(FLAGS_max_events);
  if (FLAGS_etcd.empty() && !FLAGS_node.empty()) {
    PM_LOG(ERROR) << "--node=" << FLAGS_node
                  << " needs a cluster: give --etcd=ENDPOINTS too";
    return 2;
  }
  const pm::FlagValue etcd_tls_flags[] = {{"--etcd_ca_file", FLAGS_etcd_ca_file},
                                          {"--etcd_cert_file", FLAGS_etcd_cert_file},
                                          {"--etcd_key_file", FLAGS_etcd_key_file},
                                          {"--etcd_server_name", FLAGS_etcd_server_name}};
  for (const pm::FlagValue& given : etcd_tls_flags) {
    if (FLAGS_etcd.empty() && !given.value.empty()) {
      PM_LOG(ERROR) << given.flag << "=" << given.value
                    << " needs a cluster: give --etcd=ENDPOINTS too";
      return 2;
    }
  }
  absl::StatusOr<pm::registry::EtcdTls> etcd_tls =
      pm::registry::EtcdTlsFromFlags(FLAGS_etcd_ca_file, FLAGS_etcd_cert_file,
                                     FLAGS_etcd_key_file, FLAGS_etcd_server_name);
  if (!etcd_tls.ok()) {
    PM_LOG(ERROR) << etcd_tls.status().message();
    return 2;
  }
  if (!FLAGS_etcd.empty()) {
    if (absl::Status valid = pm::ValidateNodeName(FLAGS_node); !valid.ok()) {
      PM_LOG(ERROR) << "--node (with --etcd): " << valid.message();
      return 2;
    }
    options.node = FLAGS_node;
  }
  const std::string state_dir = pm::StateDirFlagOrDefault(FLAGS_state_dir);
  if (absl::Status made = pm::EnsureStateDir(state_dir); !made.ok()) {
    PM_LOG(ERROR) << "--state_dir: " << made;
    return 1;
  }
  absl::StatusOr<std::unique_ptr<pm::registry::SqliteRecordStore>> store =
      pm::registry::SqliteRecordStore::Open(state_dir + "/registry.sqlite");
  if (!store.ok()) {
    PM_LOG(ERROR) << "cannot open the records: " << store.status();
    return 1;
  }
  absl::StatusOr<std::unique_ptr<pm::registry::Registry>> registry =
      pm::registry::Registry::Open(options, *std::move(store));
  if (!registry.ok()) {
    PM_LOG(ERROR) << "cannot load the records: " << registry.status();
    return 1;
  }
  PM_LOG(INFO) << "records in " << state_dir << "/registry.sqlite: "
               << (*registry)->size() << " loaded";
  if (!FLAGS_etcd.empty()) {
    pm::registry::Cluster::Options cluster_options;
    cluster_options.endpoints = FLAGS_etcd;
    cluster_options.tls = *etcd_tls;
    cluster_options.prefix = FLAGS_etcd_prefix;
    cluster_options.node = FLAGS_node;
    cluster_options.instance = InstanceOf(state_dir);
    cluster_options.gateway = FLAGS_gateway_address;
    cluster_options.lease_ttl = absl::Seconds(FLAGS_etcd_lease_seconds);
    // What changed on the other hosts while this registry was down is told.
    cluster_options.told_before = (*registry)->ToldOfOtherHosts();
    pm::registry::Registry* records = registry->get();
    absl::StatusOr<std::unique_ptr<pm::registry::Cluster>> cluster =
        pm::registry::Cluster::Start(cluster_options, [records] { return records->Snapshot(); });
    if (!cluster.ok()) {
      PM_LOG(ERROR) << "cannot join the cluster: " << cluster.status();
      return 2;
    }
    (*registry)->AttachCluster(*std::move(cluster));
    PM_LOG(INFO) << "node \"" << FLAGS_node << "\" of the cluster in etcd at "
                 << FLAGS_etcd << " " << etcd_tls->Describe() << " under "
                 << FLAGS_etcd_prefix
                 // Answers about a refused handshake name the flags, not
                 // the files: the files are said here, in this host's log.
                 << (etcd_tls->enabled()
                         ? absl::StrCat(" (--etcd_ca_file=", etcd_tls->ca_file,
                                        " --etcd_cert_file=", etcd_tls->cert_file, ")")
                         : std::string());
  }
  pm::registry::ExportMetrics(**registry, pm::metrics::Global());
  std::unique_ptr<pm::MetricsHttpServer> metrics;
  if (!pm::ServeMetricsIfAsked(metrics)) return 1;
  pm::registry::RegistryService service(registry->get());
  return pm::ServeUntilSignal(pm::Service::kRegistry, FLAGS_runtime_dir,
                              {&service}, [&] { service.Shutdown(); });
}
