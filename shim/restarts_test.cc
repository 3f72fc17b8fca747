#include "shim/restarts.h"

#include "gtest/gtest.h"

namespace pm::shim {
namespace {

const absl::Time kT0 = absl::FromUnixSeconds(1764700000);

RestartPolicy Policy(RestartPolicy::When when) {
  RestartPolicy policy;
  policy.when = when;
  return policy;
}

TEST(RestartsTest, WhenARunIsStartedAgain) {
  Restarts never(Policy(RestartPolicy::When::kNever));
  EXPECT_FALSE(never.Wanted(ExitStatus::Exited(1)));
  Restarts on_failure(Policy(RestartPolicy::When::kOnFailure));
  EXPECT_FALSE(on_failure.Wanted(ExitStatus::Exited(0)));
  EXPECT_TRUE(on_failure.Wanted(ExitStatus::Exited(3)));
  EXPECT_TRUE(on_failure.Wanted(ExitStatus::Signaled(9, false)));
  Restarts always(Policy(RestartPolicy::When::kAlways));
  EXPECT_TRUE(always.Wanted(ExitStatus::Exited(0)));
  // A stop is under way: the run that ends is the last.
  always.Forbid();
  EXPECT_FALSE(always.Wanted(ExitStatus::Signaled(15, false)));
}

TEST(RestartsTest, TheDelayDoublesUpToTheMaximumAndResetsAfterAGoodRun) {
  RestartPolicy policy = Policy(RestartPolicy::When::kAlways);
  policy.first_delay = absl::Milliseconds(100);
  policy.max_delay = absl::Milliseconds(700);
  policy.reset_after = absl::Seconds(10);
  Restarts restarts(policy);
  const absl::Duration quick = absl::Milliseconds(5);
  EXPECT_EQ(restarts.Next(kT0, quick, 0), absl::Milliseconds(100));
  EXPECT_EQ(restarts.Next(kT0, quick, 0), absl::Milliseconds(200));
  EXPECT_EQ(restarts.Next(kT0, quick, 0), absl::Milliseconds(400));
  EXPECT_EQ(restarts.Next(kT0, quick, 0), absl::Milliseconds(700));
  EXPECT_EQ(restarts.Next(kT0, quick, 0), absl::Milliseconds(700));
  // Up for reset_after: back to the first delay.
  EXPECT_EQ(restarts.Next(kT0, absl::Seconds(10), 0), absl::Milliseconds(100));
  EXPECT_EQ(restarts.count(), 6u);
}

TEST(RestartsTest, JitterMovesTheDelayByAtMostATenth) {
  RestartPolicy policy = Policy(RestartPolicy::When::kAlways);
  policy.first_delay = absl::Seconds(1);
  policy.max_delay = absl::Seconds(1);
  Restarts restarts(policy);
  EXPECT_EQ(restarts.Next(kT0, absl::ZeroDuration(), 1), absl::Milliseconds(1100));
  EXPECT_EQ(restarts.Next(kT0, absl::ZeroDuration(), -1), absl::Milliseconds(900));
  EXPECT_EQ(restarts.Next(kT0, absl::ZeroDuration(), 7), absl::Milliseconds(1100));
  // No delay: the first restart at once, the next ones never in a spin.
  policy.first_delay = absl::ZeroDuration();
  policy.max_delay = absl::ZeroDuration();
  Restarts immediate(policy);
  EXPECT_EQ(immediate.Next(kT0, absl::ZeroDuration(), 0), absl::ZeroDuration());
  EXPECT_EQ(immediate.Next(kT0, absl::ZeroDuration(), 0), kMinRepeatDelay);
  EXPECT_EQ(immediate.Next(kT0, absl::ZeroDuration(), 0), kMinRepeatDelay);
}

TEST(RestartsTest, TheCapWithinTheWindowGivesUp) {
  RestartPolicy policy = Policy(RestartPolicy::When::kOnFailure);
  policy.first_delay = absl::ZeroDuration();
  policy.max_restarts = 2;
  policy.window = absl::Seconds(60);
  Restarts restarts(policy);
  EXPECT_TRUE(restarts.Next(kT0, absl::ZeroDuration(), 0).has_value());
  EXPECT_TRUE(restarts.Next(kT0 + absl::Seconds(1), absl::ZeroDuration(), 0).has_value());
  EXPECT_FALSE(restarts.Next(kT0 + absl::Seconds(2), absl::ZeroDuration(), 0).has_value());
  // Once the first has left the window, one more is allowed.
  EXPECT_TRUE(restarts.Next(kT0 + absl::Seconds(61), absl::ZeroDuration(), 0).has_value());
  EXPECT_EQ(restarts.count(), 3u);

  // A zero window counts the whole life.
  policy.window = absl::ZeroDuration();
  Restarts lifetime(policy);
  EXPECT_TRUE(lifetime.Next(kT0, absl::ZeroDuration(), 0).has_value());
  EXPECT_TRUE(lifetime.Next(kT0 + absl::Hours(100), absl::ZeroDuration(), 0).has_value());
  EXPECT_FALSE(lifetime.Next(kT0 + absl::Hours(200), absl::ZeroDuration(), 0).has_value());
}

TEST(RestartsTest, WithoutACapItNeverGivesUp) {
  RestartPolicy policy = Policy(RestartPolicy::When::kAlways);
  policy.first_delay = absl::ZeroDuration();
  policy.max_delay = absl::ZeroDuration();
  Restarts restarts(policy);
  for (int i = 0; i < 10000; ++i) {
    ASSERT_TRUE(restarts.Next(kT0, absl::ZeroDuration(), 0).has_value());
  }
}

}  // namespace
}  // namespace pm::shim
