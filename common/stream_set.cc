#include "common/stream_set.h"

#include <vector>

namespace pm {

bool StreamSet::Add(const std::shared_ptr<StreamReactor>& reactor) {
  absl::MutexLock lock(&mu_);
  if (shut_down_) {
    ++refused_;
    return false;
  }
  live_.emplace(reactor.get(), reactor);
  return true;
}

void StreamSet::Remove(StreamReactor* reactor) {
  absl::MutexLock lock(&mu_);
  live_.erase(reactor);
}

size_t StreamSet::Shutdown() {
  std::vector<std::shared_ptr<StreamReactor>> live;
  {
    absl::MutexLock lock(&mu_);
    shut_down_ = true;
    for (auto& [key, weak] : live_) {
      if (auto reactor = weak.lock()) live.push_back(std::move(reactor));
    }
  }
  for (auto& reactor : live) reactor->RequestShutdown();
  return live.size();
}

size_t StreamSet::size() const {
  absl::MutexLock lock(&mu_);
  return live_.size();
}

bool StreamSet::WaitForSize(size_t n, absl::Duration timeout) const {
  auto reached = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return live_.size() == n; };
  absl::MutexLock lock(&mu_);
  return mu_.AwaitWithTimeout(absl::Condition(&reached), timeout);
}

bool StreamSet::WaitForRefused(size_t n, absl::Duration timeout) const {
  auto reached = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return refused_ >= n; };
  absl::MutexLock lock(&mu_);
  return mu_.AwaitWithTimeout(absl::Condition(&reached), timeout);
}

}  // namespace pm
