// The launcher's supervision on the real services: restarts with growing
// delays, a service that never gets healthy, the upgrade sequence, and the
// old stop-all policy. The binaries are reached through symlinks in a
// temporary binary root, so a test can swap one for a failing script as a
// new build would replace it on disk.
#include "stack/stack.h"

#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "client/client.h"
#include "gtest/gtest.h"
#include "stack/event_recorder.h"

namespace pm::stack {
namespace {

namespace fs = std::filesystem;
using Kind = StackEvent::Kind;

class StackTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/pm_st.XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    absl::StatusOr<std::string> real = FindBinaryRoot();
    ASSERT_TRUE(real.ok()) << real.status();
    real_root_ = fs::absolute(*real).string();
    for (const char* name : {"registry", "log_store", "supervisor"}) {
      fs::create_directories(Root() + "/" + name);
      PutBack(name);
    }
    // The supervisor's --shim_binary, as the launcher names it.
    fs::create_directories(Root() + "/shim");
    fs::create_symlink(real_root_ + "/shim/pm-shim", Root() + "/shim/pm-shim");
    options_.runtime_dir = dir_ + "/run";
    options_.state_dir = dir_ + "/state";
    options_.binary_root = Root();
    options_.on_death = OnServiceDeath::kRestart;
    options_.observer = events_.Observer();
  }
  void TearDown() override {
    if (runner_.joinable()) {
      stack_->Quit();
      runner_.join();
    }
    if (stack_) {
      absl::Status stopped = stack_->StopAll();
      EXPECT_TRUE(stopped.ok()) << stopped;
    }
    fs::remove_all(dir_);
  }

  std::string Root() const { return dir_ + "/bin"; }
  std::string Binary(const std::string& name) const {
    return absl::StrCat(Root(), "/", name, "/", name);
  }
  // Replaces the service's binary on disk, atomically, as a build would.
  void Replace(const std::string& name, const std::string& script) {
    const std::string temp = Binary(name) + ".new";
    std::ofstream(temp) << script;
    fs::permissions(temp, fs::perms::owner_all);
    fs::rename(temp, Binary(name));
  }
  void PutBack(const std::string& name) {
    const std::string temp = Binary(name) + ".new";
    fs::remove(temp);
    fs::create_symlink(absl::StrCat(real_root_, "/", name, "/", name), temp);
    fs::rename(temp, Binary(name));
  }

  void StartAndRun() {
    absl::StatusOr<std::unique_ptr<Stack>> stack = Stack::Start(options_);
    ASSERT_TRUE(stack.ok()) << stack.status();
    stack_ = *std::move(stack);
    runner_ = std::thread([this] {
      absl::StatusOr<Stack::Event> ended = stack_->Run();
      EXPECT_TRUE(ended.ok()) << ended.status();
      if (ended.ok()) run_ended_ = *ended;
    });
  }

  std::string dir_;
  std::string real_root_;
  StackOptions options_;
  EventRecorder events_;
  std::unique_ptr<Stack> stack_;
  std::thread runner_;
  Stack::Event run_ended_;
};

TEST_F(StackTest, AServiceThatDiesAtStartIsRetriedWithGrowingDelays) {
  options_.only = {"registry"};
  StartAndRun();
  Replace("registry", "#!/bin/sh\nexit 3\n");
  stack_->PostSignal("registry", SIGKILL);
  std::vector<StackEvent> scheduled =
      events_.WaitFor(Kind::kRestartScheduled, 4, "registry");
  ASSERT_GE(scheduled.size(), 4u);
  std::vector<int64_t> delays;
  for (size_t i = 0; i < 4; ++i) {
    delays.push_back(absl::ToInt64Milliseconds(scheduled[i].delay));
  }
  EXPECT_EQ(delays, (std::vector<int64_t>{100, 200, 400, 800}));
  std::vector<StackEvent> died = events_.WaitFor(Kind::kDied, 3, "registry");
  ASSERT_GE(died.size(), 3u);
  EXPECT_EQ(*died[0].exit, ExitStatus::Signaled(SIGKILL));
  EXPECT_EQ(*died[1].exit, ExitStatus::Exited(3));
  EXPECT_EQ(died[1].ToString(),
            absl::StrCat("registry (pid ", died[1].pid,
                         ") exited with code 3 unexpectedly"));
  // A good binary again: the next try gets it up and healthy.
  PutBack("registry");
  std::vector<StackEvent> healthy = events_.WaitFor(Kind::kHealthy, 1, "registry");
  ASSERT_EQ(healthy.size(), 1u);
  EXPECT_GT(healthy[0].pid, 0);
}

TEST_F(StackTest, AServiceNeverHealthyIsKilledAndRetried) {
  options_.only = {"registry"};
  options_.health_timeout = absl::Seconds(1);
  StartAndRun();
  // Runs, but never serves its socket.
  Replace("registry", "#!/bin/sh\nexec sleep 1000\n");
  stack_->PostSignal("registry", SIGKILL);
  std::vector<StackEvent> unhealthy =
      events_.WaitFor(Kind::kUnhealthy, 1, "registry");
  ASSERT_EQ(unhealthy.size(), 1u);
  EXPECT_NE(unhealthy[0].ToString().find("was not healthy within 1s"),
            std::string::npos)
      << unhealthy[0].ToString();
  std::vector<StackEvent> died = events_.WaitFor(Kind::kDied, 2, "registry");
  ASSERT_GE(died.size(), 2u);
  EXPECT_EQ(died[1].pid, unhealthy[0].pid);
  EXPECT_EQ(*died[1].exit, ExitStatus::Signaled(SIGKILL));
  std::vector<StackEvent> scheduled =
      events_.WaitFor(Kind::kRestartScheduled, 2, "registry");
  ASSERT_GE(scheduled.size(), 2u);
  EXPECT_EQ(scheduled[1].delay, absl::Milliseconds(200));
  PutBack("registry");
}

TEST_F(StackTest, UpgradeRestartsEachServiceInOrderOnTheBinaryOnDisk) {
  StartAndRun();
  std::vector<pid_t> before;
  for (const ServiceProcess& s : stack_->services()) before.push_back(s.pid);
  // What a new build of the log_store looks like: a new file on disk.
  const std::string marker = dir_ + "/new_log_store_ran";
  Replace("log_store",
          absl::StrCat("#!/bin/sh\ntouch ", marker, "\nexec ", real_root_,
                       "/log_store/log_store \"$@\"\n"));
  stack_->RequestUpgrade();
  ASSERT_EQ(events_.WaitFor(Kind::kUpgradeDone, 1).size(), 1u);
  // Each one handed off, back and healthy before the next one is touched.
  std::vector<std::string> sequence;
  for (const StackEvent& e : events_.All()) {
    if (e.kind == Kind::kUpgradeStep) sequence.push_back("step " + e.service);
    if (e.kind == Kind::kHealthy) sequence.push_back("healthy " + e.service);
  }
  EXPECT_EQ(sequence, (std::vector<std::string>{
                          "step registry", "healthy registry", "step log_store",
                          "healthy log_store", "step supervisor",
                          "healthy supervisor"}));
  EXPECT_TRUE(fs::exists(marker));
  // Run owns the services now: the tests' direct calls are refused.
  EXPECT_EQ(stack_->KillService("registry", SIGKILL).code(),
            absl::StatusCode::kFailedPrecondition);
  for (const StackEvent& e : events_.All()) {
    EXPECT_NE(e.kind, Kind::kDied) << e.ToString();
  }
  // The stack answers through every service.
  absl::StatusOr<std::unique_ptr<Client>> client =
      Client::ConnectLocal(options_.runtime_dir);
  ASSERT_TRUE(client.ok()) << client.status();
  pm::v1::StartRequest start;
  start.set_executable("/bin/true");
  absl::StatusOr<pm::v1::StartResponse> started = (*client)->Start(start);
  ASSERT_TRUE(started.ok()) << started.status();
  absl::StatusOr<pm::v1::ProcessStatus> ended =
      (*client)->Wait(started->id(), absl::Seconds(30));
  ASSERT_TRUE(ended.ok()) << ended.status();
  std::vector<StackEvent> healthy = events_.WaitFor(Kind::kHealthy, 3);
  for (const StackEvent& e : healthy) {
    for (pid_t old : before) EXPECT_NE(e.pid, old) << e.service;
  }
}

TEST_F(StackTest, StopAllPolicyReturnsTheServiceThatDied) {
  options_.only = {"registry", "log_store"};
  options_.on_death = OnServiceDeath::kStopAll;
  StartAndRun();
  stack_->PostSignal("log_store", SIGKILL);
  runner_.join();
  EXPECT_EQ(run_ended_.service, "log_store");
  ASSERT_TRUE(run_ended_.exit.has_value());
  EXPECT_EQ(*run_ended_.exit, ExitStatus::Signaled(SIGKILL));
  // Nothing restarted: the caller stops the rest (TearDown's StopAll).
  EXPECT_TRUE(events_.All().empty());
  EXPECT_FALSE(stack_->services()[1].pidfd.valid());
}

}  // namespace
}  // namespace pm::stack
