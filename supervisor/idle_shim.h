// Idle pm-shims: started ahead of need (Spares), so a Start costs one Spawn
// message and one spawn, and ended when the supervisor stops.
//
//   Spares<shim::LaunchedShim> shims({.thread_name = "pm-shims", .what = "shim",
//       .make = [&maker] { return maker.Make(); },  // IdleShimMaker
//       .discard = [](shim::LaunchedShim s) { (void)EndIdleShim(std::move(s)); }});
//
// Internal to the supervisor library.
#ifndef PM_SUPERVISOR_IDLE_SHIM_H_
#define PM_SUPERVISOR_IDLE_SHIM_H_

#include <sys/types.h>

#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "shim/launch.h"

namespace pm::supervisor {

// Makes idle shims, each for a process yet to come with a fresh id
// (NewUuidV4) as its --process_id: it makes the process's directory while
// idle, so the Start that takes it does not wait for those creates; the id
// is the process's (LaunchedShim::process_id). They are forked by a
// pm-shim --zygote (shim/zygote.h), started at the first Make and again
// after it failed (at most once per kZygoteRetry; never again once one
// reported that it cannot fork on this host); without one, and for the
// one whose fork failed, launched by exec. Thread-safe: the spares' thread
// and the loop both make them.
class IdleShimMaker {
 public:
  static constexpr absl::Duration kZygoteRetry = absl::Seconds(1);
  // How long a fork may take before the zygote is given up.
  // (The loop may be the caller, when no spare is ready.)
  static constexpr absl::Duration kForkTimeout = absl::Seconds(2);

  explicit IdleShimMaker(shim::ShimLaunch launch);
  ~IdleShimMaker() { Stop(); }

  // A new idle shim. Errors are LaunchShim's and getrandom's (a zygote
  // that fails is logged and exec takes over).
  absl::StatusOr<shim::LaunchedShim> Make();
  // Ends the zygote (EndIdleShim) and makes no other; Make launches by
  // exec from then on. Idempotent.
  void Stop();
  // The zygote's pid, or -1 without one (for tests).
  pid_t zygote_pid();

 private:
  // Whose failure a failed fork was.
  enum class ForkFailure {
    kNone,
    kHere,        // this side's (out of fds): the caller gets the error
    kZygote,      // the zygote's (gone, silent, answering nonsense): replaced
    kCannotFork,  // it reported its fork failed: exec'd from then on
  };
  // A shim forked by the zygote; `*failure` says whose failure it was.
  absl::StatusOr<shim::LaunchedShim> ForkFromZygote(const std::string& id,
                                                    ForkFailure* failure)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Closes its link and reaps it; SIGKILL first if `kill`.
  void EndZygote(bool kill) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const shim::ShimLaunch launch_;
  absl::Mutex mu_;
  std::optional<shim::LaunchedShim> zygote_ ABSL_GUARDED_BY(mu_);
  absl::Time zygote_failed_at_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;
  // Set when a zygote reported it cannot fork: no zygote is started again.
  bool forks_unusable_ ABSL_GUARDED_BY(mu_) = false;
};

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
