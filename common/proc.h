// Reading /proc/PID/stat safely.
//
//   PM_ASSIGN_OR_RETURN(ProcStat stat, pm::ReadProcStat(pid));
//   PM_ASSIGN_OR_RETURN(std::vector<ProcStat> kids, pm::ChildrenOf(getpid()));
//
// A pid alone can be reused; (pid, start ticks) names one process for the
// life of the boot, so pm records both and reads /proc only when they match.
#ifndef PM_COMMON_PROC_H_
#define PM_COMMON_PROC_H_

#include <stdint.h>
#include <sys/types.h>

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace pm {

// The fields of a /proc/PID/stat line that pm uses.
struct ProcStat {
  pid_t pid = 0;
  // The command name, without the surrounding parentheses.
  std::string comm;
  char state = '?';          // 'R', 'S', 'Z', ...
  int64_t ppid = 0;
  int64_t pgrp = 0;
  uint64_t start_ticks = 0;  // field 22, clock ticks after boot
};

// Parses a /proc/PID/stat line. The comm field is in parentheses and may hold
// anything a process calls itself (spaces, ") (", digits), so fields are
// counted from the last ')'. INVALID_ARGUMENT ("malformed /proc/PID/stat
// line") when the line is malformed.
absl::StatusOr<ProcStat> ParseProcStat(absl::string_view line);

// Reads and parses /proc/<pid>/stat. NOT_FOUND (ENOENT/ESRCH) when the
// process is gone.
absl::StatusOr<ProcStat> ReadProcStat(pid_t pid);

// The processes whose parent is `parent` now, from every /proc/PID/stat (a
// process that ends during the scan is skipped). Errors name opendir and
// the OS reason.
absl::StatusOr<std::vector<ProcStat>> ChildrenOf(pid_t parent);

}  // namespace pm

#endif  // PM_COMMON_PROC_H_
