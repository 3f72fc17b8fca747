#include "common/stop_request.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "common/uuid.h"

namespace pm {

absl::Status ValidateStopRequest(const pm::v1::StopRequest& request) {
  PM_RETURN_IF_ERROR(ValidateProcessId(request.id()));
  if (request.grace_period_ms() > kMaxGracePeriodMs) {
    return absl::InvalidArgumentError(absl::StrCat(
        "grace_period_ms is ", request.grace_period_ms(),
        "; the maximum is ", kMaxGracePeriodMs, " (",
        absl::FormatDuration(absl::Milliseconds(kMaxGracePeriodMs)),
        "); force stops at once"));
  }
  return absl::OkStatus();
}

absl::Duration StopGrace(const pm::v1::StopRequest& request,
                         absl::Duration default_grace) {
  if (request.force()) return absl::ZeroDuration();
  if (request.grace_period_ms() == 0) return default_grace;
  return absl::Milliseconds(
      std::min<uint32_t>(request.grace_period_ms(), kMaxGracePeriodMs));
}

}  // namespace pm
