#include "testing/cluster_fixture.h"

#include <stdlib.h>

#include <filesystem>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/loopback_ports_test_util.h"

namespace pm::testing {

void ClusterTest::SetUp() {
  // Short: the services' socket paths must fit in 108 bytes.
  char tmpl[] = "/tmp/pm_cluster.XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  dir_ = tmpl;
  std::filesystem::create_directories(dir_ + "/etcd");
  absl::StatusOr<std::unique_ptr<EtcdServer>> etcd = EtcdServer::Start(dir_ + "/etcd");
  ASSERT_TRUE(etcd.ok()) << etcd.status();
  etcd_ = *std::move(etcd);
  // Each gateway's port is named before it listens: it is published to
  // the cluster by the registry, which starts first.
  absl::StatusOr<std::vector<int>> ports = FreeLoopbackPorts(2);
  ASSERT_TRUE(ports.ok()) << ports.status();
  // One after the other: the first makes the shared certificates and
  // users, the second finds them.
  a_ = Host("a", (*ports)[0]);
  ASSERT_TRUE(a_->ok()) << a_->log();
  b_ = Host("b", (*ports)[1]);
  ASSERT_TRUE(b_->ok()) << b_->log();
  // Each host's gateway is published with its node once its registry
  // holds its lease; a Start placed on b needs a's view of b (and the
  // other way round).
  ASSERT_TRUE(a_->WaitForLines("cluster: host \"b\" is up", 1)) << a_->log();
  ASSERT_TRUE(b_->WaitForLines("cluster: host \"a\" is up", 1)) << b_->log();
}

void ClusterTest::TearDown() {
  a_.reset();
  b_.reset();
  etcd_.reset();
  if (!dir_.empty()) {
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
  }
}

std::unique_ptr<LauncherProcess> ClusterTest::Host(const std::string& node, int port) {
  return std::make_unique<LauncherProcess>(
      dir_ + "/" + node, port,
      std::vector<std::string>{"--certs_dir=" + certs(), "--etcd=" + etcd_->endpoint(),
                               "--etcd_prefix=/pm/it/", "--node=" + node,
                               absl::StrCat("--gateway_advertise=127.0.0.1:", port)});
}

std::unique_ptr<pm::Client> ConnectAsDemo(const std::string& certs_dir,
                                          const std::string& target) {
  pm::RemoteOptions remote;
  remote.target = target;
  remote.ca_file = certs_dir + "/ca.pem";
  remote.cert_file = certs_dir + "/client.pem";
  remote.key_file = certs_dir + "/client.key";
  remote.user = "demo";
  remote.password_file = certs_dir + "/demo.password";
  absl::StatusOr<std::unique_ptr<pm::Client>> client = pm::Client::ConnectRemote(remote);
  EXPECT_TRUE(client.ok()) << client.status();
  return client.ok() ? *std::move(client) : nullptr;
}

std::unique_ptr<pm::Client> ClusterTest::Connect(const LauncherProcess& host) {
  return ConnectAsDemo(certs(), host.gateway_target());
}

std::string ClusterTest::log() {
  return absl::StrCat("---- host a ----\n", a_ != nullptr ? a_->log() : "",
                      "---- host b ----\n", b_ != nullptr ? b_->log() : "");
}

}  // namespace pm::testing
