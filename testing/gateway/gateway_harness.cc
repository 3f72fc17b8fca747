// gateway_harness: runs one outside client against a private pm stack with
// its gateway, as a test.
//
//   gateway_harness [--server_key=ec|rsa] -- /usr/bin/python3 client_test.py
//   gateway_harness --cluster -- /usr/bin/python3 client_test.py
//
// Makes a fresh PKI (certs/make_pki.sh) and a demo user with a random
// password in a temp dir, starts the real stack (registry, log_store,
// supervisor, gateway on 127.0.0.1 with a free port) and runs the command
// with the gateway's coordinates in its environment:
//
//   PM_GATEWAY_TARGET  localhost:PORT      PM_GATEWAY_PORT  PORT
//   PM_CERTS           the PKI dir (ca.pem, client.pem/.key, untrusted-*)
//   PM_USER, PM_PASSWORD_FILE              (the password is never in argv)
//   PM_STACK_LOG       the services' combined log, to look into
//   PM_PROTO_DIR       the .proto files;   PYTHONPATH  the generated stubs
//   PM_USERS           demo and the --extra_users, space-separated
//   PM_SERVICE_PIDS    "name=pid" of each service, space-separated
//   PM_METRICS_PORT    the launcher's /metrics on 127.0.0.1 (every service's)
//
// With --cluster, two such stacks, hosts "a" and "b" (issue 17; README,
// "Running on several hosts"), share one etcd (Debian's etcd-server, on
// free loopback ports), the PKI and the users file; the client gets host
// a's gateway (and a's services' pids and metrics) and, besides,
//
//   PM_START_NODE      b: the host its Starts name, so that every call on
//                      those processes is forwarded by a's gateway to b's
//
// The command runs once each host's registry lists the other host with its
// gateway (a Start naming either host is placed there).
//
// The services' log goes to a file (copied to stderr at the end). The run
// fails when the client fails, or when the password shows up in that log or
// in any process's command line.
#include <dirent.h>
#include <fcntl.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include <gflags/gflags.h>
#include <grpcpp/grpcpp.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/exit_status.h"
#include "common/loopback_ports_test_util.h"
#include "common/runtime_dir.h"
#include "common/server.h"
#include "common/status.h"
#include "common/status_core.h"
#include "gateway/users.h"
#include "pm/internal/v1/internal.grpc.pb.h"
#include "stack/stack.h"
#include "third_party/etcd/etcd_test_server.h"

DEFINE_string(server_key, "ec",
              "The gateway's key type: ec (ECDSA P-256) or rsa (RSA 2048)");
DEFINE_int32(extra_users, 0,
             "Users load1..loadN besides demo, with demo's password (for "
             "load tests: PM_USERS lists them all)");
DEFINE_string(gateway_flags, "",
              "Extra flags for the gateway, comma-separated");
DEFINE_bool(cluster, false,
            "Two hosts, a and b, on one etcd: the client calls a's gateway "
            "and starts its processes on b (PM_START_NODE)");

extern char** environ;

namespace {

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

int Fail(const std::string& message) {
  fprintf(stderr, "gateway_harness: %s\n", message.c_str());
  return 1;
}

// Runs `argv` with `env` added, waits, returns its exit status.
absl::StatusOr<pm::ExitStatus> Run(std::vector<std::string> argv,
                                   const std::vector<std::string>& env) {
  std::vector<std::string> environment;
  for (char** e = environ; *e != nullptr; ++e) environment.push_back(*e);
  for (const std::string& e : env) environment.push_back(e);
  std::vector<char*> args, envp;
  for (std::string& a : argv) args.push_back(a.data());
  args.push_back(nullptr);
  for (std::string& e : environment) envp.push_back(e.data());
  envp.push_back(nullptr);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t empty;
  sigemptyset(&empty);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK);
  posix_spawnattr_setsigmask(&attr, &empty);
  pid_t pid = -1;
  int err = posix_spawnp(&pid, args[0], nullptr, &attr, args.data(), envp.data());
  posix_spawnattr_destroy(&attr);
  if (err != 0) return pm::ErrnoError("posix_spawn", argv[0], err);
  siginfo_t info = {};
  while (waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED) != 0) {
    if (errno != EINTR) return pm::ErrnoError("waitid", argv[0]);
  }
  return pm::ExitStatus::FromSiginfo(info);
}

// Processes whose command line holds `secret`.
std::vector<std::string> CommandLinesWith(const std::string& secret) {
  std::vector<std::string> found;
  DIR* proc = opendir("/proc");
  if (proc == nullptr) return found;
  while (struct dirent* entry = readdir(proc)) {
    if (entry->d_name[0] < '0' || entry->d_name[0] > '9') continue;
    std::string cmdline =
        ReadFile(absl::StrCat("/proc/", entry->d_name, "/cmdline"));
    if (cmdline.find(secret) != std::string::npos) {
      found.push_back(absl::StrCat(entry->d_name, ": ",
                                   absl::StrReplaceAll(cmdline, {{std::string(1, '\0'), " "}})));
    }
  }
  closedir(proc);
  return found;
}

// What the hosts of a run share: the binaries, the PKI and the users.
struct Shared {
  std::string root;  // pm::stack::FindBinaryRoot()
  std::string pki;
  std::string users_file;
};

// One host's stack on <dir>/run and <dir>/state, with its gateway on
// `listen` (the key of --server_key, the shared users) and --gateway_flags.
pm::stack::StackOptions HostOptions(const Shared& shared, const std::string& dir,
                                    const std::string& listen) {
  pm::stack::StackOptions options;
  options.runtime_dir = dir + "/run";
  options.state_dir = dir + "/state";
  options.binary_root = shared.root;
  options.metrics_listen = "127.0.0.1:0";  // the whole stack's /metrics
  const std::string key = FLAGS_server_key == "rsa" ? "server-rsa" : "server";
  pm::stack::GatewayOptions gateway;
  gateway.listen = listen;
  gateway.ca_file = shared.pki + "/ca.pem";
  gateway.cert_file = shared.pki + "/" + key + ".pem";
  gateway.key_file = shared.pki + "/" + key + ".key";
  gateway.users_file = shared.users_file;
  options.gateway = gateway;
  if (!FLAGS_gateway_flags.empty()) {
    options.extra_args["gateway"] = absl::StrSplit(FLAGS_gateway_flags, ',');
  }
  return options;
}

// The hosts of a run, the client's first; etcd with --cluster.
struct Hosts {
  std::unique_ptr<pm::EtcdServer> etcd;
  std::vector<std::unique_ptr<pm::stack::Stack>> stacks;
  // The node the client's Starts name ("" for a single host).
  std::string start_node;

  // The stacks in reverse start order, then etcd (which waits for its
  // clients' streams to end). The first error.
  absl::Status Stop() {
    absl::Status first;
    for (auto it = stacks.rbegin(); it != stacks.rend(); ++it) {
      first.Update((*it)->StopAll());
    }
    stacks.clear();
    if (etcd != nullptr) first.Update(etcd->Stop().status());
    return first;
  }
};

// Waits until the registry of host `node` lists every host of `nodes` up,
// the others with a gateway to forward to, as a Start placed there needs.
// Polled like a health check; the minute is a safety net, not a claim
// about speed.
absl::Status WaitForHosts(const pm::stack::Stack& stack, const std::string& node,
                          const std::vector<std::string>& nodes) {
  std::unique_ptr<pm::internal::v1::Registry::Stub> registry =
      pm::internal::v1::Registry::NewStub(grpc::CreateChannel(
          pm::UnixAddress(pm::SocketPath(stack.runtime_dir(), pm::Service::kRegistry)),
          grpc::InsecureChannelCredentials()));
  auto all_up = [&](const pm::internal::v1::ListNodesResponse& listed) {
    return std::all_of(nodes.begin(), nodes.end(), [&](const std::string& wanted) {
      return std::any_of(listed.nodes().begin(), listed.nodes().end(),
                         [&](const pm::internal::v1::ClusterNode& up) {
                           return up.node() == wanted &&
                                  (wanted == node || !up.gateway().empty());
                         });
    });
  };
  const absl::Time deadline = absl::Now() + absl::Seconds(60);
  std::string last = "no answer";
  while (absl::Now() < deadline) {
    grpc::ClientContext context;
    context.set_wait_for_ready(true);
    context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(1)));
    pm::internal::v1::ListNodesResponse listed;
    const grpc::Status rpc =
        registry->ListNodes(&context, pm::internal::v1::ListNodesRequest(), &listed);
    if (rpc.ok() && all_up(listed)) return absl::OkStatus();
    last = rpc.ok() ? absl::StrCat("it lists ", listed.ShortDebugString())
                    : rpc.error_message();
  }
  return absl::DeadlineExceededError(absl::StrCat(
      "host ", node, " did not see every host of ", absl::StrJoin(nodes, ", "),
      " up with a gateway within a minute: ", last));
}

// One host: its stack on `dir`, its gateway on a free port.
absl::Status StartSingleHost(const Shared& shared, const std::string& dir, Hosts& hosts) {
  PM_ASSIGN_OR_RETURN(std::unique_ptr<pm::stack::Stack> stack,
                      pm::stack::Stack::Start(HostOptions(shared, dir, "127.0.0.1:0")));
  hosts.stacks.push_back(std::move(stack));
  return absl::OkStatus();
}

// Hosts a and b on one etcd, each on <dir>/<node>, as `make up ETCD=...
// NODE=...` runs them: the gateway's address is published to the cluster
// by the registry, which starts first (so its port is picked before it
// listens), and it presents the client certificate to the other host's
// gateway. The client's Starts go to b.
absl::Status StartCluster(const Shared& shared, const std::string& dir, Hosts& hosts) {
  std::filesystem::create_directories(dir + "/etcd");
  PM_ASSIGN_OR_RETURN(hosts.etcd, pm::EtcdServer::Start(dir + "/etcd"));
  const std::vector<std::string> nodes = {"a", "b"};
  PM_ASSIGN_OR_RETURN(std::vector<int> ports, pm::FreeLoopbackPorts(nodes.size()));
  for (size_t i = 0; i < nodes.size(); ++i) {
    const std::string address = absl::StrCat("127.0.0.1:", ports[i]);
    pm::stack::StackOptions options = HostOptions(shared, dir + "/" + nodes[i], address);
    pm::stack::ClusterOptions cluster;
    cluster.etcd = hosts.etcd->endpoint();
    cluster.etcd_prefix = "/pm/harness/";
    cluster.node = nodes[i];
    cluster.gateway_address = address;
    options.cluster = cluster;
    options.gateway->peer_cert_file = shared.pki + "/peer.pem";
    options.gateway->peer_key_file = shared.pki + "/peer.key";
    options.gateway->peer_ca_file = shared.pki + "/peer-ca.pem";
    absl::StatusOr<std::unique_ptr<pm::stack::Stack>> stack =
        pm::stack::Stack::Start(options);
    if (!stack.ok()) return pm::Annotate(stack.status(), "host " + nodes[i]);
    hosts.stacks.push_back(*std::move(stack));
  }
  for (size_t i = 0; i < nodes.size(); ++i) {
    PM_RETURN_IF_ERROR(WaitForHosts(*hosts.stacks[i], nodes[i], nodes));
  }
  hosts.start_node = "b";
  return absl::OkStatus();
}

}  // namespace

int main(int argc, char** argv) {
  pm::BlockTerminationSignals();
  gflags::ParseCommandLineFlags(&argc, &argv, true);
  std::vector<std::string> command(argv + 1, argv + argc);
  if (!command.empty() && command[0] == "--") command.erase(command.begin());
  if (command.empty()) return Fail("usage: gateway_harness -- COMMAND...");
  if (FLAGS_server_key != "ec" && FLAGS_server_key != "rsa") {
    return Fail("--server_key must be ec or rsa");
  }

  // Under /tmp, not $TEST_TMPDIR: unix socket paths must fit in 108 bytes.
  char tmpl[] = "/tmp/pm_gwh.XXXXXX";
  if (mkdtemp(tmpl) == nullptr) return Fail("mkdtemp failed");
  const std::string dir = tmpl;
  const std::string pki = dir + "/pki";
  absl::StatusOr<std::string> root = pm::stack::FindBinaryRoot();
  if (!root.ok()) return Fail(std::string(root.status().message()));

  absl::StatusOr<pm::ExitStatus> made =
      Run({"/bin/bash", *root + "/certs/make_pki.sh", pki}, {});
  if (!made.ok() || !(*made == pm::ExitStatus::Exited(0))) {
    return Fail("certs/make_pki.sh failed");
  }
  // A password no test could guess or find by accident.
  std::random_device random;
  const std::string password = absl::StrCat("pw-", absl::Hex(random()),
                                            absl::Hex(random()), "-secret");
  const std::string password_file = dir + "/demo.password";
  {
    std::ofstream out(password_file);
    out << password << "\n";
  }
  chmod(password_file.c_str(), 0600);
  pm::gateway::UserTable users;
  users["demo"].hash = *pm::gateway::HashPassword(password, 10000);
  std::string user_names = "demo";
  for (int i = 1; i <= FLAGS_extra_users; ++i) {
    const std::string name = absl::StrCat("load", i);
    users[name] = users["demo"];
    absl::StrAppend(&user_names, " ", name);
  }
  if (!pm::gateway::WriteUsersFile(dir + "/users", users).ok()) {
    return Fail("cannot write the users file");
  }

  // The services inherit stderr: send it to a file, keep ours.
  const std::string log_path = dir + "/stack.log";
  const int saved_stderr = dup(STDERR_FILENO);
  const int log_fd = open(log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  dup2(log_fd, STDERR_FILENO);
  close(log_fd);

  const Shared shared{*root, pki, dir + "/users"};
  Hosts hosts;
  const absl::Status started =
      FLAGS_cluster ? StartCluster(shared, dir, hosts) : StartSingleHost(shared, dir, hosts);

  int code = 0;
  if (!started.ok()) {
    dprintf(saved_stderr, "gateway_harness: cannot start the stack: %s\n",
            std::string(started.message()).c_str());
    code = 1;
  } else {
    const pm::stack::Stack& stack = *hosts.stacks.front();
    const int port = stack.gateway_port();
    std::string pids;
    for (const pm::stack::ServiceProcess& service : stack.services()) {
      absl::StrAppend(&pids, pids.empty() ? "" : " ", service.name, "=", service.pid);
    }
    std::vector<std::string> env = {
        absl::StrCat("PM_GATEWAY_TARGET=localhost:", port),
        absl::StrCat("PM_GATEWAY_PORT=", port), "PM_CERTS=" + pki,
        "PM_USER=demo", "PM_PASSWORD_FILE=" + password_file,
        "PM_STACK_LOG=" + log_path, "PM_PROTO_DIR=" + *root + "/proto",
        "PM_USERS=" + user_names, "PM_SERVICE_PIDS=" + pids,
        absl::StrCat("PM_METRICS_PORT=", stack.metrics_port()),
        "PYTHONPATH=" + *root + "/proto"};
    if (!hosts.start_node.empty()) env.push_back("PM_START_NODE=" + hosts.start_node);
    absl::StatusOr<pm::ExitStatus> client = Run(command, env);
    if (!client.ok()) {
      dprintf(saved_stderr, "gateway_harness: %s\n",
              std::string(client.status().message()).c_str());
      code = 1;
    } else if (!(*client == pm::ExitStatus::Exited(0))) {
      dprintf(saved_stderr, "gateway_harness: the client %s\n",
              client->ToString().c_str());
      code = 1;
    }
    for (const std::string& process : CommandLinesWith(password)) {
      dprintf(saved_stderr, "gateway_harness: the password is on a command line: %s\n",
              process.c_str());
      code = 1;
    }
  }
  // Whatever was started, also when a later host failed to start.
  if (absl::Status stopped = hosts.Stop(); !stopped.ok()) {
    dprintf(saved_stderr, "gateway_harness: stopping the stack: %s\n",
            std::string(stopped.message()).c_str());
    code = 1;
  }
  dup2(saved_stderr, STDERR_FILENO);
  const std::string log = ReadFile(log_path);
  fprintf(stderr, "---- services' log ----\n%s---- end of log ----\n", log.c_str());
  if (log.find(password) != std::string::npos) {
    code = Fail("the password appears in the services' log");
  } else if (code == 0) {
    fprintf(stderr, "gateway_harness: the password is in no log and on no command line\n");
  }
  std::error_code ignored;
  std::filesystem::remove_all(dir, ignored);
  return code;
}
