// The engine end to end: the real registry, log_store and supervisor
// binaries on a temporary runtime dir, driven through the Library. Covers
// the design doc's use cases and the engine issue's list.
#include <fcntl.h>
#include <openssl/sha.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <functional>
#include <set>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/proc.h"
#include "common/raw_call_test_util.h"
#include "common/runtime_dir.h"
#include "common/uuid.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "testing/test_stack.h"

namespace pm::testing {
namespace {

using ::pm::v1::ProcessStatus;
using ::testing::HasSubstr;

const ServiceFlags kDefaultFlags = {
    {"supervisor", {"--kill_timeout_ms=2000", "--max_output_bytes=268435456"}},
    {"log_store", {"--max_total_bytes=1073741824"}},
};

class EngineTest : public ::testing::Test {
 protected:
  EngineTest() : stack_(kDefaultFlags) {}
  void SetUp() override { ASSERT_TRUE(stack_.ok()) << stack_.status(); }
  pm::Client& client() { return stack_.client(); }

  std::string MustStart(const pm::v1::StartRequest& request) {
    return pm::testing::MustStart(client(), request).id();
  }
  ProcessStatus MustWait(const std::string& id) {
    return pm::testing::MustWait(client(), id);
  }
  pm::v1::StopResponse MustStop(const std::string& id, uint32_t grace_ms) {
    return pm::testing::MustStop(client(), id, grace_ms);
  }
  // Follows the output until `needle` has appeared (the process is ready).
  void WaitForOutput(const std::string& id, const std::string& needle) {
    ASSERT_THAT(FollowUntil(client(), id, needle), HasSubstr(needle));
  }

  TestStack stack_;
};

// --- The design doc's use cases -------------------------------------------

TEST_F(EngineTest, StartedProcessGetsAUuidAndLiveStatus) {
  absl::StatusOr<pm::v1::StartResponse> started =
      client().Start(Command({"sleep", "100"}));
  ASSERT_TRUE(started.ok()) << started.status();
  EXPECT_TRUE(ValidateProcessId(started->id()).ok()) << started->id();
  EXPECT_EQ(started->status().state(), ProcessStatus::STATE_RUNNING);

  absl::StatusOr<ProcessStatus> status = client().GetStatus(started->id());
  ASSERT_TRUE(status.ok()) << status.status();
  EXPECT_EQ(status->state(), ProcessStatus::STATE_RUNNING);
  EXPECT_GT(status->pid(), 0);
  EXPECT_EQ(status->executable(), "sleep");
  EXPECT_EQ(status->resolved_executable().substr(status->resolved_executable().rfind('/')), "/sleep");
  EXPECT_EQ(status->proc_status().at("Name"), "sleep");
  EXPECT_EQ(status->proc_status().at("Pid"), std::to_string(status->pid()));
  EXPECT_GT(status->rss_bytes(), 0u);
  EXPECT_EQ(status->threads(), 1);

  absl::StatusOr<pm::v1::ListResponse> list = client().List();
  ASSERT_TRUE(list.ok());
  ASSERT_EQ(list->processes_size(), 1);
  EXPECT_EQ(list->processes(0).id(), started->id());
}

TEST_F(EngineTest, ProcessThatWontStartGivesTheOsErrorAndNoUuid) {
  absl::StatusOr<pm::v1::StartResponse> started =
      client().Start(Command({"/nope"}));
  EXPECT_EQ(started.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(started.status().message(),
            "execve(\"/nope\"): No such file or directory (ENOENT)");
  absl::StatusOr<pm::v1::ListResponse> list = client().List();
  ASSERT_TRUE(list.ok());
  EXPECT_EQ(list->processes_size(), 0);
}

TEST_F(EngineTest, StoppedProcessReturnsItsSignal) {
  const std::string id = MustStart(Command({"sleep", "100"}));
  pm::v1::StopResponse stopped = MustStop(id, 5000);
  EXPECT_TRUE(stopped.stopped());
  EXPECT_EQ(stopped.status().state(), ProcessStatus::STATE_SIGNALED);
  EXPECT_EQ(stopped.status().signal(), SIGTERM);
  EXPECT_EQ(stopped.status().termination(),
            ProcessStatus::TERMINATION_AFTER_SIGTERM);
  // The registry agrees as soon as Stop has answered.
  absl::StatusOr<ProcessStatus> status = client().GetStatus(id);
  ASSERT_TRUE(status.ok());
  EXPECT_EQ(status->state(), ProcessStatus::STATE_SIGNALED);
  EXPECT_TRUE(status->proc_status().empty());
}

TEST_F(EngineTest, ProcessThatWontStopIsReportedNotStopped) {
  // A process in a frozen cgroup (v1 freezer) cannot die, not even of
  // SIGKILL, until it is thawed.
  std::unique_ptr<Freezer> freezer = Freezer::Make();
  if (freezer == nullptr) GTEST_SKIP() << "no writable cgroup v1 freezer here";
  const std::string id = MustStart(Command({"sleep", "1000"}));
  absl::StatusOr<ProcessStatus> running = client().GetStatus(id);
  ASSERT_TRUE(running.ok());
  freezer->Freeze(running->pid());

  pm::v1::StopResponse stopped = MustStop(id, 200);
  EXPECT_FALSE(stopped.stopped());
  EXPECT_EQ(stopped.status().state(), ProcessStatus::STATE_STOPPING);
  EXPECT_EQ(stopped.status().pid(), running->pid());

  // Thawed, it dies of the SIGKILL it already has.
  freezer->Thaw();
  ProcessStatus ended = MustWait(id);
  EXPECT_EQ(ended.state(), ProcessStatus::STATE_SIGNALED);
  // Both signals are pending at the thaw; the kernel picks which one ends it.
  EXPECT_TRUE(ended.signal() == SIGKILL || ended.signal() == SIGTERM);
  EXPECT_EQ(ended.termination(), ProcessStatus::TERMINATION_KILLED);
}

TEST_F(EngineTest, StatusOfAnEndedProcessHasItsExitCode) {
  const std::string id = MustStart(Shell("exit 3"));
  ProcessStatus ended = MustWait(id);
  EXPECT_EQ(ended.state(), ProcessStatus::STATE_EXITED);
  absl::StatusOr<ProcessStatus> status = client().GetStatus(id);
  ASSERT_TRUE(status.ok());
  EXPECT_EQ(status->state(), ProcessStatus::STATE_EXITED);
  EXPECT_EQ(status->exit_code(), 3);
  EXPECT_EQ(status->termination(), ProcessStatus::TERMINATION_BY_ITSELF);
  EXPECT_TRUE(status->has_ended_at());
  // Stop of an ended process returns its final status.
  pm::v1::StopResponse stopped = MustStop(id, 1000);
  EXPECT_TRUE(stopped.stopped());
  EXPECT_EQ(stopped.status().exit_code(), 3);
}

TEST_F(EngineTest, OutputIsReturnedTaggedByStream) {
  const std::string id =
      MustStart(Shell("echo out; echo err >&2; printf 'no newline'"));
  Output output = ReadOutput(client(), id);
  ASSERT_TRUE(output.status.ok()) << output.status;
  EXPECT_EQ(output.out, "out\nno newline");
  EXPECT_EQ(output.err, "err\n");
  EXPECT_EQ(output.dropped, 0u);
  EXPECT_EQ(MustWait(id).output_bytes(), output.all.size());
}

// --- Bad input ------------------------------------------------------------

TEST_F(EngineTest, BadInputGetsClearErrors) {
  // A name or an id prefix may stand for an id: "not-a-uuid" could be a
  // name, which no process has; "not a uuid" cannot be either.
  absl::StatusOr<ProcessStatus> status = client().GetStatus("not-a-uuid");
  EXPECT_EQ(status.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(status.status().message(),
              HasSubstr("no process has the id, name or id prefix"));
  status = client().GetStatus("not a uuid");
  EXPECT_EQ(status.status().code(), absl::StatusCode::kInvalidArgument);
  status = client().GetStatus("0b7e3d1c-6a1f-4e8e-9f3c-2d6a5b4c3d2e");
  EXPECT_EQ(status.status().code(), absl::StatusCode::kNotFound);

  pm::v1::StopRequest stop;
  stop.set_id("0b7e3d1c-6a1f-4e8e-9f3c-2d6a5b4c3d2e");
  EXPECT_EQ(client().Stop(stop).status().code(), absl::StatusCode::kNotFound);

  pm::v1::StartRequest empty;
  EXPECT_EQ(client().Start(empty).status().code(),
            absl::StatusCode::kInvalidArgument);
  pm::v1::StartRequest bad_env = Command({"true"});
  (*bad_env.mutable_env())["A=B"] = "c";
  absl::StatusOr<pm::v1::StartResponse> started = client().Start(bad_env);
  EXPECT_EQ(started.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(started.status().message(), HasSubstr("contains '='"));

  pm::v1::StreamOutputRequest read;
  read.set_id("0b7e3d1c-6a1f-4e8e-9f3c-2d6a5b4c3d2e");
  EXPECT_EQ(Drain(*client().StreamOutput(read)).status.code(),
            absl::StatusCode::kNotFound);
}

TEST_F(EngineTest, EnvAndWorkingDirAreTheProcesss) {
  pm::v1::StartRequest request = Shell("pwd; echo \"$GREETING\"; echo \"$PATH\"");
  (*request.mutable_env())["GREETING"] = "hello there";
  request.set_working_dir("/usr");
  const std::string id = MustStart(request);
  Output output = ReadOutput(client(), id);
  EXPECT_EQ(output.out,
            "/usr\nhello there\n/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/"
            "bin:/sbin:/bin\n");
}

// --- Bytes where Linux has bytes -------------------------------------------

// A Latin-1 argument and working directory, sent in the bytes forms, reach
// the program exactly; the records echo them in the bytes fields.
TEST_F(EngineTest, ArgumentsAndWorkingDirThatAreNotUtf8RunAsTheBytesSent) {
  const std::string cwd = stack_.temp_dir() + "/caf\xe9";
  ASSERT_EQ(mkdir(cwd.c_str(), 0700), 0);
  pm::v1::StartRequest request;
  request.set_executable("/bin/sh");
  for (const char* arg : {"-c", "printf %s \"$1\" | od -An -tx1; pwd", "sh",
                          "caf\xe9"}) {
    request.add_args_bytes(arg);
  }
  request.set_working_dir_bytes(cwd);
  const std::string id = MustStart(request);
  EXPECT_EQ(ReadOutput(client(), id).out, " 63 61 66 e9\n" + cwd + "\n");

  ProcessStatus status = MustWait(id);
  EXPECT_EQ(status.executable(), "/bin/sh");
  EXPECT_THAT(status.args(), ::testing::IsEmpty());
  EXPECT_EQ(status.args_bytes(3), "caf\xe9");
  EXPECT_TRUE(status.working_dir().empty());
  EXPECT_EQ(status.working_dir_bytes(), cwd);
  absl::StatusOr<pm::v1::ListResponse> list = client().List();
  ASSERT_TRUE(list.ok()) << list.status();  // not INTERNAL
  EXPECT_EQ(list->processes(0).working_dir_bytes(), cwd);
}

// An executable named in Latin-1: its path, and the kernel's Name for it in
// /proc, never make an answer unreadable.
TEST_F(EngineTest, AnExecutableNamedInLatin1HasAReadableStatus) {
  const std::string path = stack_.temp_dir() + "/caf\xe9";
  ASSERT_EQ(symlink("/bin/sleep", path.c_str()), 0);
  pm::v1::StartRequest request;
  request.set_executable_bytes(path);
  request.add_args("1000");
  const std::string id = MustStart(request);
  ProcessStatus status = MustGetStatus(client(), id);
  EXPECT_EQ(status.executable_bytes(), path);
  EXPECT_EQ(status.resolved_executable_bytes(), path);
  EXPECT_EQ(status.proc_status().at("Name"), "caf\\xe9");
  pm::v1::StopResponse stopped = MustStop(id, 5000);
  EXPECT_TRUE(stopped.stopped());
  EXPECT_EQ(stopped.status().executable_bytes(), path);
}

// A client that checks nothing (not the Library) sends Latin-1 in a string
// field: the supervisor and the registry name the field.
TEST_F(EngineTest, ARawRequestWithAStringThatIsNotUtf8IsInvalidArgument) {
  auto supervisor =
      grpc::CreateChannel(UnixAddress(SocketPath(stack_.runtime_dir(),
                                                 Service::kSupervisor)),
                          grpc::InsecureChannelCredentials());
  grpc::Status start = RawUnaryCall(
      supervisor, "/pm.internal.v1.Supervisor/Start",
      WireBytes(1, "/bin/echo") + WireBytes(4, "/tmp/caf\xe9"));
  EXPECT_EQ(start.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(start.error_message(),
            "working_dir is not valid UTF-8 (byte 0xe9 at 8); send it in "
            "working_dir_bytes");
  auto registry =
      grpc::CreateChannel(UnixAddress(SocketPath(stack_.runtime_dir(),
                                                 Service::kRegistry)),
                          grpc::InsecureChannelCredentials());
  grpc::Status get = RawUnaryCall(registry, "/pm.internal.v1.Registry/GetStatus",
                                  WireBytes(1, "\xff"));
  EXPECT_EQ(get.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(get.error_message(), "id is not valid UTF-8 (byte 0xff at 0)");
  // Nothing was started.
  absl::StatusOr<pm::v1::ListResponse> list = client().List();
  ASSERT_TRUE(list.ok());
  EXPECT_EQ(list->processes_size(), 0);
}

// --- Output ---------------------------------------------------------------

std::string Sha256(const std::string& data) {
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(data.data()), data.size(), digest);
  return std::string(reinterpret_cast<char*>(digest), sizeof(digest));
}

TEST_F(EngineTest, HundredMebibytesAreReadBackByteExact) {
  // Random bytes in a file; the process cats it; the follower's bytes must
  // hash the same.
  const std::string path = stack_.temp_dir() + "/random";
  {
    std::ifstream urandom("/dev/urandom", std::ios::binary);
    std::string bytes(100 << 20, '\0');
    urandom.read(bytes.data(), bytes.size());
    std::ofstream(path, std::ios::binary) << bytes;
  }
  std::string expected;
  {
    std::ifstream in(path, std::ios::binary);
    expected.assign(std::istreambuf_iterator<char>(in), {});
  }
  const std::string id = MustStart(Command({"cat", path}));
  Output output = ReadOutput(client(), id);
  ASSERT_TRUE(output.status.ok()) << output.status;
  EXPECT_EQ(output.dropped, 0u);
  EXPECT_TRUE(output.offsets_contiguous);
  ASSERT_EQ(output.out.size(), expected.size());
  EXPECT_TRUE(Sha256(output.out) == Sha256(expected));
}

TEST_F(EngineTest, FiftyFollowersReceiveIdenticalBytes) {
  // The process waits at a fifo until every follower is attached.
  const std::string gate = stack_.temp_dir() + "/gate";
  ASSERT_EQ(mkfifo(gate.c_str(), 0600), 0);
  const std::string id = MustStart(
      Shell(absl::StrCat("read x < ", gate, "; seq 1 100000; seq 1 1000 >&2")));
  std::vector<std::unique_ptr<pm::OutputStream>> streams;
  for (int i = 0; i < 50; ++i) {
    pm::v1::StreamOutputRequest request;
    request.set_id(id);
    request.set_follow(true);  // from "now": nothing has been written yet
    streams.push_back(client().StreamOutput(request));
    streams.back()->WaitUntilAttached();
  }
  std::ofstream(gate) << "go\n";
  std::vector<Output> outputs(streams.size());
  std::vector<std::thread> readers;
  for (size_t i = 0; i < streams.size(); ++i) {
    readers.emplace_back([&, i] { outputs[i] = Drain(*streams[i]); });
  }
  for (auto& t : readers) t.join();
  std::string expected_out;
  for (int i = 1; i <= 100000; ++i) absl::StrAppend(&expected_out, i, "\n");
  for (const Output& output : outputs) {
    ASSERT_TRUE(output.status.ok()) << output.status;
    EXPECT_EQ(output.dropped, 0u);
    EXPECT_TRUE(output.out == expected_out);
    EXPECT_EQ(output.all, outputs[0].all);
  }
}

TEST_F(EngineTest, FollowerResumesFromAnOffsetWithoutLossOrDuplicate) {
  const std::string id = MustStart(Shell("seq 1 50000"));
  Output whole = ReadOutput(client(), id);
  ASSERT_TRUE(whole.status.ok());
  pm::v1::StreamOutputRequest request;
  request.set_id(id);
  request.set_from_offset(12345);
  Output rest = Drain(*client().StreamOutput(request));
  ASSERT_TRUE(rest.status.ok()) << rest.status;
  EXPECT_EQ(rest.out, whole.out.substr(12345));
}

// --- Stop -----------------------------------------------------------------

TEST_F(EngineTest, ProcessIgnoringSigtermIsKilledAfterTheGracePeriod) {
  const std::string id =
      MustStart(Shell("trap '' TERM; echo ready; while :; do sleep 1; done"));
  WaitForOutput(id, "ready");
  pm::v1::StopResponse stopped = MustStop(id, 300);
  EXPECT_TRUE(stopped.stopped());
  EXPECT_EQ(stopped.status().state(), ProcessStatus::STATE_SIGNALED);
  EXPECT_EQ(stopped.status().signal(), SIGKILL);
  EXPECT_EQ(stopped.status().termination(), ProcessStatus::TERMINATION_KILLED);
}

TEST_F(EngineTest, GrandchildIgnoringSigtermDiesToo) {
  // The leader exits on SIGTERM; its child in the same group ignores it.
  const std::string id = MustStart(
      Shell("sh -c 'trap \"\" TERM; echo $$; exec sleep 1000' & wait"));
  Output first;
  pm::v1::StreamOutputRequest request;
  request.set_id(id);
  request.set_from_start(true);
  request.set_follow(true);
  auto stream = client().StreamOutput(request);
  pm::v1::OutputChunk chunk;
  std::string seen;
  while (seen.find('\n') == std::string::npos && stream->Next(&chunk)) {
    seen += chunk.data();
  }
  pid_t grandchild = 0;
  ASSERT_TRUE(absl::SimpleAtoi(absl::StripSuffix(seen, "\n"), &grandchild)) << seen;

  pm::v1::StopResponse stopped = MustStop(id, 300);
  EXPECT_TRUE(stopped.stopped());
  EXPECT_EQ(stopped.status().signal(), SIGTERM);  // the leader's own end
  // Gone, and reaped (not a zombie): the supervisor is its subreaper.
  EXPECT_NE(kill(grandchild, 0), 0);
  EXPECT_EQ(errno, ESRCH);
  stream->Cancel();
  stream->Finish().IgnoreError();
}

TEST_F(EngineTest, ConcurrentStopsShareOneStopAndStatusNeverBlocks) {
  const std::string id =
      MustStart(Shell("trap 'sleep 0.3; exit 0' TERM; echo ready; while :; do sleep 1; done"));
  WaitForOutput(id, "ready");
  std::vector<pm::v1::StopResponse> answers(5);
  std::vector<std::thread> stoppers;
  for (int i = 0; i < 5; ++i) {
    stoppers.emplace_back([&, i] { answers[i] = MustStop(id, 10000); });
  }
  // While the stop runs (the trap takes a while), status answers at once.
  absl::StatusOr<ProcessStatus> during;
  for (;;) {
    during = client().GetStatus(id);
    ASSERT_TRUE(during.ok());
    if (during->state() != ProcessStatus::STATE_RUNNING) break;
    std::this_thread::yield();
  }
  for (auto& t : stoppers) t.join();
  EXPECT_TRUE(during->state() == ProcessStatus::STATE_STOPPING ||
              during->state() == ProcessStatus::STATE_EXITED)
      << during->DebugString();
  for (const auto& answer : answers) {
    EXPECT_TRUE(answer.stopped());
    EXPECT_EQ(answer.status().state(), ProcessStatus::STATE_EXITED);
    EXPECT_EQ(answer.status().exit_code(), 0);
    EXPECT_EQ(answer.status().ended_at().nanos(),
              answers[0].status().ended_at().nanos());
  }
}

TEST_F(EngineTest, StopSentTheInstantStartReturnsIsNeverLost) {
  for (int i = 0; i < 20; ++i) {
    const std::string id = MustStart(Command({"sleep", "100"}));
    pm::v1::StopResponse stopped = MustStop(id, 5000);
    ASSERT_TRUE(stopped.stopped());
    ASSERT_EQ(stopped.status().signal(), SIGTERM) << "round " << i;
  }
}

// --- Reaping and scale ------------------------------------------------------

// The children of `parent` that `pick` picks.
std::vector<pid_t> ChildrenWhere(pid_t parent,
                                 const std::function<bool(const ProcStat&)>& pick) {
  std::vector<pid_t> found;
  absl::StatusOr<std::vector<ProcStat>> children = ChildrenOf(parent);
  EXPECT_TRUE(children.ok()) << children.status();
  for (const ProcStat& child : children.value_or(std::vector<ProcStat>())) {
    if (pick(child)) found.push_back(child.pid);
  }
  return found;
}
std::vector<pid_t> ZombiesOf(pid_t parent) {
  return ChildrenWhere(parent, [](const ProcStat& c) { return c.state == 'Z'; });
}

// The supervisor keeps idle pm-shims ready (the stack passes --shim_binary
// and --state_dir), its own children.
TEST_F(EngineTest, TheSupervisorKeepsTwoIdleShimsReady) {
  EXPECT_EQ(ChildrenWhere(stack_.pid("supervisor"),
                          [](const ProcStat& c) { return c.comm == "pm-shim"; })
                .size(),
            2u);
}

TEST_F(EngineTest, ThousandShortProcessesLeaveNoZombie) {
  std::vector<std::string> ids;
  std::vector<std::thread> starters;
  std::mutex mu;
  for (int t = 0; t < 4; ++t) {
    starters.emplace_back([&] {
      for (int i = 0; i < 250; ++i) {
        // Half of them leave an orphan behind for the subreaper.
        std::string id = MustStart(i % 2 ? Command({"true"}) : Shell("true & exit 0"));
        std::lock_guard<std::mutex> lock(mu);
        ids.push_back(id);
      }
    });
  }
  for (auto& t : starters) t.join();
  ASSERT_EQ(ids.size(), 1000u);
  for (const std::string& id : ids) {
    EXPECT_EQ(MustWait(id).state(), ProcessStatus::STATE_EXITED);
  }
  // Orphans are reaped as they exit; wait for the last ones via their
  // output end (the pipe closes only when every holder has exited).
  for (const std::string& id : ids) ReadOutput(client(), id);
  EXPECT_TRUE(ZombiesOf(stack_.pid("supervisor")).empty());
}

TEST_F(EngineTest, HundredConcurrentStartsAllSucceed) {
  std::vector<std::string> ids(100);
  std::vector<std::thread> starters;
  for (int i = 0; i < 100; ++i) {
    starters.emplace_back([&, i] { ids[i] = MustStart(Command({"sleep", "30"})); });
  }
  for (auto& t : starters) t.join();
  std::set<std::string> distinct(ids.begin(), ids.end());
  EXPECT_EQ(distinct.size(), 100u);
  EXPECT_EQ(distinct.count(""), 0u);
  absl::StatusOr<pm::v1::ListResponse> list = client().List();
  ASSERT_TRUE(list.ok());
  EXPECT_EQ(list->processes_size(), 100);
}

TEST(EngineCapTest, StartsBeyondTheLiveCapAreResourceExhausted) {
  TestStack stack(ServiceFlags{{"supervisor", {"--max_processes=2"}}});
  ASSERT_TRUE(stack.ok()) << stack.status();
  ASSERT_TRUE(stack.client().Start(Command({"sleep", "100"})).ok());
  ASSERT_TRUE(stack.client().Start(Command({"sleep", "100"})).ok());
  absl::StatusOr<pm::v1::StartResponse> third =
      stack.client().Start(Command({"sleep", "100"}));
  EXPECT_EQ(third.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(third.status().message(), HasSubstr("--max_processes"));
}

// --- File descriptors -------------------------------------------------------

// Sets this test's soft RLIMIT_NOFILE for as long as it lives (the services
// it launches inherit it), and puts the old one back.
class SoftFileLimit {
 public:
  explicit SoftFileLimit(rlim_t soft) {
    getrlimit(RLIMIT_NOFILE, &saved_);
    rlimit limit = saved_;
    limit.rlim_cur = std::min(soft, saved_.rlim_max);
    setrlimit(RLIMIT_NOFILE, &limit);
  }
  ~SoftFileLimit() { setrlimit(RLIMIT_NOFILE, &saved_); }
  rlim_t hard() const { return saved_.rlim_max; }

 private:
  rlimit saved_;
};

// The services launched as from a login shell, with the usual soft limit of
// 1024 (the hard limit above it, as on most hosts).
class FileLimitEngineTest : public ::testing::Test {
 protected:
  static constexpr rlim_t kLoginSoftLimit = 1024;
  FileLimitEngineTest() : limit_(kLoginSoftLimit), stack_(kDefaultFlags) {}
  void SetUp() override {
    if (limit_.hard() != RLIM_INFINITY && limit_.hard() < 4 * kLoginSoftLimit) {
      GTEST_SKIP() << "the hard RLIMIT_NOFILE here is " << limit_.hard();
    }
    ASSERT_TRUE(stack_.ok()) << stack_.status();
  }

  SoftFileLimit limit_;  // before the stack, which inherits it
  TestStack stack_;
};

// The supervisor holds about four fds per process: from a soft limit of
// 1024 it used to fail at some 250 processes (clone3: EMFILE). It raises
// its own limit, so 300 run at once, and each still gets 1024.
TEST_F(FileLimitEngineTest, ThreeHundredProcessesRunFromASoftLimitOf1024) {
  pm::Client& client = stack_.client();
  std::vector<std::string> ids;
  for (int i = 0; i < 300; ++i) {
    absl::StatusOr<pm::v1::StartResponse> started =
        client.Start(Command({"sleep", "1000"}));
    ASSERT_TRUE(started.ok()) << "start " << i << ": " << started.status();
    ids.push_back(started->id());
  }
  const std::string limits = absl::StrCat("/proc/", stack_.pid("supervisor"), "/limits");
  std::string line;
  for (std::ifstream in(limits); std::getline(in, line);) {
    if (absl::StartsWith(line, "Max open files")) break;
  }
  std::vector<std::string> fields = absl::StrSplit(line, ' ', absl::SkipEmpty());
  ASSERT_GE(fields.size(), 5u) << line;
  EXPECT_EQ(fields[3], limit_.hard() == RLIM_INFINITY ? std::string("unlimited")
                                                       : absl::StrCat(limit_.hard()))
      << "the supervisor's soft limit";

  const std::string shell = MustStart(client, Shell("ulimit -Sn")).id();
  Output output = ReadOutput(client, shell);
  ASSERT_TRUE(output.status.ok()) << output.status;
  EXPECT_EQ(output.out, "1024\n");

  for (const std::string& id : ids) {
    pm::v1::StopRequest stop;
    stop.set_id(id);
    stop.set_force(true);
    absl::StatusOr<pm::v1::StopResponse> stopped = client.Stop(stop);
    ASSERT_TRUE(stopped.ok()) << stopped.status();
    EXPECT_TRUE(stopped->stopped());
  }
}

// --- Faults -----------------------------------------------------------------

// The log_store only reads what the shims write: while it is down,
// processes start, run and write, and their output is all there once it is
// back. Readers meanwhile learn which service is down.
TEST_F(EngineTest, ALogStoreThatIsDownStopsNoStartAndLosesNoOutput) {
  ASSERT_TRUE(stack_.stack().KillService("log_store", SIGKILL).ok());
  const std::string id = MustStart(Shell("echo while; echo down >&2"));
  ProcessStatus ended = MustWait(id);
  EXPECT_EQ(ended.exit_code(), 0);
  EXPECT_EQ(ended.output_bytes(), 11u);
  pm::v1::StreamOutputRequest read;
  read.set_id(id);
  Output output = Drain(*client().StreamOutput(read));
  EXPECT_EQ(output.status.code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(output.status.message(), HasSubstr("log_store is unavailable at"));
  EXPECT_THAT(output.status.message(), HasSubstr("log_store.sock"));

  ASSERT_TRUE(stack_.stack().RestartService("log_store").ok());
  // This client's channel saw the store refuse connections and may still be
  // in gRPC's reconnect backoff, where a call fails at once (the CLI's
  // follower retries those): the read goes through a new client.
  absl::StatusOr<std::unique_ptr<pm::Client>> reader =
      pm::Client::ConnectLocal(stack_.runtime_dir());
  ASSERT_TRUE(reader.ok()) << reader.status();
  Output back = ReadOutput(**reader, id);
  EXPECT_TRUE(back.status.ok()) << back.status;
  EXPECT_EQ(back.out, "while\n");
  EXPECT_EQ(back.err, "down\n");
}

TEST_F(EngineTest, RegistryDownMakesStartUnavailableAndARestartedOneIsUsedAgain) {
  MustWait(MustStart(Command({"true"})));  // the supervisor's record stream is up
  ASSERT_TRUE(stack_.stack().KillService("registry", SIGKILL).ok());
  absl::StatusOr<pm::v1::StartResponse> started = client().Start(Command({"true"}));
  EXPECT_EQ(started.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(started.status().message(), HasSubstr("registry"));

  // The broken stream is replaced: records and their updates reach the new
  // registry.
  ASSERT_TRUE(stack_.stack().RestartService("registry").ok());
  const std::string id = MustStart(Shell("exit 7"));
  ProcessStatus ended = MustWait(id);
  EXPECT_EQ(ended.state(), ProcessStatus::STATE_EXITED);
  EXPECT_EQ(ended.exit_code(), 7);
}

// "1\n" ... "<last>\n", as seq prints it.
std::string Seq(int first, int last) {
  std::string lines;
  for (int i = first; i <= last; ++i) absl::StrAppend(&lines, i, "\n");
  return lines;
}

TEST_F(EngineTest, ALogStoreKilledWithSigkillMidOutputLosesNothing) {
  const std::string gate = stack_.temp_dir() + "/gate";
  ASSERT_EQ(mkfifo(gate.c_str(), 0600), 0);
  const std::string id = MustStart(Shell(
      absl::StrCat("seq 1 50000; read x < ", gate, "; seq 50001 100000")));
  WaitForOutput(id, "\n50000\n");
  // The second half is written while the store dies and comes back: its
  // shim writes it to disk all the while; the store only reads.
  std::ofstream(gate) << "go\n";
  ASSERT_TRUE(stack_.stack().KillService("log_store", SIGKILL).ok());
  ASSERT_TRUE(stack_.stack().RestartService("log_store").ok());
  const std::string expected = Seq(1, 100000);
  ProcessStatus ended = MustWait(id);
  EXPECT_EQ(ended.output_bytes(), expected.size());

  // Followed to the end record, which the shim writes at the end.
  Output output = ReadOutput(client(), id);
  ASSERT_TRUE(output.status.ok()) << output.status;
  EXPECT_TRUE(output.out == expected)
      << output.out.size() << " bytes where " << expected.size() << " were due";
  EXPECT_EQ(output.dropped, 0u);
  EXPECT_TRUE(output.offsets_contiguous);
  EXPECT_EQ(output.next_offset, expected.size());
}

TEST_F(EngineTest, ALogStoreRestartedServesOutputOfProcessesThatEndedBefore) {
  const std::string id = MustStart(Shell("echo out; echo err >&2"));
  MustWait(id);
  // Read to its end: the store has written the end record.
  ASSERT_TRUE(ReadOutput(client(), id).status.ok());
  ASSERT_TRUE(stack_.stack().KillService("log_store", SIGKILL).ok());
  ASSERT_TRUE(stack_.stack().RestartService("log_store").ok());

  Output output = ReadOutput(client(), id);
  ASSERT_TRUE(output.status.ok()) << output.status;
  EXPECT_EQ(output.out, "out\n");
  EXPECT_EQ(output.err, "err\n");
  EXPECT_EQ(output.dropped, 0u);
  EXPECT_EQ(output.next_offset, 8u);
}

// A log_store that stalls (stopped here with SIGSTOP) is out of the output's
// path: the process writes 16 MiB and ends while it is stopped, and every
// byte is there afterwards.
TEST(EngineStallTest, AStalledLogStoreNeverFreezesTheProcessNorLosesOutput) {
  TestStack stack;
  ASSERT_TRUE(stack.ok()) << stack.status();
  // The process writes only once the log_store is frozen.
  const std::string gate = stack.temp_dir() + "/gate";
  ASSERT_EQ(mkfifo(gate.c_str(), 0600), 0);
  const std::string id = [&] {
    auto started = stack.client().Start(Shell(absl::StrCat(
        "echo first; read x < ", gate,
        "; head -c 16777216 /dev/zero; echo last >&2")));
    EXPECT_TRUE(started.ok()) << started.status();
    return started.ok() ? started->id() : std::string();
  }();
  pid_t log_store = stack.pid("log_store");
  ASSERT_EQ(kill(log_store, SIGSTOP), 0);
  std::ofstream(gate) << "go\n";
  absl::StatusOr<ProcessStatus> ended = stack.client().Wait(id, absl::Seconds(60));
  ASSERT_EQ(kill(log_store, SIGCONT), 0);
  ASSERT_TRUE(ended.ok()) << ended.status();
  EXPECT_EQ(ended->exit_code(), 0);
  const uint64_t written = 6 + (16 << 20) + 5;
  EXPECT_EQ(ended->output_bytes(), written);

  Output output = ReadOutput(stack.client(), id);
  ASSERT_TRUE(output.status.ok()) << output.status;
  EXPECT_EQ(output.all.size(), written);
  EXPECT_EQ(output.dropped, 0u);
  EXPECT_EQ(output.err, "last\n");
  EXPECT_TRUE(output.offsets_contiguous);
}

}  // namespace
}  // namespace pm::testing
