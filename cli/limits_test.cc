#include "cli/limits.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace pm::cli {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

// The message of an INVALID_ARGUMENT (and that it is one).
template <typename T>
std::string Error(const absl::StatusOr<T>& parsed) {
  EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument);
  return std::string(parsed.status().message());
}

uint64_t Bytes(absl::string_view text) {
  absl::StatusOr<uint64_t> bytes = ParseByteSize("--memory", text);
  EXPECT_TRUE(bytes.ok()) << text << ": " << bytes.status();
  return bytes.value_or(0);
}

TEST(LimitsTest, ByteSizesAreBinary) {
  EXPECT_EQ(Bytes("1048576"), 1048576u);
  EXPECT_EQ(Bytes("1"), 1u);
  EXPECT_EQ(Bytes("512b"), 512u);
  EXPECT_EQ(Bytes("4K"), 4096u);
  EXPECT_EQ(Bytes("256M"), 256u << 20);
  EXPECT_EQ(Bytes("256m"), 256u << 20);
  EXPECT_EQ(Bytes("256Mi"), 256u << 20);
  EXPECT_EQ(Bytes("256MiB"), 256u << 20);
  EXPECT_EQ(Bytes("256MB"), 256u << 20);
  EXPECT_EQ(Bytes("2G"), 2ull << 30);
  EXPECT_EQ(Bytes("1T"), 1ull << 40);
  EXPECT_EQ(Bytes("1.5G"), 3ull << 29);
  EXPECT_EQ(Bytes("0.5k"), 512u);
  EXPECT_EQ(Bytes(".5K"), 512u);
  // Rounded down to whole bytes.
  EXPECT_EQ(Bytes("0.001K"), 1u);
  EXPECT_EQ(Bytes("16777215T"), 16777215ull << 40);
}

TEST(LimitsTest, BadByteSizesNameTheFlagAndTheValue) {
  EXPECT_EQ(Error(ParseByteSize("--memory", "lots")),
            "--memory takes a size like 256M, 1.5G or 1048576 (bytes; K, M, "
            "G, T are binary: 1K = 1024), not \"lots\"");
  for (const char* bad :
       {"", "M", "256X", "256 M", " 256M", "-1", "+5", "0x10", "1e6", "1.",
        "1.2.3M", "256Mx", "256KiBs", "1..5G", "256MiBi"}) {
    EXPECT_THAT(Error(ParseByteSize("--memory", bad)),
                HasSubstr("--memory takes a size like"))
        << bad;
  }
  EXPECT_EQ(Error(ParseByteSize("--memory", "1.5")),
            "--memory 1.5: a fraction needs a unit (K, M, G or T)");
  EXPECT_THAT(Error(ParseByteSize("--memory", "0")), HasSubstr("no size"));
  EXPECT_THAT(Error(ParseByteSize("--memory", "0M")), HasSubstr("no size"));
  EXPECT_THAT(Error(ParseByteSize("--memory", "0.0001K")),
              HasSubstr("no size"));
  EXPECT_EQ(Error(ParseByteSize("--memory", "16777216T")),
            "--memory 16777216T is too large");
  EXPECT_EQ(Error(ParseByteSize("--memory", "99999999999999999999")),
            "--memory 99999999999999999999 is too large");
}

TEST(LimitsTest, Cpus) {
  EXPECT_EQ(*ParseCpus("0.5"), 0.5);
  EXPECT_EQ(*ParseCpus("2"), 2.0);
  EXPECT_EQ(*ParseCpus(".25"), 0.25);
  EXPECT_EQ(*ParseCpus("0.01"), 0.01);
  EXPECT_EQ(*ParseCpus("100000"), 100000.0);
  for (const char* bad :
       {"", "half", "-1", "inf", "nan", "1e3", "0x1", ".", "1.2.3", " 1"}) {
    EXPECT_THAT(Error(ParseCpus(bad)),
                HasSubstr("--cpus takes a number of cores like 0.5 or 2"))
        << bad;
  }
  EXPECT_EQ(Error(ParseCpus("0")),
            "--cpus 0 is out of range: 0.01 to 100000 cores");
  EXPECT_THAT(Error(ParseCpus("0.001")), HasSubstr("out of range"));
  EXPECT_THAT(Error(ParseCpus("100001")), HasSubstr("out of range"));
}

TEST(LimitsTest, PidsAndIoWeight) {
  EXPECT_EQ(*ParsePids("64"), 64u);
  EXPECT_EQ(*ParsePids("4294967295"), 4294967295u);
  for (const char* bad : {"", "0", "-1", "1.5", "4294967296", "many", "+3"}) {
    EXPECT_THAT(Error(ParsePids(bad)),
                HasSubstr("--pids takes a whole number of tasks, 1 to "
                          "4294967295"))
        << bad;
  }
  EXPECT_EQ(*ParseIoWeight("1"), 1u);
  EXPECT_EQ(*ParseIoWeight("10000"), 10000u);
  for (const char* bad : {"", "0", "10001", "-5", "high", "1.5"}) {
    EXPECT_THAT(Error(ParseIoWeight(bad)),
                HasSubstr("--io-weight takes a whole number from 1 to 10000"))
        << bad;
  }
}

TEST(LimitsTest, IsolationListsAddEachNamespaceOnce) {
  pm::v1::StartRequest request;
  ASSERT_TRUE(AddIsolation("pid,net", request).ok());
  ASSERT_TRUE(AddIsolation("MOUNT, pid", request).ok());
  EXPECT_THAT(request.isolate(),
              ElementsAre(pm::v1::ISOLATION_PID, pm::v1::ISOLATION_NET,
                          pm::v1::ISOLATION_MOUNT));

  pm::v1::StartRequest bad;
  absl::Status unknown = AddIsolation("pid,user", bad);
  EXPECT_EQ(unknown.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(unknown.message(),
            "--isolate takes a comma-separated list of pid, net and mount, "
            "not \"pid,user\"");
  EXPECT_THAT(AddIsolation("pid,", bad).message(),
              HasSubstr("(an empty name)"));
  EXPECT_THAT(AddIsolation("", bad).message(), HasSubstr("(an empty name)"));
}

}  // namespace
}  // namespace pm::cli
