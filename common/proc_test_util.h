// Test helpers for code that reads /proc.
#ifndef PM_COMMON_PROC_TEST_UTIL_H_
#define PM_COMMON_PROC_TEST_UTIL_H_

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace pm {

// A /proc/PID/stat line: pid, (comm), state, then fields 4..52 with field 22
// (starttime) set to `start_ticks`.
inline std::string StatLine(pid_t pid, const std::string& comm, uint64_t start_ticks) {
  std::vector<std::string> fields = {absl::StrCat(pid),
                                     absl::StrCat("(", comm, ")"), "S"};
  for (int field = 4; field <= 52; ++field) {
    fields.push_back(field == 22 ? absl::StrCat(start_ticks)
                                 : absl::StrCat(field * 10));
  }
  return absl::StrCat(absl::StrJoin(fields, " "), "\n");
}

}  // namespace pm

#endif  // PM_COMMON_PROC_TEST_UTIL_H_
