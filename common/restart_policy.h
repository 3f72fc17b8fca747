// A StartRequest's restart policy (pm.v1.RestartPolicy), as every service
// reads it: whether it restarts at all, its checks, and its durations with
// their defaults filled in.
#ifndef PM_COMMON_RESTART_POLICY_H_
#define PM_COMMON_RESTART_POLICY_H_

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "pm/v1/process_manager.pb.h"

namespace pm {

inline constexpr absl::Duration kDefaultFirstRestartDelay = absl::Milliseconds(100);
inline constexpr absl::Duration kDefaultMaxRestartDelay = absl::Seconds(30);
inline constexpr absl::Duration kDefaultRestartResetAfter = absl::Seconds(10);
// The longest delay, reset time or window a policy may hold.
inline constexpr absl::Duration kMaxRestartPolicyDuration = absl::Hours(24 * 7);

// Whether `request` restarts its process at all (on-failure or always).
bool RestartsOf(const pm::v1::StartRequest& request);

// INVALID_ARGUMENT naming the field: an unknown policy, a negative or
// unreadable duration, one above kMaxRestartPolicyDuration, a first delay
// above the maximum one.
absl::Status ValidateRestartPolicy(const pm::v1::RestartPolicy& policy);

// The policy's durations, defaults filled in.
struct RestartDurations {
  absl::Duration first_delay;
  absl::Duration max_delay;
  absl::Duration reset_after;
  absl::Duration window;  // zero: the whole life
};
RestartDurations DurationsOf(const pm::v1::RestartPolicy& policy);

}  // namespace pm

#endif  // PM_COMMON_RESTART_POLICY_H_
