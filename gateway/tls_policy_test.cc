#include "gateway/tls_policy.h"

#include <stdlib.h>

#include "absl/strings/str_join.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace pm::gateway {
namespace {

using ::testing::HasSubstr;

TEST(TlsPolicyTest, PolicyListIsValidForThisOpenSsl) {
  EXPECT_TRUE(ValidateCipherList(absl::StrJoin(AllowedTls12Suites(), ":")).ok());
}

TEST(TlsPolicyTest, UnknownSuiteIsNamed) {
  absl::Status status =
      ValidateCipherList("ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-NOPE-SHA999");
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("ECDHE-NOPE-SHA999"));
}

TEST(TlsPolicyTest, SelectorsAreNotSuites) {
  // "HIGH" is valid for OpenSSL but enables far more than itself.
  absl::Status status = ValidateCipherList("HIGH");
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("not exactly"));
  EXPECT_EQ(ValidateCipherList("").code(), absl::StatusCode::kInvalidArgument);
}

TEST(TlsPolicyTest, ApplySetsGrpcVariable) {
  unsetenv("GRPC_SSL_CIPHER_SUITES");
  ASSERT_TRUE(ApplyTlsPolicy().ok());
  EXPECT_STREQ(getenv("GRPC_SSL_CIPHER_SUITES"),
               absl::StrJoin(AllowedTls12Suites(), ":").c_str());
  EXPECT_TRUE(ApplyTlsPolicy().ok());  // idempotent
}

TEST(TlsPolicyTest, RefusesAForeignList) {
  setenv("GRPC_SSL_CIPHER_SUITES", "ECDHE-ECDSA-AES128-GCM-SHA256", 1);
  absl::Status status = ApplyTlsPolicy();
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(status.message(), HasSubstr("GRPC_SSL_CIPHER_SUITES"));
  unsetenv("GRPC_SSL_CIPHER_SUITES");
}

}  // namespace
}  // namespace pm::gateway
