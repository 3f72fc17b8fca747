#include "supervisor/idle_shim.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include <utility>
#include <variant>

#include "absl/strings/str_cat.h"
#include "common/fd.h"
#include "common/log.h"
#include "common/status.h"
#include "common/uuid.h"
#include "shim/protocol.h"

namespace pm::supervisor {

IdleShimMaker::IdleShimMaker(shim::ShimLaunch launch) : launch_(std::move(launch)) {}

absl::StatusOr<shim::LaunchedShim> IdleShimMaker::Make() {
  PM_ASSIGN_OR_RETURN(std::string id, NewUuidV4());
  {
    absl::MutexLock lock(&mu_);
    if (!zygote_ && !stopped_ && !forks_unusable_ &&
        absl::Now() - zygote_failed_at_ >= kZygoteRetry) {
      shim::ShimLaunch zygote = launch_;
      zygote.zygote = true;
      absl::StatusOr<shim::LaunchedShim> launched = shim::LaunchShim(zygote);
      if (launched.ok()) {
        zygote_ = *std::move(launched);
      } else {
        PM_LOG(WARNING) << "cannot start a pm-shim zygote: " << launched.status()
                        << "; idle shims are exec'd";
        zygote_failed_at_ = absl::Now();
      }
    }
    if (zygote_) {
      ForkFailure failure = ForkFailure::kNone;
      absl::StatusOr<shim::LaunchedShim> forked = ForkFromZygote(id, &failure);
      if (forked.ok() || failure == ForkFailure::kHere) return forked;
      if (failure == ForkFailure::kCannotFork) {
        // This host will not let it fork that way (a seccomp filter that
        // refuses clone3 and clone, no PR_GET_TID_ADDRESS): exec from now on.
        PM_LOG(WARNING) << "pm-shim zygote " << zygote_->pid << " cannot fork a shim: "
                        << forked.status() << "; idle shims are exec'd from now on";
        forks_unusable_ = true;
      } else {
        PM_LOG(WARNING) << "pm-shim zygote " << zygote_->pid << ": " << forked.status()
                        << "; it is ended, and idle shims are exec'd until another starts";
      }
      EndZygote(/*kill=*/true);
      zygote_failed_at_ = absl::Now();
    }
  }
  shim::ShimLaunch launch = launch_;
  launch.process_id = std::move(id);
  return shim::LaunchShim(launch);
}

absl::StatusOr<shim::LaunchedShim> IdleShimMaker::ForkFromZygote(const std::string& id,
                                                                 ForkFailure* failure) {
  const std::string zygote = absl::StrCat("pm-shim zygote ", zygote_->pid);
  // Out of fds here: this side's failure.
  *failure = ForkFailure::kHere;
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) {
    return ErrnoError("socketpair", "AF_UNIX, SOCK_SEQPACKET");
  }
  Fd ours(sv[0]);
  Fd theirs(sv[1]);
  const int link = theirs.get();
  // From here on a failure is the zygote's, but for the fds it sends.
  *failure = ForkFailure::kZygote;
  PM_RETURN_IF_ERROR(shim::SendMessage(zygote_->control.get(), shim::ForkShim{id}, {&link, 1}));
  theirs.reset();
  pollfd answer = {zygote_->control.get(), POLLIN, 0};
  int ready;
  do {
    ready = poll(&answer, 1, static_cast<int>(absl::ToInt64Milliseconds(kForkTimeout)));
  } while (ready < 0 && errno == EINTR);
  if (ready < 0) return ErrnoError("poll", "the control socket of " + zygote);
  if (ready == 0) {
    return absl::DeadlineExceededError(absl::StrCat(
        zygote, " did not answer the ForkShim of ", id, " within ",
        absl::FormatDuration(kForkTimeout)));
  }
  absl::StatusOr<shim::Received> received = shim::ReceiveMessage(zygote_->control.get());
  if (!received.ok()) {
    // Out of fds for the pidfd: the shim it forked sees its link close
    // (`ours`) and exits.
    if (received.status().code() == absl::StatusCode::kResourceExhausted) {
      *failure = ForkFailure::kHere;
      return ErrnoError("recvmsg", "the pidfd from " + zygote, EMFILE);
    }
    return received.status();
  }
  shim::Received& got = *received;
  if (auto* failed = std::get_if<shim::SpawnFailed>(&got.message)) {
    *failure = ForkFailure::kCannotFork;
    return absl::Status(failed->code, absl::StrCat(zygote, ": ", failed->message));
  }
  auto* forked = std::get_if<shim::ShimForked>(&got.message);
  if (forked == nullptr) {
    return absl::InternalError(
        absl::StrCat("answered ForkShim with ", shim::MessageName(got.message)));
  }
  shim::LaunchedShim made;
  made.pid = forked->pid;
  made.pidfd = std::move(got.fds[0]);
  made.control = std::move(ours);
  made.process_id = id;
  return made;
}

void IdleShimMaker::Stop() {
  absl::MutexLock lock(&mu_);
  stopped_ = true;
  EndZygote(/*kill=*/false);
}

pid_t IdleShimMaker::zygote_pid() {
  absl::MutexLock lock(&mu_);
  return zygote_ ? zygote_->pid : -1;
}

void IdleShimMaker::EndZygote(bool kill) {
  if (!zygote_) return;
  const pid_t pid = zygote_->pid;
  // One that failed may hang: it is not waited for to exit by itself.
  if (kill) syscall(SYS_pidfd_send_signal, zygote_->pidfd.get(), SIGKILL, nullptr, 0);
  if (absl::Status ended = EndIdleShim(*std::move(zygote_)); !ended.ok()) {
    PM_LOG(WARNING) << "pm-shim zygote " << pid << ": " << ended;
  }
  zygote_.reset();
}

absl::Status EndIdleShim(shim::LaunchedShim shim, absl::Duration bound) {
  shim.control.reset();
  pollfd exited = {shim.pidfd.get(), POLLIN, 0};
  const int ready = poll(&exited, 1, absl::ToInt64Milliseconds(bound));
  if (ready < 0) return ErrnoError("poll", "the pidfd of idle shim " + absl::StrCat(shim.pid));
  if (ready == 0) {
    return absl::DeadlineExceededError(
        absl::StrCat("idle shim ", shim.pid, " did not exit within ",
                     absl::FormatDuration(bound), " of its control socket's close"));
  }
  siginfo_t info = {};
  if (waitid(static_cast<idtype_t>(P_PIDFD), shim.pidfd.get(), &info, WEXITED) != 0 &&
      errno != ECHILD) {  // ECHILD: the loop's SIGCHLD handler reaped it
    return ErrnoError("waitid", absl::StrCat("P_PIDFD of idle shim ", shim.pid));
  }
  return absl::OkStatus();
}

}  // namespace pm::supervisor
