#include "shim/zygote.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/sched.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdint>
#include <string>
#include <utility>
#include <variant>

#include "absl/strings/str_cat.h"
#include "common/fd.h"
#include "common/log.h"
#include "common/status_core.h"
#include "shim/protocol.h"

namespace pm::shim {

namespace {

// Forks the calling (single-threaded) process as glibc's fork() does, but
// with CLONE_PARENT, so the child is the caller's parent's child, and a
// pidfd for it. The child's copy of glibc's thread descriptor gets its own
// thread id (CLONE_CHILD_SETTID at the address the kernel was given for
// it, PR_GET_TID_ADDRESS), as fork() does it. 0 in the child, the child's
// pid in the caller; errors name clone3 and the OS reason.
absl::StatusOr<pid_t> ForkAsSibling(int* pidfd) {
  // Without it the child would carry the zygote's thread id in glibc's
  // descriptor: then the shim is exec'd instead (the caller falls back).
  int* tid_address = nullptr;
  if (prctl(PR_GET_TID_ADDRESS, &tid_address) != 0 || tid_address == nullptr) {
    return ErrnoError("prctl", "PR_GET_TID_ADDRESS");
  }
  const uint64_t flags =
      CLONE_PARENT | CLONE_PIDFD | CLONE_CHILD_SETTID | CLONE_CHILD_CLEARTID;
  clone_args args = {};
  args.flags = flags;
  args.pidfd = reinterpret_cast<uint64_t>(pidfd);
  args.child_tid = reinterpret_cast<uint64_t>(tid_address);
  // With CLONE_PARENT the exit signal is the caller's own; clone3 wants 0.
  args.exit_signal = 0;
  long pid = syscall(SYS_clone3, &args, sizeof(args));
#if defined(__x86_64__)
  if (pid < 0 && errno == ENOSYS) {
    // clone3 refused (an old kernel, a seccomp filter): clone(2) takes the
    // same flags, the pidfd through its parent_tid argument (x86-64 order:
    // flags, stack, parent_tid, child_tid, tls).
    pid = syscall(SYS_clone, flags, nullptr, pidfd, tid_address, nullptr);
    if (pid < 0) return ErrnoError("clone", "CLONE_PARENT | CLONE_PIDFD");
  }
#endif
  if (pid < 0) return ErrnoError("clone3", "CLONE_PARENT | CLONE_PIDFD");
  return static_cast<pid_t>(pid);
}

}  // namespace

absl::StatusOr<std::optional<ShimFlags>> ServeForks(const ShimFlags& flags) {
  prctl(PR_SET_NAME, kZygoteName);
  // Out of the supervisor's session, deaf to a terminal's Ctrl+C and
  // hangup, as a shim is: only its control socket's end ends it.
  setsid();
  for (int sig : {SIGINT, SIGHUP, SIGTERM, SIGPIPE}) signal(sig, SIG_IGN);
  Fd control(flags.control_fd);
  for (;;) {
    absl::StatusOr<Received> got = ReceiveMessage(control.get());
    // Let go: EOF, or ECONNRESET when the supervisor died before reading
    // what the zygote last sent.
    if (!got.ok() && (got.status().code() == absl::StatusCode::kNotFound ||
                      ErrnoOf(got.status()) == ECONNRESET)) {
      return std::nullopt;
    }
    if (!got.ok()) {
      if (ErrnoOf(got.status())) return Annotate(got.status(), "zygote control");
      PM_LOG(ERROR) << "zygote control: " << got.status();
      continue;  // a malformed message: refused, the next may be fine
    }
    const ForkShim* fork = std::get_if<ForkShim>(&got->message);
    if (fork == nullptr) {
      PM_LOG(ERROR) << "zygote control: " << MessageName(got->message)
                    << "; only ForkShim is expected";
      continue;
    }
    // Closed by the child once it calls itself pm-shim: the answer waits
    // for that, so whoever looks at the supervisor's children by name
    // once it has the shim sees one more pm-shim.
    int named[2];
    if (pipe2(named, O_CLOEXEC) != 0) {
      PM_LOG(ERROR) << ErrnoError("pipe2", "for a fork of a shim");
      named[0] = named[1] = -1;
    }
    Fd named_read(named[0]), named_write(named[1]);
    int pidfd = -1;
    absl::StatusOr<pid_t> pid = ForkAsSibling(&pidfd);
    if (pid.ok() && *pid == 0) {
      // The new shim. `control` (the zygote's link) closes as this returns.
      prctl(PR_SET_NAME, "pm-shim");
      named_write.reset();
      ShimFlags shim = flags;
      shim.zygote = false;
      shim.control_fd = got->fds[0].release();
      shim.process_id = fork->uuid;
      return shim;
    }
    named_write.reset();
    if (pid.ok() && named_read) {
      char byte;
      while (read(named_read.get(), &byte, 1) < 0 && errno == EINTR) {
      }
    }
    absl::Status sent;
    if (!pid.ok()) {
      PM_LOG(ERROR) << "fork of a shim for " << fork->uuid << ": " << pid.status();
      sent = SendMessage(control.get(),
                         SpawnFailed{pid.status().code(), std::string(pid.status().message())},
                         {});
    } else {
      Fd owned_pidfd(pidfd);
      sent = SendMessage(control.get(), ShimForked{*pid}, {&pidfd, 1});
    }
    if (!sent.ok()) return Annotate(sent, "zygote control");
  }
}

}  // namespace pm::shim
