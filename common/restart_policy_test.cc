#include "common/restart_policy.h"

#include <cstdint>
#include <limits>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace pm {
namespace {

using ::pm::v1::RestartPolicy;

google::protobuf::Duration Proto(int64_t seconds, int32_t nanos) {
  google::protobuf::Duration d;
  d.set_seconds(seconds);
  d.set_nanos(nanos);
  return d;
}

TEST(RestartPolicyTest, DefaultsFillWhatIsUnset) {
  RestartPolicy policy;
  policy.set_policy(RestartPolicy::POLICY_ALWAYS);
  EXPECT_TRUE(ValidateRestartPolicy(policy).ok());
  const RestartDurations d = DurationsOf(policy);
  EXPECT_EQ(d.first_delay, absl::Milliseconds(100));
  EXPECT_EQ(d.max_delay, absl::Seconds(30));
  EXPECT_EQ(d.reset_after, absl::Seconds(10));
  EXPECT_EQ(d.window, absl::ZeroDuration());
  // A first delay above the default maximum raises the maximum with it.
  *policy.mutable_first_delay() = Proto(3600, 0);
  EXPECT_TRUE(ValidateRestartPolicy(policy).ok());
  EXPECT_EQ(DurationsOf(policy).max_delay, absl::Hours(1));
}

TEST(RestartPolicyTest, AnUnknownPolicyIsRefused) {
  RestartPolicy policy;
  policy.set_policy(static_cast<RestartPolicy::Policy>(99));
  const absl::Status status = ValidateRestartPolicy(policy);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(status.message(), "restart.policy: 99")) << status;
}

// Every duration field, with every way a Duration can be out of range or
// malformed: each refused naming the field, none overflowing.
TEST(RestartPolicyTest, HostileDurationsAreRefusedNamingTheField) {
  const int64_t kMax = std::numeric_limits<int64_t>::max();
  const int64_t kMin = std::numeric_limits<int64_t>::min();
  const int64_t kWeek = 7 * 24 * 3600;
  const struct {
    int64_t seconds;
    int32_t nanos;
  } bad[] = {{-1, 0},   {0, -1},   {1, -1},    {0, 1000000000}, {kMax, 0},
             {kMin, 0}, {kMax, 999999999}, {kWeek, 1}, {kWeek + 1, 0},
             {-1, -999999999}};
  for (const char* field : {"first_delay", "max_delay", "reset_after", "window"}) {
    for (const auto& value : bad) {
      RestartPolicy policy;
      policy.set_policy(RestartPolicy::POLICY_ON_FAILURE);
      *policy.mutable_max_delay() = Proto(kWeek, 0);  // so first_delay's check is its own
      google::protobuf::Duration* target =
          absl::string_view(field) == "first_delay"   ? policy.mutable_first_delay()
          : absl::string_view(field) == "max_delay"   ? policy.mutable_max_delay()
          : absl::string_view(field) == "reset_after" ? policy.mutable_reset_after()
                                                      : policy.mutable_window();
      *target = Proto(value.seconds, value.nanos);
      const absl::Status status = ValidateRestartPolicy(policy);
      EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument)
          << field << " " << value.seconds << "s " << value.nanos << "ns";
      EXPECT_TRUE(absl::StrContains(status.message(), absl::StrCat("restart.", field)))
          << status;
    }
    // The bounds themselves are fine.
    for (const google::protobuf::Duration& fine : {Proto(0, 0), Proto(kWeek, 0)}) {
      RestartPolicy policy;
      policy.set_policy(RestartPolicy::POLICY_ON_FAILURE);
      *policy.mutable_max_delay() = Proto(kWeek, 0);
      if (absl::string_view(field) == "first_delay") *policy.mutable_first_delay() = fine;
      if (absl::string_view(field) == "reset_after") *policy.mutable_reset_after() = fine;
      if (absl::string_view(field) == "window") *policy.mutable_window() = fine;
      EXPECT_TRUE(ValidateRestartPolicy(policy).ok()) << field << " " << fine.seconds();
    }
  }
}

TEST(RestartPolicyTest, AFirstDelayAboveTheMaximumIsRefused) {
  RestartPolicy policy;
  policy.set_policy(RestartPolicy::POLICY_ALWAYS);
  *policy.mutable_first_delay() = Proto(60, 0);
  *policy.mutable_max_delay() = Proto(1, 0);
  const absl::Status status = ValidateRestartPolicy(policy);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(status.message(), "restart.first_delay (1m) is above restart.max_delay (1s)");
}

}  // namespace
}  // namespace pm
