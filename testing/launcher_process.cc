#include "testing/launcher_process.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/fd.h"
#include "common/proc.h"
#include "gtest/gtest.h"
#include "testing/pm_runner.h"

extern char** environ;

namespace pm::testing {
namespace {

// A safety net against a hung launcher, not an expectation of speed.
constexpr absl::Duration kLauncherTimeout = absl::Seconds(60);

int PidfdOpen(pid_t pid) {
  return static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
}

int PidfdSendSignal(int pidfd, int sig) {
  return static_cast<int>(syscall(SYS_pidfd_send_signal, pidfd, sig, nullptr, 0));
}

}  // namespace

std::string StackBinary() {
  // A test's runfiles, or those of a benchmark under `bazel run`.
  for (const char* var : {"TEST_SRCDIR", "RUNFILES_DIR"}) {
    if (const char* dir = getenv(var); dir != nullptr && *dir) {
      return absl::StrCat(dir, "/pm/stack/stack");
    }
  }
  return "./pm/stack/stack";
}

namespace {

LauncherProcess::Options OnLoopback(const std::string& dir, int gateway_port,
                                    const std::vector<std::string>& extra_args) {
  LauncherProcess::Options options;
  options.dir = dir;
  options.gateway_port = gateway_port;
  options.extra_args = extra_args;
  return options;
}

}  // namespace

LauncherProcess::LauncherProcess(const std::string& dir, int gateway_port,
                                 const std::vector<std::string>& extra_args)
    : LauncherProcess(OnLoopback(dir, gateway_port, extra_args)) {}

LauncherProcess::LauncherProcess(Options options) : options_(std::move(options)) {
  std::vector<std::string> args = {
      "--runtime_dir=" + runtime_dir(), "--state_dir=" + state_dir(),
      "--certs_dir=" + certs_dir(), "--gateway_listen=" + gateway_target(),
      // Any free port: the default (9464) may be another stack's.
      "--metrics_listen=127.0.0.1:0"};
  args.insert(args.end(), options_.extra_args.begin(), options_.extra_args.end());
  Spawn(args);
  if (pid_ < 0) return;
  stop_fd_ = eventfd(0, EFD_CLOEXEC);
  drainer_ = std::thread([this] { Drain(); });
  // The banner is printed once every service answers its health check.
  up_ = WaitForLines("pm stack is up", 1);
}

LauncherProcess::~LauncherProcess() {
  if (pid_ > 0 && !reaped_) {
    absl::optional<pm::ExitStatus> stopped = Stop();
    if (!stopped.has_value()) Kill();
  }
  if (drainer_.joinable()) {
    const uint64_t one = 1;
    (void)!write(stop_fd_, &one, sizeof(one));
    drainer_.join();
  }
  if (stop_fd_ >= 0) close(stop_fd_);
  if (pidfd_ >= 0) close(pidfd_);
}

std::string LauncherProcess::gateway_target() const {
  return absl::StrCat(options_.gateway_host, ":", options_.gateway_port);
}

void LauncherProcess::Spawn(const std::vector<std::string>& stack_args) {
  int out[2];
  if (pipe2(out, O_CLOEXEC) != 0) {
    ADD_FAILURE() << "pipe2: " << strerror(errno);
    return;
  }
  // The stack binary, through the prefix command if there is one.
  std::vector<std::string> args = options_.prefix;
  args.push_back(StackBinary());
  args.insert(args.end(), stack_args.begin(), stack_args.end());
  const std::string binary = args.front();
  args.erase(args.begin());
  // As from a shell: nothing blocked, default dispositions.
  const int spawned =
      SpawnAsFromShell(binary, args, out[1], out[1],
                       {SIGINT, SIGTERM, SIGHUP, SIGPIPE, SIGCHLD}, nullptr, &pid_);
  close(out[1]);
  log_fd_ = out[0];
  if (spawned != 0) {
    ADD_FAILURE() << "posix_spawn(" << binary << "): " << strerror(spawned);
    close(log_fd_);
    log_fd_ = -1;
    pid_ = -1;
    return;
  }
  pidfd_ = PidfdOpen(pid_);
  if (pidfd_ < 0) ADD_FAILURE() << "pidfd_open(" << pid_ << "): " << strerror(errno);
}

// Reads until every writer of the pipe (the launcher and its services,
// which inherit its stderr) has closed it.
// The destructor ends it through stop_fd_: processes the launcher left
// behind (shims) may hold the pipe open for longer.
void LauncherProcess::Drain() {
  char buffer[8192];
  for (;;) {
    pollfd fds[2] = {{log_fd_, POLLIN, 0}, {stop_fd_, POLLIN, 0}};
    if (poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    if (fds[0].revents == 0 && fds[1].revents != 0) break;
    const ssize_t n = read(log_fd_, buffer, sizeof(buffer));
    if (n < 0 && errno == EINTR) continue;
    absl::MutexLock lock(&mu_);
    if (n <= 0) {
      log_ended_ = true;
      break;
    }
    log_.append(buffer, n);
  }
  {
    absl::MutexLock lock(&mu_);
    log_ended_ = true;
  }
  close(log_fd_);
}

size_t LauncherProcess::CountLinesLocked(
    const std::function<bool(absl::string_view)>& match) {
  size_t count = 0;
  for (absl::string_view line : absl::StrSplit(log_, '\n')) {
    if (match(line)) ++count;
  }
  return count;
}

bool LauncherProcess::WaitForLines(const std::string& needle, size_t n) {
  auto match = [&](absl::string_view line) { return absl::StrContains(line, needle); };
  absl::MutexLock lock(&mu_);
  auto enough = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return log_ended_ || CountLinesLocked(match) >= n;
  };
  mu_.AwaitWithTimeout(absl::Condition(&enough), kLauncherTimeout);
  return CountLinesLocked(match) >= n;
}

size_t LauncherProcess::HealthyCount(const std::string& name) {
  const std::string who = name + " (pid ";
  absl::MutexLock lock(&mu_);
  return CountLinesLocked([&](absl::string_view line) {
    return absl::StrContains(line, who) && absl::StrContains(line, " is healthy again");
  });
}

bool LauncherProcess::WaitForHealthy(const std::string& name, size_t n) {
  const std::string who = name + " (pid ";
  auto match = [&](absl::string_view line) {
    return absl::StrContains(line, who) && absl::StrContains(line, " is healthy again");
  };
  absl::MutexLock lock(&mu_);
  auto enough = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return log_ended_ || CountLinesLocked(match) >= n;
  };
  mu_.AwaitWithTimeout(absl::Condition(&enough), kLauncherTimeout);
  return CountLinesLocked(match) >= n;
}

pid_t LauncherProcess::ServicePid(const std::string& name) const {
  absl::StatusOr<std::vector<ProcStat>> children = ChildrenOf(pid_);
  if (!children.ok()) return -1;
  for (const ProcStat& child : *children) {
    if (child.comm == name && child.state != 'Z') return child.pid;
  }
  return -1;
}

std::vector<pm::Fd> LauncherProcess::ServicePidfds(const std::vector<std::string>& names,
                                                    bool& all) {
  std::vector<pm::Fd> pidfds;
  for (const std::string& name : names) {
    const pid_t pid = ServicePid(name);
    pm::Fd pidfd(pid > 0 ? PidfdOpen(pid) : -1);
    if (!pidfd) {
      ADD_FAILURE() << "no running " << name << " under launcher " << pid_;
      all = false;
      continue;
    }
    pidfds.push_back(std::move(pidfd));
  }
  return pidfds;
}

bool LauncherProcess::KillServices(const std::vector<std::string>& names, int sig) {
  bool all = true;
  for (const pm::Fd& pidfd : ServicePidfds(names, all)) {
    if (PidfdSendSignal(pidfd.get(), sig) != 0) {
      ADD_FAILURE() << "pidfd_send_signal: " << strerror(errno);
      all = false;
    }
  }
  return all;
}

absl::optional<pm::ExitStatus> LauncherProcess::Reap(absl::Duration timeout) {
  pollfd p = {pidfd_, POLLIN, 0};
  if (poll(&p, 1, static_cast<int>(absl::ToInt64Milliseconds(timeout))) != 1) {
    return absl::nullopt;
  }
  siginfo_t info = {};
  if (waitid(P_PID, static_cast<id_t>(pid_), &info, WEXITED) != 0) {
    return absl::nullopt;
  }
  reaped_ = true;
  return pm::ExitStatus::FromSiginfo(info);
}

absl::optional<pm::ExitStatus> LauncherProcess::Stop() {
  if (pid_ <= 0 || reaped_) return absl::nullopt;
  PidfdSendSignal(pidfd_, SIGTERM);
  return Reap(kLauncherTimeout);
}

void LauncherProcess::Kill() {
  if (pid_ <= 0 || reaped_) return;
  PidfdSendSignal(pidfd_, SIGKILL);
  Reap(kLauncherTimeout);
}

bool LauncherProcess::KillWithServices() {
  if (pid_ <= 0 || reaped_) {
    ADD_FAILURE() << "no launcher to kill";
    return false;
  }
  // Every pidfd is opened first (the services are the launcher's children
  // until it dies), then all are signalled, the launcher first (it would
  // restart a service it saw die).
  bool all = true;
  const std::vector<pm::Fd> pidfds =
      ServicePidfds({"registry", "log_store", "supervisor", "gateway"}, all);
  if (PidfdSendSignal(pidfd_, SIGKILL) != 0) {
    ADD_FAILURE() << "pidfd_send_signal(launcher): " << strerror(errno);
    all = false;
  }
  for (const pm::Fd& pidfd : pidfds) {
    if (PidfdSendSignal(pidfd.get(), SIGKILL) != 0) {
      ADD_FAILURE() << "pidfd_send_signal: " << strerror(errno);
      all = false;
    }
  }
  Reap(kLauncherTimeout);
  if (!reaped_) {
    ADD_FAILURE() << "the launcher (pid " << pid_ << ") did not end";
    all = false;
  }
  // Gone, not only signalled: a new launcher must not meet them.
  for (const pm::Fd& pidfd : pidfds) {
    pollfd p = {pidfd.get(), POLLIN, 0};
    if (poll(&p, 1, static_cast<int>(absl::ToInt64Milliseconds(kLauncherTimeout))) != 1) {
      ADD_FAILURE() << "a service of launcher " << pid_ << " did not end";
      all = false;
    }
  }
  return all;
}

std::string LauncherProcess::log() {
  absl::MutexLock lock(&mu_);
  return log_;
}

}  // namespace pm::testing
