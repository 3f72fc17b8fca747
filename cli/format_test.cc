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

ProcessStatus Lost() {
  ProcessStatus status = Running();
  status.set_state(ProcessStatus::STATE_LOST);
  status.set_end_reason("lost: the host restarted while it ran");
  status.clear_proc_status();
  return status;
}

// On host b, which the cluster has not heard from: last seen running.
ProcessStatus Unknown() {
  ProcessStatus status = Running();
  status.set_node("b");
  status.set_state(ProcessStatus::STATE_UNKNOWN);
  status.set_last_known_state(ProcessStatus::STATE_RUNNING);
  status.set_state_reason(
      "host b unreachable since 2026-12-05T10:00:00Z: its lease expired");
  status.clear_proc_status();
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
  EXPECT_EQ(StateName(ProcessStatus::STATE_LOST), "lost");
  EXPECT_EQ(StateName(ProcessStatus::STATE_BACKOFF), "backoff");
  EXPECT_EQ(StateName(ProcessStatus::STATE_UNKNOWN), "unknown");
  EXPECT_EQ(StateName(ProcessStatus::STATE_UNSPECIFIED), "unspecified");
  // A newer pm's state is not mistaken for one this pm knows.
  EXPECT_EQ(StateName(static_cast<ProcessStatus::State>(99)), "state 99");
}

TEST(FormatTest, DescribeEnd) {
  EXPECT_EQ(DescribeEnd(Exited(3)), "exited with code 3");
  EXPECT_EQ(DescribeEnd(Signaled(9)), "killed by signal 9 (SIGKILL)");
  EXPECT_EQ(DescribeEnd(Signaled(11, true)),
            "killed by signal 11 (SIGSEGV) (core dumped)");
  EXPECT_EQ(DescribeEnd(Running()), "running (pid 4242)");
  EXPECT_EQ(DescribeEnd(Lost()), "lost: how it ended is unknown");
}

TEST(FormatTest, ShellExitCode) {
  EXPECT_EQ(ShellExitCode(Exited(0)), 0);
  EXPECT_EQ(ShellExitCode(Exited(3)), 3);
  EXPECT_EQ(ShellExitCode(Signaled(9)), 137);
  EXPECT_EQ(ShellExitCode(Signaled(15)), 143);
  EXPECT_EQ(ShellExitCode(Running()), 1);
  EXPECT_EQ(ShellExitCode(Lost()), kShellCodeLost);
}

TEST(FormatTest, ALostProcessShowsAsEndedWithItsReason) {
  const std::string block = FormatStatusBlock(Lost(), absl::UTCTimeZone());
  EXPECT_THAT(block, HasSubstr("state:        lost\n"));
  EXPECT_THAT(block, HasSubstr("exit:         lost: how it ended is unknown\n"));
  EXPECT_THAT(block, HasSubstr("end reason:   lost: the host restarted"));
  EXPECT_THAT(block, Not(HasSubstr("ended:")));  // no known end time
  EXPECT_THAT(block, Not(HasSubstr("rss:")));    // not a live process
  pm::v1::ListResponse list;
  *list.add_processes() = Lost();
  EXPECT_THAT(FormatTable(list, absl::UTCTimeZone()),
              ::testing::ContainsRegex("lost +4242 +- +"));
}

TEST(FormatTest, AProcessOfAnUnreachableHostShowsWhyAndWhatItWasNotAnEnd) {
  const ProcessStatus status = Unknown();
  EXPECT_FALSE(HasEnded(status));
  EXPECT_EQ(ShellExitCode(status), 1);  // not an end: no exit code
  EXPECT_EQ(DescribeEnd(status),
            "unknown: host b unreachable since 2026-12-05T10:00:00Z: its lease "
            "expired (last known: running, pid 4242)");
  const std::string block = FormatStatusBlock(status, absl::UTCTimeZone());
  EXPECT_THAT(block, HasSubstr("node:         b\n"
                               "state:        unknown\n"
                               "state reason: host b unreachable since "
                               "2026-12-05T10:00:00Z: its lease expired\n"
                               "last known:   running\n"));
  EXPECT_THAT(block, Not(HasSubstr("exit:")));
  // Its host's /proc is out of reach: no stale figures from it.
  EXPECT_THAT(block, Not(HasSubstr("rss:")));
  EXPECT_THAT(block, Not(HasSubstr("threads:")));
}

TEST(FormatTest, StatusShowsTheNodeOnlyInACluster) {
  EXPECT_THAT(FormatStatusBlock(Running(), absl::UTCTimeZone()),
              Not(HasSubstr("node:")));
  ProcessStatus on_a = Running();
  on_a.set_node("a");
  const std::string block = FormatStatusBlock(on_a, absl::UTCTimeZone());
  EXPECT_THAT(block, HasSubstr("node:         a\nstate:        running\n"));
  EXPECT_THAT(block, Not(HasSubstr("state reason:")));
  EXPECT_THAT(block, Not(HasSubstr("last known:")));
}

TEST(FormatTest, ShellQuote) {
  EXPECT_EQ(ShellQuote("plain-word_1.txt"), "plain-word_1.txt");
  EXPECT_EQ(ShellQuote(""), "''");
  EXPECT_EQ(ShellQuote("kill -9 $$"), "'kill -9 $$'");
  EXPECT_EQ(ShellQuote("it's"), "'it'\\''s'");
  EXPECT_EQ(ShellQuote("a\nb\x01"), "$'a\\nb\\x01'");
  // Bytes that are not UTF-8 are written so the word can be typed back;
  // UTF-8 text is kept as it is.
  EXPECT_EQ(ShellQuote("caf\xe9"), "$'caf\\xe9'");
  EXPECT_EQ(ShellQuote("\xe9t\xc3\xa9 it's"), "$'\\xe9t\xc3\xa9 it\\'s'");
  EXPECT_EQ(ShellQuote("caf\xc3\xa9"), "'caf\xc3\xa9'");
}

TEST(FormatTest, ACommandInBytesIsShownEscaped) {
  ProcessStatus status = Exited(0);
  status.clear_executable();
  status.set_executable_bytes("/opt/caf\xe9");
  status.clear_args();
  status.add_args_bytes("%s");
  status.add_args_bytes("caf\xe9");
  status.clear_resolved_executable();
  status.set_resolved_executable_bytes("/opt/caf\xe9");
  status.set_working_dir_bytes("/tmp/\xe9t\xe9");
  EXPECT_EQ(FormatCommand(status), "$'/opt/caf\\xe9' %s $'caf\\xe9'");
  const std::string block = FormatStatusBlock(status, absl::UTCTimeZone());
  EXPECT_THAT(block, HasSubstr("command:      $'/opt/caf\\xe9' %s $'caf\\xe9'\n"));
  EXPECT_THAT(block, HasSubstr("working dir:  $'/tmp/\\xe9t\\xe9'\n"));
  // The resolved path is the one given: not repeated.
  EXPECT_THAT(block, Not(HasSubstr("executable:")));
  status.set_resolved_executable_bytes("/usr/\xff/caf\xe9");
  EXPECT_THAT(FormatStatusBlock(status, absl::UTCTimeZone()),
              HasSubstr("executable:   $'/usr/\\xff/caf\\xe9'\n"));

  pm::v1::ListResponse list;
  *list.add_processes() = status;
  EXPECT_THAT(FormatTable(list, absl::UTCTimeZone()),
              HasSubstr("  $'/opt/caf\\xe9' %s $'caf\\xe9'\n"));

  // JSON: protobuf's mapping, bytes in base64.
  absl::StatusOr<std::string> json = ToJson(status);
  ASSERT_TRUE(json.ok()) << json.status();
  EXPECT_THAT(*json, HasSubstr("\"argsBytes\":[\"JXM=\",\"Y2Fm6Q==\"]"));
  EXPECT_THAT(*json, HasSubstr("\"args\":[]"));
}

TEST(FormatTest, APathWithControlCharactersIsQuoted) {
  EXPECT_EQ(PrintablePath("/srv/my dir"), "/srv/my dir");
  EXPECT_EQ(PrintablePath("/srv/caf\xc3\xa9"), "/srv/caf\xc3\xa9");
  EXPECT_EQ(PrintablePath("/srv/a\nb"), "$'/srv/a\\nb'");
  EXPECT_EQ(PrintablePath("/srv/\xe9"), "$'/srv/\\xe9'");
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

TEST(FormatTest, ExactSizesAndLimits) {
  EXPECT_EQ(FormatExactBytes(256u << 20), "256 MiB");
  EXPECT_EQ(FormatExactBytes(1536u << 10), "1536 KiB");
  EXPECT_EQ(FormatExactBytes(3ull << 40), "3 TiB");
  EXPECT_EQ(FormatExactBytes(1000000), "1000000 B");
  EXPECT_EQ(FormatExactBytes(0), "0 B");
  pm::v1::Limits limits;
  EXPECT_EQ(FormatLimits(limits), "");
  limits.set_memory_bytes(32 << 20);
  EXPECT_EQ(FormatLimits(limits), "memory 32 MiB");
  limits.set_cpus(0.5);
  limits.set_pids(64);
  limits.set_io_weight(200);
  EXPECT_EQ(FormatLimits(limits),
            "memory 32 MiB, cpus 0.5, pids 64, io weight 200");
  EXPECT_EQ(IsolationName(pm::v1::ISOLATION_PID), "pid");
  EXPECT_EQ(IsolationName(pm::v1::ISOLATION_NET), "net");
  EXPECT_EQ(IsolationName(pm::v1::ISOLATION_MOUNT), "mount");
}

TEST(FormatTest, DescribeOom) {
  ProcessStatus killed = Signaled(9);
  EXPECT_EQ(DescribeOom(killed), "");
  killed.set_oom_killed(true);
  killed.mutable_usage()->set_oom_kills(1);
  EXPECT_EQ(DescribeOom(killed), "killed by the OOM killer (out of memory)");
  killed.mutable_limits()->set_memory_bytes(32 << 20);
  EXPECT_EQ(DescribeOom(killed),
            "killed by the OOM killer (memory limit 32 MiB reached)");
  // The shell survived; the child it waited for did not.
  ProcessStatus shell = Exited(137);
  shell.mutable_limits()->set_memory_bytes(32 << 20);
  shell.mutable_usage()->set_oom_kills(1);
  EXPECT_EQ(DescribeOom(shell),
            "the OOM killer killed 1 process of its tree (memory limit 32 MiB "
            "reached)");
}

TEST(FormatTest, StatusBlockOfAnOomKilledProcessWithLimits) {
  ProcessStatus status = Signaled(9);
  status.set_oom_killed(true);
  status.set_end_reason(
      "killed by signal 9 (SIGKILL): the OOM killer ended it (memory limit 32 "
      "MiB reached)");
  status.mutable_limits()->set_memory_bytes(32 << 20);
  status.mutable_limits()->set_pids(64);
  status.add_isolation(pm::v1::ISOLATION_PID);
  status.add_isolation(pm::v1::ISOLATION_NET);
  status.set_cgroup("/sys/fs/cgroup/pm/p-0b5e7c4a");
  pm::v1::ResourceUsage& usage = *status.mutable_usage();
  usage.set_memory_bytes(0);
  usage.set_memory_peak_bytes(32 << 20);
  usage.set_memory_limit_hits(412);
  usage.mutable_cpu_time()->set_nanos(250000000);
  usage.set_tasks(0);
  usage.set_task_limit_hits(0);
  usage.set_oom_kills(1);
  usage.set_cpu_periods(0);
  usage.set_cpu_throttled_periods(0);
  const std::string block = FormatStatusBlock(status, absl::UTCTimeZone());
  EXPECT_EQ(block,
            "id:           0b5e7c4a-8a3f-4a57-9d5e-1f2a3b4c5d6e\n"
            "state:        signaled\n"
            "OOM:          killed by the OOM killer (memory limit 32 MiB "
            "reached)\n"
            "pid:          4242\n"
            "command:      sleep 100\n"
            "executable:   /usr/bin/sleep\n"
            "started:      2023-11-14 22:13:20 UTC\n"
            "ended:        2023-11-14 22:13:22 UTC\n"
            "run time:     2.5s\n"
            "exit:         killed by signal 9 (SIGKILL)\n"
            "termination:  ended by itself\n"
            "end reason:   killed by signal 9 (SIGKILL): the OOM killer ended "
            "it (memory limit 32 MiB reached)\n"
            "output:       12 B (12 bytes)\n"
            "limits:       memory 32 MiB, pids 64\n"
            "isolation:    pid, net\n"
            "cgroup:       /sys/fs/cgroup/pm/p-0b5e7c4a\n"
            "usage:\n"
            "  memory:     0 B (peak 32.0 MiB; reached the limit 412 times)\n"
            "  cpu time:   250ms\n"
            "  tasks:      0\n"
            "  oom kills:  1\n");
}

TEST(FormatTest, UsageOfARunningProcessShowsThrottlingAndRefusedForks) {
  ProcessStatus status = Running();
  status.clear_proc_status();
  pm::v1::ResourceUsage& usage = *status.mutable_usage();
  usage.set_memory_bytes(3 << 20);
  usage.mutable_cpu_time()->set_seconds(12);
  usage.set_cpu_periods(400);
  usage.set_cpu_throttled_periods(120);
  usage.mutable_cpu_throttled_time()->set_seconds(6);
  usage.set_tasks(8);
  usage.set_task_limit_hits(1);
  const std::string block = FormatStatusBlock(status, absl::UTCTimeZone());
  EXPECT_THAT(block,
              HasSubstr("threads:      1\n"
                        "usage:\n"
                        "  memory:     3.0 MiB\n"
                        "  cpu time:   12s (throttled in 120 of 400 "
                        "periods, 6s in all)\n"
                        "  tasks:      8 (1 fork failed at the limit)\n"));
  EXPECT_THAT(block, Not(HasSubstr("OOM")));
  EXPECT_THAT(block, Not(HasSubstr("limits:")));
  // Without cgroups there is no usage at all.
  EXPECT_THAT(FormatStatusBlock(Running(), absl::UTCTimeZone()),
              Not(HasSubstr("usage:")));
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
  older.set_name("web");
  *list.mutable_processes(1) = older;
  EXPECT_EQ(
      FormatTable(list, absl::UTCTimeZone()),
      "UUID                                  NAME  STATE     PID   EXIT            "
      "STARTED              COMMAND\n"
      "22222222-2222-4222-8222-222222222222  -     running   4242  -               "
      "2023-11-14 22:13:20  /bin/sh -c 'kill -9 $$'\n"
      "11111111-1111-4111-8111-111111111111  web   exited    7     3               "
      "2023-11-14 22:13:20  sleep 100\n"
      "00000000-0000-4000-8000-000000000000  -     signaled  4242  SIGSEGV (core)  "
      "2023-11-14 22:13:20  sleep 100\n");
}

TEST(FormatTest, TableHasANodeColumnAfterTheNameOnlyWhenAProcessHasANode) {
  pm::v1::ListResponse list;
  ProcessStatus on_a = Running();
  on_a.set_id("22222222-2222-4222-8222-222222222222");
  on_a.set_name("web");
  on_a.set_node("a");
  *list.add_processes() = on_a;
  ProcessStatus nowhere = Exited(3);  // from a host not in a cluster
  nowhere.set_id("11111111-1111-4111-8111-111111111111");
  nowhere.set_pid(7);
  *list.add_processes() = nowhere;
  *list.add_processes() = Unknown();
  EXPECT_EQ(
      FormatTable(list, absl::UTCTimeZone()),
      "UUID                                  NAME  NODE  STATE    PID   EXIT  "
      "STARTED              COMMAND\n"
      "22222222-2222-4222-8222-222222222222  web   a     running  4242  -     "
      "2023-11-14 22:13:20  sleep 100\n"
      "11111111-1111-4111-8111-111111111111  -     -     exited   7     3     "
      "2023-11-14 22:13:20  sleep 100\n"
      "0b5e7c4a-8a3f-4a57-9d5e-1f2a3b4c5d6e  -     b     unknown  4242  -     "
      "2023-11-14 22:13:20  sleep 100\n");

  // Without nodes (one host): no NODE column, not even an empty one.
  for (ProcessStatus& status : *list.mutable_processes()) status.clear_node();
  EXPECT_THAT(FormatTable(list, absl::UTCTimeZone()),
              ::testing::StartsWith("UUID                                  "
                                    "NAME  STATE    PID   EXIT  STARTED"));
}

TEST(FormatTest, TableMarksOomKills) {
  pm::v1::ListResponse list;
  ProcessStatus killed = Signaled(9);
  killed.set_oom_killed(true);
  *list.add_processes() = killed;
  EXPECT_THAT(FormatTable(list, absl::UTCTimeZone()),
              HasSubstr("  SIGKILL (OOM)  "));
}

TEST(FormatTest, EmptyTableHasItsHeader) {
  EXPECT_EQ(FormatTable(pm::v1::ListResponse(), absl::UTCTimeZone()),
            "UUID  NAME  STATE  PID  EXIT  STARTED  COMMAND\n");
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
