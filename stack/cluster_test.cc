// The launcher's cluster flags, and the command lines they give the
// services: no service is started (the stack's own tests run them).
#include "stack/cluster.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "stack/stack.h"

namespace pm::stack {
namespace {

using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;

const absl::StatusOr<std::string> kHostName = std::string("host-a");

TEST(ClusterFromFlagsTest, WithoutEtcdThereIsNoCluster) {
  absl::StatusOr<absl::optional<ClusterOptions>> cluster =
      ClusterFromFlags({"", "", ""}, kHostName);
  ASSERT_TRUE(cluster.ok()) << cluster.status();
  EXPECT_FALSE(cluster->has_value());
  // Not even the host name is needed.
  cluster = ClusterFromFlags({"", "", ""}, absl::InternalError("no name"));
  ASSERT_TRUE(cluster.ok()) << cluster.status();
  EXPECT_FALSE(cluster->has_value());
}

TEST(ClusterFromFlagsTest, ANodeOrPrefixWithoutEtcdIsRefusedNamingTheFlag) {
  absl::StatusOr<absl::optional<ClusterOptions>> node =
      ClusterFromFlags({"", "", "b"}, kHostName);
  EXPECT_EQ(node.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(node.status().message(),
            "--node=b needs a cluster: give --etcd=ENDPOINTS too (a single "
            "host has no node name)");
  absl::StatusOr<absl::optional<ClusterOptions>> prefix =
      ClusterFromFlags({"", "/pm/test/", ""}, kHostName);
  EXPECT_EQ(prefix.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(prefix.status().message(), HasSubstr("--etcd_prefix=/pm/test/ needs a cluster"));
}

TEST(ClusterFromFlagsTest, TheNodeIsTheOneGivenElseTheHostName) {
  absl::StatusOr<absl::optional<ClusterOptions>> given =
      ClusterFromFlags({"10.0.0.1:2379,10.0.0.2:2379", "/pm/test/", "b"}, kHostName);
  ASSERT_TRUE(given.ok()) << given.status();
  ASSERT_TRUE(given->has_value());
  EXPECT_EQ((*given)->etcd, "10.0.0.1:2379,10.0.0.2:2379");
  EXPECT_EQ((*given)->etcd_prefix, "/pm/test/");
  EXPECT_EQ((*given)->node, "b");

  absl::StatusOr<absl::optional<ClusterOptions>> host =
      ClusterFromFlags({"localhost:2379", "", ""}, kHostName);
  ASSERT_TRUE(host.ok()) << host.status();
  ASSERT_TRUE(host->has_value());
  EXPECT_EQ((*host)->node, "host-a");
  EXPECT_EQ((*host)->etcd_prefix, "");  // the registry's default

  // Given, the host name is not needed.
  EXPECT_TRUE(ClusterFromFlags({"localhost:2379", "", "b"}, absl::InternalError("x")).ok());
}

TEST(ClusterFromFlagsTest, BadNodesEndpointsAndHostNamesAreRefused) {
  absl::StatusOr<absl::optional<ClusterOptions>> bad_node =
      ClusterFromFlags({"localhost:2379", "", "b c"}, kHostName);
  EXPECT_EQ(bad_node.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(bad_node.status().message(), HasSubstr("--node: node \"b c\" has ' '"));

  absl::StatusOr<absl::optional<ClusterOptions>> empty_endpoint =
      ClusterFromFlags({"localhost:2379,", "", "b"}, kHostName);
  EXPECT_EQ(empty_endpoint.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(empty_endpoint.status().message(), HasSubstr("an empty endpoint"));

  absl::StatusOr<absl::optional<ClusterOptions>> odd_host =
      ClusterFromFlags({"localhost:2379", "", ""}, std::string("host a"));
  EXPECT_EQ(odd_host.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(odd_host.status().message(), HasSubstr("give --node"));

  absl::StatusOr<absl::optional<ClusterOptions>> no_host = ClusterFromFlags(
      {"localhost:2379", "", ""}, absl::InternalError("gethostname(): EFAULT"));
  EXPECT_FALSE(no_host.ok());
  EXPECT_THAT(no_host.status().message(), HasSubstr("gethostname(): EFAULT"));
}

TEST(ClusterFromFlagsTest, TheLeaseIsPassedOnAndRefusedUnder2SecondsOrWithoutEtcd) {
  absl::StatusOr<absl::optional<ClusterOptions>> given =
      ClusterFromFlags({"localhost:2379", "", "b", 3}, kHostName);
  ASSERT_TRUE(given.ok()) << given.status();
  ASSERT_TRUE(given->has_value());
  EXPECT_EQ((*given)->etcd_lease_seconds, 3);

  absl::StatusOr<absl::optional<ClusterOptions>> short_lease =
      ClusterFromFlags({"localhost:2379", "", "b", 1}, kHostName);
  EXPECT_EQ(short_lease.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(short_lease.status().message(),
              HasSubstr("--etcd_lease_seconds=1: a lease is 2 s or more"));

  absl::StatusOr<absl::optional<ClusterOptions>> alone =
      ClusterFromFlags({"", "", "", 3}, kHostName);
  EXPECT_EQ(alone.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(alone.status().message(), HasSubstr("--etcd_lease_seconds=3 needs a cluster"));
}

ClusterFlags TlsFlags(const std::string& etcd) {
  ClusterFlags flags;
  flags.etcd = etcd;
  flags.node = "b";
  flags.etcd_ca_file = "/pki/etcd-ca.pem";
  flags.etcd_cert_file = "/pki/etcd-client.pem";
  flags.etcd_key_file = "/pki/etcd-client.key";
  return flags;
}

TEST(ClusterFromFlagsTest, TheEtcdTlsFilesArePassedOnAllThreeOrNone) {
  absl::StatusOr<absl::optional<ClusterOptions>> given =
      ClusterFromFlags(TlsFlags("localhost:2379"), kHostName);
  ASSERT_TRUE(given.ok()) << given.status();
  ASSERT_TRUE(given->has_value());
  EXPECT_EQ((*given)->etcd_ca_file, "/pki/etcd-ca.pem");
  EXPECT_EQ((*given)->etcd_cert_file, "/pki/etcd-client.pem");
  EXPECT_EQ((*given)->etcd_key_file, "/pki/etcd-client.key");
  EXPECT_EQ((*given)->etcd_server_name, "");  // the registry's default

  ClusterFlags no_key = TlsFlags("localhost:2379");
  no_key.etcd_key_file.clear();
  absl::StatusOr<absl::optional<ClusterOptions>> partial = ClusterFromFlags(no_key, kHostName);
  EXPECT_EQ(partial.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(partial.status().message(),
            "--etcd_key_file is missing: TLS to etcd takes --etcd_ca_file, "
            "--etcd_cert_file and --etcd_key_file together (or none of them)");

  ClusterFlags name_alone;
  name_alone.etcd = "localhost:2379";
  name_alone.etcd_server_name = "etcd.example.com";
  absl::StatusOr<absl::optional<ClusterOptions>> plaintext_name =
      ClusterFromFlags(name_alone, kHostName);
  EXPECT_EQ(plaintext_name.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(plaintext_name.status().message(),
              HasSubstr("--etcd_server_name=etcd.example.com means nothing in plaintext"));
}

TEST(ClusterFromFlagsTest, TheEtcdTlsFlagsWithoutEtcdAreRefusedNamingTheFlag) {
  absl::StatusOr<absl::optional<ClusterOptions>> alone = ClusterFromFlags(TlsFlags(""), kHostName);
  EXPECT_EQ(alone.status().code(), absl::StatusCode::kInvalidArgument);
  ClusterFlags ca_only;
  ca_only.etcd_ca_file = "/pki/etcd-ca.pem";
  alone = ClusterFromFlags(ca_only, kHostName);
  EXPECT_EQ(alone.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(alone.status().message(),
            "--etcd_ca_file=/pki/etcd-ca.pem needs a cluster: give --etcd=ENDPOINTS too");
  ClusterFlags name_only;
  name_only.etcd_server_name = "etcd";
  alone = ClusterFromFlags(name_only, kHostName);
  EXPECT_THAT(alone.status().message(), HasSubstr("--etcd_server_name=etcd needs a cluster"));
}

TEST(ClusterFromFlagsTest, HostNameIsThisMachines) {
  absl::StatusOr<std::string> name = HostName();
  ASSERT_TRUE(name.ok()) << name.status();
  EXPECT_THAT(*name, Not(IsEmpty()));
}

StackOptions Options() {
  StackOptions options;
  options.binary_root = "/b";
  options.runtime_dir = "/run/pm";
  options.state_dir = "/var/lib/pm";
  return options;
}

TEST(ServiceArgsTest, ASingleHostsServicesGetNoClusterFlags) {
  const StackOptions options = Options();
  EXPECT_THAT(ServiceArgs(options, "registry"),
              ElementsAre("/b/registry/registry", "--runtime_dir=/run/pm",
                          "--state_dir=/var/lib/pm"));
  EXPECT_THAT(ServiceArgs(options, "supervisor"),
              ElementsAre("/b/supervisor/supervisor", "--runtime_dir=/run/pm",
                          "--state_dir=/var/lib/pm", "--shim_binary=/b/shim/pm-shim"));
}

TEST(ServiceArgsTest, InAClusterTheRegistryGetsEtcdAndTheNodeAndTheSupervisorTheNode) {
  StackOptions options = Options();
  options.cluster = ClusterOptions{"10.0.0.1:2379,10.0.0.2:2379", "/pm/test/", "a",
                                   "10.0.0.1:8080", 4};
  options.extra_args["registry"] = {"--metrics_listen=127.0.0.1:0"};
  options.gateway = GatewayOptions();
  options.gateway->port_file = "/run/pm/gateway.port";
  options.gateway->peer_cert_file = "/certs/peer.pem";
  options.gateway->peer_key_file = "/certs/peer.key";
  options.gateway->peer_ca_file = "/certs/peer-ca.pem";
  EXPECT_THAT(ServiceArgs(options, "registry"),
              ElementsAre("/b/registry/registry", "--runtime_dir=/run/pm",
                          "--state_dir=/var/lib/pm", "--etcd=10.0.0.1:2379,10.0.0.2:2379",
                          "--etcd_prefix=/pm/test/", "--gateway_address=10.0.0.1:8080",
                          "--etcd_lease_seconds=4", "--node=a",
                          "--metrics_listen=127.0.0.1:0"));
  EXPECT_THAT(ServiceArgs(options, "supervisor"),
              ElementsAre("/b/supervisor/supervisor", "--runtime_dir=/run/pm",
                          "--state_dir=/var/lib/pm", "--shim_binary=/b/shim/pm-shim",
                          "--node=a"));
  // The gateway forwards to the other hosts with its peer certificate;
  // it needs no etcd. The log store knows nothing of the cluster.
  const std::vector<std::string> gateway = ServiceArgs(options, "gateway");
  EXPECT_THAT(gateway, Contains("--node=a"));
  EXPECT_THAT(gateway, Contains("--peer_cert_file=/certs/peer.pem"));
  EXPECT_THAT(gateway, Contains("--peer_key_file=/certs/peer.key"));
  EXPECT_THAT(gateway, Contains("--peer_ca_file=/certs/peer-ca.pem"));
  EXPECT_THAT(gateway, Not(Contains("--etcd=10.0.0.1:2379,10.0.0.2:2379")));
  EXPECT_THAT(gateway, Contains("--port_file=/run/pm/gateway.port"));
  const std::vector<std::string> log_store = ServiceArgs(options, "log_store");
  for (const char* flag : {"--etcd=10.0.0.1:2379,10.0.0.2:2379", "--node=a"}) {
    EXPECT_THAT(log_store, Not(Contains(flag)));
  }

  // No prefix or lease given: the registry's own defaults, not a second
  // copy of them.
  options.cluster->etcd_prefix.clear();
  options.cluster->etcd_lease_seconds = 0;
  const std::vector<std::string> registry = ServiceArgs(options, "registry");
  for (const std::string& arg : registry) {
    EXPECT_THAT(arg, Not(HasSubstr("--etcd_prefix"))) << arg;
    EXPECT_THAT(arg, Not(HasSubstr("--etcd_lease_seconds"))) << arg;
  }
  EXPECT_THAT(registry, Contains("--node=a"));
}

TEST(ServiceArgsTest, TheRegistryAloneGetsTheEtcdTlsFlags) {
  StackOptions options = Options();
  options.cluster = ClusterOptions{"10.0.0.1:2379,10.0.0.2:2379", "", "a", "", 0,
                                   "/pki/etcd-ca.pem", "/pki/etcd-client.pem",
                                   "/pki/etcd-client.key", "etcd.example.com"};
  EXPECT_THAT(ServiceArgs(options, "registry"),
              ElementsAre("/b/registry/registry", "--runtime_dir=/run/pm",
                          "--state_dir=/var/lib/pm", "--etcd=10.0.0.1:2379,10.0.0.2:2379",
                          "--etcd_ca_file=/pki/etcd-ca.pem",
                          "--etcd_cert_file=/pki/etcd-client.pem",
                          "--etcd_key_file=/pki/etcd-client.key",
                          "--etcd_server_name=etcd.example.com", "--node=a"));
  for (const char* service : {"supervisor", "log_store", "gateway"}) {
    for (const std::string& arg : ServiceArgs(options, service)) {
      EXPECT_THAT(arg, Not(HasSubstr("--etcd_"))) << service;
    }
  }
  // No server name given: the registry's default, not a second copy of it.
  options.cluster->etcd_server_name.clear();
  for (const std::string& arg : ServiceArgs(options, "registry")) {
    EXPECT_THAT(arg, Not(HasSubstr("--etcd_server_name"))) << arg;
  }
}

TEST(GatewayAddressTest, AWildcardHostIsThisHostsNameAndPortZeroIsNone) {
  EXPECT_EQ(GatewayAddress("0.0.0.0:8080", "", "h1"), "h1:8080");
  EXPECT_EQ(GatewayAddress("[::]:8080", "", "h1"), "h1:8080");
  EXPECT_EQ(GatewayAddress(":8080", "", "h1"), "h1:8080");
  EXPECT_EQ(GatewayAddress("10.0.0.5:8443", "", "h1"), "10.0.0.5:8443");
  EXPECT_EQ(GatewayAddress("127.0.0.1:0", "", "h1"), "");
  EXPECT_EQ(GatewayAddress("0.0.0.0:8080", "gw.example.com:443", "h1"),
            "gw.example.com:443");
}

}  // namespace
}  // namespace pm::stack
