// AuthThrottle: repeated wrong passwords slow down, per client and per user.
//
//   AuthThrottle throttle;
//   if (absl::Duration wait = throttle.Blocked({"CN=laptop", "alice"}, now);
//       wait > absl::ZeroDuration()) { refuse, saying how long to wait; }
//   ... check the password ...
//   ok ? throttle.Succeeded(keys) : throttle.Failed(keys, now);
//
// Each key (the client certificate's subject, standing for the client: the
// socket address is not visible where gRPC authenticates a call; and the
// user name) counts its consecutive failures. After `free_failures` of
// them, the key is blocked for `initial_backoff`, doubling with every
// further failure up to `max_backoff`; a success clears it. While blocked,
// a try is refused without running PBKDF2, so a password-guessing client
// costs the gateway nothing and learns nothing. (The caller lets a try
// through anyway when the password is one the users store verified
// recently: a legitimate client of a user under attack keeps working.)
//
// Bounded: at most `max_keys` keys are tracked; when full, the entries whose
// block has ended are dropped first, then the oldest. Thread-safe.
#ifndef PM_GATEWAY_AUTH_THROTTLE_H_
#define PM_GATEWAY_AUTH_THROTTLE_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace pm::gateway {

struct AuthThrottleOptions {
  int free_failures = 5;
  absl::Duration initial_backoff = absl::Seconds(1);
  absl::Duration max_backoff = absl::Seconds(60);
  size_t max_keys = 10000;
};

class AuthThrottle {
 public:
  explicit AuthThrottle(AuthThrottleOptions options = {}) : options_(options) {}

  // How long the most blocked of `keys` stays blocked after `now` (zero
  // when none is).
  absl::Duration Blocked(const std::vector<std::string>& keys, absl::Time now);
  // For a try refused because `keys` are blocked: true when it is the first
  // refusal of a block (worth a log and an audit line), false for the rest,
  // which are only counted. `*suppressed` gets how many refusals went
  // unreported before this reported one. A client hammering a blocked key
  // thus costs one line per block, not one per try.
  bool ReportRefusal(const std::vector<std::string>& keys, uint64_t* suppressed);
  // A wrong password (or unknown user, or no usable credentials) for `keys`.
  void Failed(const std::vector<std::string>& keys, absl::Time now);
  // A right password: `keys` start afresh.
  void Succeeded(const std::vector<std::string>& keys);

  size_t tracked() ABSL_LOCKS_EXCLUDED(mu_);

 private:
  struct Entry {
    int failures = 0;
    absl::Time blocked_until = absl::InfinitePast();
    absl::Time last_failure = absl::InfinitePast();
    bool block_reported = false;
    uint64_t suppressed = 0;
  };
  void MakeRoom(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const AuthThrottleOptions options_;
  absl::Mutex mu_;
  absl::flat_hash_map<std::string, Entry> entries_ ABSL_GUARDED_BY(mu_);
};

}  // namespace pm::gateway

#endif  // PM_GATEWAY_AUTH_THROTTLE_H_
