#include "supervisor/end_reason.h"

#include <signal.h>

#include "gtest/gtest.h"

namespace pm::supervisor {
namespace {

using pm::v1::ProcessStatus;

TEST(FormatBytesTest, PicksAUnit) {
  EXPECT_EQ(FormatBytes(1), "1 byte");
  EXPECT_EQ(FormatBytes(1000), "1000 bytes");
  EXPECT_EQ(FormatBytes(4096), "4 KiB");
  EXPECT_EQ(FormatBytes(32 << 20), "32 MiB");
  EXPECT_EQ(FormatBytes(3 << 19), "1.5 MiB");
  EXPECT_EQ(FormatBytes(2ull << 30), "2 GiB");
}

TEST(DescribeEndTest, SaysWhatEndedIt) {
  pm::v1::ResourceUsage usage;
  pm::v1::Limits limits;
  EXPECT_EQ(DescribeEnd(ExitStatus::Exited(3), ProcessStatus::TERMINATION_BY_ITSELF,
                        false, usage, limits),
            "exited with code 3");
  EXPECT_EQ(DescribeEnd(ExitStatus::Signaled(SIGTERM),
                        ProcessStatus::TERMINATION_AFTER_SIGTERM, false, usage,
                        limits),
            "killed by signal 15 (SIGTERM) after the stop's SIGTERM");
  EXPECT_EQ(DescribeEnd(ExitStatus::Signaled(SIGKILL),
                        ProcessStatus::TERMINATION_KILLED, false, usage, limits),
            "killed by signal 9 (SIGKILL) when the stop's grace period ran out");
  EXPECT_EQ(DescribeEnd(ExitStatus::Signaled(SIGKILL),
                        ProcessStatus::TERMINATION_FORCED, false, usage, limits),
            "killed by signal 9 (SIGKILL) by a forced stop");
}

TEST(DescribeEndTest, NamesTheOomKillerAndTheLimit) {
  pm::v1::ResourceUsage usage;
  usage.set_oom_kills(1);
  pm::v1::Limits limits;
  limits.set_memory_bytes(32 << 20);
  EXPECT_EQ(DescribeEnd(ExitStatus::Signaled(SIGKILL),
                        ProcessStatus::TERMINATION_BY_ITSELF, true, usage, limits),
            "killed by signal 9 (SIGKILL): the OOM killer ended it (memory "
            "limit 32 MiB reached)");
  EXPECT_EQ(DescribeEnd(ExitStatus::Signaled(SIGKILL),
                        ProcessStatus::TERMINATION_BY_ITSELF, true, usage,
                        pm::v1::Limits()),
            "killed by signal 9 (SIGKILL): the OOM killer ended it (out of "
            "memory)");
  // A shell whose child was the victim.
  usage.set_oom_kills(2);
  EXPECT_EQ(DescribeEnd(ExitStatus::Exited(137),
                        ProcessStatus::TERMINATION_BY_ITSELF, false, usage, limits),
            "exited with code 137; the OOM killer ended 2 processes of its "
            "tree (memory limit 32 MiB)");
}

}  // namespace
}  // namespace pm::supervisor
