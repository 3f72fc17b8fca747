// Issue 17: two pm hosts (two real launchers with their services, on their
// own runtime and state dirs and gateway ports, one set of certificates and
// users) on one etcd (Debian's etcd-server), used as a user would, through
// the Library on each host's gateway: a Start on host b through host a's
// gateway, its status (with the live view only b has), its output and its
// stop through a, the record seen from b; a Start without a node stays on
// the host that is least busy.
#include <signal.h>
#include <stdio.h>
#include <sys/stat.h>

#include <map>
#include <memory>
#include <string>

#include "client/client.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "testing/cluster_fixture.h"
#include "testing/test_stack.h"

namespace pm::testing {
namespace {

using ::pm::v1::ProcessStatus;
using ::testing::HasSubstr;

TEST_F(ClusterTest, AProcessOnOneHostIsStartedFollowedAndStoppedThroughTheOther) {
  std::unique_ptr<pm::Client> via_a = Connect(*a_);
  std::unique_ptr<pm::Client> via_b = Connect(*b_);
  ASSERT_NE(via_a, nullptr);
  ASSERT_NE(via_b, nullptr);

  pm::v1::StartRequest on_b = Shell("echo hello from b; exec sleep 1000");
  on_b.set_name("web");
  on_b.set_node("b");
  pm::v1::StartResponse started = MustStart(*via_a, on_b);
  ASSERT_FALSE(started.id().empty()) << a_->log() << b_->log();
  EXPECT_EQ(started.status().node(), "b");
  const std::string id = started.id();

  // Its status through a comes from b, with the live view from b's /proc.
  ProcessStatus status = MustGetStatus(*via_a, id);
  EXPECT_EQ(status.node(), "b");
  EXPECT_EQ(status.state(), ProcessStatus::STATE_RUNNING);
  EXPECT_FALSE(status.proc_status().empty()) << "no live view: not answered by b";
  // By its name too, from either host; and b answers for it as its own.
  EXPECT_EQ(MustGetStatus(*via_a, "web").id(), id);
  EXPECT_EQ(MustGetStatus(*via_b, id).node(), "b");

  // Its output, followed through a.
  EXPECT_THAT(FollowUntil(*via_a, id, "hello from"), HasSubstr("hello from"));

  // Stopped through a: b's supervisor stops it, b's record says so.
  MustStop(*via_a, id, 1000);
  ProcessStatus ended = MustWait(*via_b, id);
  EXPECT_EQ(ended.state(), ProcessStatus::STATE_SIGNALED);
  EXPECT_EQ(MustWait(*via_a, id).state(), ProcessStatus::STATE_SIGNALED);

  // A name is the cluster's: taken on b, refused through a.
  pm::v1::StartRequest again = Shell("exec sleep 1000");
  again.set_name("web");
  absl::StatusOr<pm::v1::StartResponse> refused = via_a->Start(again);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kAlreadyExists) << refused.status();

  // A host that is not up is named in the refusal.
  pm::v1::StartRequest nowhere = Shell("exec sleep 1000");
  nowhere.set_node("c");
  absl::StatusOr<pm::v1::StartResponse> no_host = via_a->Start(nowhere);
  EXPECT_EQ(no_host.status().code(), absl::StatusCode::kFailedPrecondition)
      << no_host.status();
  EXPECT_THAT(no_host.status().message(), HasSubstr("host \"c\" is not up"));
}

TEST_F(ClusterTest, AStartWithoutANodeGoesToTheLeastBusyHost) {
  std::unique_ptr<pm::Client> via_a = Connect(*a_);
  ASSERT_NE(via_a, nullptr);
  // Both idle: the host that took the call keeps it.
  pm::v1::StartResponse first = MustStart(*via_a, Shell("exec sleep 1000"));
  EXPECT_EQ(first.status().node(), "a");
  // Now a has one running and b none: the next goes to b (once a sees b's
  // count, which it does through etcd's watch; b has none either way).
  pm::v1::StartResponse second = MustStart(*via_a, Shell("exec sleep 1000"));
  EXPECT_EQ(second.status().node(), "b") << a_->log();
  MustStop(*via_a, first.id(), 1000);
  MustStop(*via_a, second.id(), 1000);
}

TEST_F(ClusterTest, AWatchOfEveryProcessThroughOneHostSeesTheOthersEvents) {
  std::unique_ptr<pm::Client> via_a = Connect(*a_);
  ASSERT_NE(via_a, nullptr);
  std::unique_ptr<pm::EventStream> events = via_a->Watch(pm::v1::WatchRequest());
  events->WaitUntilAttached();
  // Ends on b as soon as it is let go (a FIFO), watched through a.
  const std::string gate = dir_ + "/gate";
  ASSERT_EQ(mkfifo(gate.c_str(), 0600), 0);
  pm::v1::StartRequest on_b = Shell("read line < " + gate + "; exit 3");
  on_b.set_node("b");
  const std::string id = MustStart(*via_a, on_b).id();
  {
    // Opened for writing once the process holds the read end.
    FILE* release = fopen(gate.c_str(), "w");
    ASSERT_NE(release, nullptr);
    fputs("go\n", release);
    fclose(release);
  }
  std::vector<std::string> seen;
  pm::v1::Event event;
  while (events->Next(&event)) {
    if (event.status().id() != id) continue;
    EXPECT_EQ(event.status().node(), "b");
    seen.push_back(pm::v1::Event::Kind_Name(event.kind()));
    if (event.kind() == pm::v1::Event::KIND_EXITED) {
      EXPECT_EQ(event.status().exit_code(), 3);
      break;
    }
  }
  events->Cancel();
  EXPECT_THAT(seen, ::testing::ElementsAre("KIND_STARTED", "KIND_EXITED"));
}

TEST_F(ClusterTest, WhatTheClusterCannotReachIsNamedToARemoteCaller) {
  std::unique_ptr<pm::Client> via_a = Connect(*a_);
  ASSERT_NE(via_a, nullptr);
  pm::v1::StartRequest on_b = Shell("echo on b; exec sleep 1000");
  on_b.set_node("b");
  const std::string id = MustStart(*via_a, on_b).id();

  // etcd hung: a named start is refused naming etcd, not hidden behind the
  // gateway's generic "a pm service is unavailable".
  ASSERT_TRUE(etcd_->Pause().ok());
  pm::v1::StartRequest named = Shell("exec sleep 1000");
  named.set_name("needs-etcd");
  named.set_node("a");
  absl::StatusOr<pm::v1::StartResponse> refused = via_a->Start(named);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kUnavailable) << refused.status();
  EXPECT_THAT(std::string(refused.status().message()), HasSubstr("etcd")) << a_->log();
  EXPECT_THAT(std::string(refused.status().message()), ::testing::Not(HasSubstr("behind the gateway")));
  ASSERT_TRUE(etcd_->Resume().ok());

  // Host b's stack gone: its process's output, asked of a, names b.
  b_.reset();
  pm::v1::StreamOutputRequest read;
  read.set_id(id);
  std::unique_ptr<pm::OutputStream> output = via_a->StreamOutput(read);
  pm::v1::OutputChunk chunk;
  while (output->Next(&chunk)) {
  }
  const absl::Status ended = output->Finish();
  EXPECT_EQ(ended.code(), absl::StatusCode::kUnavailable) << ended;
  EXPECT_THAT(std::string(ended.message()), HasSubstr("host b"));
  EXPECT_THAT(std::string(ended.message()), ::testing::Not(HasSubstr("behind the gateway")));
}

// The registry of host a killed -9 while what it recorded was not yet in
// etcd (etcd hung from the first start to after the kill, so every record
// was still to be mirrored), and half of its processes ending while it was
// down: once it is back, host b sees every one of them, in its true state,
// and a has lost none.
TEST_F(ClusterTest, ARegistryKilledBeforeItMirroredItsRecordsLosesNoneOfThem) {
  absl::StatusOr<std::unique_ptr<pm::Client>> local = pm::Client::ConnectLocal(a_->runtime_dir());
  ASSERT_TRUE(local.ok()) << local.status();
  // On b's local socket: every process, whoever owns it.
  absl::StatusOr<std::unique_ptr<pm::Client>> at_b = pm::Client::ConnectLocal(b_->runtime_dir());
  ASSERT_TRUE(at_b.ok()) << at_b.status();
  pm::v1::WatchRequest everything;
  everything.set_after_sequence(0);
  std::unique_ptr<pm::EventStream> events = (*at_b)->Watch(everything);
  events->WaitUntilAttached();

  ASSERT_TRUE(etcd_->Pause().ok());
  // Recorded on a alone: etcd does not answer (the first start waits for
  // its claim's deadline, the others are recorded at once, to be claimed
  // and mirrored later).
  constexpr int kProcesses = 16;
  std::map<std::string, pid_t> pids;
  for (int i = 0; i < kProcesses; ++i) {
    pm::v1::StartResponse started = MustStart(**local, Command({"sleep", "1000"}));
    pids[started.id()] = started.status().pid();
  }
  ASSERT_TRUE(a_->KillServices({"registry"}, SIGKILL));
  // Half end while a's registry is down: their ends wait in the supervisor.
  std::map<std::string, ProcessStatus::State> expected;
  int n = 0;
  for (const auto& [id, pid] : pids) {
    const bool ends = n++ % 2 == 0;
    if (ends) {
      ASSERT_EQ(kill(pid, SIGTERM), 0) << id;
    }
    expected[id] = ends ? ProcessStatus::STATE_SIGNALED : ProcessStatus::STATE_RUNNING;
  }
  ASSERT_TRUE(etcd_->Resume().ok());
  ASSERT_TRUE(a_->WaitForHealthy("registry", 1)) << a_->log();

  // b's events until each of a's processes is in its true state there.
  std::map<std::string, ProcessStatus> seen;
  auto all_true = [&] {
    for (const auto& [id, state] : expected) {
      auto it = seen.find(id);
      if (it == seen.end() || it->second.state() != state) return false;
    }
    return true;
  };
  pm::v1::Event event;
  while (!all_true() && events->Next(&event)) {
    if (expected.count(event.status().id()) != 0) seen[event.status().id()] = event.status();
  }
  events->Cancel();
  ASSERT_TRUE(all_true()) << "b saw " << seen.size() << " of a's " << kProcesses
                          << " processes\n" << log();
  for (const auto& [id, status] : seen) {
    EXPECT_EQ(status.node(), "a") << id;
    if (status.state() == ProcessStatus::STATE_SIGNALED) {
      EXPECT_EQ(status.signal(), SIGTERM) << id;
    }
  }
  // On record at a as at b, and a's list holds no other.
  absl::StatusOr<pm::v1::ListResponse> at_a = (*local)->List();
  ASSERT_TRUE(at_a.ok()) << at_a.status();
  std::map<std::string, ProcessStatus::State> listed;
  for (const ProcessStatus& status : at_a->processes()) {
    if (status.node() == "a") listed[status.id()] = status.state();
  }
  EXPECT_EQ(listed, expected);
}

}  // namespace
}  // namespace pm::testing
