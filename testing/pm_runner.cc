#include "testing/pm_runner.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"

extern char** environ;

namespace pm::testing {

std::string PmBinary() {
  const char* srcdir = getenv("TEST_SRCDIR");
  return absl::StrCat(srcdir != nullptr ? srcdir : ".", "/pm/cli/pm");
}

std::vector<std::string> EnvironmentWithout(
    const std::vector<std::string>& drop) {
  std::vector<std::string> environment;
  for (char** variable = environ; *variable != nullptr; ++variable) {
    const std::string entry = *variable;
    const std::string name = entry.substr(0, entry.find('='));
    bool dropped = false;
    for (const std::string& d : drop) dropped = dropped || d == name;
    if (!dropped) environment.push_back(entry);
  }
  return environment;
}

PmRun::PmRun(const std::vector<std::string>& args) { Spawn(args, nullptr); }

PmRun::PmRun(const std::vector<std::string>& args,
             const std::vector<std::string>& environment) {
  Spawn(args, &environment);
}

int SpawnAsFromShell(const std::string& binary, const std::vector<std::string>& args,
                     int stdout_fd, int stderr_fd, const std::vector<int>& defaults,
                     const std::vector<std::string>* environment, pid_t* pid) {
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&actions, stdout_fd, 1);
  posix_spawn_file_actions_adddup2(&actions, stderr_fd, 2);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t empty, at_default;
  sigemptyset(&empty);
  sigemptyset(&at_default);
  for (int sig : defaults) sigaddset(&at_default, sig);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  posix_spawnattr_setsigmask(&attr, &empty);
  posix_spawnattr_setsigdefault(&attr, &at_default);
  std::vector<char*> argv = {const_cast<char*>(binary.c_str())};
  for (const std::string& arg : args) argv.push_back(const_cast<char*>(arg.c_str()));
  argv.push_back(nullptr);
  std::vector<char*> envp;
  if (environment != nullptr) {
    for (const std::string& variable : *environment) {
      envp.push_back(const_cast<char*>(variable.c_str()));
    }
    envp.push_back(nullptr);
  }
  const int spawned = posix_spawn(pid, binary.c_str(), &actions, &attr, argv.data(),
                                  environment != nullptr ? envp.data() : environ);
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  return spawned;
}

void PmRun::Spawn(const std::vector<std::string>& args,
                  const std::vector<std::string>* environment) {
  int out[2], err[2];
  if (pipe2(out, O_CLOEXEC) != 0 || pipe2(err, O_CLOEXEC) != 0) {
    ADD_FAILURE() << "pipe2: " << strerror(errno);
    return;
  }
  // Ctrl+C's default action, as from a shell.
  const std::string binary = PmBinary();
  const int spawned = SpawnAsFromShell(binary, args, out[1], err[1],
                                       {SIGINT, SIGTERM, SIGPIPE}, environment, &pid_);
  close(out[1]);
  close(err[1]);
  out_fd_ = out[0];
  err_fd_ = err[0];
  if (spawned != 0) {
    ADD_FAILURE() << "posix_spawn(" << binary << "): " << strerror(spawned);
    pid_ = -1;
    return;
  }
  pidfd_ = static_cast<int>(syscall(SYS_pidfd_open, pid_, 0));
  if (pidfd_ < 0) ADD_FAILURE() << "pidfd_open: " << strerror(errno);
}

PmRun::~PmRun() {
  if (pid_ > 0 && !reaped_) {
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
  }
  for (int fd : {out_fd_, err_fd_, pidfd_}) {
    if (fd >= 0) close(fd);
  }
}

bool PmRun::WaitForStdout(const std::string& needle) {
  const absl::Time deadline = absl::Now() + kPmTimeout;
  while (result_.out.find(needle) == std::string::npos) {
    if (out_fd_ < 0 || !ReadSome(deadline)) return false;
  }
  return true;
}

PmResult PmRun::Finish() {
  if (pid_ <= 0 || pidfd_ < 0) return result_;  // spawning failed
  const absl::Time deadline = absl::Now() + kPmTimeout;
  while (out_fd_ >= 0 || err_fd_ >= 0) {
    if (!ReadSome(deadline)) {
      ADD_FAILURE() << "pm did not finish: stdout " << result_.out
                    << "\nstderr " << result_.err;
      return result_;
    }
  }
  if (!WaitForExit(deadline)) {
    ADD_FAILURE() << "pm closed its output but did not exit";
    return result_;
  }
  int status = 0;
  waitpid(pid_, &status, 0);
  reaped_ = true;
  result_.code =
      WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return result_;
}

bool PmRun::ReadSome(absl::Time deadline) {
  std::vector<pollfd> fds;
  for (int fd : {out_fd_, err_fd_}) {
    if (fd >= 0) fds.push_back({fd, POLLIN, 0});
  }
  const int64_t ms = absl::ToInt64Milliseconds(deadline - absl::Now());
  if (ms <= 0) return false;
  const int ready = poll(fds.data(), fds.size(), static_cast<int>(ms));
  if (ready < 0 && errno != EINTR) return false;
  for (const pollfd& p : fds) {
    if (p.revents == 0) continue;
    const bool is_out = p.fd == out_fd_;
    char buffer[4096];
    const ssize_t n = read(p.fd, buffer, sizeof(buffer));
    if (n > 0) {
      (is_out ? result_.out : result_.err).append(buffer, n);
    } else if (n == 0 || errno != EINTR) {
      close(p.fd);
      (is_out ? out_fd_ : err_fd_) = -1;
    }
  }
  return true;
}

bool PmRun::WaitForExit(absl::Time deadline) {
  pollfd p = {pidfd_, POLLIN, 0};
  const int64_t ms = absl::ToInt64Milliseconds(deadline - absl::Now());
  return ms > 0 && poll(&p, 1, static_cast<int>(ms)) == 1;
}

}  // namespace pm::testing
