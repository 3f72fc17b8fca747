// Test helpers shared by the registry's tests.
#ifndef PM_REGISTRY_TEST_UTIL_H_
#define PM_REGISTRY_TEST_UTIL_H_

#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "registry/registry.h"

namespace pm::registry {

// The id of the record `request` creates, failing the test (and returning
// "") if the registry refuses it.
inline std::string MustCreate(
    Registry& registry, const pm::internal::v1::CreateRecordRequest& request) {
  absl::StatusOr<pm::v1::ProcessStatus> status = registry.CreateRecord(request);
  EXPECT_TRUE(status.ok()) << status.status();
  return status.ok() ? status->id() : "";
}

// The ids List answers, in its order (newest first).
inline std::vector<std::string> ListedIds(const Registry& registry) {
  std::vector<std::string> ids;
  const pm::v1::ListResponse list = registry.List();
  for (const pm::v1::ProcessStatus& status : list.processes()) {
    ids.push_back(status.id());
  }
  return ids;
}

}  // namespace pm::registry

#endif  // PM_REGISTRY_TEST_UTIL_H_
