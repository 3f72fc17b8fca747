#include "common/proc.h"

#include <dirent.h>
#include <fcntl.h>
#include <unistd.h>

#include <memory>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/fd.h"
#include "common/status_core.h"

namespace pm {

namespace {

absl::Status Malformed(absl::string_view line, absl::string_view why) {
  return absl::InvalidArgumentError(absl::StrCat(
      "malformed /proc/PID/stat line (", why, "): ", line.substr(0, 80)));
}

}  // namespace

absl::StatusOr<ProcStat> ParseProcStat(absl::string_view line) {
  const size_t open = line.find('(');
  const size_t close = line.rfind(')');
  if (open == absl::string_view::npos || close == absl::string_view::npos ||
      close < open) {
    return Malformed(line, "no (comm)");
  }
  ProcStat stat;
  if (!absl::SimpleAtoi(line.substr(0, open), &stat.pid) || stat.pid <= 0) {
    return Malformed(line, "bad pid");
  }
  stat.comm = std::string(line.substr(open + 1, close - open - 1));
  // fields[0] is field 3 (state), so field N is fields[N - 3].
  std::vector<absl::string_view> fields = absl::StrSplit(
      line.substr(close + 1), absl::ByAnyChar(" \n"), absl::SkipEmpty());
  if (fields.size() < 20) return Malformed(line, "fewer than 22 fields");
  if (fields[0].size() != 1) return Malformed(line, "bad state");
  stat.state = fields[0][0];
  if (!absl::SimpleAtoi(fields[1], &stat.ppid) ||
      !absl::SimpleAtoi(fields[2], &stat.pgrp)) {
    return Malformed(line, "bad ppid or pgrp");
  }
  if (!absl::SimpleAtoi(fields[19], &stat.start_ticks)) {
    return Malformed(line, "bad starttime");
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

absl::StatusOr<std::vector<ProcStat>> ChildrenOf(pid_t parent) {
  std::unique_ptr<DIR, int (*)(DIR*)> proc(opendir("/proc"), closedir);
  if (!proc) return ErrnoError("opendir", "/proc");
  std::vector<ProcStat> children;
  while (const dirent* entry = readdir(proc.get())) {
    pid_t pid = 0;
    if (!absl::SimpleAtoi(entry->d_name, &pid)) continue;
    absl::StatusOr<ProcStat> stat = ReadProcStat(pid);
    if (stat.ok() && stat->ppid == parent) children.push_back(*std::move(stat));
  }
  return children;
}

}  // namespace pm
