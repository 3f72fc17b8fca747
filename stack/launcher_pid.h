// The running launcher's pid file, so that `make upgrade` (stack --upgrade)
// can signal it: "<pid> <start ticks>" in <runtime_dir>/stack.pid, the start
// time (field 22 of /proc/PID/stat) naming the process for the life of the
// boot, so a stale file of a dead launcher never signals a recycled pid.
//
//   PM_RETURN_IF_ERROR(pm::stack::WriteLauncherPidFile(runtime_dir));
//   ...   // from another process:
//   PM_RETURN_IF_ERROR(pm::stack::SignalLauncher(runtime_dir, SIGHUP));
#ifndef PM_STACK_LAUNCHER_PID_H_
#define PM_STACK_LAUNCHER_PID_H_

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/fd.h"

namespace pm::stack {

std::string LauncherPidFile(const std::string& runtime_dir);

// One launcher per runtime dir: takes an exclusive flock(2) on the runtime
// dir itself (made as EnsureRuntimeDir does), held while the returned fd
// (close-on-exec) is open, and let go by the kernel when the launcher dies
// however it dies.
// FAILED_PRECONDITION when another process holds it, naming the launcher's
// pid from the pid file when there is one; errors name the call and path.
absl::StatusOr<Fd> LockRuntimeDir(const std::string& runtime_dir);

// Writes this process's pid and start time to the pid file atomically
// (a temporary file renamed over it). Errors name the call and the path.
absl::Status WriteLauncherPidFile(const std::string& runtime_dir);

// Removes the pid file if it names this process.
void RemoveLauncherPidFile(const std::string& runtime_dir);

// Sends `sig` to the launcher named by the pid file, through a pidfd.
// NOT_FOUND when there is no pid file (no launcher runs on that runtime
// dir) or its process is gone; FAILED_PRECONDITION when the pid now names
// another process (the launcher died without removing it).
absl::Status SignalLauncher(const std::string& runtime_dir, int sig);

}  // namespace pm::stack

#endif  // PM_STACK_LAUNCHER_PID_H_
