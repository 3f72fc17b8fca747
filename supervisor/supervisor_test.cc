// The Supervisor in-process, against an in-process registry server on a
// unix socket, running its processes under the real pm-shim: behaviour that needs a hand on its threads (the
// janitor), which the end-to-end tests in testing/ cannot reach.
#include "supervisor/supervisor.h"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <memory>
#include <string>
#include <thread>
#include <variant>
#include <vector>

#include <grpc/grpc.h>
#include <grpcpp/grpcpp.h>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/notification.h"
#include "common/channel.h"
#include "common/fd.h"
#include "common/proc.h"
#include "common/raw_call_test_util.h"
#include "common/runtime_dir.h"
#include "common/server.h"
#include "common/status.h"
#include "common/state_layout.h"
#include "common/stop_request.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "registry/registry.h"
#include "registry/registry_service.h"
#include "shim/launch.h"
#include "shim/protocol.h"
#include "supervisor/shim_spawn.h"
#include "supervisor/supervisor_service.h"
#include "supervisor/test_util.h"

namespace pm::supervisor {
namespace {

using ::testing::HasSubstr;

// The supervisor reads SIGCHLD from a signalfd: it must be blocked in every
// thread, so before any exists (gtest's and gRPC's come later).
const bool sigchld_blocked = [] {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGCHLD);
  return pthread_sigmask(SIG_BLOCK, &set, nullptr) == 0;
}();

using ::testing::HasSubstr;

constexpr char kNobody[] = "00000000-0000-4000-8000-000000000000";

std::string ShimBinary() {
  return absl::StrCat(getenv("TEST_SRCDIR"), "/pm/shim/pm-shim");
}

class SupervisorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(sigchld_blocked);
    grpc_init();
    char dir_template[] = "/tmp/pm_sv.XXXXXX";
    ASSERT_NE(mkdtemp(dir_template), nullptr);
    dir_ = dir_template;
    registry_ = std::make_unique<registry::Registry>();
    ServeRegistry();
  }

  // A registry service for registry_ on its socket (again after a restart:
  // the old server and service are kept to the end, as a late OnDone of
  // the old server's streams may still touch its service).
  void ServeRegistry() {
    if (server_) retired_servers_.push_back(std::move(server_));
    if (registry_service_) retired_services_.push_back(std::move(registry_service_));
    registry_service_ = std::make_unique<registry::RegistryService>(registry_.get());
    grpc::ServerBuilder builder;
    ConfigureServerBuilder(builder);
    builder.AddListeningPort(UnixAddress(SocketPath(dir_, Service::kRegistry)),
                             grpc::InsecureServerCredentials());
    builder.RegisterService(registry_service_.get());
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
  }

  void TearDown() override {
    // A test that failed midway may have left the janitor held.
    if (!release_janitor_.HasBeenNotified()) release_janitor_.Notify();
    supervisor_.reset();  // stops what is left
    for (int fd : pidfds_) close(fd);
    server_->Shutdown();
    server_->Wait();
    std::string rm = "rm -rf " + dir_;
    EXPECT_EQ(system(rm.c_str()), 0);
    grpc_shutdown();
  }

  // A supervisor whose janitor, holding a reaped leader's cgroup, waits
  // for release_janitor_ (janitor_entered_ says it got there).
  void CreateSupervisorWithHeldJanitor() {
    CreateSupervisor([this] {
      if (!janitor_entered_.HasBeenNotified()) janitor_entered_.Notify();
      release_janitor_.WaitForNotification();
    });
  }

  void CreateSupervisor(std::function<void()> janitor_gate,
                        std::function<void(SupervisorOptions&)> adjust = nullptr) {
    SupervisorOptions options;
    options.registry_socket = SocketPath(dir_, Service::kRegistry);
    options.shim = shim::ShimLaunch{ShimBinary(), dir_, dir_};
    options.cgroup.name_prefix = absl::StrCat("svtest", getpid(), ".");
    options.janitor_gate = std::move(janitor_gate);
    if (adjust) adjust(options);
    absl::StatusOr<std::unique_ptr<Supervisor>> created = Supervisor::Create(options);
    ASSERT_TRUE(created.ok()) << created.status();
    supervisor_ = *std::move(created);
  }

  absl::StatusOr<pm::v1::StartResponse> Start(const pm::v1::StartRequest& request) {
    absl::Notification done;
    absl::StatusOr<pm::v1::StartResponse> result;
    supervisor_->Start(request, Owner(), [&](absl::StatusOr<pm::v1::StartResponse> r) {
      result = std::move(r);
      done.Notify();
    });
    done.WaitForNotification();
    return result;
  }

  // Starts /bin/sh running `members` (shell commands that each start one
  // process in the background), which reports the members' pids and exits
  // when ReleaseLeader() is called. Fills `pidfds` with a pidfd per member
  // (closed at TearDown).
  absl::StatusOr<pm::v1::StartResponse> StartLeaderWithMembers(
      const std::vector<std::string>& members, std::vector<int>* pidfds) {
    const std::string out = dir_ + "/out";
    in_ = dir_ + "/in";
    for (const std::string& fifo : {out, in_}) {
      if (mkfifo(fifo.c_str(), 0600) != 0) return ErrnoError("mkfifo", fifo);
    }
    std::string script = "pids=";
    for (const std::string& member : members) {
      absl::StrAppend(&script, "; ", member, " & pids=\"$pids $!\"");
    }
    absl::StrAppend(&script, "; echo $pids > ", out, "; read line < ", in_, "; exit 0");
    pm::v1::StartRequest request;
    request.set_executable("/bin/sh");
    request.add_args("-c");
    request.add_args(script);
    absl::StatusOr<pm::v1::StartResponse> started = Start(request);
    if (!started.ok()) return started;
    std::string text(256, '\0');
    const int out_fd = open(out.c_str(), O_RDONLY | O_CLOEXEC);
    if (out_fd < 0) return ErrnoError("open", out);
    const ssize_t n = read(out_fd, text.data(), text.size());
    const int read_errno = errno;
    close(out_fd);
    if (n <= 0) {
      errno = read_errno;
      return n == 0 ? absl::InternalError(absl::StrCat("read(\"", out, "\"): EOF"))
                    : ErrnoError("read", out);
    }
    for (absl::string_view word : absl::StrSplit(
             absl::string_view(text.data(), n), ' ', absl::SkipWhitespace())) {
      pid_t pid = 0;
      if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(word), &pid)) {
        return absl::InternalError(absl::StrCat("not a pid: ", word));
      }
      const int fd = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
      if (fd < 0) return ErrnoError("pidfd_open", absl::StrCat(pid));
      pidfds_.push_back(fd);
      pidfds->push_back(fd);
    }
    return started;
  }

  // Starts `sh -c script` with $READY the path of a fifo, and returns once
  // something of the script wrote a line to it: what the script set up
  // before (a trap, a child) is in place by then.
  absl::StatusOr<pm::v1::StartResponse> StartOnceReady(const std::string& script) {
    const std::string ready = absl::StrCat(dir_, "/ready", ++fifos_);
    if (mkfifo(ready.c_str(), 0600) != 0) return ErrnoError("mkfifo", ready);
    pm::v1::StartRequest request;
    request.set_executable("/bin/sh");
    request.add_args("-c");
    request.add_args(script);
    (*request.mutable_env())["READY"] = ready;
    absl::StatusOr<pm::v1::StartResponse> started = Start(request);
    if (!started.ok()) return started;
    const int fd = open(ready.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) return ErrnoError("open", ready);
    struct pollfd readable = {fd, POLLIN, 0};
    const int polled = poll(&readable, 1, 30000);
    close(fd);
    if (polled != 1) {
      return absl::DeadlineExceededError("the process never said it was ready");
    }
    return started;
  }

  // Starts a process that ignores SIGTERM (only a SIGKILL ends it) and
  // returns once it runs with SIGTERM ignored; `pidfd` is a pidfd of it
  // (closed at TearDown).
  absl::StatusOr<pm::v1::StartResponse> StartIgnoringTerm(int* pidfd) {
    // The ignored disposition survives the exec.
    absl::StatusOr<pm::v1::StartResponse> started =
        StartOnceReady("trap '' TERM; echo ready > \"$READY\"; exec sleep 1000");
    if (!started.ok()) return started;
    *pidfd = static_cast<int>(syscall(SYS_pidfd_open, started->status().pid(), 0));
    if (*pidfd < 0) return ErrnoError("pidfd_open", absl::StrCat(started->status().pid()));
    pidfds_.push_back(*pidfd);
    return started;
  }

  // Returns once every Stop sent before has been taken by the loop (stops
  // are taken in order, and one of an unknown id is answered after).
  void WaitForEarlierStops() {
    absl::Notification later;
    absl::StatusOr<pm::v1::StopResponse> unused;
    StopAsync(kNobody, 1000, &later, &unused);
    ASSERT_TRUE(later.WaitForNotificationWithTimeout(absl::Seconds(30)));
  }

  void ReleaseLeader() {
    const int in_fd = open(in_.c_str(), O_WRONLY | O_CLOEXEC);
    ASSERT_GE(in_fd, 0);
    ASSERT_EQ(write(in_fd, "go\n", 3), 3);
    close(in_fd);
  }

  // Stops `id`; `done` is notified with the answer.
  void StopAsync(const std::string& id, uint32_t grace_ms, absl::Notification* done,
                 absl::StatusOr<pm::v1::StopResponse>* result) {
    pm::v1::StopRequest stop;
    stop.set_id(id);
    stop.set_grace_period_ms(grace_ms);
    StopAsync(stop, done, result);
  }
  // Stops and waits for the answer (30 s at most, a safety net).
  absl::StatusOr<pm::v1::StopResponse> StopAndWait(const pm::v1::StopRequest& stop) {
    absl::Notification done;
    absl::StatusOr<pm::v1::StopResponse> result =
        absl::DeadlineExceededError("no answer in 30 s");
    StopAsync(stop, &done, &result);
    if (!done.WaitForNotificationWithTimeout(absl::Seconds(30))) {
      return absl::DeadlineExceededError("no answer in 30 s");
    }
    return result;
  }

  void StopAsync(const pm::v1::StopRequest& stop, absl::Notification* done,
                 absl::StatusOr<pm::v1::StopResponse>* result) {
    supervisor_->Stop(stop, [done, result](absl::StatusOr<pm::v1::StopResponse> r) {
      *result = std::move(r);
      done->Notify();
    });
  }

  // A stop that took a SIGTERM-ignoring process with SIGKILL.
  static void ExpectKilled(const absl::StatusOr<pm::v1::StopResponse>& result,
                           pm::v1::ProcessStatus::Termination termination =
                               pm::v1::ProcessStatus::TERMINATION_KILLED) {
    ASSERT_TRUE(result.ok()) << result.status();
    EXPECT_TRUE(result->stopped());
    EXPECT_EQ(result->status().state(), pm::v1::ProcessStatus::STATE_SIGNALED);
    EXPECT_EQ(result->status().signal(), SIGKILL);
    EXPECT_EQ(result->status().termination(), termination);
  }
  static void ExpectForced(const absl::StatusOr<pm::v1::StopResponse>& result) {
    ExpectKilled(result, pm::v1::ProcessStatus::TERMINATION_FORCED);
    if (result.ok()) {
      EXPECT_THAT(result->status().end_reason(), HasSubstr("by a forced stop"));
    }
  }

  // A long stop of a process that ignores SIGTERM, then `second`: it must
  // end the process long before the first stop's hour is up, and both
  // callers get the final answer.
  void ExpectSecondStopEndsALongOne(pm::v1::StopRequest second) {
    CreateSupervisor(nullptr);
    int pidfd = -1;
    absl::StatusOr<pm::v1::StartResponse> started = StartIgnoringTerm(&pidfd);
    ASSERT_TRUE(started.ok()) << started.status();
    absl::Notification first_done, second_done;
    absl::StatusOr<pm::v1::StopResponse> first, second_result;
    StopAsync(started->id(), kMaxGracePeriodMs, &first_done, &first);
    WaitForEarlierStops();
    EXPECT_FALSE(Exited(pidfd, 0)) << "SIGTERM ended a process that ignores it";

    second.set_id(started->id());
    StopAsync(second, &second_done, &second_result);
    ASSERT_TRUE(second_done.WaitForNotificationWithTimeout(absl::Seconds(30)))
        << "the second stop joined the hour-long one";
    ASSERT_TRUE(first_done.WaitForNotificationWithTimeout(absl::Seconds(30)));
    EXPECT_TRUE(Exited(pidfd, 0));
    if (second.force()) {
      ExpectForced(first);
      ExpectForced(second_result);
    } else {
      ExpectKilled(first);
      ExpectKilled(second_result);
    }
  }

  static bool Exited(int pidfd, int timeout_ms) {
    struct pollfd gone = {pidfd, POLLIN, 0};
    return poll(&gone, 1, timeout_ms) == 1;
  }

  std::string dir_, in_;
  int fifos_ = 0;
  std::vector<int> pidfds_;  // closed at TearDown
  absl::Notification janitor_entered_, release_janitor_;
  std::unique_ptr<registry::Registry> registry_;
  std::vector<std::unique_ptr<registry::RegistryService>> retired_services_;
  std::unique_ptr<registry::RegistryService> registry_service_;
  std::unique_ptr<grpc::Server> server_;
  std::vector<std::unique_ptr<grpc::Server>> retired_servers_;
  std::unique_ptr<Supervisor> supervisor_;
};

// A Stop that arrives while the janitor holds a reaped leader's cgroup
// still reaches a daemon the leader left in it: its SIGTERM waits for the
// cgroup to come back, and the stop ends long before the grace period would
// have sent SIGKILL.
TEST_F(SupervisorTest, StopWhileTheJanitorHoldsTheCgroupStillReachesItsMembers) {
  CreateSupervisorWithHeldJanitor();
  // The leader starts a daemon in a session of its own and exits when told.
  std::vector<int> pidfds;
  absl::StatusOr<pm::v1::StartResponse> started =
      StartLeaderWithMembers({"setsid sleep 1000"}, &pidfds);
  ASSERT_TRUE(started.ok()) << started.status();
  if (started->status().cgroup().empty()) GTEST_SKIP() << "no cgroups here";
  ASSERT_EQ(pidfds.size(), 1u);
  const int daemon_fd = pidfds[0];
  ReleaseLeader();
  janitor_entered_.WaitForNotification();  // the leader is reaped; its cgroup is away

  absl::Notification stopped;
  absl::StatusOr<pm::v1::StopResponse> stop_result;
  StopAsync(started->id(), 60000, &stopped, &stop_result);
  // Stops are taken in order on the loop: once a later one is answered, the
  // first has begun (and deferred its SIGTERM to the daemon).
  absl::Notification later;
  absl::StatusOr<pm::v1::StopResponse> unused;
  StopAsync(kNobody, 1000, &later, &unused);
  later.WaitForNotification();
  EXPECT_FALSE(stopped.HasBeenNotified());

  release_janitor_.Notify();
  // SIGTERM reaches the daemon: the stop ends well inside the 60 s grace.
  ASSERT_TRUE(stopped.WaitForNotificationWithTimeout(absl::Seconds(30)))
      << "the daemon did not get SIGTERM";
  ASSERT_TRUE(stop_result.ok()) << stop_result.status();
  EXPECT_TRUE(stop_result->stopped());
  EXPECT_TRUE(Exited(daemon_fd, 0));
  EXPECT_EQ(stop_result->status().termination(),
            pm::v1::ProcessStatus::TERMINATION_BY_ITSELF);  // the leader's own end
}

// The grace period runs out while the janitor holds the reaped leader's
// cgroup: the SIGKILL meant for the cgroup waits for it to come back and
// then reaches a daemon that ignores SIGTERM, and the stop succeeds (it
// would otherwise give up after the kill timeout with the daemon alive).
TEST_F(SupervisorTest, AGracePeriodThatEndsWhileTheJanitorHoldsTheCgroupStillKills) {
  CreateSupervisorWithHeldJanitor();
  // Both members ignore SIGTERM. The first stays in the leader's process
  // group, so the group's SIGKILL at the grace period's end (not deferred)
  // tells the test the grace has run out; the second is in a session of
  // its own, where only the cgroup's SIGKILL reaches it.
  std::vector<int> pidfds;
  absl::StatusOr<pm::v1::StartResponse> started = StartLeaderWithMembers(
      {"trap '' TERM; sleep 1000", "trap '' TERM; setsid sleep 1000"}, &pidfds);
  ASSERT_TRUE(started.ok()) << started.status();
  if (started->status().cgroup().empty()) GTEST_SKIP() << "no cgroups here";
  ASSERT_EQ(pidfds.size(), 2u);
  const int in_group = pidfds[0], daemon = pidfds[1];
  ReleaseLeader();
  janitor_entered_.WaitForNotification();

  absl::Notification stopped;
  absl::StatusOr<pm::v1::StopResponse> stop_result;
  StopAsync(started->id(), 50, &stopped, &stop_result);
  // The grace period ends: the group's member is killed at once.
  ASSERT_TRUE(Exited(in_group, 30000)) << "no SIGKILL at the grace period's end";
  EXPECT_FALSE(Exited(daemon, 0)) << "the cgroup's kill went out with the janitor away";
  EXPECT_FALSE(stopped.HasBeenNotified());

  release_janitor_.Notify();
  ASSERT_TRUE(stopped.WaitForNotificationWithTimeout(absl::Seconds(30)));
  ASSERT_TRUE(stop_result.ok()) << stop_result.status();
  EXPECT_TRUE(stop_result->stopped()) << "the daemon outlived the stop";
  EXPECT_TRUE(Exited(daemon, 0));
}

// --- A stop can always be escalated --------------------------------------

TEST_F(SupervisorTest, AStopWithAShorterGraceBringsTheKillOfALongStopForward) {
  pm::v1::StopRequest second;
  second.set_grace_period_ms(1);
  ExpectSecondStopEndsALongOne(second);
}

TEST_F(SupervisorTest, AForcedStopEndsALongStopAtOnce) {
  pm::v1::StopRequest second;
  second.set_force(true);
  ExpectSecondStopEndsALongOne(second);
}

// No SIGTERM: a process that would end on SIGTERM still dies of SIGKILL.
TEST_F(SupervisorTest, AForcedStopSendsOnlySigkill) {
  CreateSupervisor(nullptr);
  pm::v1::StartRequest request;
  request.set_executable("sleep");
  request.add_args("1000");
  absl::StatusOr<pm::v1::StartResponse> started = Start(request);
  ASSERT_TRUE(started.ok()) << started.status();
  pm::v1::StopRequest stop;
  stop.set_id(started->id());
  stop.set_force(true);
  ExpectForced(StopAndWait(stop));
}

// Above the maximum is refused before anything is signalled; at the
// maximum is taken (and escalated).
TEST_F(SupervisorTest, AGracePeriodAboveTheMaximumIsInvalidArgument) {
  CreateSupervisor(nullptr);
  int pidfd = -1;
  absl::StatusOr<pm::v1::StartResponse> started = StartIgnoringTerm(&pidfd);
  ASSERT_TRUE(started.ok()) << started.status();
  for (uint32_t grace : {kMaxGracePeriodMs + 1, 0xFFFFFFFFu}) {
    absl::Notification done;
    absl::StatusOr<pm::v1::StopResponse> result;
    StopAsync(started->id(), grace, &done, &result);
    ASSERT_TRUE(done.WaitForNotificationWithTimeout(absl::Seconds(30)))
        << "a stop of " << grace << " ms was taken";
    EXPECT_EQ(result.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(result.status().message(), HasSubstr("grace_period_ms"));
    EXPECT_THAT(result.status().message(), HasSubstr("the maximum is 3600000 (1h)"));
  }
  // Nothing was begun: a forced stop finds it running and kills it.
  pm::v1::StopRequest force;
  force.set_id(started->id());
  force.set_force(true);
  ExpectForced(StopAndWait(force));
}

// Shutdown does not wait for an hour-long stop: it brings the SIGKILL
// forward to its own grace, answers the stop's caller, and leaves nothing
// running or unreaped.
TEST_F(SupervisorTest, ShutdownBringsAStopInProgressForwardAndLeavesNothingRunning) {
  CreateSupervisor(nullptr);
  int pidfd = -1;
  absl::StatusOr<pm::v1::StartResponse> started = StartIgnoringTerm(&pidfd);
  ASSERT_TRUE(started.ok()) << started.status();
  const pid_t pid = started->status().pid();
  absl::Notification stop_done;
  absl::StatusOr<pm::v1::StopResponse> stop_result;
  StopAsync(started->id(), kMaxGracePeriodMs, &stop_done, &stop_result);
  WaitForEarlierStops();

  const absl::Duration grace = absl::Milliseconds(100);
  const SupervisorOptions defaults;
  const absl::Time begun = absl::Now();
  supervisor_->Shutdown(grace);
  EXPECT_LT(absl::Now() - begun, grace + defaults.kill_timeout +
                                     defaults.backend_timeout + absl::Seconds(2));

  ASSERT_TRUE(stop_done.HasBeenNotified()) << "the stop's caller got no answer";
  ExpectKilled(stop_result);
  // Dead, and reaped by the supervisor: no zombie is left either.
  EXPECT_TRUE(Exited(pidfd, 0)) << "pid " << pid << " is still running";
  siginfo_t info = {};
  EXPECT_EQ(waitid(static_cast<idtype_t>(P_PIDFD), pidfd, &info,
                   WEXITED | WNOHANG | WNOWAIT),
            -1);
  EXPECT_EQ(errno, ECHILD) << "pid " << pid << " was not reaped";
  EXPECT_EQ(kill(pid, 0), -1);
  EXPECT_EQ(errno, ESRCH);
}

// --- Idle shims -------------------------------------------------------------

// This process's children called `comm`.
std::vector<pid_t> ChildrenNamed(absl::string_view comm) {
  std::vector<pid_t> named;
  absl::StatusOr<std::vector<ProcStat>> children = ChildrenOf(getpid());
  EXPECT_TRUE(children.ok()) << children.status();
  for (const ProcStat& child : children.value_or(std::vector<ProcStat>())) {
    if (child.comm == comm) named.push_back(child.pid);
  }
  return named;
}

// Two idle pm-shims are ready once Create returns; Shutdown ends them (an
// idle shim exits when its control socket closes) and reaps them.
TEST_F(SupervisorTest, KeepsTwoIdleShimsReadyAndEndsAndReapsThemAtShutdown) {
  // Shims of earlier tests' processes may still be finishing.
  const std::vector<pid_t> before = ChildrenNamed("pm-shim");
  CreateSupervisor(nullptr);
  std::vector<pid_t> shims;
  for (pid_t pid : ChildrenNamed("pm-shim")) {
    if (std::find(before.begin(), before.end(), pid) == before.end()) {
      shims.push_back(pid);
    }
  }
  ASSERT_EQ(shims.size(), 2u);
  std::vector<Fd> pidfds;
  for (pid_t pid : shims) {
    pidfds.emplace_back(static_cast<int>(syscall(SYS_pidfd_open, pid, 0)));
    ASSERT_TRUE(pidfds.back().valid()) << "pidfd_open " << pid << ": " << strerror(errno);
  }

  supervisor_->Shutdown();

  for (size_t i = 0; i < pidfds.size(); ++i) {
    pollfd exited = {pidfds[i].get(), POLLIN, 0};
    EXPECT_EQ(poll(&exited, 1, 0), 1) << "shim " << shims[i] << " still runs";
    siginfo_t info = {};
    EXPECT_NE(waitid(static_cast<idtype_t>(P_PIDFD), pidfds[i].get(), &info,
                     WEXITED | WNOHANG),
              0);
    EXPECT_EQ(errno, ECHILD) << "shim " << shims[i] << " was not reaped";
  }
}

// The names in `dir` (none if it does not exist).
std::vector<std::string> EntriesOf(const std::string& dir) {
  std::vector<std::string> names;
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) return names;
  while (dirent* e = readdir(d)) {
    const std::string name = e->d_name;
    if (name != "." && name != "..") names.push_back(name);
  }
  closedir(d);
  return names;
}

// Waits (inotify on `dir` and its parent) until `dir` has at least `n`
// entries; false after 30 s.
bool WaitForEntries(const std::string& dir, size_t n) {
  const std::string parent = dir.substr(0, dir.rfind('/'));
  for (;;) {
    Fd watch(inotify_init1(IN_CLOEXEC | IN_NONBLOCK));
    if (!watch) return false;
    inotify_add_watch(watch.get(), parent.c_str(), IN_CREATE | IN_MOVED_TO);
    inotify_add_watch(watch.get(), dir.c_str(), IN_CREATE | IN_MOVED_TO);
    // Looked at after the watches are in place: a create in between wakes.
    if (EntriesOf(dir).size() >= n) return true;
    pollfd ready = {watch.get(), POLLIN, 0};
    if (poll(&ready, 1, 30000) != 1) return false;
  }
}

// An idle shim makes its future process's directory while it waits, and
// the Start that takes it runs there; the idle ones let go at shutdown
// remove theirs, so only started processes keep a directory.
TEST_F(SupervisorTest, OnlyStartedProcessesKeepADirectoryTheIdleShimsRemoveTheirs) {
  CreateSupervisor(nullptr);
  // The two spares' directories, before any Start.
  ASSERT_TRUE(WaitForEntries(ProcsDir(dir_), 2)) << "the spares made no directories";
  const std::vector<std::string> made_ahead = EntriesOf(ProcsDir(dir_));
  pm::v1::StartRequest request;
  request.set_executable("/bin/true");
  absl::StatusOr<pm::v1::StartResponse> started = Start(request);
  ASSERT_TRUE(started.ok()) << started.status();
  EXPECT_THAT(made_ahead, ::testing::Contains(started->id()))
      << "the process did not get a spare's id";

  supervisor_->Shutdown();

  EXPECT_THAT(EntriesOf(ProcsDir(dir_)), ::testing::ElementsAre(started->id()));
  EXPECT_THAT(EntriesOf(ProcessDir(dir_, started->id())), ::testing::Contains("output"));
}

// --- File descriptors -------------------------------------------------------

pm::v1::StartRequest Sleep() {
  pm::v1::StartRequest request;
  request.set_executable("sleep");
  request.add_args("1000");
  return request;
}

// Out of fds, a Start is RESOURCE_EXHAUSTED naming the call and the
// supervisor's limit; the failed start leaves no fd open, and the processes
// started before still stop. Without cgroups and spare shims, so that no
// other thread of the supervisor opens fds meanwhile (the spares' threads):
// each Start makes its shim, through the zygote.
TEST_F(SupervisorTest, AStartOutOfFdsIsResourceExhaustedNamingTheLimitAndLeaksNothing) {
  CreateSupervisor(nullptr, [](SupervisorOptions& options) {
    options.cgroup.mode = CgroupMode::kOff;
    options.spare_shims = 0;
  });
  const rlim_t soft = LowestFreeFd() + 40;
  ScopedFileLimit limit(soft);
  ASSERT_TRUE(limit.ok());
  std::vector<std::string> started;
  absl::Status refused;
  int fds_before = -1, fds_after = -1;
  for (int i = 0; i < 100 && refused.ok(); ++i) {
    fds_before = OpenFdCount();
    absl::StatusOr<pm::v1::StartResponse> result = Start(Sleep());
    fds_after = OpenFdCount();
    if (result.ok()) {
      started.push_back(result->id());
    } else {
      refused = result.status();
    }
  }
  ASSERT_FALSE(refused.ok()) << "100 starts within 40 fds";
  EXPECT_GE(started.size(), 5u);
  EXPECT_EQ(refused.code(), absl::StatusCode::kResourceExhausted) << refused;
  EXPECT_THAT(refused.message(),
              HasSubstr(absl::StrCat("Too many open files (EMFILE): the supervisor's "
                                     "RLIMIT_NOFILE is ", soft, " (hard limit ")));
  EXPECT_EQ(fds_after, fds_before) << "the failed start left fds open";
  // Again: refused the same way, and still nothing leaks.
  fds_before = OpenFdCount();
  EXPECT_EQ(Start(Sleep()).status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(OpenFdCount(), fds_before);

  for (const std::string& id : started) {
    pm::v1::StopRequest stop;
    stop.set_id(id);
    stop.set_force(true);
    ExpectForced(StopAndWait(stop));
  }
}

// Every process gets the file limit the supervisor is given for them (its
// own before it raised it), whatever the supervisor's own is now.
TEST_F(SupervisorTest, ProcessesGetTheOriginalFileLimit) {
  rlimit ours;
  ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &ours), 0);
  if (ours.rlim_max < 1024) GTEST_SKIP() << "a hard limit below 1024";
  CreateSupervisor(nullptr, [&](SupervisorOptions& options) {
    options.child_file_limit = rlimit{1000, ours.rlim_max};
  });
  const std::string out = dir_ + "/limit";
  pm::v1::StartRequest request;
  request.set_executable("/bin/sh");
  request.add_args("-c");
  request.add_args(absl::StrCat("ulimit -Sn > ", out));
  absl::StatusOr<pm::v1::StartResponse> started = Start(request);
  ASSERT_TRUE(started.ok()) << started.status();
  // The record ends once it has written the file and exited.
  absl::Notification ended;
  absl::StatusOr<pm::v1::ProcessStatus> status;
  registry_->Wait(started->id(), [&](absl::StatusOr<pm::v1::ProcessStatus> s) {
    status = std::move(s);
    ended.Notify();
  });
  ASSERT_TRUE(ended.WaitForNotificationWithTimeout(absl::Seconds(60)));
  ASSERT_TRUE(status.ok()) << status.status();
  EXPECT_EQ(status->exit_code(), 0);
  absl::StatusOr<std::string> text = ReadFile(out);
  ASSERT_TRUE(text.ok()) << text.status();
  EXPECT_EQ(*text, "1000\n");
}

// The contents of `path` once process `id` has ended (the registry says).
std::string ReadFileAfter(registry::Registry& registry, const std::string& id,
                          const std::string& path) {
  absl::Notification ended;
  registry.Wait(id, [&](absl::StatusOr<pm::v1::ProcessStatus>) { ended.Notify(); });
  EXPECT_TRUE(ended.WaitForNotificationWithTimeout(absl::Seconds(30)));
  absl::StatusOr<std::string> text = ReadFile(path);
  EXPECT_TRUE(text.ok()) << text.status();
  return text.ok() ? *text : "";
}

TEST_F(SupervisorTest, AStartInBytesRunsThoseBytesAndEchoesThemInTheBytesFields) {
  CreateSupervisor(nullptr);
  const std::string cwd = dir_ + "/caf\xe9";
  ASSERT_EQ(mkdir(cwd.c_str(), 0700), 0);
  pm::v1::StartRequest request;
  request.set_executable("/bin/sh");
  const std::vector<std::string> args = {"-c", "printf %s \"$1\" > out", "sh",
                                         "caf\xe9"};
  for (const std::string& arg : args) request.add_args_bytes(arg);
  request.set_working_dir_bytes(cwd);
  absl::StatusOr<pm::v1::StartResponse> started = Start(request);
  ASSERT_TRUE(started.ok()) << started.status();

  // UTF-8 stays a string; the rest is in the bytes fields, never in a
  // string one (the answer would not parse at the client).
  absl::StatusOr<pm::v1::ProcessStatus> record = registry_->GetStatus(started->id());
  ASSERT_TRUE(record.ok()) << record.status();
  for (const pm::v1::ProcessStatus& status : {started->status(), *record}) {
    EXPECT_EQ(status.executable(), "/bin/sh");
    EXPECT_EQ(status.resolved_executable(), "/bin/sh");
    EXPECT_TRUE(status.args().empty());
    EXPECT_EQ(std::vector<std::string>(status.args_bytes().begin(),
                                       status.args_bytes().end()),
              args);
    EXPECT_TRUE(status.working_dir().empty());
    EXPECT_EQ(status.working_dir_bytes(), cwd);
  }
  EXPECT_EQ(ReadFileAfter(*registry_, started->id(), cwd + "/out"), "caf\xe9");
}

// --- Names ---------------------------------------------------------------------

// A name taken is refused before anything is spawned: the second Start
// names an executable that does not exist, whose spawn would fail
// FAILED_PRECONDITION; ALREADY_EXISTS proves it never got that far.
TEST_F(SupervisorTest, ATakenNameIsRefusedBeforeTheSpawnNamingItsHolder) {
  CreateSupervisor(nullptr);
  pm::v1::StartRequest first = Sleep();
  first.set_name("web");
  (*first.mutable_labels())["app"] = "shop";
  absl::StatusOr<pm::v1::StartResponse> started = Start(first);
  ASSERT_TRUE(started.ok()) << started.status();
  EXPECT_EQ(started->status().name(), "web");
  EXPECT_EQ(started->status().labels().at("app"), "shop");

  pm::v1::StartRequest second;
  second.set_executable("/nonexistent/pm-test-binary");
  second.set_name("web");
  absl::StatusOr<pm::v1::StartResponse> refused = Start(second);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kAlreadyExists) << refused.status();
  EXPECT_THAT(refused.status().message(), HasSubstr(started->id()));
  EXPECT_THAT(refused.status().message(), HasSubstr("RUNNING"));
  EXPECT_EQ(registry_->size(), 1u);

  // A malformed name is refused at once.
  second.set_name("not a name");
  EXPECT_EQ(Start(second).status().code(), absl::StatusCode::kInvalidArgument);
}

// Starts of one name at the same moment: the registry knows of none of
// them when each asks, yet exactly one gets the name, and the others are
// refused before their spawn (theirs name an executable that does not
// exist: a spawn would fail FAILED_PRECONDITION).
TEST_F(SupervisorTest, ConcurrentStartsOfOneNameGiveItToExactlyOne) {
  CreateSupervisor(nullptr);
  // With the registry connected, the Starts reach the loop in the order
  // they are made: the first (the one that can run) claims the name first.
  ASSERT_TRUE(Start(Sleep()).ok());
  constexpr int kStarts = 6;
  absl::Mutex mu;
  int answered = 0, ok = 0, taken = 0;
  absl::Notification all;
  for (int i = 0; i < kStarts; ++i) {
    pm::v1::StartRequest request = Sleep();
    request.set_name("race");
    if (i > 0) request.set_executable("/nonexistent/pm-test-binary");
    supervisor_->Start(request, Owner(), [&](absl::StatusOr<pm::v1::StartResponse> r) {
      absl::MutexLock lock(&mu);
      if (r.ok()) ++ok;
      if (r.status().code() == absl::StatusCode::kAlreadyExists) ++taken;
      if (++answered == kStarts) all.Notify();
    });
  }
  ASSERT_TRUE(all.WaitForNotificationWithTimeout(absl::Seconds(60)));
  EXPECT_EQ(ok, 1);
  EXPECT_EQ(taken, kStarts - 1);
  // Once that one is answered the name is the registry's to guard: a
  // failed Start frees it for the next.
  pm::v1::StartRequest other = Sleep();
  other.set_name("free-after-failure");
  other.set_executable("/nonexistent/pm-test-binary");
  EXPECT_EQ(Start(other).status().code(), absl::StatusCode::kFailedPrecondition);
  other.set_executable("sleep");
  EXPECT_TRUE(Start(other).ok());
}

// The record of `id` once it has ended (the registry's Wait), 30 s at most.
absl::StatusOr<pm::v1::ProcessStatus> EndOf(registry::Registry& registry,
                                            const std::string& id) {
  absl::Notification ended;
  absl::StatusOr<pm::v1::ProcessStatus> status =
      absl::DeadlineExceededError("the record did not end within 30 s");
  registry.Wait(id, [&](absl::StatusOr<pm::v1::ProcessStatus> s) {
    status = std::move(s);
    ended.Notify();
  });
  if (!ended.WaitForNotificationWithTimeout(absl::Seconds(30))) {
    return absl::DeadlineExceededError("the record did not end within 30 s");
  }
  return status;
}

// --- Nodes ---------------------------------------------------------------------

// A supervisor runs its own host's processes only: a Start for another node
// is refused before anything is spawned or recorded, naming both nodes and
// the way to reach the other (its gateway). Without spare shims and cgroups, so that no other thread opens fds while
// they are counted.
TEST_F(SupervisorTest, AStartForAnotherNodeIsRefusedNamingBothAndLeavesNothing) {
  CreateSupervisor(nullptr, [](SupervisorOptions& options) {
    options.node = "a";
    options.cgroup.mode = CgroupMode::kOff;
    options.spare_shims = 0;
  });
  pm::v1::StartRequest elsewhere = Sleep();
  elsewhere.set_node("b");
  const int fds_before = OpenFdCount();
  absl::StatusOr<pm::v1::StartResponse> refused = Start(elsewhere);
  EXPECT_EQ(OpenFdCount(), fds_before);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition)
      << refused.status();
  EXPECT_EQ(refused.status().message(),
            "node \"b\" is not this host (node \"a\"): start it through that "
            "host's gateway");
  EXPECT_EQ(registry_->size(), 0u);

  // A node that is no node name is a bad request, whichever host gets it.
  elsewhere.set_node("b c");
  refused = Start(elsewhere);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(refused.status().message(), HasSubstr("node \"b c\""));
}

// Its own node, or none, runs. With spare shims: under TSan a shim made at
// the Start itself (spare_shims = 0) ended before answering the Spawn in
// every run; the cause is not found yet.
TEST_F(SupervisorTest, AStartForThisNodeOrNoneRuns) {
  CreateSupervisor(nullptr, [](SupervisorOptions& options) { options.node = "a"; });
  pm::v1::StartRequest here = Sleep();
  here.set_node("a");
  absl::StatusOr<pm::v1::StartResponse> started = Start(here);
  ASSERT_TRUE(started.ok()) << started.status();
  here.clear_node();
  absl::StatusOr<pm::v1::StartResponse> unnamed = Start(here);
  ASSERT_TRUE(unnamed.ok()) << unnamed.status();
  EXPECT_EQ(registry_->size(), 2u);
  for (const std::string& id : {started->id(), unnamed->id()}) {
    pm::v1::StopRequest stop;
    stop.set_id(id);
    stop.set_force(true);
    ExpectForced(StopAndWait(stop));
  }
}

TEST_F(SupervisorTest, AHostOutsideAClusterRefusesAStartThatNamesANode) {
  CreateSupervisor(nullptr);  // no --node
  pm::v1::StartRequest request = Sleep();
  request.set_node("a");
  absl::StatusOr<pm::v1::StartResponse> refused = Start(request);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition)
      << refused.status();
  EXPECT_EQ(refused.status().message(),
            "node \"a\" is not this host: this host is not in a cluster (no "
            "--node)");
  EXPECT_EQ(registry_->size(), 0u);
}

// --- Signal and Remove -------------------------------------------------------

template <typename Response, typename Request, typename Method>
absl::StatusOr<Response> CallAndWait(Supervisor& supervisor, Method method,
                                     const Request& request) {
  absl::Notification done;
  absl::StatusOr<Response> result = absl::DeadlineExceededError("no answer in 30 s");
  (supervisor.*method)(request, [&](absl::StatusOr<Response> r) {
    result = std::move(r);
    done.Notify();
  });
  if (!done.WaitForNotificationWithTimeout(absl::Seconds(30))) {
    return absl::DeadlineExceededError("no answer in 30 s");
  }
  return result;
}

pm::v1::StartRequest Shell(const std::string& script) {
  pm::v1::StartRequest request;
  request.set_executable("/bin/sh");
  request.add_args("-c");
  request.add_args(script);
  return request;
}

class SignalRemoveTest : public SupervisorTest {
 protected:
  absl::StatusOr<pm::v1::SignalResponse> Signal(const std::string& id,
                                                const std::string& name,
                                                bool leader_only = false) {
    pm::v1::SignalRequest request;
    request.set_id(id);
    request.set_signal_name(name);
    request.set_leader_only(leader_only);
    return CallAndWait<pm::v1::SignalResponse>(*supervisor_, &Supervisor::Signal,
                                               request);
  }
  absl::StatusOr<pm::v1::RemoveResponse> Remove(const std::string& id,
                                                bool force = false) {
    pm::v1::RemoveRequest request;
    request.set_id(id);
    request.set_force(force);
    return CallAndWait<pm::v1::RemoveResponse>(*supervisor_, &Supervisor::Remove,
                                               request);
  }
  bool DirExists(const std::string& id) {
    struct stat st;
    return stat(ProcessDir(dir_, id).c_str(), &st) == 0;
  }
};

// The trap ends the shell's first wait; the second returns only once the
// sleep has ended, so the shell exits 3 only if the signal reached the
// sleep too: the group's.
TEST_F(SignalRemoveTest, ASignalReachesTheWholeGroup) {
  CreateSupervisor(nullptr);
  absl::StatusOr<pm::v1::StartResponse> started =
      // The child says ready once it is a new sh: its USR1 is the default
      // (death) again, not the trap it was forked with.
      StartOnceReady("trap 'echo usr1' USR1; "
                     "sh -c 'echo ready > \"$READY\"; exec sleep 1000' & child=$!; "
                     "wait $child; wait $child; exit 3");
  ASSERT_TRUE(started.ok()) << started.status();
  absl::StatusOr<pm::v1::SignalResponse> sent = Signal(started->id(), "usr1");
  ASSERT_TRUE(sent.ok()) << sent.status();
  EXPECT_EQ(sent->signal(), SIGUSR1);
  EXPECT_EQ(sent->status().id(), started->id());
  absl::StatusOr<pm::v1::ProcessStatus> ended = EndOf(*registry_, started->id());
  ASSERT_TRUE(ended.ok()) << ended.status();
  EXPECT_EQ(ended->state(), pm::v1::ProcessStatus::STATE_EXITED);
  EXPECT_EQ(ended->exit_code(), 3);

  // Ended: nothing is sent, and the caller is told why.
  absl::StatusOr<pm::v1::SignalResponse> late = Signal(started->id(), "HUP");
  EXPECT_EQ(late.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(late.status().message(), HasSubstr("has ended"));
}

// To the leader alone: the shell ends by its trap, its background sleep
// runs on, so its tree still runs: Remove refuses, Remove with force kills
// the tree and removes the record and the directory.
TEST_F(SignalRemoveTest, ASignalToTheLeaderAloneLeavesItsTreeAndRemoveNeedsForce) {
  CreateSupervisor(nullptr);
  absl::StatusOr<pm::v1::StartResponse> started =
      StartOnceReady("trap 'exit 7' USR1; sleep 1000 & echo ready > \"$READY\"; wait");
  ASSERT_TRUE(started.ok()) << started.status();
  const std::string id = started->id();
  absl::StatusOr<pm::v1::RemoveResponse> running = Remove(id);
  EXPECT_EQ(running.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(running.status().message(), HasSubstr("is running"));

  pm::v1::SignalRequest by_number;
  by_number.set_id(id);
  by_number.set_signal(SIGUSR1);
  by_number.set_leader_only(true);
  ASSERT_TRUE((CallAndWait<pm::v1::SignalResponse>(*supervisor_, &Supervisor::Signal,
                                                   by_number))
                  .ok());
  absl::StatusOr<pm::v1::ProcessStatus> ended = EndOf(*registry_, id);
  ASSERT_TRUE(ended.ok()) << ended.status();
  EXPECT_EQ(ended->exit_code(), 7);
  if (!ended->cgroup().empty()) {
    absl::StatusOr<pm::v1::RemoveResponse> tree = Remove(id);
    EXPECT_EQ(tree.status().code(), absl::StatusCode::kFailedPrecondition);
    EXPECT_THAT(tree.status().message(), HasSubstr("tree still runs"));
  }
  EXPECT_TRUE(DirExists(id));

  absl::StatusOr<pm::v1::RemoveResponse> removed = Remove(id, /*force=*/true);
  ASSERT_TRUE(removed.ok()) << removed.status();
  EXPECT_EQ(removed->status().id(), id);
  EXPECT_EQ(removed->status().exit_code(), 7);
  EXPECT_FALSE(DirExists(id));
  absl::StatusOr<pm::v1::ProcessStatus> gone = registry_->GetStatus(id);
  EXPECT_EQ(gone.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(gone.status().message(), HasSubstr("was removed"));
}

TEST_F(SignalRemoveTest, RemoveRightAfterTheEndWaitsForTheDrainAndDeletesAll) {
  CreateSupervisor(nullptr);
  pm::v1::StartRequest request = Shell("echo bye; exit 2");
  request.set_name("short");
  absl::StatusOr<pm::v1::StartResponse> started = Start(request);
  ASSERT_TRUE(started.ok()) << started.status();
  ASSERT_TRUE(EndOf(*registry_, started->id()).ok());
  absl::StatusOr<pm::v1::RemoveResponse> removed = Remove(started->id());
  ASSERT_TRUE(removed.ok()) << removed.status();
  EXPECT_EQ(removed->status().exit_code(), 2);
  EXPECT_FALSE(DirExists(started->id()));
  EXPECT_EQ(registry_->size(), 0u);
  // Its name is free again; a second removal is NOT_FOUND.
  EXPECT_TRUE(Start(request).ok());
  EXPECT_EQ(Remove(started->id()).status().code(), absl::StatusCode::kNotFound);
}

TEST_F(SignalRemoveTest, BadSignalsAndUnknownIdsAreRefused) {
  CreateSupervisor(nullptr);
  absl::StatusOr<pm::v1::StartResponse> started = Start(Sleep());
  ASSERT_TRUE(started.ok()) << started.status();
  EXPECT_EQ(Signal(started->id(), "NOPE").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Signal(started->id(), "").status().code(),
            absl::StatusCode::kInvalidArgument);
  pm::v1::SignalRequest both;
  both.set_id(started->id());
  both.set_signal(1);
  both.set_signal_name("HUP");
  EXPECT_EQ((CallAndWait<pm::v1::SignalResponse>(*supervisor_, &Supervisor::Signal, both))
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
  both.set_signal_name("");
  both.set_signal(65);
  EXPECT_EQ((CallAndWait<pm::v1::SignalResponse>(*supervisor_, &Supervisor::Signal, both))
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
  const std::string unknown = "00000000-0000-4000-8000-000000000000";
  EXPECT_EQ(Signal(unknown, "HUP").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(Remove(unknown).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(Remove(unknown, true).status().code(), absl::StatusCode::kNotFound);
  // Still running after all of that.
  EXPECT_EQ(registry_->GetStatus(started->id())->state(),
            pm::v1::ProcessStatus::STATE_RUNNING);
}

// --- Hand-off and re-adoption ------------------------------------------------

// The parent of `pid` (its pm-shim).
pid_t ParentOf(pid_t pid) {
  absl::StatusOr<ProcStat> stat = ReadProcStat(pid);
  EXPECT_TRUE(stat.ok()) << stat.status();
  return stat.ok() ? static_cast<pid_t>(stat->ppid) : -1;
}

// Waits (pidfd) for `pid` to exit; a zombie counts. 30 s at most.
bool WaitForExit(pid_t pid) {
  Fd pidfd(static_cast<int>(syscall(SYS_pidfd_open, pid, 0)));
  if (!pidfd) return errno == ESRCH;
  pollfd gone = {pidfd.get(), POLLIN, 0};
  return poll(&gone, 1, 30000) == 1;
}

class ReadoptionTest : public SupervisorTest {
 protected:
  // A process that ends with `code` once ReleaseLeader() is called; with
  // `child`, a child of its keeps its output open (and its shim draining)
  // after it ends.
  absl::StatusOr<pm::v1::StartResponse> StartGated(int code, bool child = false) {
    in_ = absl::StrCat(dir_, "/gate", ++fifos_);
    if (mkfifo(in_.c_str(), 0600) != 0) return ErrnoError("mkfifo", in_);
    pm::v1::StartRequest request;
    request.set_executable("/bin/sh");
    request.add_args("-c");
    request.add_args(absl::StrCat("echo started; ", child ? "sleep 1000 & " : "",
                                  "read line < ", in_, "; echo ending; exit ", code));
    return Start(request);
  }
  // Stops `id` with a grace period and expects the answer of a process
  // that SIGTERM ended.
  void ExpectStoppedBySigterm(const std::string& id) {
    pm::v1::StopRequest stop;
    stop.set_id(id);
    stop.set_grace_period_ms(5000);
    absl::StatusOr<pm::v1::StopResponse> stopped = StopAndWait(stop);
    ASSERT_TRUE(stopped.ok()) << stopped.status();
    EXPECT_TRUE(stopped->stopped());
    EXPECT_EQ(stopped->status().state(), pm::v1::ProcessStatus::STATE_SIGNALED);
    EXPECT_EQ(stopped->status().signal(), SIGTERM);
    EXPECT_EQ(stopped->status().termination(),
              pm::v1::ProcessStatus::TERMINATION_AFTER_SIGTERM);
  }
  // The next supervisor, as a restart makes it (the first one handed off).
  void Restart() {
    supervisor_->HandOff();
    supervisor_.reset();
    CreateSupervisor(nullptr, [](SupervisorOptions& options) {
      options.adopt_wait = absl::Milliseconds(300);
    });
  }
};

// Handed off, a process runs on under its shim; the next supervisor adopts
// it through the shim's Hello and stops it as its own, and the record gets
// its true end.
TEST_F(ReadoptionTest, AHandedOffProcessRunsOnAndTheNextSupervisorStopsIt) {
  CreateSupervisor(nullptr);
  absl::StatusOr<pm::v1::StartResponse> started = Start(Sleep());
  ASSERT_TRUE(started.ok()) << started.status();
  const pid_t pid = started->status().pid();
  Restart();
  ASSERT_EQ(kill(pid, 0), 0) << "the hand-off ended the process";

  ExpectStoppedBySigterm(started->id());
  absl::StatusOr<pm::v1::ProcessStatus> record = EndOf(*registry_, started->id());
  ASSERT_TRUE(record.ok()) << record.status();
  EXPECT_EQ(record->signal(), SIGTERM);
  EXPECT_TRUE(WaitForExit(pid));
}

// A process that ends while no supervisor runs, its shim still draining (a
// child holds the output open): the shim's Hello carries the end, and the
// record gets the true exit code and the output's length at the end.
TEST_F(ReadoptionTest, AProcessThatEndsBetweenSupervisorsGetsItsTrueExitCode) {
  CreateSupervisor(nullptr);
  absl::StatusOr<pm::v1::StartResponse> started = StartGated(7, /*child=*/true);
  ASSERT_TRUE(started.ok()) << started.status();
  const pid_t pid = started->status().pid();
  supervisor_->HandOff();
  supervisor_.reset();
  ReleaseLeader();
  ASSERT_TRUE(WaitForExit(pid));
  CreateSupervisor(nullptr);

  absl::StatusOr<pm::v1::ProcessStatus> record = EndOf(*registry_, started->id());
  ASSERT_TRUE(record.ok()) << record.status();
  EXPECT_EQ(record->state(), pm::v1::ProcessStatus::STATE_EXITED);
  EXPECT_EQ(record->exit_code(), 7);
  EXPECT_EQ(record->output_bytes(), 15u);  // "started\nending\n"
}

// The same, but the shim has finished and exited too (nothing says Hello):
// its exit file has the end.
TEST_F(ReadoptionTest, AProcessWhoseShimIsGoneIsSettledFromItsExitFile) {
  CreateSupervisor(nullptr);
  absl::StatusOr<pm::v1::StartResponse> started = StartGated(9);
  ASSERT_TRUE(started.ok()) << started.status();
  const pid_t pid = started->status().pid();
  const pid_t shim = ParentOf(pid);
  supervisor_->HandOff();
  supervisor_.reset();
  ReleaseLeader();
  ASSERT_TRUE(WaitForExit(shim)) << "the shim of a finished process stayed";
  waitpid(shim, nullptr, 0);  // this test is its subreaper now
  CreateSupervisor(nullptr, [](SupervisorOptions& options) {
    options.adopt_wait = absl::Milliseconds(100);
  });

  absl::StatusOr<pm::v1::ProcessStatus> record = EndOf(*registry_, started->id());
  ASSERT_TRUE(record.ok()) << record.status();
  EXPECT_EQ(record->state(), pm::v1::ProcessStatus::STATE_EXITED);
  EXPECT_EQ(record->exit_code(), 9);
}

// The registry is going away when a record is settled: the end it could
// not take is sent again once it is back, never left RUNNING.
TEST_F(ReadoptionTest, AnEndTheRegistryCouldNotTakeIsSentAgainOnceItIsBack) {
  CreateSupervisor(nullptr);
  absl::StatusOr<pm::v1::StartResponse> started = StartGated(9);
  ASSERT_TRUE(started.ok()) << started.status();
  const pid_t shim = ParentOf(started->status().pid());
  supervisor_->HandOff();
  supervisor_.reset();
  ReleaseLeader();
  ASSERT_TRUE(WaitForExit(shim)) << "the shim of a finished process stayed";
  waitpid(shim, nullptr, 0);  // this test is its subreaper now
  // It still lists the live records, but takes no record stream.
  registry_service_->Shutdown();
  CreateSupervisor(nullptr, [](SupervisorOptions& options) {
    options.adopt_wait = absl::Milliseconds(100);
  });
  ASSERT_TRUE(registry_service_->WaitForRefusedSyncStreams(1, absl::Seconds(30)))
      << "the settled end was never sent";

  server_->Shutdown();
  server_->Wait();
  ServeRegistry();

  absl::StatusOr<pm::v1::ProcessStatus> record = EndOf(*registry_, started->id());
  ASSERT_TRUE(record.ok()) << record.status();
  EXPECT_EQ(record->state(), pm::v1::ProcessStatus::STATE_EXITED);
  EXPECT_EQ(record->exit_code(), 9);
}

// Neither a shim nor an exit file, and the pid is not the process any more:
// LOST, never a stale RUNNING.
TEST_F(ReadoptionTest, AProcessWithNeitherShimNorExitFileIsLost) {
  CreateSupervisor(nullptr);
  absl::StatusOr<pm::v1::StartResponse> started = StartGated(0);
  ASSERT_TRUE(started.ok()) << started.status();
  const pid_t pid = started->status().pid();
  const pid_t shim = ParentOf(pid);
  supervisor_->HandOff();
  supervisor_.reset();
  // The shim and the process die at once, with nothing written.
  ASSERT_EQ(kill(shim, SIGKILL), 0);
  ASSERT_EQ(kill(pid, SIGKILL), 0);
  ASSERT_TRUE(WaitForExit(shim));
  waitpid(shim, nullptr, 0);
  ASSERT_TRUE(WaitForExit(pid));
  waitpid(pid, nullptr, 0);
  CreateSupervisor(nullptr, [](SupervisorOptions& options) {
    options.adopt_wait = absl::Milliseconds(100);
  });

  absl::StatusOr<pm::v1::ProcessStatus> record = EndOf(*registry_, started->id());
  ASSERT_TRUE(record.ok()) << record.status();
  EXPECT_EQ(record->state(), pm::v1::ProcessStatus::STATE_LOST);
  EXPECT_THAT(record->end_reason(), HasSubstr("shim"));
}

// A shim that is alive but slow to say Hello (stopped here) is waited for:
// its process is not taken from it without its shim (which would close its
// output under it and lose its exit status), so a Stop waits, and once the
// shim speaks the stop ends the process with its true status.
TEST_F(ReadoptionTest, ASlowShimIsWaitedForAndItsProcessNotTakenFromIt) {
  CreateSupervisor(nullptr);
  absl::StatusOr<pm::v1::StartResponse> started = Start(Sleep());
  ASSERT_TRUE(started.ok()) << started.status();
  const pid_t shim = ParentOf(started->status().pid());
  supervisor_->HandOff();
  supervisor_.reset();
  ASSERT_EQ(kill(shim, SIGSTOP), 0);
  CreateSupervisor(nullptr, [](SupervisorOptions& options) {
    options.adopt_wait = absl::Milliseconds(50);
  });
  absl::Notification done;
  absl::StatusOr<pm::v1::StopResponse> stopped;
  StopAsync(started->id(), 5000, &done, &stopped);
  // Several settle rounds pass while the shim is stopped: the stop waits.
  EXPECT_FALSE(done.WaitForNotificationWithTimeout(absl::Milliseconds(500)))
      << (stopped.ok() ? stopped->DebugString() : stopped.status().ToString());
  ASSERT_EQ(kill(shim, SIGCONT), 0);
  ASSERT_TRUE(done.WaitForNotificationWithTimeout(absl::Seconds(30)));
  ASSERT_TRUE(stopped.ok()) << stopped.status();
  EXPECT_EQ(stopped->status().state(), pm::v1::ProcessStatus::STATE_SIGNALED);
  EXPECT_EQ(stopped->status().signal(), SIGTERM);
  EXPECT_EQ(stopped->status().termination(),
            pm::v1::ProcessStatus::TERMINATION_AFTER_SIGTERM);
}

// A supervisor stopped (SIGTERM: every process is stopped) while it is
// still adopting an earlier one's processes stops those too.
TEST_F(ReadoptionTest, AShutdownDuringTheAdoptionStopsTheAdoptedToo) {
  CreateSupervisor(nullptr);
  absl::StatusOr<pm::v1::StartResponse> started = Start(Sleep());
  ASSERT_TRUE(started.ok()) << started.status();
  const pid_t pid = started->status().pid();
  const pid_t shim = ParentOf(pid);
  supervisor_->HandOff();
  supervisor_.reset();
  // Its shim speaks only after the shutdown began.
  ASSERT_EQ(kill(shim, SIGSTOP), 0);
  CreateSupervisor(nullptr, [](SupervisorOptions& options) {
    options.adopt_wait = absl::Seconds(20);
  });
  std::thread shutdown([this] { supervisor_->Shutdown(absl::Seconds(5)); });
  ASSERT_EQ(kill(shim, SIGCONT), 0);
  shutdown.join();
  EXPECT_TRUE(WaitForExit(pid)) << "process " << pid << " outlived the shutdown";
  absl::StatusOr<pm::v1::ProcessStatus> record = EndOf(*registry_, started->id());
  ASSERT_TRUE(record.ok()) << record.status();
  EXPECT_EQ(record->signal(), SIGTERM);
}

// A SIGCHLD can be taken by a thread that does not block it (a library's),
// and the supervisor's signalfd never sees it: a shim it started is still
// reaped, through its own pidfd.
TEST_F(ReadoptionTest, AShimIsReapedEvenIfItsSigchldGoesElsewhere) {
  CreateSupervisor(nullptr);
  absl::StatusOr<pm::v1::StartResponse> started = StartGated(0);
  ASSERT_TRUE(started.ok()) << started.status();
  const pid_t shim = ParentOf(started->status().pid());
  // A thread that takes every SIGCHLD from now on.
  struct sigaction took = {};
  took.sa_handler = [](int) {};
  struct sigaction before = {};
  ASSERT_EQ(sigaction(SIGCHLD, &took, &before), 0);
  absl::Notification unblocked, done;
  std::thread thief([&] {
    sigset_t chld;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    pthread_sigmask(SIG_UNBLOCK, &chld, nullptr);
    unblocked.Notify();
    done.WaitForNotification();
  });
  unblocked.WaitForNotification();
  Fd shim_pidfd(static_cast<int>(syscall(SYS_pidfd_open, shim, 0)));
  ASSERT_TRUE(shim_pidfd.valid());
  ReleaseLeader();
  ASSERT_TRUE(EndOf(*registry_, started->id()).ok());
  pollfd exited = {shim_pidfd.get(), POLLIN, 0};
  ASSERT_EQ(poll(&exited, 1, 30000), 1) << "the shim did not exit";
  // A round trip through the supervisor's loop (a stop of an id no one
  // has), which has seen the shim's pidfd readable by then.
  WaitForEarlierStops();
  siginfo_t info = {};
  EXPECT_NE(waitid(P_PID, shim, &info, WEXITED | WNOHANG | WNOWAIT), 0)
      << "pm-shim " << shim << " left a zombie";
  EXPECT_EQ(errno, ECHILD);
  done.Notify();
  thief.join();
  sigaction(SIGCHLD, &before, nullptr);
}

// A shim whose process was never on record (its supervisor died between
// the spawn and the record): the next supervisor kills the process, as it
// kills a start the registry never took.
TEST_F(ReadoptionTest, AShimWhoseProcessWasNeverOnRecordHasItKilled) {
  absl::StatusOr<shim::LaunchedShim> launched =
      shim::LaunchShim(shim::ShimLaunch{ShimBinary(), dir_, dir_});
  ASSERT_TRUE(launched.ok()) << launched.status();
  absl::StatusOr<ShimSpawnMessage> spawn =
      ShimSpawnOf(Sleep(), "3f0c1a52-9d4e-4b7a-8c21-5e6f7a8b9c0d", SpawnOptions());
  ASSERT_TRUE(spawn.ok()) << spawn.status();
  ASSERT_TRUE(shim::SendMessage(launched->control.get(), spawn->spawn, spawn->fds).ok());
  absl::StatusOr<shim::Received> answer = shim::ReceiveMessage(launched->control.get());
  ASSERT_TRUE(answer.ok()) << answer.status();
  ASSERT_TRUE(std::holds_alternative<shim::Spawned>(answer->message));
  const pid_t pid = std::get<shim::Spawned>(answer->message).pid;
  // Its "supervisor" dies: the shim waits for shims.sock.
  launched->control.reset();

  CreateSupervisor(nullptr);
  EXPECT_TRUE(WaitForExit(pid)) << "the unrecorded process " << pid << " still runs";
}

// A shim that dies under a running supervisor: its process, reparented to
// the supervisor, is still stopped and reaped with its true status.
TEST_F(ReadoptionTest, AProcessWhoseShimDiesIsStillStoppedAndReaped) {
  CreateSupervisor(nullptr);
  absl::StatusOr<pm::v1::StartResponse> started = Start(Sleep());
  ASSERT_TRUE(started.ok()) << started.status();
  const pid_t pid = started->status().pid();
  const pid_t shim = ParentOf(pid);
  ASSERT_EQ(kill(shim, SIGKILL), 0);
  ASSERT_TRUE(WaitForExit(shim));

  ExpectStoppedBySigterm(started->id());
  // Reaped: no zombie left.
  siginfo_t info = {};
  EXPECT_EQ(waitid(P_PID, pid, &info, WEXITED | WNOHANG), -1);
  EXPECT_EQ(errno, ECHILD);
}

// Serves the test's supervisor on its socket, as supervisor/main.cc does.
class ServedSupervisorTest : public SupervisorTest {
 protected:
  void SetUp() override {
    SupervisorTest::SetUp();
    CreateSupervisor(nullptr);
    service_ = std::make_unique<SupervisorService>(supervisor_.get());
    grpc::ServerBuilder builder;
    ConfigureServerBuilder(builder);
    const std::string socket = SocketPath(dir_, Service::kSupervisor);
    builder.AddListeningPort(UnixAddress(socket), grpc::InsecureServerCredentials());
    builder.RegisterService(service_.get());
    supervisor_server_ = builder.BuildAndStart();
    ASSERT_NE(supervisor_server_, nullptr);
    channel_ = UnixChannel(socket);
  }
  void TearDown() override {
    supervisor_server_->Shutdown();
    SupervisorTest::TearDown();
  }

  // Calls `method` with `wire` as the request, as a client that sends what
  // it likes.
  grpc::Status RawCall(const std::string& method, const std::string& wire) {
    return RawUnaryCall(channel_, method, wire);
  }

  std::unique_ptr<SupervisorService> service_;
  std::unique_ptr<grpc::Server> supervisor_server_;
  std::shared_ptr<grpc::Channel> channel_;
};

TEST_F(ServedSupervisorTest, AStringFieldThatIsNotUtf8IsInvalidArgumentNamingIt) {
  // StartRequest{executable: "/bin/true", args: ["caf\xe9"]}.
  grpc::Status start = RawCall("/pm.internal.v1.Supervisor/Start",
                               WireBytes(1, "/bin/true") + WireBytes(2, "caf\xe9"));
  EXPECT_EQ(start.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(start.error_message(),
            "args[0] is not valid UTF-8 (byte 0xe9 at 3); send it in args_bytes");
  // StopRequest{id: "\xff..."}.
  grpc::Status stop =
      RawCall("/pm.internal.v1.Supervisor/Stop", WireBytes(1, "\xff-not-an-id"));
  EXPECT_EQ(stop.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(stop.error_message(), "id is not valid UTF-8 (byte 0xff at 0)");
  // Bytes that are no message at all.
  grpc::Status garbage = RawCall("/pm.internal.v1.Supervisor/Start", "\x0a\x7f");
  EXPECT_EQ(garbage.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(garbage.error_message(), HasSubstr("malformed pm.v1.StartRequest"));
}

TEST_F(ServedSupervisorTest, TheRawMethodsAnswerAsTheTypedOnesDid) {
  auto stub = pm::internal::v1::Supervisor::NewStub(channel_);
  pm::v1::StartRequest request;
  request.set_executable("/bin/sh");
  request.add_args_bytes("-c");
  request.add_args_bytes("exec sleep 1000 # caf\xe9");
  grpc::ClientContext start_context;
  pm::v1::StartResponse started;
  grpc::Status start = stub->Start(&start_context, request, &started);
  ASSERT_TRUE(start.ok()) << start.error_message();
  EXPECT_EQ(started.status().args_bytes(1), "exec sleep 1000 # caf\xe9");

  grpc::ClientContext stop_context;
  pm::v1::StopRequest stop;
  stop.set_id(started.id());
  stop.set_grace_period_ms(5000);
  pm::v1::StopResponse stopped;
  grpc::Status result = stub->Stop(&stop_context, stop, &stopped);
  ASSERT_TRUE(result.ok()) << result.error_message();
  EXPECT_TRUE(stopped.stopped());
  EXPECT_EQ(stopped.status().state(), pm::v1::ProcessStatus::STATE_SIGNALED);
  EXPECT_EQ(stopped.status().args_bytes(0), "-c");
}

}  // namespace
}  // namespace pm::supervisor
