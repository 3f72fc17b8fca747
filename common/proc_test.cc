#include "common/proc.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/proc_test_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace pm {
namespace {

using ::testing::HasSubstr;

TEST(ParseProcStatTest, TakesTheFieldsAfterTheLastParenthesis) {
  // A process may call itself anything: spaces, ") (", a digit after it.
  absl::StatusOr<ProcStat> stat =
      ParseProcStat(StatLine(1234, "evil) (R 1 2) 3", 987654321));
  ASSERT_TRUE(stat.ok()) << stat.status();
  EXPECT_EQ(stat->pid, 1234);
  EXPECT_EQ(stat->comm, "evil) (R 1 2) 3");
  EXPECT_EQ(stat->state, 'S');
  EXPECT_EQ(stat->start_ticks, 987654321u);
}

TEST(ParseProcStatTest, AcceptsAnEmptyComm) {
  absl::StatusOr<ProcStat> stat = ParseProcStat(StatLine(7, "", 55));
  ASSERT_TRUE(stat.ok()) << stat.status();
  EXPECT_EQ(stat->comm, "");
  EXPECT_EQ(stat->start_ticks, 55u);
}

TEST(ParseProcStatTest, RejectsMalformedLines) {
  const std::string short_line = "12 (sleep) S 1 2 3\n";
  std::string bad_ticks = StatLine(12, "sleep", 1);
  bad_ticks.replace(bad_ticks.find(" 210 1 ") + 5, 1, "x");  // field 22
  for (const std::string& line :
       {std::string(""), std::string("12 sleep S 1"), short_line,
        std::string("x (sleep) S") + StatLine(1, "a", 1).substr(7),
        bad_ticks}) {
    absl::StatusOr<ProcStat> stat = ParseProcStat(line);
    EXPECT_EQ(stat.status().code(), absl::StatusCode::kInvalidArgument)
        << line;
    EXPECT_THAT(stat.status().message(),
                HasSubstr("malformed /proc/PID/stat line"));
  }
}

TEST(ParseProcStatTest, ParsesOurOwnStat) {
  std::ifstream file("/proc/self/stat");
  std::string line((std::istreambuf_iterator<char>(file)),
                   std::istreambuf_iterator<char>());
  absl::StatusOr<ProcStat> stat = ParseProcStat(line);
  ASSERT_TRUE(stat.ok()) << stat.status();
  EXPECT_EQ(stat->pid, getpid());
  EXPECT_GT(stat->start_ticks, 0u);
}


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

TEST(ChildrenOfTest, FindsAChildAndNotAFinishedOne) {
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    pause();  // until killed
    _exit(0);
  }
  // fork has returned: the child is ours already.
  absl::StatusOr<std::vector<ProcStat>> children = ChildrenOf(getpid());
  ASSERT_TRUE(children.ok()) << children.status();
  std::vector<pid_t> pids;
  for (const ProcStat& c : *children) pids.push_back(c.pid);
  EXPECT_THAT(pids, ::testing::Contains(child));

  kill(child, SIGKILL);
  ASSERT_EQ(waitpid(child, nullptr, 0), child);
  children = ChildrenOf(getpid());
  ASSERT_TRUE(children.ok()) << children.status();
  for (const ProcStat& c : *children) EXPECT_NE(c.pid, child);
}

}  // namespace
}  // namespace pm
