#include "common/flag_groups.h"

#include "gtest/gtest.h"

namespace pm {
namespace {

TEST(CheckAllOrNoneTest, AllOrNoneIsFine) {
  EXPECT_TRUE(CheckAllOrNone({{"--a", "x"}, {"--b", "y"}, {"--c", "z"}}, "it").ok());
  EXPECT_TRUE(CheckAllOrNone({{"--a", ""}, {"--b", ""}, {"--c", ""}}, "it").ok());
}

TEST(CheckAllOrNoneTest, APartialSetIsRefusedNamingWhatIsMissing) {
  const absl::Status one = CheckAllOrNone(
      {{"--etcd_ca_file", "ca.pem"}, {"--etcd_cert_file", "c.pem"}, {"--etcd_key_file", ""}},
      "TLS to etcd");
  EXPECT_EQ(one.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(one.message(),
            "--etcd_key_file is missing: TLS to etcd takes --etcd_ca_file, "
            "--etcd_cert_file and --etcd_key_file together (or none of them)");
  const absl::Status two = CheckAllOrNone(
      {{"--etcd_ca_file", ""}, {"--etcd_cert_file", "c.pem"}, {"--etcd_key_file", ""}},
      "TLS to etcd");
  EXPECT_EQ(two.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(two.message(),
            "--etcd_ca_file and --etcd_key_file are missing: TLS to etcd takes "
            "--etcd_ca_file, --etcd_cert_file and --etcd_key_file together (or none of them)");
}

}  // namespace
}  // namespace pm
