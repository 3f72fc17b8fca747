// A process's cgroup directories (CgroupDirs) as the registry keeps them
// (pm.internal.v1.CgroupPaths), and back: the supervisor records them at
// Start and re-adopts the cgroup from them after a restart.
//
//   create.mutable_cgroup()->CopyFrom(CgroupPathsOf(cgroup->dirs()));
//   CgroupDirs dirs = CgroupDirsOf(record.cgroup());
#ifndef PM_COMMON_CGROUP_PATHS_H_
#define PM_COMMON_CGROUP_PATHS_H_

#include "common/cgroup_usage.h"
#include "pm/internal/v1/internal.pb.h"

namespace pm {

pm::internal::v1::CgroupPaths CgroupPathsOf(const CgroupDirs& dirs);
CgroupDirs CgroupDirsOf(const pm::internal::v1::CgroupPaths& paths);

}  // namespace pm

#endif  // PM_COMMON_CGROUP_PATHS_H_
