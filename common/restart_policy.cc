#include "common/restart_policy.h"

#include "absl/strings/str_cat.h"
#include "common/proto_time.h"

namespace pm {

bool RestartsOf(const pm::v1::StartRequest& request) {
  return request.has_restart() &&
         (request.restart().policy() == pm::v1::RestartPolicy::POLICY_ON_FAILURE ||
          request.restart().policy() == pm::v1::RestartPolicy::POLICY_ALWAYS);
}

RestartDurations DurationsOf(const pm::v1::RestartPolicy& policy) {
  RestartDurations d;
  d.first_delay = policy.has_first_delay() ? FromProtoDuration(policy.first_delay())
                                           : kDefaultFirstRestartDelay;
  d.max_delay = policy.has_max_delay() ? FromProtoDuration(policy.max_delay())
                                       : std::max(kDefaultMaxRestartDelay, d.first_delay);
  d.reset_after = policy.has_reset_after() ? FromProtoDuration(policy.reset_after())
                                           : kDefaultRestartResetAfter;
  d.window = policy.has_window() ? FromProtoDuration(policy.window()) : absl::ZeroDuration();
  return d;
}

absl::Status ValidateRestartPolicy(const pm::v1::RestartPolicy& policy) {
  if (!pm::v1::RestartPolicy::Policy_IsValid(policy.policy())) {
    return absl::InvalidArgumentError(
        absl::StrCat("restart.policy: ", policy.policy(), " is not a policy"));
  }
  const struct {
    const char* name;
    bool set;
    const google::protobuf::Duration* value;
  } fields[] = {
      {"first_delay", policy.has_first_delay(), &policy.first_delay()},
      {"max_delay", policy.has_max_delay(), &policy.max_delay()},
      {"reset_after", policy.has_reset_after(), &policy.reset_after()},
      {"window", policy.has_window(), &policy.window()},
  };
  for (const auto& field : fields) {
    if (!field.set) continue;
    const google::protobuf::Duration& d = *field.value;
    if (d.seconds() < 0 || d.nanos() < 0 || d.nanos() > 999999999 ||
        FromProtoDuration(d) > kMaxRestartPolicyDuration) {
      return absl::InvalidArgumentError(absl::StrCat(
          "restart.", field.name, " must be between 0 and ",
          absl::FormatDuration(kMaxRestartPolicyDuration), ", got ", d.seconds(), "s ",
          d.nanos(), "ns"));
    }
  }
  const RestartDurations d = DurationsOf(policy);
  if (d.first_delay > d.max_delay) {
    return absl::InvalidArgumentError(absl::StrCat(
        "restart.first_delay (", absl::FormatDuration(d.first_delay),
        ") is above restart.max_delay (", absl::FormatDuration(d.max_delay), ")"));
  }
  return absl::OkStatus();
}

}  // namespace pm
