#include "gateway/auth_throttle.h"

#include "gtest/gtest.h"

namespace pm::gateway {
namespace {

const absl::Time kT0 = absl::FromUnixSeconds(1700000000);

TEST(AuthThrottleTest, BlocksAfterTheFreeFailuresWithADoublingBackoff) {
  AuthThrottleOptions options;
  options.free_failures = 3;
  options.initial_backoff = absl::Seconds(1);
  options.max_backoff = absl::Seconds(4);
  AuthThrottle throttle(options);
  const std::vector<std::string> keys = {"user:alice", "client:CN=x"};
  throttle.Failed(keys, kT0);
  throttle.Failed(keys, kT0);
  EXPECT_EQ(throttle.Blocked(keys, kT0), absl::ZeroDuration());
  throttle.Failed(keys, kT0);
  EXPECT_EQ(throttle.Blocked(keys, kT0), absl::Seconds(1));
  EXPECT_EQ(throttle.Blocked(keys, kT0 + absl::Seconds(1)), absl::ZeroDuration());
  throttle.Failed(keys, kT0 + absl::Seconds(1));
  EXPECT_EQ(throttle.Blocked(keys, kT0 + absl::Seconds(1)), absl::Seconds(2));
  throttle.Failed(keys, kT0 + absl::Seconds(3));
  EXPECT_EQ(throttle.Blocked(keys, kT0 + absl::Seconds(3)), absl::Seconds(4));
  // Capped, however many more.
  for (int i = 0; i < 100; ++i) throttle.Failed(keys, kT0 + absl::Seconds(7));
  EXPECT_EQ(throttle.Blocked(keys, kT0 + absl::Seconds(7)), absl::Seconds(4));
  // Any one blocked key blocks a try that has it.
  EXPECT_EQ(throttle.Blocked({"user:bob", "client:CN=x"}, kT0 + absl::Seconds(7)),
            absl::Seconds(4));
  EXPECT_EQ(throttle.Blocked({"user:bob", "client:CN=y"}, kT0 + absl::Seconds(7)),
            absl::ZeroDuration());
  throttle.Succeeded(keys);
  EXPECT_EQ(throttle.Blocked(keys, kT0 + absl::Seconds(7)), absl::ZeroDuration());
}

TEST(AuthThrottleTest, ReportsTheFirstRefusalOfEachBlockAndCountsTheRest) {
  AuthThrottleOptions options;
  options.free_failures = 1;
  AuthThrottle throttle(options);
  const std::vector<std::string> keys = {"client:CN=x"};
  throttle.Failed(keys, kT0);
  uint64_t suppressed = 99;
  EXPECT_TRUE(throttle.ReportRefusal(keys, &suppressed));
  EXPECT_EQ(suppressed, 0u);
  for (int i = 0; i < 1000; ++i) ASSERT_FALSE(throttle.ReportRefusal(keys, &suppressed));
  // The next block is reported again, with the count of the quiet ones.
  throttle.Failed(keys, kT0 + absl::Seconds(2));
  EXPECT_TRUE(throttle.ReportRefusal(keys, &suppressed));
  EXPECT_EQ(suppressed, 1000u);
}

TEST(AuthThrottleTest, TracksABoundedNumberOfKeys) {
  AuthThrottleOptions options;
  options.free_failures = 1;
  options.max_keys = 100;
  AuthThrottle throttle(options);
  for (int i = 0; i < 10000; ++i) {
    throttle.Failed({"user:" + std::to_string(i)}, kT0 + absl::Milliseconds(i));
    ASSERT_LE(throttle.tracked(), 100u);
  }
  // The newest are kept.
  EXPECT_GT(throttle.Blocked({"user:9999"}, kT0 + absl::Seconds(9)),
            absl::ZeroDuration());
}

}  // namespace
}  // namespace pm::gateway
