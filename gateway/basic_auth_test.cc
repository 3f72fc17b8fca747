#include "gateway/basic_auth.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace pm::gateway {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

TEST(ParseBasicAuthTest, ParsesUserAndPassword) {
  absl::StatusOr<BasicCredentials> parsed =
      ParseBasicAuth(BasicAuthHeader("demo", "pa:ss word"));
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->user, "demo");
  EXPECT_EQ(parsed->password, "pa:ss word");  // split at the first colon
  EXPECT_TRUE(ParseBasicAuth("basic ZGVtbzp4").ok());  // scheme is case-blind
}

TEST(ParseBasicAuthTest, MalformedIsUnauthenticatedWithoutEcho) {
  for (const char* bad :
       {"", "Basic", "Basic ", "Bearer ZGVtbzp4", "Basic !!!notbase64!!!",
        "Basic bm9jb2xvbg==" /* "nocolon" */, "Basic OnB3" /* ":pw" */}) {
    absl::StatusOr<BasicCredentials> parsed = ParseBasicAuth(bad);
    EXPECT_EQ(parsed.status().code(), absl::StatusCode::kUnauthenticated) << bad;
    if (std::string(bad).size() > 6) {
      EXPECT_THAT(parsed.status().message(), Not(HasSubstr(std::string(bad).substr(6))));
    }
  }
}

}  // namespace
}  // namespace pm::gateway
