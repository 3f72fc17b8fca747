// UserQuotas: per-user caps on what one gateway user may hold or ask for.
//
//   UserQuotas quotas(UserQuotaOptions{});  // 256 streams, 50 starts/s
//   PM_ASSIGN_OR_RETURN(UserQuotas::Lease lease, quotas.OpenStream("alice"));
//   // ... the stream runs; the lease gives its slot back when destroyed
//   PM_RETURN_IF_ERROR(quotas.TakeStart("alice"));
//
// Streams: StreamOutput and Wait calls open at once (each holds a backend
// call for as long as the process runs). Calls: the other calls (Start,
// Stop, GetStatus, List) in flight at once; each holds backend work (a List
// copies the user's records), so a flood of them is bounded per user rather
// than queued without end. Starts: a token bucket of
// `start_burst` tokens refilled at `starts_per_second`. Over a cap the
// answer is RESOURCE_EXHAUSTED naming the cap and the gateway flag that
// sets it, so an operator reading a client's error knows what to change.
// A cap of 0 means no cap. Thread-safe; memory is one small entry per user
// that has called (users come from the users file, so they are bounded).
#ifndef PM_GATEWAY_USER_QUOTAS_H_
#define PM_GATEWAY_USER_QUOTAS_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace pm::gateway {

struct UserQuotaOptions {
  // --max_streams_per_user
  int64_t max_streams = 256;
  // --max_calls_per_user
  int64_t max_calls = 1000;
  // --max_starts_per_second_per_user (tokens per second) and the bucket's
  // size (a burst of starts at once).
  double starts_per_second = 50;
  double start_burst = 100;
};

class UserQuotas {
 public:
  explicit UserQuotas(UserQuotaOptions options) : options_(options) {}

  // Holds one stream slot of a user; gives it back when destroyed.
  class Lease {
   public:
    Lease() = default;
    Lease(Lease&& other) noexcept { *this = std::move(other); }
    Lease& operator=(Lease&& other) noexcept;
    ~Lease();
    explicit operator bool() const { return quotas_ != nullptr; }

   private:
    friend class UserQuotas;
    Lease(UserQuotas* quotas, std::string user, bool stream)
        : quotas_(quotas), user_(std::move(user)), stream_(stream) {}
    UserQuotas* quotas_ = nullptr;
    std::string user_;
    bool stream_ = false;
  };

  // A stream slot, or RESOURCE_EXHAUSTED naming --max_streams_per_user.
  absl::StatusOr<Lease> OpenStream(const std::string& user);
  // A call slot, or RESOURCE_EXHAUSTED naming --max_calls_per_user.
  absl::StatusOr<Lease> OpenCall(const std::string& user);
  // A start token, or RESOURCE_EXHAUSTED naming
  // --max_starts_per_second_per_user.
  absl::Status TakeStart(const std::string& user, absl::Time now = absl::Now());

  int64_t open_streams(const std::string& user);

 private:
  struct PerUser {
    int64_t streams = 0;
    int64_t calls = 0;
    double tokens = -1;  // < 0: a full bucket, never used yet
    absl::Time refilled = absl::InfinitePast();
  };
  void Close(const std::string& user, bool stream);

  const UserQuotaOptions options_;
  absl::Mutex mu_;
  absl::flat_hash_map<std::string, PerUser> users_ ABSL_GUARDED_BY(mu_);
};

}  // namespace pm::gateway

#endif  // PM_GATEWAY_USER_QUOTAS_H_
