#include "third_party/etcd/etcd_test_server.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/loopback_ports_test_util.h"
#include "common/status_core.h"
#include "etcd/etcdserver/etcdserverpb/rpc.grpc.pb.h"

extern char** environ;

namespace pm {
namespace {

// Debian's etcd-server package.
constexpr char kEtcdBinary[] = "/usr/bin/etcd";
// Safety nets for a loaded machine, not claims about speed.
constexpr std::chrono::seconds kStartTimeout(60);
constexpr int kStopTimeoutMs = 60 * 1000;

int PidfdOpen(pid_t pid) {
  return static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
}

int PidfdSendSignal(int pidfd, int sig) {
  return static_cast<int>(
      syscall(SYS_pidfd_send_signal, pidfd, sig, nullptr, 0));
}

// This environment without ETCD_* variables: etcd takes each ETCD_<FLAG>
// as a flag, so one left in a developer's shell would reshape the server.
std::vector<std::string> EnvironmentForEtcd() {
  std::vector<std::string> env;
  for (char** var = environ; *var != nullptr; ++var) {
    if (!absl::StartsWith(*var, "ETCD_")) env.emplace_back(*var);
  }
  return env;
}

// The test's credentials: etcd-client.pem, checking etcd's against
// etcd-ca.pem, with a pki_dir; plaintext without.
absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> ClientCredentials(
    const EtcdServer::Options& options) {
  if (options.pki_dir.empty()) return grpc::InsecureChannelCredentials();
  grpc::SslCredentialsOptions files;
  PM_ASSIGN_OR_RETURN(files.pem_root_certs, ReadFile(options.pki_dir + "/etcd-ca.pem"));
  PM_ASSIGN_OR_RETURN(files.pem_cert_chain, ReadFile(options.pki_dir + "/etcd-client.pem"));
  PM_ASSIGN_OR_RETURN(files.pem_private_key,
                      ReadFile(options.pki_dir + "/etcd-client.key"));
  return grpc::SslCredentials(files);
}

std::vector<char*> NullTerminated(std::vector<std::string>& strings) {
  std::vector<char*> pointers;
  for (std::string& s : strings) pointers.push_back(s.data());
  pointers.push_back(nullptr);
  return pointers;
}

}  // namespace

absl::StatusOr<std::unique_ptr<EtcdServer>> EtcdServer::Start(
    const std::string& dir) {
  Options options;
  options.dir = dir;
  return Start(std::move(options));
}

absl::StatusOr<std::unique_ptr<EtcdServer>> EtcdServer::Start(Options options) {
  PM_ASSIGN_OR_RETURN(std::unique_ptr<EtcdServer> etcd, Launch(std::move(options)));
  PM_RETURN_IF_ERROR(etcd->WaitUntilServing());
  return etcd;
}

absl::StatusOr<std::unique_ptr<EtcdServer>> EtcdServer::Launch(Options options) {
  if (options.client_port == 0 && options.peer_port == 0) {
    PM_ASSIGN_OR_RETURN(std::vector<int> ports, FreeLoopbackPorts(2));
    options.client_port = ports[0];
    options.peer_port = ports[1];
  }
  PM_ASSIGN_OR_RETURN(std::shared_ptr<grpc::ChannelCredentials> credentials,
                      ClientCredentials(options));
  std::unique_ptr<EtcdServer> etcd(
      new EtcdServer(std::move(options), std::move(credentials)));
  PM_RETURN_IF_ERROR(etcd->Spawn());
  return etcd;
}

absl::StatusOr<std::vector<std::unique_ptr<EtcdServer>>> EtcdServer::StartCluster(
    const std::string& dir, int members, const std::string& pki_dir) {
  PM_ASSIGN_OR_RETURN(std::vector<int> ports, FreeLoopbackPorts(2 * members));
  std::vector<Options> options(members);
  std::vector<std::string> peers;
  for (int i = 0; i < members; ++i) {
    options[i].dir = absl::StrCat(dir, "/m", i);
    options[i].name = absl::StrCat("m", i);
    options[i].client_port = ports[2 * i];
    options[i].peer_port = ports[2 * i + 1];
    options[i].pki_dir = pki_dir;
    peers.push_back(absl::StrCat(options[i].name, "=", Scheme(options[i]), "://",
                                 options[i].host, ":", options[i].peer_port));
  }
  std::vector<std::unique_ptr<EtcdServer>> cluster;
  for (Options& member : options) {
    member.initial_cluster = absl::StrJoin(peers, ",");
    if (mkdir(member.dir.c_str(), 0755) != 0 && errno != EEXIST) {
      return ErrnoError("mkdir", member.dir);
    }
    PM_ASSIGN_OR_RETURN(std::unique_ptr<EtcdServer> launched, Launch(std::move(member)));
    cluster.push_back(std::move(launched));
  }
  for (const std::unique_ptr<EtcdServer>& member : cluster) {
    PM_RETURN_IF_ERROR(member->WaitUntilServing());
  }
  return cluster;
}

const char* EtcdServer::Scheme(const Options& options) {
  return options.pki_dir.empty() ? "http" : "https";
}

EtcdServer::EtcdServer(Options options,
                       std::shared_ptr<grpc::ChannelCredentials> credentials)
    : options_(std::move(options)),
      credentials_(std::move(credentials)),
      endpoint_(absl::StrCat(options_.host, ":", options_.client_port)),
      client_url_(absl::StrCat(Scheme(options_), "://", options_.host, ":",
                               options_.client_port)),
      peer_url_(absl::StrCat(Scheme(options_), "://", options_.host, ":",
                             options_.peer_port)) {
  OpenChannel();
}

void EtcdServer::OpenChannel() {
  grpc::ChannelArguments arguments;
  // A proxy in the environment must not stand between the test and its
  // own server.
  arguments.SetInt(GRPC_ARG_ENABLE_HTTP_PROXY, 0);
  channel_ = grpc::CreateCustomChannel(endpoint_, credentials_, arguments);
}

EtcdServer::~EtcdServer() {
  if (pid_ > 0) Stop().IgnoreError();
}

std::string EtcdServer::log() const {
  absl::StatusOr<std::string> text = ReadFile(log_path());
  return text.ok() ? *text : text.status().ToString();
}

absl::Status EtcdServer::Pause() {
  if (PidfdSendSignal(pidfd_.get(), SIGSTOP) != 0) {
    return ErrnoError("pidfd_send_signal", "SIGSTOP");
  }
  return absl::OkStatus();
}

absl::Status EtcdServer::Resume() {
  if (PidfdSendSignal(pidfd_.get(), SIGCONT) != 0) {
    return ErrnoError("pidfd_send_signal", "SIGCONT");
  }
  return absl::OkStatus();
}

absl::StatusOr<ExitStatus> EtcdServer::Stop() {
  channel_.reset();
  // A stopped etcd would not act on SIGTERM before a SIGCONT.
  if (PidfdSendSignal(pidfd_.get(), SIGCONT) != 0 && errno != ESRCH) {
    return ErrnoError("pidfd_send_signal", "SIGCONT");
  }
  if (PidfdSendSignal(pidfd_.get(), SIGTERM) != 0 && errno != ESRCH) {
    return ErrnoError("pidfd_send_signal", "SIGTERM");
  }
  PM_ASSIGN_OR_RETURN(bool exited, WaitForExit(kStopTimeoutMs));
  if (!exited) {
    PidfdSendSignal(pidfd_.get(), SIGKILL);
    PM_RETURN_IF_ERROR(WaitForExit(-1).status());
  }
  return Reap();
}

absl::StatusOr<ExitStatus> EtcdServer::Kill() {
  channel_.reset();
  if (PidfdSendSignal(pidfd_.get(), SIGKILL) != 0 && errno != ESRCH) {
    return ErrnoError("pidfd_send_signal", "SIGKILL");
  }
  PM_RETURN_IF_ERROR(WaitForExit(-1).status());
  return Reap();
}

namespace {

absl::StatusOr<etcdserverpb::StatusResponse> MemberStatus(
    const std::shared_ptr<grpc::Channel>& channel, const std::string& endpoint) {
  if (channel == nullptr) {
    return absl::FailedPreconditionError(absl::StrCat("etcd at ", endpoint, " is stopped"));
  }
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + kStartTimeout);
  etcdserverpb::StatusResponse response;
  const grpc::Status rpc = etcdserverpb::Maintenance::NewStub(channel)->Status(
      &context, etcdserverpb::StatusRequest(), &response);
  if (!rpc.ok()) {
    return absl::UnavailableError(
        absl::StrCat("etcd at ", endpoint, ": Status: ", rpc.error_message()));
  }
  return response;
}

}  // namespace

absl::Status EtcdServer::StepDownFor(const EtcdServer& other) {
  PM_ASSIGN_OR_RETURN(etcdserverpb::StatusResponse mine, MemberStatus(channel_, endpoint_));
  if (mine.leader() != mine.header().member_id()) return absl::OkStatus();
  PM_ASSIGN_OR_RETURN(etcdserverpb::StatusResponse theirs,
                      MemberStatus(other.channel_, other.endpoint_));
  etcdserverpb::MoveLeaderRequest request;
  request.set_targetid(theirs.header().member_id());
  etcdserverpb::MoveLeaderResponse response;
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + kStartTimeout);
  const grpc::Status rpc = etcdserverpb::Maintenance::NewStub(channel_)->MoveLeader(
      &context, request, &response);
  if (!rpc.ok()) {
    return absl::UnavailableError(absl::StrCat("etcd at ", endpoint_, ": MoveLeader to ",
                                               other.endpoint_, ": ", rpc.error_message()));
  }
  return absl::OkStatus();
}

absl::Status EtcdServer::Relaunch() {
  if (pid_ > 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("etcd member ", options_.name, " still runs (pid ", pid_, ")"));
  }
  OpenChannel();
  return Spawn();
}

std::vector<std::string> EtcdServer::Argv() const {
  std::vector<std::string> argv = options_.prefix;
  for (std::string arg :
       {std::string(kEtcdBinary), "--name=" + options_.name,
        "--data-dir=" + options_.dir + "/data", "--listen-client-urls=" + client_url_,
        "--advertise-client-urls=" + client_url_, "--listen-peer-urls=" + peer_url_,
        "--initial-advertise-peer-urls=" + peer_url_,
        "--initial-cluster=" + (options_.initial_cluster.empty()
                                    ? absl::StrCat(options_.name, "=", peer_url_)
                                    : options_.initial_cluster),
        // Read only at the first start: a member started again on its data
        // rejoins the cluster its data names.
        std::string("--initial-cluster-state=new"),
        // capnslog, 3.4's default, is deprecated and says so at start.
        std::string("--logger=zap"), std::string("--log-outputs=stderr")}) {
    argv.push_back(std::move(arg));
  }
  if (!options_.pki_dir.empty()) {
    // As Kubernetes runs it: a client certificate from etcd's own CA is
    // required of clients and of peers alike.
    const std::string& pki = options_.pki_dir;
    for (std::string arg :
         {std::string("--client-cert-auth"), "--trusted-ca-file=" + pki + "/etcd-ca.pem",
          "--cert-file=" + pki + "/etcd-server.pem", "--key-file=" + pki + "/etcd-server.key",
          std::string("--peer-client-cert-auth"),
          "--peer-trusted-ca-file=" + pki + "/etcd-ca.pem",
          "--peer-cert-file=" + pki + "/etcd-server.pem",
          "--peer-key-file=" + pki + "/etcd-server.key"}) {
      argv.push_back(std::move(arg));
    }
  }
  return argv;
}

// Starts etcd with stdin on /dev/null and stdout and stderr in the log
// file (a file, not a pipe: nobody has to drain it; appended to, so that a
// relaunched member's log follows its earlier one), then opens its pidfd.
// It is the test's child and not reaped before Reap(), so its pid cannot
// be reused in between.
absl::Status EtcdServer::Spawn() {
  PM_ASSIGN_OR_RETURN(
      Fd log, Fd::Open(log_path(), O_WRONLY | O_CREAT | O_APPEND, 0644));
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null",
                                   O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&actions, log.get(), STDOUT_FILENO);
  posix_spawn_file_actions_adddup2(&actions, log.get(), STDERR_FILENO);
  std::vector<std::string> argv = Argv();
  std::vector<std::string> env = EnvironmentForEtcd();
  const std::string binary = argv.front();
  const int err =
      posix_spawn(&pid_, binary.c_str(), &actions, nullptr,
                  NullTerminated(argv).data(), NullTerminated(env).data());
  posix_spawn_file_actions_destroy(&actions);
  if (err != 0) {
    pid_ = -1;
    const absl::Status status = ErrnoError("posix_spawn", binary, err);
    return absl::Status(
        status.code(),
        absl::StrCat(status.message(), " (Debian's etcd-server: make deps)"));
  }
  pidfd_.reset(PidfdOpen(pid_));
  if (!pidfd_) {
    const absl::Status status = ErrnoError("pidfd_open", absl::StrCat(pid_));
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
    pid_ = -1;
    return status;
  }
  return absl::OkStatus();
}

// Waits for whichever comes first: an answer to a Range that waits for
// the server to be ready (etcd serves clients only once its cluster has a
// leader), or etcd's end.
absl::Status EtcdServer::WaitUntilServing() {
  Fd answered(eventfd(0, EFD_CLOEXEC));
  if (!answered) return ErrnoError("eventfd");
  std::unique_ptr<etcdserverpb::KV::Stub> kv =
      etcdserverpb::KV::NewStub(channel_);
  grpc::ClientContext context;
  context.set_wait_for_ready(true);
  context.set_deadline(std::chrono::system_clock::now() + kStartTimeout);
  etcdserverpb::RangeRequest request;
  request.set_key("pm-test/ready");
  etcdserverpb::RangeResponse response;
  grpc::Status rpc;
  kv->async()->Range(&context, &request, &response,
                     [&rpc, &answered](grpc::Status status) {
                       rpc = std::move(status);
                       const uint64_t one = 1;
                       (void)!write(answered.get(), &one, sizeof(one));
                     });
  pollfd fds[] = {{answered.get(), POLLIN, 0}, {pidfd_.get(), POLLIN, 0}};
  absl::Status polled = absl::OkStatus();
  while (poll(fds, 2, -1) < 0) {
    if (errno == EINTR) continue;
    polled = ErrnoError("poll", "etcd's first Range");
    break;
  }
  const bool etcd_ended = (fds[1].revents & POLLIN) != 0;
  if (etcd_ended || !polled.ok()) context.TryCancel();
  // The callback writes `rpc` and `answered`: wait for it before
  // either goes out of scope (a blocking read of the eventfd).
  uint64_t count = 0;
  while (read(answered.get(), &count, sizeof(count)) < 0) {
    if (errno != EINTR) std::abort();  // the callback would outlive us
  }
  PM_RETURN_IF_ERROR(polled);
  if (etcd_ended) {
    PM_ASSIGN_OR_RETURN(ExitStatus end, Reap());
    return absl::FailedPreconditionError(absl::StrCat(
        "etcd ", end.ToString(), " before serving; its log:\n", log()));
  }
  if (!rpc.ok()) {
    return absl::UnavailableError(
        absl::StrCat("etcd's first Range at ", client_url_, ": ",
                     rpc.error_message(), "; its log:\n", log()));
  }
  return absl::OkStatus();
}

absl::StatusOr<bool> EtcdServer::WaitForExit(int timeout_ms) {
  pollfd fd = {pidfd_.get(), POLLIN, 0};
  int ready;
  while ((ready = poll(&fd, 1, timeout_ms)) < 0) {
    if (errno != EINTR) return ErrnoError("poll", "etcd's pidfd");
  }
  return ready > 0;
}

absl::StatusOr<ExitStatus> EtcdServer::Reap() {
  siginfo_t info = {};
  if (waitid(P_PID, static_cast<id_t>(pid_), &info, WEXITED) != 0) {
    return ErrnoError("waitid", absl::StrCat(pid_));
  }
  pid_ = -1;
  pidfd_.reset();
  return ExitStatus::FromSiginfo(info);
}

std::string EndpointsOf(const std::vector<std::unique_ptr<EtcdServer>>& members) {
  std::vector<std::string> endpoints;
  for (const std::unique_ptr<EtcdServer>& member : members) {
    endpoints.push_back(member->endpoint());
  }
  return absl::StrJoin(endpoints, ",");
}

}  // namespace pm
