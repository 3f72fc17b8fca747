#include "gateway/auth_throttle.h"

#include <algorithm>

namespace pm::gateway {

absl::Duration AuthThrottle::Blocked(const std::vector<std::string>& keys,
                                     absl::Time now) {
  absl::MutexLock lock(&mu_);
  absl::Duration longest = absl::ZeroDuration();
  for (const std::string& key : keys) {
    auto it = entries_.find(key);
    if (it == entries_.end()) continue;
    longest = std::max(longest, it->second.blocked_until - now);
  }
  return longest;
}

bool AuthThrottle::ReportRefusal(const std::vector<std::string>& keys,
                                 uint64_t* suppressed) {
  absl::MutexLock lock(&mu_);
  bool report = false;
  for (const std::string& key : keys) {
    auto it = entries_.find(key);
    if (it == entries_.end()) continue;
    if (!it->second.block_reported) {
      it->second.block_reported = true;
      report = true;
    }
  }
  uint64_t total = 0;
  for (const std::string& key : keys) {
    auto it = entries_.find(key);
    if (it == entries_.end()) continue;
    if (report) {
      total += it->second.suppressed;
      it->second.suppressed = 0;
    } else {
      ++it->second.suppressed;
    }
  }
  *suppressed = total;
  return report;
}

void AuthThrottle::Failed(const std::vector<std::string>& keys, absl::Time now) {
  absl::MutexLock lock(&mu_);
  for (const std::string& key : keys) {
    if (!entries_.contains(key)) MakeRoom(now);
    Entry& entry = entries_[key];
    ++entry.failures;
    entry.last_failure = now;
    // The free_failures-th failure blocks for initial_backoff.
    const int over = entry.failures - options_.free_failures + 1;
    if (over <= 0) continue;
    // initial * 2^(over-1), capped; the shift is bounded before it can
    // overflow.
    absl::Duration backoff = options_.max_backoff;
    if (over <= 30) {
      backoff = std::min(options_.max_backoff,
                         options_.initial_backoff * (int64_t{1} << (over - 1)));
    }
    entry.blocked_until = now + backoff;
    entry.block_reported = false;
  }
}

void AuthThrottle::Succeeded(const std::vector<std::string>& keys) {
  absl::MutexLock lock(&mu_);
  for (const std::string& key : keys) entries_.erase(key);
}

size_t AuthThrottle::tracked() {
  absl::MutexLock lock(&mu_);
  return entries_.size();
}

void AuthThrottle::MakeRoom(absl::Time now) {
  if (entries_.size() < options_.max_keys) return;
  // Entries no longer blocked count only toward a next block; forgetting
  // them costs an attacker's next few tries nothing, so they go first.
  for (auto it = entries_.begin(); it != entries_.end();) {
    if (it->second.blocked_until <= now) {
      entries_.erase(it++);
    } else {
      ++it;
    }
  }
  if (entries_.size() < options_.max_keys) return;
  auto oldest = std::min_element(
      entries_.begin(), entries_.end(), [](const auto& a, const auto& b) {
        return a.second.last_failure < b.second.last_failure;
      });
  entries_.erase(oldest);
}

}  // namespace pm::gateway
