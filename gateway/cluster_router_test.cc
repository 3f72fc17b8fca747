// Where a Start goes in a cluster (PlaceStart): the host it names, else the
// least busy host that can be reached.
#include "gateway/cluster_router.h"

#include <initializer_list>
#include <string>
#include <tuple>

#include "common/status_core.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace pm::gateway {
namespace {

using ::pm::internal::v1::ClusterNode;
using ::pm::internal::v1::ListNodesResponse;
using ::testing::HasSubstr;

// ListNodes's answer for this host "a" (listed first, as ListNodes does)
// and the others: name, live processes, whether a gateway is published.
ListNodesResponse Nodes(std::initializer_list<std::tuple<const char*, int, bool>> nodes) {
  ListNodesResponse response;
  response.set_self("a");
  for (const auto& [name, live, gateway] : nodes) {
    ClusterNode* node = response.add_nodes();
    node->set_node(name);
    node->set_live(live);
    if (gateway) node->set_gateway(std::string(name) + ".example:8080");
  }
  return response;
}

TEST(PlaceStartTest, TheNamedHostIfItIsUpElseAnErrorListingTheHostsThatAre) {
  const ListNodesResponse nodes = Nodes({{"a", 5, true}, {"b", 0, true}});
  EXPECT_EQ(PlaceStart(nodes, "a")->node(), "a");
  absl::StatusOr<ClusterNode> missing = PlaceStart(nodes, "c");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(missing.status().message(), HasSubstr("host \"c\" is not up"));
  EXPECT_THAT(missing.status().message(), HasSubstr("a, b"));
  EXPECT_EQ(PlaceStart(ListNodesResponse(), "").status().code(),
            absl::StatusCode::kUnavailable);
}

// A single host's supervisor refuses such a node alike (supervisor/spawn.cc).
TEST(PlaceStartTest, ANodeNoHostCanHaveIsInvalidNotDown) {
  absl::StatusOr<ClusterNode> invalid =
      PlaceStart(Nodes({{"a", 0, true}, {"b", 0, true}}), "B!\n");
  EXPECT_EQ(invalid.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(invalid.status().message(), HasSubstr("node \"B!\\n\""));
  EXPECT_THAT(invalid.status().message(), ::testing::Not(HasSubstr("is not up")));
}

TEST(PlaceStartTest, AnotherHostNamedWhileEtcdIsOutOfReachIsUnavailableNamingEtcd) {
  ListNodesResponse nodes = Nodes({{"a", 1, true}});
  nodes.set_etcd_unreachable("etcd at 10.0.0.1:2379 unreachable since 2030-01-01T00:00:00Z");
  absl::StatusOr<ClusterNode> elsewhere = PlaceStart(nodes, "b");
  EXPECT_EQ(elsewhere.status().code(), absl::StatusCode::kUnavailable);
  // Marked so that the gateway tells a remote caller as it is.
  EXPECT_TRUE(IsClusterUnavailableMessage(elsewhere.status().message()))
      << elsewhere.status();
  EXPECT_THAT(elsewhere.status().message(),
              HasSubstr("host \"b\" cannot be reached from host a: whether it is up is "
                        "not known while etcd at 10.0.0.1:2379 unreachable"));
  // This host itself, named or not, still takes it.
  EXPECT_EQ(PlaceStart(nodes, "a")->node(), "a");
  EXPECT_EQ(PlaceStart(nodes, "")->node(), "a");
}

TEST(PlaceStartTest, TheLeastBusyHostThisOneAmongEqualsThenByName) {
  EXPECT_EQ(PlaceStart(Nodes({{"a", 2, true}, {"c", 1, true}, {"b", 1, true}}), "")->node(),
            "b");
  EXPECT_EQ(PlaceStart(Nodes({{"a", 1, true}, {"b", 1, true}}), "")->node(), "a");
  EXPECT_EQ(PlaceStart(Nodes({{"a", 3, true}, {"b", 0, true}}), "")->node(), "b");
}

TEST(PlaceStartTest, AnotherHostWithoutAGatewayAddressIsNeverChosen) {
  EXPECT_EQ(PlaceStart(Nodes({{"a", 3, false}, {"b", 0, false}}), "")->node(), "a");
  EXPECT_EQ(PlaceStart(Nodes({{"a", 3, false}, {"b", 0, false}, {"c", 1, true}}), "")->node(),
            "c");
}

}  // namespace
}  // namespace pm::gateway
