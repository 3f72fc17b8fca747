// The decisions of a restart policy (RestartPolicy, protocol.h), apart from
// the shim that applies them: whether a run's end calls for another run,
// after what delay, and when the restarts' cap gives the process up.
//
//   Restarts restarts(policy);
//   if (restarts.Wanted(end.status)) {
//     std::optional<absl::Duration> delay =
//         restarts.Next(absl::Now(), uptime, jitter);  // nullopt: gave up
//   }
//
// The delay starts at first_delay and doubles for each restart after it, up
// to max_delay, and is at least kMinRepeatDelay after the first; a run that stayed up for reset_after brings it back to
// first_delay. Each delay is moved by up to 10% either way (jitter, in
// [-1, 1]), so processes that failed together do not restart in step. More
// than max_restarts restarts within `window` (the whole life, for a zero
// window) gives the process up, as supervisord's FATAL or systemd's
// start-limit-hit.
#ifndef PM_SHIM_RESTARTS_H_
#define PM_SHIM_RESTARTS_H_

#include <cstdint>
#include <deque>
#include <optional>

#include "absl/time/time.h"
#include "common/exit_status.h"
#include "shim/protocol.h"

namespace pm::shim {

// The least delay of a restart after the first: a crash loop whose policy
// says no delay costs at most ten spawns a second, not a core.
inline constexpr absl::Duration kMinRepeatDelay = absl::Milliseconds(100);

class Restarts {
 public:
  explicit Restarts(const RestartPolicy& policy)
      : policy_(policy), delay_(policy.first_delay) {}

  // Whether a run that ended with `status` is started again: kAlways, or
  // kOnFailure and it did not exit 0; never once NoRestart said a stop is
  // under way.
  bool Wanted(const ExitStatus& status) const;
  void Forbid() { forbidden_ = true; }
  bool forbidden() const { return forbidden_; }

  // A run that stayed up for `uptime` ended at `now` and Wanted another:
  // the delay before it, counted as a restart; nullopt when the cap is
  // reached (the process is given up, nothing counted).
  std::optional<absl::Duration> Next(absl::Time now, absl::Duration uptime,
                                     double jitter);

  // Restarts so far.
  uint32_t count() const { return count_; }
  const RestartPolicy& policy() const { return policy_; }

 private:
  const RestartPolicy policy_;
  // The delay of the next restart, before jitter.
  absl::Duration delay_;
  // When each restart within the window was decided, oldest first.
  std::deque<absl::Time> recent_;
  uint32_t count_ = 0;
  bool forbidden_ = false;
};

}  // namespace pm::shim

#endif  // PM_SHIM_RESTARTS_H_
