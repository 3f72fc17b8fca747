#include "gateway/user_quotas.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace pm::gateway {
namespace {

using ::testing::HasSubstr;

const absl::Time kT0 = absl::FromUnixSeconds(1700000000);

TEST(UserQuotasTest, StreamSlotsAreCappedPerUserAndGivenBack) {
  UserQuotaOptions options;
  options.max_streams = 2;
  UserQuotas quotas(options);
  absl::StatusOr<UserQuotas::Lease> a = quotas.OpenStream("alice");
  absl::StatusOr<UserQuotas::Lease> b = quotas.OpenStream("alice");
  ASSERT_TRUE(a.ok() && b.ok());
  absl::StatusOr<UserQuotas::Lease> c = quotas.OpenStream("alice");
  EXPECT_EQ(c.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(c.status().message(), HasSubstr("--max_streams_per_user=2"));
  EXPECT_TRUE(quotas.OpenStream("bob").ok());
  *a = UserQuotas::Lease();
  EXPECT_EQ(quotas.open_streams("alice"), 1);
  {
    absl::StatusOr<UserQuotas::Lease> d = quotas.OpenStream("alice");
    ASSERT_TRUE(d.ok());
    UserQuotas::Lease moved = *std::move(d);
    EXPECT_EQ(quotas.open_streams("alice"), 2);
  }
  EXPECT_EQ(quotas.open_streams("alice"), 1);
}

TEST(UserQuotasTest, CallSlotsAreCappedApartFromStreams) {
  UserQuotaOptions options;
  options.max_streams = 1;
  options.max_calls = 2;
  UserQuotas quotas(options);
  absl::StatusOr<UserQuotas::Lease> stream = quotas.OpenStream("alice");
  absl::StatusOr<UserQuotas::Lease> a = quotas.OpenCall("alice");
  absl::StatusOr<UserQuotas::Lease> b = quotas.OpenCall("alice");
  ASSERT_TRUE(stream.ok() && a.ok() && b.ok());
  absl::StatusOr<UserQuotas::Lease> c = quotas.OpenCall("alice");
  EXPECT_EQ(c.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(c.status().message(), HasSubstr("--max_calls_per_user=2"));
  *a = UserQuotas::Lease();
  EXPECT_TRUE(quotas.OpenCall("alice").ok());
  EXPECT_EQ(quotas.open_streams("alice"), 1);
}

TEST(UserQuotasTest, StartsAreATokenBucket) {
  UserQuotaOptions options;
  options.starts_per_second = 2;
  options.start_burst = 3;
  UserQuotas quotas(options);
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(quotas.TakeStart("alice", kT0).ok());
  absl::Status refused = quotas.TakeStart("alice", kT0);
  EXPECT_EQ(refused.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(refused.message(), HasSubstr("--max_starts_per_second_per_user=2"));
  EXPECT_TRUE(quotas.TakeStart("bob", kT0).ok());
  // Half a second brings one token back.
  EXPECT_TRUE(quotas.TakeStart("alice", kT0 + absl::Milliseconds(500)).ok());
  EXPECT_FALSE(quotas.TakeStart("alice", kT0 + absl::Milliseconds(500)).ok());
  // No cap at 0.
  options.max_streams = 0;
  options.starts_per_second = 0;
  UserQuotas open(options);
  for (int i = 0; i < 1000; ++i) ASSERT_TRUE(open.TakeStart("alice", kT0).ok());
}

}  // namespace
}  // namespace pm::gateway
