#include "common/proc.h"

#include <unistd.h>

#include "gtest/gtest.h"

namespace pm {
namespace {

TEST(ProcStatTest, ParsesCommWithParenthesesAndSpaces) {
  absl::StatusOr<ProcStat> stat = ParseProcStat(
      "1234 (a) (b c)) S 1 1234 1234 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 "
      "987654 1000 200 18446744073709551615");
  ASSERT_TRUE(stat.ok()) << stat.status();
  EXPECT_EQ(stat->state, 'S');
  EXPECT_EQ(stat->ppid, 1);
  EXPECT_EQ(stat->pgrp, 1234);
  EXPECT_EQ(stat->start_ticks, 987654u);
}

TEST(ProcStatTest, RejectsTruncatedLine) {
  EXPECT_EQ(ParseProcStat("12 (x) S 1 2").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ParseProcStat("garbage").status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(ProcStatTest, ReadsOwnProcess) {
  absl::StatusOr<ProcStat> stat = ReadProcStat(getpid());
  ASSERT_TRUE(stat.ok()) << stat.status();
  EXPECT_EQ(stat->ppid, getppid());
  EXPECT_GT(stat->start_ticks, 0u);
}

TEST(ProcStatTest, MissingProcessIsNotFound) {
  // pid_max is at most 4194304, so this pid never exists.
  EXPECT_EQ(ReadProcStat(4194305).status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace pm
