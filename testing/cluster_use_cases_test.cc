// Issue 17: the design doc's use cases through the Library on host a's
// gateway, on processes that live on host b (two real launchers on one
// etcd, testing/cluster_fixture.h): each Start names node "b", and every
// later call on the process is forwarded by a to b. The same cases as the
// single host's (testing/engine_test.cc, "The design doc's use cases"),
// with what only b can answer (its /proc, its supervisor's stop, its
// log_store's output) checked to come from b.
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "client/client.h"
#include "common/uuid.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "testing/cluster_fixture.h"
#include "testing/test_stack.h"

namespace pm::testing {
namespace {

using ::pm::v1::ProcessStatus;
using ::testing::HasSubstr;

// A safety net against a hang, never an expectation of speed.
constexpr absl::Duration kPatience = absl::Seconds(60);

std::string CgroupHelper() {
  const char* srcdir = getenv("TEST_SRCDIR");
  return absl::StrCat(srcdir != nullptr ? srcdir : ".", "/pm/testing/cgroup_helper");
}

// "1\n" ... "<last>\n", as seq prints it.
std::string Seq(int first, int last) {
  std::string lines;
  for (int i = first; i <= last; ++i) absl::StrAppend(&lines, i, "\n");
  return lines;
}

// The parent of `pid` (from /proc/<pid>/stat), or -1.
pid_t ParentOf(pid_t pid) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/stat"));
  std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  // "pid (comm) state ppid ...": comm may hold spaces, so after the last ')'.
  const size_t close = stat.rfind(')');
  if (close == std::string::npos) return -1;
  std::vector<std::string> fields =
      absl::StrSplit(stat.substr(close + 2), ' ', absl::SkipEmpty());
  pid_t parent = -1;
  if (fields.size() < 2 || !absl::SimpleAtoi(fields[1], &parent)) return -1;
  return parent;
}

// Whether `ancestor` is `pid`'s parent, or its parent's, and so on. The
// launchers are subreapers: a process of host b, and its shim, stay below
// b's launcher.
bool IsDescendantOf(pid_t pid, pid_t ancestor) {
  for (pid_t p = ParentOf(pid); p > 1; p = ParentOf(p)) {
    if (p == ancestor) return true;
  }
  return false;
}

class ClusterUseCaseTest : public ClusterTest {
 protected:
  void SetUp() override {
    ClusterTest::SetUp();
    if (HasFatalFailure()) return;
    via_a_ = Connect(*a_);
    ASSERT_NE(via_a_, nullptr);
  }
  void TearDown() override {
    via_a_.reset();
    ClusterTest::TearDown();
  }

  // The client on host a's gateway, through which every case runs.
  pm::Client& via_a() { return *via_a_; }

  // Starts `request` on host b through a; its id ("" and a test failure
  // when the start fails or lands elsewhere).
  std::string MustStartOnB(pm::v1::StartRequest request) {
    request.set_node("b");
    pm::v1::StartResponse started = MustStart(via_a(), request);
    EXPECT_EQ(started.status().node(), "b") << log();
    return started.id();
  }

  // A fifo in the test's directory that a process can wait on (`read x <
  // path`) until the test writes a line to it with Open().
  std::string Gate() {
    const std::string path = dir_ + "/gate";
    EXPECT_EQ(mkfifo(path.c_str(), 0600), 0) << strerror(errno);
    return path;
  }
  static void Open(const std::string& gate) { std::ofstream(gate) << "go\n"; }

  // Lists through `client` until `wanted` holds of the answer; the last
  // answer. Another host's records reach a host through etcd's watch, a
  // moment after the Start has answered: this waits for that event.
  pm::v1::ListResponse ListUntil(
      pm::Client& client, const std::function<bool(const pm::v1::ListResponse&)>& wanted) {
    pm::v1::ListResponse last;
    const absl::Time deadline = absl::Now() + kPatience;
    do {
      absl::StatusOr<pm::v1::ListResponse> listed = client.List();
      EXPECT_TRUE(listed.ok()) << listed.status();
      if (!listed.ok()) break;
      last = *std::move(listed);
    } while (!wanted(last) && absl::Now() < deadline);
    return last;
  }

  std::unique_ptr<pm::Client> via_a_;
};

// The node of process `id` in `list`; "" when it is not there.
std::string NodeIn(const pm::v1::ListResponse& list, const std::string& id) {
  for (const ProcessStatus& process : list.processes()) {
    if (process.id() == id) return process.node();
  }
  return "";
}

// --- Start ------------------------------------------------------------------

TEST_F(ClusterUseCaseTest, AProcessStartedOnBThroughAGetsAUuidAndBsLiveStatus) {
  const std::string gate = Gate();
  pm::v1::StartRequest request;
  request.set_executable("sh");  // found on b's PATH
  for (const char* arg : {"-c", "pwd; echo \"$GREETING\"; echo \"$1\"; read x < \"$2\"",
                          "sh", "an argument", gate.c_str()}) {
    request.add_args(arg);
  }
  (*request.mutable_env())["GREETING"] = "hello there";
  request.set_working_dir("/usr");
  request.set_node("b");
  absl::StatusOr<pm::v1::StartResponse> started = via_a().Start(request);
  ASSERT_TRUE(started.ok()) << started.status() << log();
  EXPECT_TRUE(ValidateProcessId(started->id()).ok()) << started->id();
  EXPECT_EQ(started->status().node(), "b");
  EXPECT_EQ(started->status().state(), ProcessStatus::STATE_RUNNING);
  const std::string id = started->id();

  // Its arguments, environment and working directory are the process's.
  EXPECT_EQ(FollowUntil(via_a(), id, "an argument\n"), "/usr\nhello there\nan argument\n");

  // Its status through a is b's, with the live view of b's /proc.
  ProcessStatus status = MustGetStatus(via_a(), id);
  EXPECT_EQ(status.node(), "b");
  EXPECT_EQ(status.state(), ProcessStatus::STATE_RUNNING);
  EXPECT_GT(status.pid(), 0);
  EXPECT_EQ(status.executable(), "sh");
  EXPECT_THAT(status.resolved_executable(), ::testing::EndsWith("/sh"));
  EXPECT_THAT(status.args(), ::testing::ElementsAre("-c", request.args(1), "sh",
                                                    "an argument", gate));
  EXPECT_EQ(status.working_dir(), "/usr");
  EXPECT_EQ(status.owner(), "demo (CN=pm-client,O=pm dev)");
  EXPECT_EQ(status.proc_status().at("Name"), "sh");
  EXPECT_EQ(status.proc_status().at("Pid"), std::to_string(status.pid()));
  EXPECT_GT(status.rss_bytes(), 0u);
  EXPECT_EQ(status.threads(), 1);
  // It runs under b's launcher, not a's (one kernel here: both are seen).
  EXPECT_TRUE(IsDescendantOf(status.pid(), b_->pid())) << status.pid();
  EXPECT_FALSE(IsDescendantOf(status.pid(), a_->pid())) << status.pid();

  Open(gate);
  ProcessStatus ended = MustWait(via_a(), id);
  EXPECT_EQ(ended.state(), ProcessStatus::STATE_EXITED);
  EXPECT_EQ(ended.exit_code(), 0);
}

TEST_F(ClusterUseCaseTest, AProcessThatWontStartOnBGivesBsOsErrorAndNoUuid) {
  pm::v1::StartRequest request = Command({"/nope"});
  request.set_node("b");
  absl::StatusOr<pm::v1::StartResponse> started = via_a().Start(request);
  EXPECT_EQ(started.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(started.status().message(),
            "execve(\"/nope\"): No such file or directory (ENOENT)");
  // A node no host can have is the caller's mistake, as on one host.
  pm::v1::StartRequest nowhere = Command({"true"});
  nowhere.set_node("B!");
  absl::StatusOr<pm::v1::StartResponse> invalid = via_a().Start(nowhere);
  EXPECT_EQ(invalid.status().code(), absl::StatusCode::kInvalidArgument) << invalid.status();
  EXPECT_THAT(invalid.status().message(), HasSubstr("node \"B!\""));
  // Nothing was recorded on either host.
  std::unique_ptr<pm::Client> via_b = Connect(*b_);
  ASSERT_NE(via_b, nullptr);
  for (pm::Client* client : {&via_a(), via_b.get()}) {
    absl::StatusOr<pm::v1::ListResponse> list = client->List();
    ASSERT_TRUE(list.ok()) << list.status();
    EXPECT_EQ(list->processes_size(), 0) << list->DebugString();
  }
}

// Limits reach b's supervisor and hold on b: a process past its memory
// limit is killed there by the OOM killer, and says so through a.
TEST_F(ClusterUseCaseTest, LimitsOfAProcessOnBAreEnforcedOnB) {
  pm::v1::StartRequest request = Command({CgroupHelper(), "alloc", "256"});
  request.mutable_limits()->set_memory_bytes(32 << 20);
  request.mutable_limits()->set_pids(64);
  request.set_node("b");
  absl::StatusOr<pm::v1::StartResponse> started = via_a().Start(request);
  if (started.status().code() == absl::StatusCode::kFailedPrecondition) {
    GTEST_SKIP() << started.status();  // no cgroups to enforce them here
  }
  ASSERT_TRUE(started.ok()) << started.status() << log();
  EXPECT_EQ(started->status().node(), "b");
  ProcessStatus ended = MustWait(via_a(), started->id());
  EXPECT_EQ(ended.node(), "b");
  EXPECT_EQ(ended.state(), ProcessStatus::STATE_SIGNALED);
  EXPECT_EQ(ended.signal(), SIGKILL);
  EXPECT_TRUE(ended.oom_killed());
  EXPECT_EQ(ended.end_reason(),
            "killed by signal 9 (SIGKILL): the OOM killer ended it (memory "
            "limit 32 MiB reached)");
  EXPECT_EQ(ended.limits().memory_bytes(), 32u << 20);
  EXPECT_EQ(ended.limits().pids(), 64u);
  EXPECT_LE(ended.usage().memory_peak_bytes(), 32u << 20);
  EXPECT_THAT(ReadOutput(via_a(), started->id()).out, HasSubstr("allocated 1\n"));
}

// --- Stop -------------------------------------------------------------------

TEST_F(ClusterUseCaseTest, AProcessOnBStoppedThroughAReturnsItsSignal) {
  const std::string id = MustStartOnB(Command({"sleep", "1000"}));
  pm::v1::StopResponse stopped = MustStop(via_a(), id, 5000);
  EXPECT_TRUE(stopped.stopped());
  EXPECT_EQ(stopped.status().node(), "b");
  EXPECT_EQ(stopped.status().state(), ProcessStatus::STATE_SIGNALED);
  EXPECT_EQ(stopped.status().signal(), SIGTERM);
  EXPECT_EQ(stopped.status().termination(), ProcessStatus::TERMINATION_AFTER_SIGTERM);
  // b's record agrees as soon as Stop has answered, through a too.
  ProcessStatus status = MustGetStatus(via_a(), id);
  EXPECT_EQ(status.state(), ProcessStatus::STATE_SIGNALED);
  EXPECT_TRUE(status.proc_status().empty());
}

// A stop whose SIGTERM the process handles: it ends by itself, and the
// stop returns its exit code; its output, followed through a meanwhile,
// goes on to its last line.
TEST_F(ClusterUseCaseTest, AProcessOnBThatHandlesSigtermStopsWithItsExitCode) {
  const std::string id = MustStartOnB(
      Shell("trap 'echo bye; exit 7' TERM; echo ready; while :; do sleep 1; done"));
  pm::v1::StreamOutputRequest follow;
  follow.set_id(id);
  follow.set_from_start(true);
  follow.set_follow(true);
  std::unique_ptr<pm::OutputStream> stream = via_a().StreamOutput(follow);
  std::string seen;
  pm::v1::OutputChunk chunk;
  while (seen.find("ready\n") == std::string::npos && stream->Next(&chunk)) {
    seen += chunk.data();
  }
  ASSERT_EQ(seen, "ready\n");

  pm::v1::StopResponse stopped;
  std::thread stopper([&] { stopped = MustStop(via_a(), id, 10000); });
  Output rest = Drain(*stream);
  stopper.join();
  EXPECT_TRUE(rest.status.ok()) << rest.status;
  // Its last line, and nothing else but sh's report of its killed
  // `sleep` ("Terminated"), which may come before or after it.
  std::vector<std::string> lines = absl::StrSplit(rest.all, '\n');
  EXPECT_EQ(lines.back(), "") << rest.all;
  EXPECT_THAT(lines, ::testing::Contains("bye")) << rest.all;
  EXPECT_THAT(lines, ::testing::Each(::testing::AnyOf("bye", "Terminated", "")))
      << rest.all;
  EXPECT_TRUE(stopped.stopped());
  EXPECT_EQ(stopped.status().state(), ProcessStatus::STATE_EXITED);
  EXPECT_EQ(stopped.status().exit_code(), 7);
  EXPECT_EQ(stopped.status().termination(), ProcessStatus::TERMINATION_AFTER_SIGTERM);
}

// Graceful, then forced, on the whole tree: the leader and its child both
// ignore SIGTERM; after the grace period b's supervisor kills them all.
TEST_F(ClusterUseCaseTest, ATreeOnBThatIgnoresSigtermIsKilledWholeAfterTheGracePeriod) {
  const std::string id = MustStartOnB(
      Shell("trap '' TERM; sh -c 'trap \"\" TERM; echo $$; exec sleep 1000' & wait"));
  const std::string line = FollowUntil(via_a(), id, "\n");
  pid_t child = 0;
  ASSERT_TRUE(absl::SimpleAtoi(absl::StripSuffix(line, "\n"), &child)) << line;
  ASSERT_EQ(kill(child, 0), 0) << "the child is not running";

  pm::v1::StopResponse stopped = MustStop(via_a(), id, 300);
  EXPECT_TRUE(stopped.stopped());
  EXPECT_EQ(stopped.status().node(), "b");
  EXPECT_EQ(stopped.status().state(), ProcessStatus::STATE_SIGNALED);
  EXPECT_EQ(stopped.status().signal(), SIGKILL);
  EXPECT_EQ(stopped.status().termination(), ProcessStatus::TERMINATION_KILLED);
  // The child is gone too, and reaped (not a zombie) by the time the stop
  // has answered.
  EXPECT_NE(kill(child, 0), 0);
  EXPECT_EQ(errno, ESRCH);
}

TEST_F(ClusterUseCaseTest, AProcessOnBThatWontStopIsReportedNotStopped) {
  // A process in a frozen cgroup (v1 freezer) cannot die, not even of
  // SIGKILL, until it is thawed.
  std::unique_ptr<Freezer> freezer = Freezer::Make();
  if (freezer == nullptr) GTEST_SKIP() << "no writable cgroup v1 freezer here";
  const std::string id = MustStartOnB(Command({"sleep", "1000"}));
  ProcessStatus running = MustGetStatus(via_a(), id);
  ASSERT_GT(running.pid(), 0);
  freezer->Freeze(running.pid());

  pm::v1::StopResponse stopped = MustStop(via_a(), id, 200);
  EXPECT_FALSE(stopped.stopped());
  EXPECT_EQ(stopped.status().node(), "b");
  EXPECT_EQ(stopped.status().state(), ProcessStatus::STATE_STOPPING);
  EXPECT_EQ(stopped.status().pid(), running.pid());

  // Thawed, it dies of the SIGKILL it already has.
  freezer->Thaw();
  ProcessStatus ended = MustWait(via_a(), id);
  EXPECT_EQ(ended.state(), ProcessStatus::STATE_SIGNALED);
  EXPECT_EQ(ended.termination(), ProcessStatus::TERMINATION_KILLED);
}

// --- Status -----------------------------------------------------------------

TEST_F(ClusterUseCaseTest, TheStatusOfAProcessThatEndedOnBHasItsExitCode) {
  const std::string id = MustStartOnB(Shell("exit 3"));
  ProcessStatus ended = MustWait(via_a(), id);
  EXPECT_EQ(ended.state(), ProcessStatus::STATE_EXITED);
  ProcessStatus status = MustGetStatus(via_a(), id);
  EXPECT_EQ(status.node(), "b");
  EXPECT_EQ(status.state(), ProcessStatus::STATE_EXITED);
  EXPECT_EQ(status.exit_code(), 3);
  EXPECT_EQ(status.termination(), ProcessStatus::TERMINATION_BY_ITSELF);
  EXPECT_TRUE(status.has_ended_at());
  EXPECT_TRUE(status.proc_status().empty());
  // Stop of an ended process returns its final status.
  pm::v1::StopResponse stopped = MustStop(via_a(), id, 1000);
  EXPECT_TRUE(stopped.stopped());
  EXPECT_EQ(stopped.status().exit_code(), 3);
}

TEST_F(ClusterUseCaseTest, ListThroughEitherHostShowsBothHostsProcessesWithTheirNode) {
  pm::v1::StartRequest on_a = Command({"sleep", "1000"});
  on_a.set_node("a");
  const std::string id_a = MustStart(via_a(), on_a).id();
  const std::string id_b = MustStartOnB(Command({"sleep", "1000"}));
  ASSERT_FALSE(id_a.empty());
  ASSERT_FALSE(id_b.empty());
  std::unique_ptr<pm::Client> via_b = Connect(*b_);
  ASSERT_NE(via_b, nullptr);
  auto both = [&](const pm::v1::ListResponse& list) {
    return !NodeIn(list, id_a).empty() && !NodeIn(list, id_b).empty();
  };
  for (pm::Client* client : {&via_a(), via_b.get()}) {
    pm::v1::ListResponse list = ListUntil(*client, both);
    EXPECT_EQ(list.processes_size(), 2) << list.DebugString();
    EXPECT_EQ(NodeIn(list, id_a), "a") << list.DebugString();
    EXPECT_EQ(NodeIn(list, id_b), "b") << list.DebugString();
    for (const ProcessStatus& process : list.processes()) {
      EXPECT_EQ(process.state(), ProcessStatus::STATE_RUNNING) << process.DebugString();
    }
  }
  MustStop(via_a(), id_a, 1000);
  MustStop(via_a(), id_b, 1000);
}

// --- Output -----------------------------------------------------------------

TEST_F(ClusterUseCaseTest, TheOutputOfAProcessOnBIsReadFromItsStartThroughA) {
  const std::string id = MustStartOnB(Shell("echo out; echo err >&2; printf 'no newline'"));
  ProcessStatus ended = MustWait(via_a(), id);
  Output output = ReadOutput(via_a(), id);
  ASSERT_TRUE(output.status.ok()) << output.status;
  EXPECT_EQ(output.out, "out\nno newline");
  EXPECT_EQ(output.err, "err\n");
  EXPECT_EQ(output.dropped, 0u);
  EXPECT_TRUE(output.offsets_contiguous);
  EXPECT_EQ(ended.output_bytes(), output.all.size());
  // Without following, it is what there is so far, then the end.
  pm::v1::StreamOutputRequest read;
  read.set_id(id);
  read.set_from_start(true);
  EXPECT_EQ(Drain(*via_a().StreamOutput(read)).all, output.all);
}

// Following from now: what the process writes once the follower is
// attached (through a, to b's log_store), all of it, and nothing before.
TEST_F(ClusterUseCaseTest, TheOutputOfAProcessOnBIsFollowedLiveThroughA) {
  const std::string gate = Gate();
  const std::string id =
      MustStartOnB(Shell(absl::StrCat("echo before; read x < ", gate, "; seq 1 1000")));
  ASSERT_EQ(FollowUntil(via_a(), id, "before\n"), "before\n");

  pm::v1::StreamOutputRequest live;
  live.set_id(id);
  live.set_follow(true);  // from now
  std::unique_ptr<pm::OutputStream> stream = via_a().StreamOutput(live);
  stream->WaitUntilAttached();
  Open(gate);
  Output output = Drain(*stream);
  ASSERT_TRUE(output.status.ok()) << output.status;
  EXPECT_EQ(output.out, Seq(1, 1000));
  EXPECT_EQ(output.dropped, 0u);
  EXPECT_TRUE(output.offsets_contiguous);
  EXPECT_EQ(MustWait(via_a(), id).exit_code(), 0);
}

// --- Credentials ------------------------------------------------------------

// A wrong password at a is refused by a itself, whichever host the process
// is on: nothing is forwarded, and the process runs on.
TEST_F(ClusterUseCaseTest, WrongCredentialsAtAAreRefusedForAProcessOnB) {
  const std::string id = MustStartOnB(Command({"sleep", "1000"}));
  pm::RemoteOptions wrong;
  wrong.target = a_->gateway_target();
  wrong.ca_file = certs() + "/ca.pem";
  wrong.cert_file = certs() + "/client.pem";
  wrong.key_file = certs() + "/client.key";
  wrong.user = "demo";
  wrong.password = "not the password";
  absl::StatusOr<std::unique_ptr<pm::Client>> intruder = pm::Client::ConnectRemote(wrong);
  ASSERT_TRUE(intruder.ok()) << intruder.status();
  absl::StatusOr<ProcessStatus> status = (*intruder)->GetStatus(id);
  EXPECT_EQ(status.status().code(), absl::StatusCode::kPermissionDenied) << status.status();
  pm::v1::StopRequest stop;
  stop.set_id(id);
  EXPECT_EQ((*intruder)->Stop(stop).status().code(), absl::StatusCode::kPermissionDenied);
  pm::v1::StartRequest start = Command({"true"});
  start.set_node("b");
  EXPECT_EQ((*intruder)->Start(start).status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(MustGetStatus(via_a(), id).state(), ProcessStatus::STATE_RUNNING);
  MustStop(via_a(), id, 1000);
}

// --- The rest of the API ------------------------------------------------------

// Signal, Watch of one process and Remove, through a on a process of b:
// each is forwarded to b and does there what it does on one host.
TEST_F(ClusterUseCaseTest, SignalWatchAndRemoveOfAProcessOnBAreForwardedToB) {
  const std::string id = MustStartOnB(
      Shell("trap 'echo usr1' USR1; echo ready; while :; do sleep 0.1; done"));
  ASSERT_EQ(FollowUntil(via_a(), id, "ready\n"), "ready\n");
  pm::v1::WatchRequest watch;
  watch.set_id(id);
  watch.set_after_sequence(0);  // its whole history, then what comes
  std::unique_ptr<pm::EventStream> events = via_a().Watch(watch);
  events->WaitUntilAttached();

  pm::v1::SignalRequest signal;
  signal.set_id(id);
  signal.set_signal_name("USR1");
  signal.set_leader_only(true);  // not its `sleep`, which USR1 would kill
  absl::StatusOr<pm::v1::SignalResponse> signalled = via_a().Signal(signal);
  ASSERT_TRUE(signalled.ok()) << signalled.status();
  EXPECT_EQ(signalled->signal(), SIGUSR1);
  EXPECT_EQ(signalled->status().node(), "b");
  EXPECT_EQ(FollowUntil(via_a(), id, "usr1\n"), "ready\nusr1\n");

  // A running process is not removed.
  pm::v1::RemoveRequest remove;
  remove.set_id(id);
  absl::StatusOr<pm::v1::RemoveResponse> refused = via_a().Remove(remove);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(refused.status().message(), HasSubstr("stop it first"));

  EXPECT_TRUE(MustStop(via_a(), id, 5000).stopped());
  std::vector<pm::v1::Event::Kind> kinds;
  pm::v1::Event event;
  while (events->Next(&event)) {
    EXPECT_EQ(event.status().node(), "b") << event.ShortDebugString();
    kinds.push_back(event.kind());
    if (event.kind() == pm::v1::Event::KIND_SIGNALED) break;
  }
  events->Cancel();
  events->Finish().IgnoreError();
  EXPECT_THAT(kinds, ::testing::ElementsAre(pm::v1::Event::KIND_STARTED,
                                            pm::v1::Event::KIND_STOPPING,
                                            pm::v1::Event::KIND_SIGNALED));

  // Removed through a: gone from b's records and b's output, seen from
  // either host.
  absl::StatusOr<pm::v1::RemoveResponse> removed = via_a().Remove(remove);
  ASSERT_TRUE(removed.ok()) << removed.status();
  EXPECT_EQ(removed->status().id(), id);
  std::unique_ptr<pm::Client> via_b = Connect(*b_);
  ASSERT_NE(via_b, nullptr);
  for (pm::Client* client : {&via_a(), via_b.get()}) {
    EXPECT_EQ(client->GetStatus(id).status().code(), absl::StatusCode::kNotFound);
  }
  EXPECT_EQ(ReadOutput(via_a(), id).status.code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace pm::testing
