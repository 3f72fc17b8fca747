// The bounds of a Stop, shared by the supervisor, which enforces them, and
// the Library and CLI, which check them early and wait for the answer.
//
//   PM_RETURN_IF_ERROR(pm::ValidateStopRequest(request));  // INVALID_ARGUMENT
//   absl::Duration grace = pm::StopGrace(request, options.default_grace);
//   // grace: zero for a forced stop; SIGKILL comes `grace` after SIGTERM.
#ifndef PM_COMMON_STOP_REQUEST_H_
#define PM_COMMON_STOP_REQUEST_H_

#include <cstdint>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "pm/v1/process_manager.pb.h"

namespace pm {

// The longest grace period a Stop may ask for (StopRequest.grace_period_ms):
// one hour. Longer is INVALID_ARGUMENT, so no stop, nor a shutdown that
// waits for one, can be held up for days by a typo or an overflow.
inline constexpr uint32_t kMaxGracePeriodMs = 3'600'000;

// The grace period a Stop with grace_period_ms 0 gets from a supervisor
// with the default --default_grace_ms.
inline constexpr absl::Duration kDefaultGracePeriod = absl::Seconds(10);

// OK for a well-formed id and a grace period of at most kMaxGracePeriodMs.
// INVALID_ARGUMENT naming the field otherwise, e.g. "grace_period_ms is
// 7200000; the maximum is 3600000 (1h)".
absl::Status ValidateStopRequest(const pm::v1::StopRequest& request);

// The time between SIGTERM and SIGKILL that `request` asks for: zero for a
// forced stop, `default_grace` when grace_period_ms is 0, else
// grace_period_ms (capped at the maximum, for a request not validated).
absl::Duration StopGrace(const pm::v1::StopRequest& request,
                         absl::Duration default_grace);

}  // namespace pm

#endif  // PM_COMMON_STOP_REQUEST_H_
