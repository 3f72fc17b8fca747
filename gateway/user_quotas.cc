#include "gateway/user_quotas.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace pm::gateway {

UserQuotas::Lease& UserQuotas::Lease::operator=(Lease&& other) noexcept {
  if (this != &other) {
    if (quotas_ != nullptr) quotas_->Close(user_, stream_);
    quotas_ = other.quotas_;
    user_ = std::move(other.user_);
    stream_ = other.stream_;
    other.quotas_ = nullptr;
  }
  return *this;
}

UserQuotas::Lease::~Lease() {
  if (quotas_ != nullptr) quotas_->Close(user_, stream_);
}

absl::StatusOr<UserQuotas::Lease> UserQuotas::OpenStream(const std::string& user) {
  absl::MutexLock lock(&mu_);
  PerUser& entry = users_[user];
  if (options_.max_streams > 0 && entry.streams >= options_.max_streams) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "user \"", user, "\" already has ", entry.streams,
        " streams open (StreamOutput and Wait), the cap set by the gateway's "
        "--max_streams_per_user=",
        options_.max_streams, "; end one first"));
  }
  ++entry.streams;
  return Lease(this, user, /*stream=*/true);
}

absl::StatusOr<UserQuotas::Lease> UserQuotas::OpenCall(const std::string& user) {
  absl::MutexLock lock(&mu_);
  PerUser& entry = users_[user];
  if (options_.max_calls > 0 && entry.calls >= options_.max_calls) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "user \"", user, "\" already has ", entry.calls,
        " calls in flight, the cap set by the gateway's --max_calls_per_user=",
        options_.max_calls, "; wait for their answers first"));
  }
  ++entry.calls;
  return Lease(this, user, /*stream=*/false);
}

void UserQuotas::Close(const std::string& user, bool stream) {
  absl::MutexLock lock(&mu_);
  auto it = users_.find(user);
  if (it == users_.end()) return;
  int64_t& open = stream ? it->second.streams : it->second.calls;
  if (open > 0) --open;
}

absl::Status UserQuotas::TakeStart(const std::string& user, absl::Time now) {
  if (options_.starts_per_second <= 0) return absl::OkStatus();
  const double burst = std::max(1.0, options_.start_burst);
  absl::MutexLock lock(&mu_);
  PerUser& entry = users_[user];
  if (entry.tokens < 0) {
    entry.tokens = burst;
  } else {
    const double elapsed = absl::ToDoubleSeconds(now - entry.refilled);
    entry.tokens = std::min(burst, entry.tokens +
                                       std::max(0.0, elapsed) *
                                           options_.starts_per_second);
  }
  entry.refilled = now;
  if (entry.tokens < 1) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "user \"", user, "\" is starting processes faster than the gateway's "
        "--max_starts_per_second_per_user=",
        options_.starts_per_second, " (bursts of ", burst,
        "); retry in a moment"));
  }
  entry.tokens -= 1;
  return absl::OkStatus();
}

int64_t UserQuotas::open_streams(const std::string& user) {
  absl::MutexLock lock(&mu_);
  auto it = users_.find(user);
  return it == users_.end() ? 0 : it->second.streams;
}

}  // namespace pm::gateway
