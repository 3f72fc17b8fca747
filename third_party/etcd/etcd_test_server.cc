#include "third_party/etcd/etcd_test_server.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/eventfd.h>
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

std::vector<char*> NullTerminated(std::vector<std::string>& strings) {
  std::vector<char*> pointers;
  for (std::string& s : strings) pointers.push_back(s.data());
  pointers.push_back(nullptr);
  return pointers;
}

}  // namespace

absl::StatusOr<std::unique_ptr<EtcdServer>> EtcdServer::Start(
    const std::string& dir) {
  PM_ASSIGN_OR_RETURN(std::vector<int> ports, FreeLoopbackPorts(2));
  std::unique_ptr<EtcdServer> etcd(new EtcdServer(dir, ports[0], ports[1]));
  PM_RETURN_IF_ERROR(etcd->Spawn());
  PM_RETURN_IF_ERROR(etcd->WaitUntilServing());
  return etcd;
}

EtcdServer::EtcdServer(std::string dir, int client_port, int peer_port)
    : dir_(std::move(dir)),
      endpoint_(absl::StrCat("127.0.0.1:", client_port)),
      client_url_(absl::StrCat("http://127.0.0.1:", client_port)),
      peer_url_(absl::StrCat("http://127.0.0.1:", peer_port)) {
  grpc::ChannelArguments arguments;
  // A proxy in the environment must not stand between the test and a
  // server on loopback.
  arguments.SetInt(GRPC_ARG_ENABLE_HTTP_PROXY, 0);
  channel_ = grpc::CreateCustomChannel(
      endpoint_, grpc::InsecureChannelCredentials(), arguments);
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

std::vector<std::string> EtcdServer::Argv() const {
  return {kEtcdBinary,
          "--name=pm-test",
          "--data-dir=" + dir_ + "/data",
          "--listen-client-urls=" + client_url_,
          "--advertise-client-urls=" + client_url_,
          "--listen-peer-urls=" + peer_url_,
          "--initial-advertise-peer-urls=" + peer_url_,
          "--initial-cluster=pm-test=" + peer_url_,
          "--initial-cluster-state=new",
          // capnslog, 3.4's default, is deprecated and says so at start.
          "--logger=zap",
          "--log-outputs=stderr"};
}

// Starts etcd with stdin on /dev/null and stdout and stderr in the log
// file (a file, not a pipe: nobody has to drain it), then opens its
// pidfd. It is the test's child and not reaped before Reap(), so its pid
// cannot be reused in between.
absl::Status EtcdServer::Spawn() {
  PM_ASSIGN_OR_RETURN(
      Fd log, Fd::Open(log_path(), O_WRONLY | O_CREAT | O_TRUNC, 0644));
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null",
                                   O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&actions, log.get(), STDOUT_FILENO);
  posix_spawn_file_actions_adddup2(&actions, log.get(), STDERR_FILENO);
  std::vector<std::string> argv = Argv();
  std::vector<std::string> env = EnvironmentForEtcd();
  const int err =
      posix_spawn(&pid_, kEtcdBinary, &actions, nullptr,
                  NullTerminated(argv).data(), NullTerminated(env).data());
  posix_spawn_file_actions_destroy(&actions);
  if (err != 0) {
    pid_ = -1;
    const absl::Status status = ErrnoError("posix_spawn", kEtcdBinary, err);
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
// the server to be ready (etcd serves clients only once it leads its
// one-member cluster), or etcd's end.
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

}  // namespace pm
