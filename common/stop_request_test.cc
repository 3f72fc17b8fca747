#include "common/stop_request.h"

#include <cstdint>
#include <limits>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace pm {
namespace {

using ::testing::HasSubstr;

constexpr char kId[] = "0b7e3d1c-6a1f-4e8e-9f3c-2d6a5b4c3d2e";

pm::v1::StopRequest Request(uint32_t grace_ms, bool force = false) {
  pm::v1::StopRequest request;
  request.set_id(kId);
  request.set_grace_period_ms(grace_ms);
  request.set_force(force);
  return request;
}

TEST(ValidateStopRequestTest, AcceptsGracePeriodsUpToTheMaximum) {
  EXPECT_TRUE(ValidateStopRequest(Request(0)).ok());
  EXPECT_TRUE(ValidateStopRequest(Request(1)).ok());
  EXPECT_TRUE(ValidateStopRequest(Request(3'600'000)).ok());
  EXPECT_TRUE(ValidateStopRequest(Request(0, /*force=*/true)).ok());
}

TEST(ValidateStopRequestTest, AGracePeriodAboveTheMaximumNamesTheFieldAndTheMaximum) {
  for (uint32_t grace : {3'600'001u, std::numeric_limits<uint32_t>::max()}) {
    absl::Status status = ValidateStopRequest(Request(grace));
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << grace;
    EXPECT_THAT(status.message(), HasSubstr("grace_period_ms"));
    EXPECT_THAT(status.message(), HasSubstr("the maximum is 3600000 (1h)"));
  }
}

TEST(ValidateStopRequestTest, AMalformedIdIsInvalidArgument) {
  pm::v1::StopRequest request = Request(1000);
  request.set_id("not-a-uuid");
  EXPECT_EQ(ValidateStopRequest(request).code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(StopGraceTest, ZeroIsTheDefaultAndForceIsNoGrace) {
  EXPECT_EQ(StopGrace(Request(0), absl::Seconds(7)), absl::Seconds(7));
  EXPECT_EQ(StopGrace(Request(1500), absl::Seconds(7)), absl::Milliseconds(1500));
  EXPECT_EQ(StopGrace(Request(1500, /*force=*/true), absl::Seconds(7)),
            absl::ZeroDuration());
  EXPECT_EQ(StopGrace(Request(0, /*force=*/true), absl::Seconds(7)),
            absl::ZeroDuration());
}

TEST(StopGraceTest, AnHourDoesNotOverflowAndMoreIsCapped) {
  EXPECT_EQ(StopGrace(Request(3'600'000), kDefaultGracePeriod), absl::Hours(1));
  EXPECT_EQ(StopGrace(Request(std::numeric_limits<uint32_t>::max()),
                      kDefaultGracePeriod),
            absl::Hours(1));
}

}  // namespace
}  // namespace pm
