#include "stack/restart_backoff.h"

#include "gtest/gtest.h"

namespace pm::stack {
namespace {

const absl::Time kT0 = absl::FromUnixSeconds(1000);

TEST(RestartBackoffTest, DoublesFrom100msTo10s) {
  RestartBackoff backoff;
  absl::Time now = kT0;
  std::vector<int64_t> delays;
  for (int i = 0; i < 10; ++i) {
    const absl::Duration delay = backoff.Died(now);
    delays.push_back(absl::ToInt64Milliseconds(delay));
    now += delay;
  }
  EXPECT_EQ(delays, (std::vector<int64_t>{100, 200, 400, 800, 1600, 3200, 6400,
                                          10000, 10000, 10000}));
}

TEST(RestartBackoffTest, ShortHealthyRunsKeepGrowing) {
  RestartBackoff backoff;
  EXPECT_EQ(backoff.Died(kT0), absl::Milliseconds(100));
  backoff.Healthy(kT0 + absl::Seconds(1));
  EXPECT_EQ(backoff.Died(kT0 + absl::Seconds(10)), absl::Milliseconds(200));
  backoff.Healthy(kT0 + absl::Seconds(11));
  EXPECT_EQ(backoff.Died(kT0 + absl::Seconds(20)), absl::Milliseconds(400));
}

TEST(RestartBackoffTest, TenSecondsHealthyResetsTheDelay) {
  RestartBackoff backoff;
  for (int i = 0; i < 5; ++i) backoff.Died(kT0);
  backoff.Healthy(kT0);
  EXPECT_EQ(backoff.Died(kT0 + absl::Seconds(10)), absl::Milliseconds(100));
  EXPECT_EQ(backoff.Died(kT0 + absl::Seconds(10)), absl::Milliseconds(200));
}

TEST(RestartBackoffTest, NeverHealthyNeverResets) {
  RestartBackoff backoff;
  backoff.Died(kT0);
  // A minute without health (a service stuck starting) is no reason to
  // restart it faster.
  EXPECT_EQ(backoff.Died(kT0 + absl::Minutes(1)), absl::Milliseconds(200));
}

TEST(RestartBackoffTest, OptionsAreHonoured) {
  RestartBackoff backoff({absl::Milliseconds(5), absl::Milliseconds(12),
                          absl::Seconds(1)});
  EXPECT_EQ(backoff.Died(kT0), absl::Milliseconds(5));
  EXPECT_EQ(backoff.Died(kT0), absl::Milliseconds(10));
  EXPECT_EQ(backoff.Died(kT0), absl::Milliseconds(12));
  EXPECT_EQ(backoff.Died(kT0), absl::Milliseconds(12));
}

}  // namespace
}  // namespace pm::stack
