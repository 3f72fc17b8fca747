#include "shim/restarts.h"

#include <algorithm>

namespace pm::shim {

bool Restarts::Wanted(const ExitStatus& status) const {
  if (forbidden_) return false;
  switch (policy_.when) {
    case RestartPolicy::When::kNever:
      return false;
    case RestartPolicy::When::kAlways:
      return true;
    case RestartPolicy::When::kOnFailure:
      return !(status.kind == ExitStatus::Kind::kExited && status.code == 0);
  }
  return false;
}

std::optional<absl::Duration> Restarts::Next(absl::Time now,
                                             absl::Duration uptime,
                                             double jitter) {
  if (policy_.max_restarts > 0) {
    if (policy_.window > absl::ZeroDuration()) {
      while (!recent_.empty() && recent_.front() <= now - policy_.window) {
        recent_.pop_front();
      }
    }
    if (recent_.size() >= policy_.max_restarts) return std::nullopt;
    recent_.push_back(now);
  }
  if (uptime >= policy_.reset_after) delay_ = policy_.first_delay;
  const absl::Duration base = delay_;
  // Never a spin: after a first restart at once, each next one waits.
  delay_ = std::max(std::min(std::max(delay_ * 2, policy_.first_delay), policy_.max_delay),
                    kMinRepeatDelay);
  ++count_;
  jitter = std::clamp(jitter, -1.0, 1.0);
  return std::max(absl::ZeroDuration(), base + base * (0.1 * jitter));
}

}  // namespace pm::shim
