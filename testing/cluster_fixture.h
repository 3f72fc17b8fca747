// ClusterTest: a gtest fixture of two pm hosts, "a" and "b" (two real
// launchers, testing/launcher_process.h, with their services, each on its
// own runtime and state dirs and gateway port; one set of certificates and
// users) on one etcd (Debian's etcd-server, third_party/etcd), all on
// loopback, for the tests of issue 17. SetUp returns once each host has
// seen the other come up, so a Start placed on either host is accepted.
//
//   class MyClusterTest : public ClusterTest {};
//   TEST_F(MyClusterTest, AStartOnBThroughA) {
//     std::unique_ptr<pm::Client> via_a = Connect(*a_);
//     pm::v1::StartRequest request = Shell("echo hi");
//     request.set_node("b");
//     pm::v1::StartResponse started = MustStart(*via_a, request);
//   }
//
// A test that fails prints both launchers' logs with log().
#ifndef PM_TESTING_CLUSTER_FIXTURE_H_
#define PM_TESTING_CLUSTER_FIXTURE_H_

#include <memory>
#include <string>

#include "client/client.h"
#include "gtest/gtest.h"
#include "testing/launcher_process.h"
#include "third_party/etcd/etcd_test_server.h"

namespace pm::testing {

// A Library client of the gateway at `target` ("host:port") as the user
// demo, with the dev PKI and users in `certs_dir` (certs/make_pki.sh); null
// (and a test failure) when it cannot be made.
std::unique_ptr<pm::Client> ConnectAsDemo(const std::string& certs_dir,
                                          const std::string& target);

class ClusterTest : public ::testing::Test {
 protected:
  // etcd, then host a, then host b; waits for each to see the other.
  void SetUp() override;
  // The hosts (their launchers stop their services), then etcd, then the
  // directory.
  void TearDown() override;

  // The certificates and users both hosts use (the launchers' --certs_dir).
  std::string certs() const { return dir_ + "/certs"; }

  // A Library client of `host`'s gateway as the user demo; null (and a
  // test failure) when it cannot be made.
  std::unique_ptr<pm::Client> Connect(const LauncherProcess& host);
  // Both launchers' output, for a failure message.
  std::string log();

  std::string dir_;
  std::unique_ptr<EtcdServer> etcd_;
  std::unique_ptr<LauncherProcess> a_;
  std::unique_ptr<LauncherProcess> b_;

 private:
  // Starts the launcher of host `node` on <dir>/<node>, in the cluster,
  // with its gateway on 127.0.0.1:`port`.
  std::unique_ptr<LauncherProcess> Host(const std::string& node, int port);
};

}  // namespace pm::testing

#endif  // PM_TESTING_CLUSTER_FIXTURE_H_
