#include "common/uuid.h"

#include <set>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace pm {
namespace {

using ::testing::HasSubstr;

TEST(UuidTest, NewUuidIsVersion4AndValid) {
  absl::StatusOr<std::string> id = NewUuidV4();
  ASSERT_TRUE(id.ok()) << id.status();
  ASSERT_EQ(id->size(), 36u);
  EXPECT_EQ((*id)[14], '4');
  EXPECT_THAT(std::string("89ab"), HasSubstr(std::string(1, (*id)[19])));
  EXPECT_TRUE(ValidateProcessId(*id).ok());
}

TEST(UuidTest, IdsDoNotRepeat) {
  std::set<std::string> seen;
  for (int i = 0; i < 1000; ++i) seen.insert(*NewUuidV4());
  EXPECT_EQ(seen.size(), 1000u);
}

TEST(UuidTest, MalformedIdsAreInvalidArgument) {
  for (const char* bad :
       {"", "123", "123e4567-e89b-42d3-a456-42661417400", "123e4567e89b42d3a456426614174000xxxx",
        "123e4567-e89b-42d3-a456-42661417400g"}) {
    absl::Status status = ValidateProcessId(bad);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_THAT(status.message(), HasSubstr("malformed process id")) << bad;
  }
  EXPECT_TRUE(ValidateProcessId("123E4567-E89B-42D3-A456-426614174000").ok());
}

}  // namespace
}  // namespace pm
