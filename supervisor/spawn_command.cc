#include "supervisor/spawn_command.h"

#include <fcntl.h>
#include <linux/sched.h>
#include <net/if.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <memory>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/status_core.h"
#include "common/utf8.h"

#ifndef CLONE_PIDFD
#define CLONE_PIDFD 0x00001000
#endif
#ifndef CLONE_INTO_CGROUP
#define CLONE_INTO_CGROUP 0x200000000ULL
#endif

// clone3 returns in the child on the new stack, where the caller's frame is
// not: only assembly can go on from there. Like glibc's clone(): the child
// calls fn(arg) on its own stack and exits with its result. Registers other
// than rax (and rcx, r11) survive the syscall, so fn and arg wait in r12
// and r13, which the parent restores.
//   long PmClone3(struct clone_args* args, size_t size,
//                 int (*fn)(void*), void* arg);   // -errno on failure
#if defined(__x86_64__)
#define PM_HAVE_CLONE3_TRAMPOLINE 1
extern "C" long PmClone3(struct clone_args* args, size_t size,
                         int (*fn)(void*), void* arg);
__asm__(
    ".text\n"
    ".globl PmClone3\n"
    ".type PmClone3,@function\n"
    "PmClone3:\n"
    "  push %r12\n"
    "  push %r13\n"
    "  mov %rdx, %r12\n"
    "  mov %rcx, %r13\n"
    "  mov $435, %eax\n"  // SYS_clone3
    "  syscall\n"
    "  test %rax, %rax\n"
    "  jz 1f\n"
    "  pop %r13\n"
    "  pop %r12\n"
    "  ret\n"
    "1:\n"
    "  xor %ebp, %ebp\n"
    "  and $-16, %rsp\n"
    "  mov %r13, %rdi\n"
    "  call *%r12\n"
    "  mov %eax, %edi\n"
    "  mov $60, %eax\n"  // SYS_exit
    "  syscall\n"
    "  hlt\n"
    ".size PmClone3, .-PmClone3\n");
#else
#define PM_HAVE_CLONE3_TRAMPOLINE 0
#endif

namespace pm::supervisor {
namespace {

// Set once clone3 turned out to be missing (old kernel, or a seccomp filter
// that answers ENOSYS): from then on the child joins its cgroup2 by write.
std::atomic<bool> clone3_unavailable{!PM_HAVE_CLONE3_TRAMPOLINE};

// The step of the child that failed, written into shared memory.
enum class ChildStep : int {
  kNone = 0,
  kJoinCgroup,
  kSetsid,
  kMountPrivate,
  kMountProc,
  kLoopback,
  kDup2,
  kFileLimit,
  kChdir,
  kExec,
};

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
  // cgroup.procs fds to write "0" to, first thing.
  std::vector<int> join_fds;
  bool mount_private = false;  // a new mount namespace: make "/" private
  bool mount_proc = false;     // a new PID namespace: a /proc of its own
  bool loopback_up = false;    // a new network namespace: bring `lo` up
  bool set_file_limit = false;  // RLIMIT_NOFILE to `file_limit`
  rlimit file_limit = {};
  // Written by the child on failure.
  volatile ChildStep failed_step = ChildStep::kNone;
  volatile int failed_errno = 0;
  volatile int failed_join = -1;
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
  // Into its cgroups before anything else, so limits and accounting cover
  // every step from here on.
  for (size_t i = 0; i < ctx->join_fds.size(); ++i) {
    if (write(ctx->join_fds[i], "0", 1) != 1) {
      ctx->failed_join = static_cast<int>(i);
      fail(ChildStep::kJoinCgroup);
    }
  }
  // Its own session and process group: the group is what Stop signals.
  if (setsid() < 0) fail(ChildStep::kSetsid);
  // A new mount namespace starts as a copy sharing propagation with ours:
  // without this, the /proc below would be mounted on the host too.
  if (ctx->mount_private &&
      mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) {
    fail(ChildStep::kMountPrivate);
  }
  // /proc shows the PID namespace of whoever mounted it; ours is now the
  // child's, where it is PID 1.
  if (ctx->mount_proc &&
      mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC,
            nullptr) != 0) {
    fail(ChildStep::kMountProc);
  }
  if (ctx->loopback_up) {
    int sock = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct ifreq ifr = {};
    memcpy(ifr.ifr_name, "lo", 3);
    if (sock < 0 || ioctl(sock, SIOCGIFFLAGS, &ifr) != 0) {
      fail(ChildStep::kLoopback);
    }
    ifr.ifr_flags |= IFF_UP;
    if (ioctl(sock, SIOCSIFFLAGS, &ifr) != 0) fail(ChildStep::kLoopback);
    close(sock);
  }
  if (dup2(ctx->stdin_fd, 0) < 0 || dup2(ctx->stdout_fd, 1) < 0 ||
      dup2(ctx->stderr_fd, 2) < 0) {
    fail(ChildStep::kDup2);
  }
  // Nothing of the supervisor (sockets, other children's pipes) leaks in.
  syscall(SYS_close_range, 3, ~0U, 0);
  // Nor its raised file limit: programs expect select()'s 1024, as the
  // supervisor had before it raised its own (common/file_limit.h).
  if (ctx->set_file_limit && setrlimit(RLIMIT_NOFILE, &ctx->file_limit) != 0) {
    fail(ChildStep::kFileLimit);
  }
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

// `call: reason (ENAME)`, for calls whose arguments ErrnoError's
// `call("arg")` cannot show.
absl::Status CallError(absl::string_view call, int err) {
  return ErrnoStatus(call, err);
}

uint64_t NamespaceFlags(const SpawnIsolation& isolation) {
  uint64_t flags = 0;
  // Its /proc needs a mount namespace to be mounted in.
  if (isolation.pid) flags |= CLONE_NEWPID | CLONE_NEWNS;
  if (isolation.net) flags |= CLONE_NEWNET;
  if (isolation.mount) flags |= CLONE_NEWNS;
  return flags;
}

std::string CloneFlagNames(uint64_t flags) {
  std::vector<std::string> names = {"CLONE_VM", "CLONE_VFORK", "CLONE_PIDFD"};
  if (flags & CLONE_INTO_CGROUP) names.push_back("CLONE_INTO_CGROUP");
  if (flags & CLONE_NEWPID) names.push_back("CLONE_NEWPID");
  if (flags & CLONE_NEWNET) names.push_back("CLONE_NEWNET");
  if (flags & CLONE_NEWNS) names.push_back("CLONE_NEWNS");
  return absl::StrJoin(names, "|");
}

absl::Status CloneError(uint64_t flags, int err) {
  const std::string call = absl::StrCat(
      (flags & CLONE_INTO_CGROUP) ? "clone3(" : "clone(", CloneFlagNames(flags),
      ")");
  constexpr uint64_t kNamespaces = CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWNS;
  if ((flags & kNamespaces) != 0 && (err == EPERM || err == EINVAL ||
                                     err == ENOSPC || err == EUSERS)) {
    // The command asks for something this host will not give us.
    return absl::FailedPreconditionError(absl::StrCat(
        "cannot give the process namespaces of its own (isolate): ",
        CallError(call, err).message(),
        err == EPERM ? "; namespaces need CAP_SYS_ADMIN" : ""));
  }
  return CallError(call, err);
}

// The process's PATH: its env's, else the default.
absl::string_view SearchPath(const CommandLine& command) {
  const std::string* path = command.Getenv("PATH");
  return path != nullptr ? absl::string_view(*path) : kDefaultPath;
}

// The paths to execve, in order: the executable itself when it has a slash,
// else <dir>/<name> for each PATH entry (an empty entry means "."). Bytes
// throughout: a name or a PATH entry need not be UTF-8.
std::vector<std::string> ExecCandidates(const CommandLine& command) {
  const std::string& name = command.executable;
  if (name.find('/') != std::string::npos) return {name};
  std::vector<std::string> out;
  for (absl::string_view dir : absl::StrSplit(SearchPath(command), ':')) {
    out.push_back(dir.empty() ? absl::StrCat("./", name)
                              : absl::StrCat(dir, "/", name));
  }
  return out;
}

// Paths and names in messages are text: their bytes that are not UTF-8 are
// shown as \xNN.
absl::Status ChildError(const ChildContext& ctx,
                        const std::vector<std::string>& candidates,
                        const std::vector<std::string>& join_paths,
                        const CommandLine& command) {
  const int err = ctx.failed_errno;
  absl::Status status;
  switch (ctx.failed_step) {
    case ChildStep::kJoinCgroup: {
      const int i = ctx.failed_join;
      status = CallError(
          absl::StrCat("write(\"",
                       i >= 0 && i < static_cast<int>(join_paths.size())
                           ? join_paths[i]
                           : "cgroup.procs",
                       "\", \"0\")"),
          err);
      break;
    }
    case ChildStep::kMountPrivate:
      status = CallError("mount(\"/\", MS_REC | MS_PRIVATE)", err);
      break;
    case ChildStep::kMountProc:
      status = CallError("mount(\"proc\", \"/proc\")", err);
      break;
    case ChildStep::kLoopback:
      status = CallError("ioctl(\"lo\", SIOCSIFFLAGS, IFF_UP)", err);
      break;
    case ChildStep::kSetsid:
      status = ErrnoError("setsid", "", err);
      break;
    case ChildStep::kDup2:
      status = ErrnoError("dup2", "", err);
      break;
    case ChildStep::kFileLimit:
      status = CallError(
          absl::StrCat("setrlimit(RLIMIT_NOFILE, {", ctx.file_limit.rlim_cur,
                       ", ", ctx.file_limit.rlim_max, "})"),
          err);
      break;
    case ChildStep::kChdir:
      status = ErrnoError("chdir", EscapeInvalidUtf8(command.working_dir), err);
      break;
    case ChildStep::kExec:
    case ChildStep::kNone: {
      const std::string executable = EscapeInvalidUtf8(command.executable);
      if (command.executable.find('/') != std::string::npos) {
        status = ErrnoError("execve", executable, err);
        if (command.executable[0] != '/') {
          // Relative: say where it was looked for.
          status = Annotate(status, absl::StrCat("in the working dir ",
                                                 EscapeInvalidUtf8(ctx.working_dir)));
        }
      } else if (err == ENOENT) {
        status = absl::Status(
            absl::StatusCode::kNotFound,
            absl::StrCat("execvp(\"", executable,
                         "\"): No such file or directory (ENOENT): not found "
                         "in PATH=",
                         EscapeInvalidUtf8(SearchPath(command))));
      } else {
        int i = ctx.failed_candidate;
        status = ErrnoError(
            "execve",
            i >= 0 && i < static_cast<int>(candidates.size())
                ? EscapeInvalidUtf8(candidates[i])
                : "?",
            err);
      }
      break;
    }
  }
  // Whatever the OS said, the command could not be run as given.
  return absl::FailedPreconditionError(status.message());
}

}  // namespace

absl::StatusOr<SpawnedChild> SpawnCommand(CommandLine command,
                                          const SpawnIsolation& isolation,
                                          const SpawnOptions& options) {
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
  const std::vector<std::string> candidates = ExecCandidates(command);
  std::vector<std::string> argv_storage;
  argv_storage.reserve(command.args.size() + 1);
  argv_storage.push_back(command.executable);
  for (const std::string& arg : command.args) argv_storage.push_back(arg);
  std::vector<std::string> env_storage;
  env_storage.reserve(command.env.size() + 1);
  for (const auto& [name, value] : command.env) {
    env_storage.push_back(absl::StrCat(name, "=", value));
  }
  if (command.Getenv("PATH") == nullptr) {
    env_storage.push_back(absl::StrCat("PATH=", kDefaultPath));
  }

  ChildContext ctx;
  ctx.stdin_fd = dev_null.get();
  ctx.stdout_fd = out.write.get();
  ctx.stderr_fd = err.write.get();
  // None given: "/", never whatever directory the supervisor (or its
  // shim) happens to be in.
  ctx.working_dir = command.working_dir.empty() ? "/" : command.working_dir.c_str();
  for (const std::string& c : candidates) ctx.candidates.push_back(c.c_str());
  for (std::string& a : argv_storage) ctx.argv.push_back(a.data());
  ctx.argv.push_back(nullptr);
  for (std::string& e : env_storage) ctx.envp.push_back(e.data());
  ctx.envp.push_back(nullptr);

  const uint64_t ns_flags = NamespaceFlags(isolation);
  ctx.mount_private = (ns_flags & CLONE_NEWNS) != 0;
  ctx.mount_proc = (ns_flags & CLONE_NEWPID) != 0;
  ctx.loopback_up = (ns_flags & CLONE_NEWNET) != 0;
  if (options.file_limit) {
    ctx.set_file_limit = true;
    ctx.file_limit = *options.file_limit;
  }

  constexpr size_t kStackSize = 64 * 1024;
  std::unique_ptr<char[]> stack(new char[kStackSize]);

  // The cgroups the child joins by itself; with clone3 it is born in the
  // cgroup2 one.
  std::vector<std::string> join_paths;
  auto set_joins = [&](bool with_cgroup2) {
    ctx.join_fds.clear();
    join_paths.clear();
    if (with_cgroup2 && options.cgroup2_join.fd >= 0) {
      ctx.join_fds.push_back(options.cgroup2_join.fd);
      join_paths.push_back(options.cgroup2_join.path);
    }
    for (const CgroupJoin& join : options.joins) {
      ctx.join_fds.push_back(join.fd);
      join_paths.push_back(join.path);
    }
  };

  // Block every signal across clone: no handler of ours may run in the
  // child before it has reset the dispositions.
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  int pidfd = -1;
  pid_t pid = -1;
  int clone_errno = 0;
  uint64_t flags = CLONE_VM | CLONE_VFORK | CLONE_PIDFD | ns_flags;
  bool cloned = false;
#if PM_HAVE_CLONE3_TRAMPOLINE
  if (options.cgroup2_dir_fd >= 0 && !clone3_unavailable.load()) {
    set_joins(/*with_cgroup2=*/false);
    struct clone_args args = {};
    args.flags = flags | CLONE_INTO_CGROUP;
    args.pidfd = reinterpret_cast<uintptr_t>(&pidfd);
    args.exit_signal = SIGCHLD;
    args.stack = reinterpret_cast<uintptr_t>(stack.get());
    args.stack_size = kStackSize;
    args.cgroup = static_cast<uint64_t>(options.cgroup2_dir_fd);
    const long result = PmClone3(&args, sizeof(args), ChildMain, &ctx);
    if (result == -ENOSYS || result == -E2BIG) {
      clone3_unavailable.store(true);
    } else {
      cloned = true;
      flags |= CLONE_INTO_CGROUP;
      pid = result < 0 ? -1 : static_cast<pid_t>(result);
      clone_errno = result < 0 ? static_cast<int>(-result) : 0;
    }
  }
#endif
  if (!cloned) {
    set_joins(/*with_cgroup2=*/true);
    pid = clone(ChildMain, stack.get() + kStackSize,
                static_cast<int>(flags) | SIGCHLD, &ctx, &pidfd);
    clone_errno = errno;
  }
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  if (pid < 0) return CloneError(flags, clone_errno);

  SpawnedChild child;
  child.pid = pid;
  child.pidfd = Fd(pidfd);
  if (ctx.failed_step != ChildStep::kNone) {
    // The child has _exit(127)ed; reap it through its pidfd.
    siginfo_t info;
    while (waitid(static_cast<idtype_t>(P_PIDFD), pidfd, &info, WEXITED) != 0 &&
           errno == EINTR) {
    }
    return ChildError(ctx, candidates, join_paths, command);
  }
  child.executable = candidates[ctx.trying >= 0 ? ctx.trying : 0];
  child.command = std::move(command);
  child.stdout_read = std::move(out.read);
  child.stderr_read = std::move(err.read);
  return child;
}

}  // namespace pm::supervisor
