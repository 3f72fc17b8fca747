#include "supervisor/idle_shim.h"

#include <errno.h>
#include <poll.h>
#include <sys/wait.h>

#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "common/uuid.h"

namespace pm::supervisor {

absl::StatusOr<shim::LaunchedShim> LaunchIdleShim(shim::ShimLaunch launch) {
  PM_ASSIGN_OR_RETURN(launch.process_id, NewUuidV4());
  return shim::LaunchShim(launch);
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
