#include "supervisor/spawn.h"

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <memory>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/status.h"

#ifndef CLONE_PIDFD
#define CLONE_PIDFD 0x00001000
#endif

namespace pm::supervisor {
namespace {

absl::Status CheckNoNul(absl::string_view field, const std::string& value) {
  if (value.find('\0') != std::string::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, " contains a NUL byte"));
  }
  return absl::OkStatus();
}

// The step of the child that failed, written into shared memory.
enum class ChildStep : int { kNone = 0, kSetsid, kDup2, kChdir, kExec };

// Everything the child needs, prepared by the parent: the child may not
// allocate (it shares the parent's heap and malloc locks).
struct ChildContext {
  int stdin_fd;
  int stdout_fd;
  int stderr_fd;
  const char* working_dir;                    // nullptr: keep
  std::vector<const char*> candidates;        // execve these in order
  std::vector<char*> argv;
  std::vector<char*> envp;
  // Written by the child on failure.
  volatile ChildStep failed_step = ChildStep::kNone;
  volatile int failed_errno = 0;
  volatile int failed_candidate = -1;
  // The candidate being exec'd; after a successful exec, the one that ran.
  volatile int trying = -1;
};

// Runs in the child between clone and exec: async-signal-safe calls only.
int ChildMain(void* arg) {
  auto* ctx = static_cast<ChildContext*>(arg);
  // Dispositions back to default (handlers of the parent must never run
  // here); the mask was blocked by the parent around clone and is cleared
  // last, just before exec.
  // The raw syscall, because glibc's sigaction refuses its two internal
  // real-time signals, which may be ignored here and would stay ignored.
  struct KernelSigaction {
    void (*handler)(int);
    unsigned long flags;
    void (*restorer)();
    uint64_t mask;
  } dfl = {SIG_DFL, 0, nullptr, 0};
  for (int sig = 1; sig < NSIG; ++sig) {
    if (sig == SIGKILL || sig == SIGSTOP) continue;
    syscall(SYS_rt_sigaction, sig, &dfl, nullptr, sizeof(dfl.mask));
  }
  auto fail = [ctx](ChildStep step) {
    ctx->failed_errno = errno;
    ctx->failed_step = step;
    _exit(127);
  };
  // Its own session and process group: the group is what Stop signals.
  if (setsid() < 0) fail(ChildStep::kSetsid);
  if (dup2(ctx->stdin_fd, 0) < 0 || dup2(ctx->stdout_fd, 1) < 0 ||
      dup2(ctx->stderr_fd, 2) < 0) {
    fail(ChildStep::kDup2);
  }
  // Nothing of the supervisor (sockets, other children's pipes) leaks in.
  syscall(SYS_close_range, 3, ~0U, 0);
  if (ctx->working_dir != nullptr && chdir(ctx->working_dir) != 0) {
    fail(ChildStep::kChdir);
  }
  sigset_t empty;
  sigemptyset(&empty);
  sigprocmask(SIG_SETMASK, &empty, nullptr);
  // Like execvp: try each PATH candidate; ENOENT/ENOTDIR/EACCES move on
  // (reporting EACCES if nothing else works), anything else stops.
  int saved_errno = ENOENT;
  int saved_candidate = 0;
  for (size_t i = 0; i < ctx->candidates.size(); ++i) {
    ctx->trying = static_cast<int>(i);
    execve(ctx->candidates[i], ctx->argv.data(), ctx->envp.data());
    int err = errno;
    if (err == EACCES) {
      saved_errno = EACCES;
      saved_candidate = static_cast<int>(i);
    } else if (err != ENOENT && err != ENOTDIR) {
      saved_errno = err;
      saved_candidate = static_cast<int>(i);
      break;
    } else if (saved_errno != EACCES) {
      saved_candidate = static_cast<int>(i);
    }
  }
  ctx->failed_candidate = saved_candidate;
  errno = saved_errno;
  fail(ChildStep::kExec);
  return 127;
}

std::string LookupEnv(const pm::v1::StartRequest& request,
                      const std::string& name, const std::string& fallback) {
  auto it = request.env().find(name);
  return it == request.env().end() ? fallback : it->second;
}

// The paths to execve, in order: the executable itself when it has a slash,
// else <dir>/<name> for each PATH entry (an empty entry means ".").
std::vector<std::string> ExecCandidates(const pm::v1::StartRequest& request) {
  const std::string& name = request.executable();
  if (name.find('/') != std::string::npos) return {name};
  std::vector<std::string> out;
  for (absl::string_view dir :
       absl::StrSplit(LookupEnv(request, "PATH", kDefaultPath), ':')) {
    out.push_back(dir.empty() ? absl::StrCat("./", name)
                              : absl::StrCat(dir, "/", name));
  }
  return out;
}

absl::Status ChildError(const ChildContext& ctx,
                        const std::vector<std::string>& candidates,
                        const pm::v1::StartRequest& request) {
  const int err = ctx.failed_errno;
  absl::Status status;
  switch (ctx.failed_step) {
    case ChildStep::kSetsid:
      status = ErrnoError("setsid", "", err);
      break;
    case ChildStep::kDup2:
      status = ErrnoError("dup2", "", err);
      break;
    case ChildStep::kChdir:
      status = ErrnoError("chdir", request.working_dir(), err);
      break;
    case ChildStep::kExec:
    case ChildStep::kNone: {
      if (request.executable().find('/') != std::string::npos) {
        status = ErrnoError("execve", request.executable(), err);
      } else if (err == ENOENT) {
        status = absl::Status(
            absl::StatusCode::kNotFound,
            absl::StrCat("execvp(\"", request.executable(),
                         "\"): No such file or directory (ENOENT): not found "
                         "in PATH=",
                         LookupEnv(request, "PATH", kDefaultPath)));
      } else {
        int i = ctx.failed_candidate;
        status = ErrnoError(
            "execve",
            i >= 0 && i < static_cast<int>(candidates.size()) ? candidates[i]
                                                               : "?",
            err);
      }
      break;
    }
  }
  // Whatever the OS said, the request could not be run as given.
  return absl::FailedPreconditionError(status.message());
}

}  // namespace

absl::Status ValidateStartRequest(const pm::v1::StartRequest& request) {
  if (request.executable().empty()) {
    return absl::InvalidArgumentError("executable is empty");
  }
  PM_RETURN_IF_ERROR(CheckNoNul("executable", request.executable()));
  PM_RETURN_IF_ERROR(CheckNoNul("working_dir", request.working_dir()));
  for (int i = 0; i < request.args_size(); ++i) {
    PM_RETURN_IF_ERROR(CheckNoNul(absl::StrCat("args[", i, "]"), request.args(i)));
  }
  for (const auto& [name, value] : request.env()) {
    if (name.empty()) return absl::InvalidArgumentError("env has an empty name");
    if (name.find('=') != std::string::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat("env name \"", name, "\" contains '='"));
    }
    PM_RETURN_IF_ERROR(CheckNoNul(absl::StrCat("env name \"", name, "\""), name));
    PM_RETURN_IF_ERROR(
        CheckNoNul(absl::StrCat("env value of ", name), value));
  }
  return absl::OkStatus();
}

absl::StatusOr<SpawnedChild> Spawn(const pm::v1::StartRequest& request) {
  PM_ASSIGN_OR_RETURN(Fd dev_null, Fd::Open("/dev/null", O_RDONLY));
  PM_ASSIGN_OR_RETURN(Pipe out, MakePipe());
  PM_ASSIGN_OR_RETURN(Pipe err, MakePipe());
  PM_RETURN_IF_ERROR(SetNonBlocking(out.read.get(), true));
  PM_RETURN_IF_ERROR(SetNonBlocking(err.read.get(), true));
  // Bigger pipes mean fewer wakeups for chatty processes; the default 64 KiB
  // is kept if the system limit is lower.
  fcntl(out.write.get(), F_SETPIPE_SZ, 1 << 20);
  fcntl(err.write.get(), F_SETPIPE_SZ, 1 << 20);

  // Strings the child will use, built before clone: the child may not
  // allocate.
  const std::vector<std::string> candidates = ExecCandidates(request);
  std::vector<std::string> argv_storage;
  argv_storage.push_back(request.executable());
  for (const std::string& arg : request.args()) argv_storage.push_back(arg);
  std::vector<std::string> env_storage;
  bool has_path = false;
  for (const auto& [name, value] : request.env()) {
    env_storage.push_back(absl::StrCat(name, "=", value));
    has_path = has_path || name == "PATH";
  }
  if (!has_path) env_storage.push_back(absl::StrCat("PATH=", kDefaultPath));

  ChildContext ctx;
  ctx.stdin_fd = dev_null.get();
  ctx.stdout_fd = out.write.get();
  ctx.stderr_fd = err.write.get();
  ctx.working_dir =
      request.working_dir().empty() ? nullptr : request.working_dir().c_str();
  for (const std::string& c : candidates) ctx.candidates.push_back(c.c_str());
  for (std::string& a : argv_storage) ctx.argv.push_back(a.data());
  ctx.argv.push_back(nullptr);
  for (std::string& e : env_storage) ctx.envp.push_back(e.data());
  ctx.envp.push_back(nullptr);

  constexpr size_t kStackSize = 64 * 1024;
  std::unique_ptr<char[]> stack(new char[kStackSize]);

  // Block every signal across clone: no handler of ours may run in the
  // child before it has reset the dispositions.
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  int pidfd = -1;
  pid_t pid = clone(ChildMain, stack.get() + kStackSize,
                    CLONE_VM | CLONE_VFORK | CLONE_PIDFD | SIGCHLD, &ctx,
                    &pidfd);
  int clone_errno = errno;
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  if (pid < 0) return ErrnoError("clone", "CLONE_VM|CLONE_VFORK|CLONE_PIDFD", clone_errno);

  SpawnedChild child;
  child.pid = pid;
  child.pidfd = Fd(pidfd);
  if (ctx.failed_step != ChildStep::kNone) {
    // The child has _exit(127)ed; reap it through its pidfd.
    siginfo_t info;
    while (waitid(static_cast<idtype_t>(P_PIDFD), pidfd, &info, WEXITED) != 0 &&
           errno == EINTR) {
    }
    return ChildError(ctx, candidates, request);
  }
  child.executable = candidates[ctx.trying >= 0 ? ctx.trying : 0];
  child.stdout_read = std::move(out.read);
  child.stderr_read = std::move(err.read);
  return child;
}

}  // namespace pm::supervisor
