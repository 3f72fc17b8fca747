// TestNetwork: hosts of a test, each in a network namespace of its own, on
// one private network the test makes (iproute2's `ip`; needs root), for
// tests of a cluster of pm hosts (testing/cluster_netns_test.cc).
//
// The machine's own network is never touched: the test's process first
// moves into a network namespace of its own (EnterPrivateNetwork, before
// any thread starts: a namespace is per thread, and threads inherit it),
// and the bridge that joins the hosts lives there. The hosts' namespaces
// are named (`ip netns add`, so that nsenter can run a process in one by
// its path) with a name unique to the run, and deleted by the destructor;
// those that a killed run left behind are deleted by the next Create().
//
//   int main(int argc, char** argv) {
//     const absl::Status entered = pm::testing::EnterPrivateNetwork();
//     ...                                     // then gtest, gRPC, threads
//   }
//   PM_ASSIGN_OR_RETURN(std::unique_ptr<TestNetwork> network,
//                       TestNetwork::Create({"a", "b", "c"}));
//   network->address("b");   // "10.213.0.3", reached from the test too
//   network->prefix("b");    // {"/usr/bin/nsenter", "--net=/run/netns/...", "--"}
#ifndef PM_TESTING_TEST_NETWORK_H_
#define PM_TESTING_TEST_NETWORK_H_

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace pm::testing {

// Runs `argv` (argv[0] a path; stdin /dev/null, stdout and stderr
// captured) to its end. FAILED_PRECONDITION naming the command, how it
// ended and what it printed, unless it exits 0.
absl::Status RunCommand(const std::vector<std::string>& argv);

// Moves this process (its calling thread, and every thread and child it
// makes afterwards) into a new network namespace, with its loopback up.
// Call it first in main. Errors name the step: unshare (PERMISSION_DENIED
// without CAP_SYS_ADMIN), or `ip` (missing: Debian's iproute2).
absl::Status EnterPrivateNetwork();

class TestNetwork {
 public:
  // A bridge at <subnet>.1/24 in this process's namespace (which must be a
  // private one: FAILED_PRECONDITION in the machine's), and for each of
  // `hosts` a named namespace joined to it by a veth pair, at <subnet>.2,
  // .3, ... in the order given, with its loopback up. Errors name the
  // `ip` command that failed and what it printed; what was made before is
  // deleted again.
  static absl::StatusOr<std::unique_ptr<TestNetwork>> Create(
      const std::vector<std::string>& hosts);
  // Kills every process still in one of the namespaces (all started by
  // the test: a failed test may leave some behind), then deletes them.
  ~TestNetwork();
  TestNetwork(const TestNetwork&) = delete;
  TestNetwork& operator=(const TestNetwork&) = delete;

  // `host`'s IPv4 address.
  std::string address(const std::string& host) const;
  // The command that runs a program (its path and arguments follow) in
  // `host`'s namespace: nsenter, which changes only the network namespace
  // (not `ip netns exec`, which remounts /sys and so hides the cgroups)
  // and execs the program in its own process.
  std::vector<std::string> prefix(const std::string& host) const;

 private:
  TestNetwork() = default;
  void KillEverythingInside() const;

  struct Host {
    std::string netns;  // its name under /run/netns
    std::string address;
  };
  std::map<std::string, Host> hosts_;
};

}  // namespace pm::testing

#endif  // PM_TESTING_TEST_NETWORK_H_
