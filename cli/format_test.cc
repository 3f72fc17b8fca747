#include "cli/format.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace pm::cli {
namespace {

using ::pm::v1::ProcessStatus;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr int64_t kStartedAt = 1700000000;  // 2023-11-14 22:13:20 UTC

ProcessStatus Running() {
  ProcessStatus status;
  status.set_id("0b5e7c4a-8a3f-4a57-9d5e-1f2a3b4c5d6e");
  status.set_state(ProcessStatus::STATE_RUNNING);
  status.set_pid(4242);
  status.set_executable("sleep");
  status.add_args("100");
  status.set_resolved_executable("/usr/bin/sleep");
  status.mutable_started_at()->set_seconds(kStartedAt);
  status.mutable_run_time()->set_seconds(75);
  status.set_rss_bytes(1536 * 1024);
  status.set_threads(1);
  status.set_output_bytes(12);
  (*status.mutable_proc_status())["VmRSS"] = "1536 kB";
  (*status.mutable_proc_status())["Name"] = "sleep";
  (*status.mutable_proc_status())["Uid"] = "1000\t1000\t1000\t1000";
  return status;
}

ProcessStatus Exited(int code) {
  ProcessStatus status = Running();
  status.set_state(ProcessStatus::STATE_EXITED);
  status.set_exit_code(code);
  status.set_termination(ProcessStatus::TERMINATION_BY_ITSELF);
  status.mutable_ended_at()->set_seconds(kStartedAt + 2);
  status.mutable_run_time()->set_seconds(2);
  status.mutable_run_time()->set_nanos(500000000);
  status.clear_proc_status();
  status.set_rss_bytes(0);
  status.set_threads(0);
  return status;
}

ProcessStatus Signaled(int signal, bool core = false) {
  ProcessStatus status = Exited(0);
  status.set_state(ProcessStatus::STATE_SIGNALED);
  status.set_signal(signal);
  status.set_core_dumped(core);
  return status;
}

TEST(FormatTest, StateNames) {
  EXPECT_EQ(StateName(ProcessStatus::STATE_RUNNING), "running");
  EXPECT_EQ(StateName(ProcessStatus::STATE_STOPPING), "stopping");
  EXPECT_EQ(StateName(ProcessStatus::STATE_EXITED), "exited");
  EXPECT_EQ(StateName(ProcessStatus::STATE_SIGNALED), "signaled");
  EXPECT_EQ(StateName(ProcessStatus::STATE_UNSPECIFIED), "unknown");
}

TEST(FormatTest, DescribeEnd) {
  EXPECT_EQ(DescribeEnd(Exited(3)), "exited with code 3");
  EXPECT_EQ(DescribeEnd(Signaled(9)), "killed by signal 9 (SIGKILL)");
  EXPECT_EQ(DescribeEnd(Signaled(11, true)),
            "killed by signal 11 (SIGSEGV) (core dumped)");
  EXPECT_EQ(DescribeEnd(Running()), "running (pid 4242)");
}

TEST(FormatTest, ShellExitCode) {
  EXPECT_EQ(ShellExitCode(Exited(0)), 0);
  EXPECT_EQ(ShellExitCode(Exited(3)), 3);
  EXPECT_EQ(ShellExitCode(Signaled(9)), 137);
  EXPECT_EQ(ShellExitCode(Signaled(15)), 143);
  EXPECT_EQ(ShellExitCode(Running()), 1);
}

TEST(FormatTest, ShellQuote) {
  EXPECT_EQ(ShellQuote("plain-word_1.txt"), "plain-word_1.txt");
  EXPECT_EQ(ShellQuote(""), "''");
  EXPECT_EQ(ShellQuote("kill -9 $$"), "'kill -9 $$'");
  EXPECT_EQ(ShellQuote("it's"), "'it'\\''s'");
  EXPECT_EQ(ShellQuote("a\nb\x01"), "$'a\\nb\\x01'");
}

TEST(FormatTest, Sizes) {
  EXPECT_EQ(FormatBytes(0), "0 B");
  EXPECT_EQ(FormatBytes(1023), "1023 B");
  EXPECT_EQ(FormatBytes(1536), "1.5 KiB");
  EXPECT_EQ(FormatBytes(12ull << 20), "12.0 MiB");
  EXPECT_EQ(FormatBytes(3ull << 30), "3.0 GiB");
}

TEST(FormatTest, RunTimes) {
  EXPECT_EQ(FormatRunTime(absl::ZeroDuration()), "0s");
  EXPECT_EQ(FormatRunTime(absl::Microseconds(250400)), "250ms");
  EXPECT_EQ(FormatRunTime(absl::Milliseconds(3500)), "3.5s");
  EXPECT_EQ(FormatRunTime(absl::Seconds(3723) + absl::Milliseconds(900)),
            "1h2m3s");
}

TEST(FormatTest, StatusBlockOfARunningProcess) {
  EXPECT_EQ(FormatStatusBlock(Running(), absl::UTCTimeZone()),
            "id:           0b5e7c4a-8a3f-4a57-9d5e-1f2a3b4c5d6e\n"
            "state:        running\n"
            "pid:          4242\n"
            "command:      sleep 100\n"
            "executable:   /usr/bin/sleep\n"
            "started:      2023-11-14 22:13:20 UTC\n"
            "run time:     1m15s\n"
            "output:       12 B (12 bytes)\n"
            "rss:          1.5 MiB\n"
            "threads:      1\n"
            "proc status:\n"
            "  Name:   sleep\n"
            "  Uid:    1000 1000 1000 1000\n"
            "  VmRSS:  1536 kB\n");
}

TEST(FormatTest, StatusBlockOfAnEndedProcess) {
  ProcessStatus status = Signaled(9);
  status.set_termination(ProcessStatus::TERMINATION_KILLED);
  status.set_working_dir("/srv");
  const std::string block = FormatStatusBlock(status, absl::UTCTimeZone());
  EXPECT_THAT(block, HasSubstr("state:        signaled\n"));
  EXPECT_THAT(block, HasSubstr("working dir:  /srv\n"));
  EXPECT_THAT(block, HasSubstr("ended:        2023-11-14 22:13:22 UTC\n"));
  EXPECT_THAT(block, HasSubstr("run time:     2.5s\n"));
  EXPECT_THAT(block, HasSubstr("exit:         killed by signal 9 (SIGKILL)\n"));
  EXPECT_THAT(
      block,
      HasSubstr("termination:  killed: the stop's grace period ran out\n"));
  EXPECT_THAT(block, Not(HasSubstr("rss:")));
  EXPECT_THAT(block, Not(HasSubstr("proc status:")));
}

TEST(FormatTest, TableIsAlignedNewestFirstAsGiven) {
  pm::v1::ListResponse list;
  ProcessStatus newest = Running();
  newest.set_id("22222222-2222-4222-8222-222222222222");
  newest.set_executable("/bin/sh");
  newest.clear_args();
  newest.add_args("-c");
  newest.add_args("kill -9 $$");
  *list.add_processes() = newest;
  ProcessStatus older = Exited(3);
  older.set_id("11111111-1111-4111-8111-111111111111");
  older.set_pid(7);
  *list.add_processes() = older;
  ProcessStatus oldest = Signaled(11, true);
  oldest.set_id("00000000-0000-4000-8000-000000000000");
  *list.add_processes() = oldest;
  EXPECT_EQ(
      FormatTable(list, absl::UTCTimeZone()),
      "UUID                                  STATE     PID   EXIT            "
      "STARTED              COMMAND\n"
      "22222222-2222-4222-8222-222222222222  running   4242  -               "
      "2023-11-14 22:13:20  /bin/sh -c 'kill -9 $$'\n"
      "11111111-1111-4111-8111-111111111111  exited    7     3               "
      "2023-11-14 22:13:20  sleep 100\n"
      "00000000-0000-4000-8000-000000000000  signaled  4242  SIGSEGV (core)  "
      "2023-11-14 22:13:20  sleep 100\n");
}

TEST(FormatTest, EmptyTableHasItsHeader) {
  EXPECT_EQ(FormatTable(pm::v1::ListResponse(), absl::UTCTimeZone()),
            "UUID  STATE  PID  EXIT  STARTED  COMMAND\n");
}

TEST(FormatTest, JsonUsesProtobufsMappingWithDefaults) {
  absl::StatusOr<std::string> json = ToJson(Exited(0));
  ASSERT_TRUE(json.ok()) << json.status();
  EXPECT_THAT(*json,
              HasSubstr("\"id\":\"0b5e7c4a-8a3f-4a57-9d5e-1f2a3b4c5d6e\""));
  EXPECT_THAT(*json, HasSubstr("\"state\":\"STATE_EXITED\""));
  EXPECT_THAT(*json, HasSubstr("\"exitCode\":0"));
  EXPECT_THAT(*json, HasSubstr("\"startedAt\":\"2023-11-14T22:13:20Z\""));
  EXPECT_THAT(*json, Not(HasSubstr("\n")));
}

}  // namespace
}  // namespace pm::cli
