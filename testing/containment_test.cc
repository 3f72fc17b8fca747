// Resource control and containment end to end (issue 7): the real stack,
// driven through the Library, on the host's real cgroups. Runs as root, as
// CI does; what this host cannot do is skipped, saying why.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <filesystem>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "testing/test_stack.h"

namespace pm::testing {
namespace {

using ::pm::v1::ProcessStatus;
using ::testing::HasSubstr;
using ::testing::Not;

// A safety net against a hang, never an expectation of speed.
constexpr absl::Duration kPatience = absl::Seconds(60);

std::string Helper() {
  const char* srcdir = getenv("TEST_SRCDIR");
  return absl::StrCat(srcdir != nullptr ? srcdir : ".",
                      "/pm/testing/cgroup_helper");
}

// The file's text; "" if it cannot be read. With read(2), not a stream:
// a /proc file of a process that exits meanwhile fails with ESRCH, which
// libstdc++'s filebuf turns into an exception.
std::string ReadText(const std::string& path) {
  std::string text;
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return text;
  char buffer[4096];
  ssize_t n;
  while ((n = read(fd, buffer, sizeof(buffer))) > 0) text.append(buffer, n);
  close(fd);
  return text;
}

// The cgroup2 mount, from our mountinfo ("" when there is none).
std::string CgroupV2Mount() {
  for (absl::string_view line :
       absl::StrSplit(ReadText("/proc/self/mountinfo"), '\n')) {
    std::vector<std::string> fields = absl::StrSplit(line, ' ');
    auto dash = std::find(fields.begin(), fields.end(), "-");
    if (dash != fields.end() && dash + 1 != fields.end() &&
        *(dash + 1) == "cgroup2") {
      return fields[4];
    }
  }
  return "";
}

bool IsRoot() { return geteuid() == 0; }

// Waits on a pidfd until `pid` has exited; true if it has (or is gone).
bool WaitExited(pid_t pid) {
  int pidfd = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
  if (pidfd < 0) return errno == ESRCH;
  struct pollfd p = {pidfd, POLLIN, 0};
  const bool exited = poll(&p, 1, absl::ToInt64Milliseconds(kPatience)) == 1;
  close(pidfd);
  return exited;
}

// Whether `pid` is gone from /proc, once its reaper (the supervisor, a
// subreaper) has collected it; a zombie is reaped within moments.
bool GoneFromProc(pid_t pid) {
  const std::string stat = absl::StrCat("/proc/", pid, "/stat");
  const absl::Time deadline = absl::Now() + kPatience;
  while (std::filesystem::exists(stat) && absl::Now() < deadline) {
    const std::string line = ReadText(stat);
    const size_t close = line.rfind(')');
    // Only a zombie may linger, and only until it is reaped.
    if (close != std::string::npos && close + 2 < line.size() &&
        line[close + 2] != 'Z') {
      return false;
    }
    std::this_thread::yield();
  }
  return !std::filesystem::exists(stat);
}

class ContainmentTest : public ::testing::Test {
 protected:
  explicit ContainmentTest(ServiceFlags flags = {
                               {"supervisor", {"--kill_timeout_ms=5000"}}})
      : stack_(std::move(flags)) {}

  void SetUp() override {
    if (!IsRoot()) GTEST_SKIP() << "containment needs root (CI runs as root)";
    ASSERT_TRUE(stack_.ok()) << stack_.status();
  }
  pm::Client& client() { return stack_.client(); }

  pm::v1::StartResponse MustStart(const pm::v1::StartRequest& request) {
    return pm::testing::MustStart(client(), request);
  }
  ProcessStatus MustWait(const std::string& id) {
    return pm::testing::MustWait(client(), id);
  }
  ProcessStatus MustGetStatus(const std::string& id) {
    return pm::testing::MustGetStatus(client(), id);
  }
  pm::v1::StopResponse MustStop(const std::string& id, uint32_t grace_ms) {
    return pm::testing::MustStop(client(), id, grace_ms);
  }
  // Follows the output until it has a whole first line.
  std::string FirstLine(const std::string& id) {
    const std::string seen = FollowUntil(client(), id, "\n");
    return seen.substr(0, seen.find('\n'));
  }
  // The pid a process printed as its first line.
  pid_t PrintedPid(const std::string& id) {
    pid_t pid = 0;
    const std::string line = FirstLine(id);
    EXPECT_TRUE(absl::SimpleAtoi(line, &pid)) << line;
    return pid;
  }

  TestStack stack_;
};

// --- Whole-tree stop ------------------------------------------------------------

TEST_F(ContainmentTest, ProcessLivesInItsOwnCgroupFromItsFirstInstruction) {
  pm::v1::StartResponse started = MustStart(Shell("cat /proc/$$/cgroup"));
  const std::string cgroup = started.status().cgroup();
  if (cgroup.empty()) GTEST_SKIP() << "the supervisor found no usable cgroups";
  Output output = ReadOutput(client(), started.id());
  // /proc/PID/cgroup names it relative to its hierarchy's mount.
  EXPECT_THAT(output.out, HasSubstr(cgroup.substr(cgroup.rfind("/pm/"))));
  MustWait(started.id());
  // Ended and reaped: the cgroup is gone by the time the end is reported.
  EXPECT_FALSE(std::filesystem::exists(cgroup)) << cgroup;
}

TEST_F(ContainmentTest, CgroupsLeftByADeadSupervisorAreRemovedAtStart) {
  const pm::v1::StartResponse started = MustStart(Command({"true"}));
  const std::string cgroup = started.status().cgroup();
  if (cgroup.empty()) GTEST_SKIP() << "no cgroups on this host";
  MustWait(started.id());
  // As a supervisor that died would leave it: "<its pid>.<n>". The pid is
  // above pid_max, so it never runs.
  const std::string leftover =
      cgroup.substr(0, cgroup.rfind('/')) + "/4194305.1";
  ASSERT_EQ(mkdir(leftover.c_str(), 0755), 0) << leftover;
  ASSERT_TRUE(stack_.stack().StopService("supervisor").ok());
  ASSERT_TRUE(stack_.stack().RestartService("supervisor").ok());
  // The sweep runs once the registry has said which records are live,
  // after the supervisor serves; a stop it gets before then is held until
  // then (an id it does not hold may be one to adopt), so its answer is
  // the event the sweep has happened.
  pm::v1::StopRequest stop;
  stop.set_id(started.id());
  (void)client().Stop(stop);
  EXPECT_FALSE(std::filesystem::exists(leftover));
  rmdir(leftover.c_str());
}

TEST_F(ContainmentTest, StopLeavesNothingOfATreeWhoseDaemonLeftTheGroup) {
  // The leader double-forks a daemon that calls setsid() (another session
  // and group: kill(-pgid) misses it) and ignores SIGTERM.
  pm::v1::StartResponse started = MustStart(Command({Helper(), "daemon"}));
  const std::string id = started.id();
  const std::string cgroup = started.status().cgroup();
  if (cgroup.empty()) GTEST_SKIP() << "the supervisor found no usable cgroups";
  const pid_t daemon = PrintedPid(id);
  ASSERT_GT(daemon, 0);
  EXPECT_THAT(ReadText(cgroup + "/cgroup.procs"),
              HasSubstr(absl::StrCat(daemon, "\n")));
  // The leader and the daemon (and, until the leader reaps it, the middle
  // process's zombie: the pids controller counts tasks until reaped).
  ProcessStatus running = MustGetStatus(id);
  EXPECT_GE(running.usage().tasks(), 2u);

  pm::v1::StopResponse stopped = MustStop(id, 300);
  EXPECT_TRUE(stopped.stopped());
  EXPECT_EQ(stopped.status().state(), ProcessStatus::STATE_SIGNALED);
  EXPECT_EQ(stopped.status().signal(), SIGTERM);  // the leader's own end
  EXPECT_EQ(stopped.status().termination(),
            ProcessStatus::TERMINATION_AFTER_SIGTERM);
  // Nothing of the tree is left: the daemon has exited and is reaped, and
  // the cgroup is empty and removed.
  EXPECT_TRUE(WaitExited(daemon));
  EXPECT_TRUE(GoneFromProc(daemon));
  EXPECT_FALSE(std::filesystem::exists(cgroup)) << cgroup;
}

TEST_F(ContainmentTest, ForkBombUnderAPidsLimitIsContainedAndStoppable) {
  pm::v1::StartRequest request = Command({Helper(), "forkbomb"});
  request.mutable_limits()->set_pids(32);
  absl::StatusOr<pm::v1::StartResponse> started = client().Start(request);
  if (started.status().code() == absl::StatusCode::kFailedPrecondition) {
    GTEST_SKIP() << started.status();
  }
  ASSERT_TRUE(started.ok()) << started.status();
  const std::string id = started->id();
  // Wait on the counter of refused forks: the bomb has hit the limit.
  ProcessStatus status;
  const absl::Time deadline = absl::Now() + kPatience;
  do {
    status = MustGetStatus(id);
  } while (status.usage().task_limit_hits() == 0 && absl::Now() < deadline);
  EXPECT_GT(status.usage().task_limit_hits(), 0u);
  EXPECT_LE(status.usage().tasks(), 32u);
  EXPECT_EQ(status.limits().pids(), 32u);

  pm::v1::StopResponse stopped = MustStop(id, 200);
  EXPECT_TRUE(stopped.stopped());
  EXPECT_TRUE(stopped.status().state() == ProcessStatus::STATE_SIGNALED);
  EXPECT_FALSE(std::filesystem::exists(started->status().cgroup()));
}

// --- Limits ---------------------------------------------------------------------

TEST_F(ContainmentTest, ProcessPastItsMemoryLimitIsOomKilledAndSaysSo) {
  pm::v1::StartRequest request = Command({Helper(), "alloc", "256"});
  request.mutable_limits()->set_memory_bytes(32 << 20);
  absl::StatusOr<pm::v1::StartResponse> started = client().Start(request);
  if (started.status().code() == absl::StatusCode::kFailedPrecondition) {
    GTEST_SKIP() << started.status();
  }
  ASSERT_TRUE(started.ok()) << started.status();
  ProcessStatus ended = MustWait(started->id());
  EXPECT_EQ(ended.state(), ProcessStatus::STATE_SIGNALED);
  EXPECT_EQ(ended.signal(), SIGKILL);
  EXPECT_EQ(ended.termination(), ProcessStatus::TERMINATION_BY_ITSELF);
  EXPECT_TRUE(ended.oom_killed());
  EXPECT_EQ(ended.end_reason(),
            "killed by signal 9 (SIGKILL): the OOM killer ended it (memory "
            "limit 32 MiB reached)");
  EXPECT_GE(ended.usage().oom_kills(), 1u);
  EXPECT_LE(ended.usage().memory_peak_bytes(), 32u << 20);
  EXPECT_GT(ended.usage().memory_peak_bytes(), 16u << 20);
  // The registry agrees, and the output shows how far it got.
  ProcessStatus status = MustGetStatus(started->id());
  EXPECT_TRUE(status.oom_killed());
  EXPECT_EQ(status.end_reason(), ended.end_reason());
  Output output = ReadOutput(client(), started->id());
  EXPECT_THAT(output.out, HasSubstr("allocated 1\n"));
  EXPECT_THAT(output.out, Not(HasSubstr("done")));
}

TEST_F(ContainmentTest, BusyLoopUnderAFifthOfACoreUsesAboutAFifth) {
  pm::v1::StartRequest request = Command({Helper(), "busy"});
  request.mutable_limits()->set_cpus(0.2);
  absl::StatusOr<pm::v1::StartResponse> started = client().Start(request);
  if (started.status().code() == absl::StatusCode::kFailedPrecondition) {
    GTEST_SKIP() << started.status();
  }
  ASSERT_TRUE(started.ok()) << started.status();
  const std::string id = started->id();
  // The process says "tick" per 10 ms of CPU it got; each tick is a moment
  // to read the counters, until 30 quota periods (3 s) have gone by.
  pm::v1::StreamOutputRequest follow;
  follow.set_id(id);
  follow.set_from_start(true);
  follow.set_follow(true);
  auto stream = client().StreamOutput(follow);
  pm::v1::OutputChunk chunk;
  ASSERT_TRUE(stream->Next(&chunk));
  const pm::v1::ResourceUsage first = MustGetStatus(id).usage();
  ASSERT_TRUE(first.has_cpu_periods()) << first.DebugString();
  pm::v1::ResourceUsage last = first;
  while (last.cpu_periods() < first.cpu_periods() + 30 && stream->Next(&chunk)) {
    last = MustGetStatus(id).usage();
  }
  stream->Cancel();
  stream->Finish().IgnoreError();
  const double periods =
      static_cast<double>(last.cpu_periods() - first.cpu_periods());
  ASSERT_GE(periods, 30);
  auto seconds = [](const google::protobuf::Duration& d) {
    return d.seconds() + d.nanos() / 1e9;
  };
  const double cpu = seconds(last.cpu_time()) - seconds(first.cpu_time());
  const double share = cpu / (periods * 0.1);
  RecordProperty("cpu_share", absl::StrCat(share));
  EXPECT_GT(share, 0.1) << cpu << " s of CPU in " << periods << " periods";
  EXPECT_LT(share, 0.3) << cpu << " s of CPU in " << periods << " periods";
  EXPECT_GT(last.cpu_throttled_periods(), first.cpu_throttled_periods());
  EXPECT_TRUE(MustStop(id, 200).stopped());
}

TEST_F(ContainmentTest, LiveAndFinalUsageAreReported) {
  pm::v1::StartResponse started = MustStart(Shell("echo ready; exec sleep 100"));
  if (started.status().cgroup().empty()) {
    GTEST_SKIP() << "the supervisor found no usable cgroups";
  }
  ASSERT_EQ(FirstLine(started.id()), "ready");
  ProcessStatus live = MustGetStatus(started.id());
  EXPECT_EQ(live.usage().tasks(), 1u);
  EXPECT_GT(live.usage().memory_bytes(), 0u);
  EXPECT_TRUE(live.usage().has_cpu_time());
  EXPECT_EQ(live.usage().oom_kills(), 0u);
  pm::v1::StopResponse stopped = MustStop(started.id(), 5000);
  EXPECT_TRUE(stopped.status().usage().has_cpu_time());
  EXPECT_GT(stopped.status().usage().memory_peak_bytes(), 0u);
  EXPECT_FALSE(stopped.status().oom_killed());
  EXPECT_EQ(stopped.status().end_reason(),
            "killed by signal 15 (SIGTERM) after the stop's SIGTERM");
}

// --- Namespaces -------------------------------------------------------------------

TEST_F(ContainmentTest, PidNamespaceMakesTheProcessPidOne) {
  pm::v1::StartRequest request =
      Shell("echo $$; readlink /proc/self; cat /proc/1/comm");
  request.add_isolate(pm::v1::ISOLATION_PID);
  pm::v1::StartResponse started = MustStart(request);
  Output output = ReadOutput(client(), started.id());
  std::vector<std::string> lines =
      absl::StrSplit(output.out, '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 3u) << output.all;
  EXPECT_EQ(lines[0], "1");
  int readlink_pid = 0;
  EXPECT_TRUE(absl::SimpleAtoi(lines[1], &readlink_pid));
  EXPECT_LT(readlink_pid, 10);  // its own numbering, not the host's
  EXPECT_EQ(lines[2], "sh");
  ProcessStatus ended = MustWait(started.id());
  EXPECT_GT(ended.pid(), 1);  // the host's pid
  EXPECT_THAT(ended.isolation(), ::testing::ElementsAre(pm::v1::ISOLATION_PID));
}

TEST_F(ContainmentTest, NetNamespaceHasOnlyLoopback) {
  pm::v1::StartRequest request =
      Shell("tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '");
  request.add_isolate(pm::v1::ISOLATION_NET);
  pm::v1::StartResponse started = MustStart(request);
  EXPECT_EQ(ReadOutput(client(), started.id()).out, "lo\n");
}

// --- Hosts without what a Start asks for ------------------------------------------

class CgroupV2OnlyTest : public ContainmentTest {
 protected:
  CgroupV2OnlyTest()
      : ContainmentTest({{"supervisor", {"--cgroups=v2"}}}) {}
};

TEST_F(CgroupV2OnlyTest, LimitWithoutItsControllerFailsNamingIt) {
  // On a hybrid host cgroup2 has no controllers: with --cgroups=v2 the
  // supervisor is on a host without a memory controller.
  const std::string mount = CgroupV2Mount();
  if (mount.empty()) GTEST_SKIP() << "no cgroup2 here";
  if (absl::StrContains(ReadText(mount + "/cgroup.controllers"), "memory")) {
    GTEST_SKIP() << "cgroup2 here has a memory controller";
  }
  pm::v1::StartRequest request = Command({"sleep", "100"});
  request.mutable_limits()->set_memory_bytes(64 << 20);
  absl::StatusOr<pm::v1::StartResponse> started = client().Start(request);
  EXPECT_EQ(started.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(started.status().message(),
              HasSubstr("cannot enforce the requested limits on this host: "
                        "memory limit: cgroup2 offers no memory controller"));
  EXPECT_THAT(started.status().message(), HasSubstr("--cgroups=v2"));
  absl::StatusOr<pm::v1::ListResponse> list = client().List();
  ASSERT_TRUE(list.ok());
  EXPECT_EQ(list->processes_size(), 0);  // nothing was started

  // Without limits it runs, tracked and stopped through cgroup2.
  pm::v1::StartResponse plain = MustStart(Command({Helper(), "daemon"}));
  EXPECT_TRUE(absl::StartsWith(plain.status().cgroup(), mount));
  const pid_t daemon = PrintedPid(plain.id());
  EXPECT_TRUE(MustStop(plain.id(), 200).stopped());
  EXPECT_TRUE(WaitExited(daemon));
}

class NoCgroupsTest : public ContainmentTest {
 protected:
  NoCgroupsTest() : ContainmentTest({{"supervisor", {"--cgroups=off"}}}) {}
};

TEST_F(NoCgroupsTest, LimitsAreRefusedAndProcessesStopByGroup) {
  pm::v1::StartRequest request = Command({"sleep", "100"});
  request.mutable_limits()->set_pids(10);
  absl::StatusOr<pm::v1::StartResponse> refused = client().Start(request);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(refused.status().message(),
            "cannot enforce the requested limits (pids): this supervisor has "
            "no cgroups: cgroups are off (--cgroups=off)");

  pm::v1::StartResponse started = MustStart(Command({"sleep", "100"}));
  EXPECT_EQ(started.status().cgroup(), "");
  EXPECT_FALSE(MustGetStatus(started.id()).has_usage());
  pm::v1::StopResponse stopped = MustStop(started.id(), 5000);
  EXPECT_TRUE(stopped.stopped());
  EXPECT_EQ(stopped.status().signal(), SIGTERM);
}

class CgroupV1Test : public ContainmentTest {
 protected:
  CgroupV1Test() : ContainmentTest({{"supervisor", {"--cgroups=v1"}}}) {}
};

TEST_F(CgroupV1Test, FreezerStopLeavesNothingOfTheTree) {
  pm::v1::StartResponse started = MustStart(Command({Helper(), "daemon"}));
  const std::string cgroup = started.status().cgroup();
  if (cgroup.empty()) GTEST_SKIP() << "no cgroup v1 freezer here";
  EXPECT_THAT(cgroup, HasSubstr("freezer"));
  const pid_t daemon = PrintedPid(started.id());
  pm::v1::StopResponse stopped = MustStop(started.id(), 200);
  EXPECT_TRUE(stopped.stopped());
  EXPECT_TRUE(WaitExited(daemon));
  EXPECT_TRUE(GoneFromProc(daemon));
  EXPECT_FALSE(std::filesystem::exists(cgroup)) << cgroup;
}

}  // namespace
}  // namespace pm::testing
