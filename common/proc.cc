#include "common/proc.h"

#include <fcntl.h>
#include <unistd.h>

#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/fd.h"
#include "common/status.h"

namespace pm {

absl::StatusOr<ProcStat> ParseProcStat(absl::string_view line) {
  const size_t close = line.rfind(')');
  if (close == absl::string_view::npos || close + 2 > line.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("malformed /proc stat line: ", line.substr(0, 80)));
  }
  // After ") ": field 3 (state) onwards.
  std::vector<absl::string_view> fields =
      absl::StrSplit(line.substr(close + 2), ' ', absl::SkipEmpty());
  // fields[0] is field 3, so field N is fields[N - 3].
  if (fields.size() < 20 || fields[0].size() != 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("malformed /proc stat line: ", line.substr(0, 80)));
  }
  ProcStat stat;
  stat.state = fields[0][0];
  if (!absl::SimpleAtoi(fields[1], &stat.ppid) ||
      !absl::SimpleAtoi(fields[2], &stat.pgrp) ||
      !absl::SimpleAtoi(fields[19], &stat.start_ticks)) {
    return absl::InvalidArgumentError(
        absl::StrCat("malformed /proc stat line: ", line.substr(0, 80)));
  }
  return stat;
}

absl::StatusOr<ProcStat> ReadProcStat(pid_t pid) {
  const std::string path = absl::StrCat("/proc/", pid, "/stat");
  PM_ASSIGN_OR_RETURN(Fd fd, Fd::Open(path, O_RDONLY));
  char buf[1024];
  ssize_t n = read(fd.get(), buf, sizeof(buf) - 1);
  if (n < 0) {
    if (errno == ESRCH) return absl::NotFoundError(path + ": process gone");
    return ErrnoError("read", path);
  }
  return ParseProcStat(absl::string_view(buf, static_cast<size_t>(n)));
}

}  // namespace pm
