#include "common/cgroup_paths.h"

namespace pm {

pm::internal::v1::CgroupPaths CgroupPathsOf(const CgroupDirs& dirs) {
  pm::internal::v1::CgroupPaths paths;
  paths.set_unified(dirs.unified);
  paths.mutable_v1()->insert(dirs.v1.begin(), dirs.v1.end());
  return paths;
}

CgroupDirs CgroupDirsOf(const pm::internal::v1::CgroupPaths& paths) {
  CgroupDirs dirs;
  dirs.unified = paths.unified();
  dirs.v1.insert(paths.v1().begin(), paths.v1().end());
  return dirs;
}

}  // namespace pm
