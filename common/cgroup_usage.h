// Reading a process tree's resource usage from its cgroup, on cgroup v2, v1
// or both (a hybrid host), from whichever files the host has.
//
//   pm::CgroupDirs dirs;
//   dirs.unified = "/sys/fs/cgroup/pm/4242.1";          // cgroup2
//   dirs.v1["memory"] = "/sys/fs/cgroup/memory/pm/4242.1";  // v1 controllers
//   pm::v1::ResourceUsage usage = pm::ReadCgroupUsage(dirs);
//   if (usage.has_oom_kills() && usage.oom_kills() > 0) ...
//
// Shared by the supervisor (the final usage, read just before the cgroup is
// removed) and the registry (live usage for GetStatus). Every field comes
// from the first source that has it: the cgroup2 file when the controller is
// enabled there, else the v1 one. A file that is missing (a controller this
// host does not have, a kernel too old for memory.peak) leaves its field
// unset; reading never fails, so a cgroup removed mid-read just gives less.
#ifndef PM_COMMON_CGROUP_USAGE_H_
#define PM_COMMON_CGROUP_USAGE_H_

#include <cstdint>
#include <map>
#include <optional>
#include <string>

#include "absl/strings/string_view.h"
#include "pm/v1/process_manager.pb.h"

namespace pm {

// The directories of one cgroup, one per hierarchy.
struct CgroupDirs {
  // The cgroup2 directory; empty when there is none.
  std::string unified;
  // cgroup v1 directories by controller name ("memory", "cpu", "cpuacct",
  // "pids", "blkio", "freezer"); co-mounted controllers share a directory.
  std::map<std::string, std::string> v1;

  bool empty() const { return unified.empty() && v1.empty(); }
  // The v1 directory of `controller`, or "" when there is none.
  std::string V1(const std::string& controller) const;
};

// Parses a flat-keyed cgroup file ("key value" per line: cpu.stat,
// memory.events, memory.oom_control, cgroup.events, pids.events). Lines
// whose value is not an unsigned number are skipped.
std::map<std::string, uint64_t> ParseKeyedCounters(absl::string_view text);

// The whole of `dir`/`name` (one read loop to EOF), or nullopt when it
// cannot be read for any reason.
std::optional<std::string> ReadCgroupFile(const std::string& dir,
                                          absl::string_view name);
// A file holding one unsigned number ("max" and junk give nullopt).
std::optional<uint64_t> ReadCgroupNumber(const std::string& dir,
                                         absl::string_view name);

// The usage of the tree in `dirs` now (see ResourceUsage for the fields).
pm::v1::ResourceUsage ReadCgroupUsage(const CgroupDirs& dirs);

}  // namespace pm

#endif  // PM_COMMON_CGROUP_USAGE_H_
