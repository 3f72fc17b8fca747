// Test helpers for code that reads /proc.
#ifndef PM_COMMON_PROC_TEST_UTIL_H_
#define PM_COMMON_PROC_TEST_UTIL_H_

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/fd.h"

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

// The resident set size of `pid` (VmRSS of /proc/PID/status) in KiB, or -1
// when it cannot be read.
inline int64_t ResidentKib(pid_t pid) {
  absl::StatusOr<std::string> status = ReadFile(absl::StrCat("/proc/", pid, "/status"));
  if (!status.ok()) return -1;
  for (absl::string_view line : absl::StrSplit(*status, '\n')) {
    if (!absl::ConsumePrefix(&line, "VmRSS:")) continue;
    int64_t kib = -1;
    if (!absl::SimpleAtoi(absl::StripSuffix(absl::StripAsciiWhitespace(line), " kB"),
                          &kib)) {
      return -1;
    }
    return kib;
  }
  return -1;
}

}  // namespace pm

#endif  // PM_COMMON_PROC_TEST_UTIL_H_
