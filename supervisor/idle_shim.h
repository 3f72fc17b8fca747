// Idle pm-shims: started ahead of need (Spares), so a Start costs one Spawn
// message and one spawn, and ended when the supervisor stops.
//
//   Spares<shim::LaunchedShim> shims({.thread_name = "pm-shims", .what = "shim",
//       .make = [launch] { return LaunchIdleShim(launch); },
//       .discard = [](shim::LaunchedShim s) { (void)EndIdleShim(std::move(s)); }});
//
// Internal to the supervisor library.
#ifndef PM_SUPERVISOR_IDLE_SHIM_H_
#define PM_SUPERVISOR_IDLE_SHIM_H_

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "shim/launch.h"

namespace pm::supervisor {

// Starts a shim for a process yet to come, with a fresh id (NewUuidV4) as
// its --process_id: it makes the process's directory while idle, so the
// Start that takes it does not wait for those creates. The id is the
// process's: LaunchedShim::process_id. Errors are LaunchShim's and
// getrandom's.
absl::StatusOr<shim::LaunchedShim> LaunchIdleShim(shim::ShimLaunch launch);

// Ends a shim that was given no Spawn: closes its control socket (an idle
// shim exits 0 at EOF), waits up to `bound` for it to exit and reaps it
// through its pidfd, so no zombie is left. A shim already reaped by the
// loop's SIGCHLD handler counts as ended. DEADLINE_EXCEEDED (naming the
// pid) if it has not exited by then; errors name poll or waitid and the OS
// reason.
absl::Status EndIdleShim(shim::LaunchedShim shim,
                         absl::Duration bound = absl::Seconds(2));

}  // namespace pm::supervisor

#endif  // PM_SUPERVISOR_IDLE_SHIM_H_
