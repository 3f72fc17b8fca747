// RestartBackoff: the delay before restarting a service that died, as
// systemd's Restart= with a growing RestartSec: 100 ms, doubling to 10 s,
// back to 100 ms once the service had been healthy for 10 s.
//
//   pm::stack::RestartBackoff backoff;          // the defaults above
//   backoff.Healthy(absl::Now());                // it answers its health check
//   ...
//   absl::Duration delay = backoff.Died(absl::Now());   // 100ms, 200ms, ...
//
// A pure value: the times come from the caller, so the schedule is tested
// without waiting.
#ifndef PM_STACK_RESTART_BACKOFF_H_
#define PM_STACK_RESTART_BACKOFF_H_

#include <algorithm>

#include "absl/time/time.h"
#include "absl/types/optional.h"

namespace pm::stack {

struct BackoffOptions {
  absl::Duration initial = absl::Milliseconds(100);
  absl::Duration max = absl::Seconds(10);
  // Healthy this long before dying: the next delay is `initial` again.
  absl::Duration reset_after = absl::Seconds(10);
};

class RestartBackoff {
 public:
  explicit RestartBackoff(BackoffOptions options = {})
      : options_(options), next_(options.initial) {}

  // The service answered its health check at `now`.
  void Healthy(absl::Time now) { healthy_since_ = now; }

  // The service died at `now`: the delay before restarting it. Each death
  // without `reset_after` of health in between doubles the next delay, up
  // to `max`.
  absl::Duration Died(absl::Time now) {
    if (healthy_since_ && now - *healthy_since_ >= options_.reset_after) {
      next_ = options_.initial;
    }
    healthy_since_.reset();
    const absl::Duration delay = next_;
    next_ = std::min(next_ * 2, options_.max);
    return delay;
  }

 private:
  BackoffOptions options_;
  absl::Duration next_;
  absl::optional<absl::Time> healthy_since_;
};

}  // namespace pm::stack

#endif  // PM_STACK_RESTART_BACKOFF_H_
