// Issue 17: two pm hosts (two real launchers with their services, on their
// own runtime and state dirs and gateway ports, one set of certificates and
// users) on one etcd (Debian's etcd-server), used as a user would, through
// the Library on each host's gateway: a Start on host b through host a's
// gateway, its status (with the live view only b has), its output and its
// stop through a, the record seen from b; a Start without a node stays on
// the host that is least busy.
#include <stdlib.h>

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "client/client.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "testing/launcher_process.h"
#include "testing/test_stack.h"
#include "third_party/etcd/etcd_test_server.h"

namespace pm::testing {
namespace {

using ::pm::v1::ProcessStatus;
using ::testing::HasSubstr;

class ClusterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // Short: the services' socket paths must fit in 108 bytes.
    char tmpl[] = "/tmp/pm_cluster.XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    std::filesystem::create_directories(dir_ + "/etcd");
    absl::StatusOr<std::unique_ptr<EtcdServer>> etcd = EtcdServer::Start(dir_ + "/etcd");
    ASSERT_TRUE(etcd.ok()) << etcd.status();
    etcd_ = *std::move(etcd);
    // One after the other: the first makes the shared certificates and
    // users, the second finds them.
    a_ = Host("a");
    ASSERT_TRUE(a_->ok()) << a_->log();
    b_ = Host("b");
    ASSERT_TRUE(b_->ok()) << b_->log();
    // Each host's gateway is published with its node once its registry
    // holds its lease; a Start placed on b needs a's view of b (and the
    // other way round).
    ASSERT_TRUE(a_->WaitForLines("cluster: host \"b\" is up", 1)) << a_->log();
    ASSERT_TRUE(b_->WaitForLines("cluster: host \"a\" is up", 1)) << b_->log();
  }

  void TearDown() override {
    a_.reset();
    b_.reset();
    etcd_.reset();
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
  }

  std::unique_ptr<LauncherProcess> Host(const std::string& node) {
    const std::string port = absl::StrCat(FreeLoopbackPort());
    return std::make_unique<LauncherProcess>(
        dir_ + "/" + node, std::stoi(port),
        std::vector<std::string>{"--certs_dir=" + certs(), "--etcd=" + etcd_->endpoint(),
                                 "--etcd_prefix=/pm/it/", "--node=" + node,
                                 "--gateway_advertise=127.0.0.1:" + port});
  }

  std::string certs() const { return dir_ + "/certs"; }

  std::unique_ptr<pm::Client> Connect(const LauncherProcess& host) {
    pm::RemoteOptions remote;
    remote.target = host.gateway_target();
    remote.ca_file = certs() + "/ca.pem";
    remote.cert_file = certs() + "/client.pem";
    remote.key_file = certs() + "/client.key";
    remote.user = "demo";
    remote.password_file = certs() + "/demo.password";
    absl::StatusOr<std::unique_ptr<pm::Client>> client = pm::Client::ConnectRemote(remote);
    EXPECT_TRUE(client.ok()) << client.status();
    return client.ok() ? *std::move(client) : nullptr;
  }

  std::string dir_;
  std::unique_ptr<EtcdServer> etcd_;
  std::unique_ptr<LauncherProcess> a_;
  std::unique_ptr<LauncherProcess> b_;
};

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

}  // namespace
}  // namespace pm::testing
