#include "registry/proc_reader.h"

#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/fd.h"
#include "common/proc.h"
#include "common/status.h"

namespace pm::registry {
namespace {


// The process behind a /proc entry vanished: the kernel says ENOENT when the
// entry is gone and ESRCH when an fd into it outlives the process. Both mean
// "no such process" to a reader.
absl::Status ProcError(absl::string_view call, absl::string_view path,
                       int errnum) {
  if (errnum == ESRCH) {
    return absl::NotFoundError(
        absl::StrCat(call, "(\"", path, "\"): the process has exited"));
  }
  return ErrnoError(call, path, errnum);
}

absl::StatusOr<Fd> OpenProcDir(const std::string& path) {
  int fd = open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return ProcError("open", path, errno);
  return Fd(fd);
}

// Reads all of <dir>/<name>. /proc files have no size, so read to EOF.
absl::StatusOr<std::string> ReadAt(const Fd& dir, const std::string& dir_path,
                                   const char* name) {
  const std::string path = absl::StrCat(dir_path, "/", name);
  Fd file(openat(dir.get(), name, O_RDONLY | O_CLOEXEC));
  if (!file) return ProcError("open", path, errno);
  std::string text;
  char buffer[4096];
  while (true) {
    ssize_t n = read(file.get(), buffer, sizeof(buffer));
    if (n < 0) {
      if (errno == EINTR) continue;
      return ProcError("read", path, errno);
    }
    if (n == 0) break;
    text.append(buffer, static_cast<size_t>(n));
  }
  return text;
}

// OK if the process behind `dir` still has `start_ticks`; NOT_FOUND if the
// pid now names another process.
absl::Status CheckStartTicks(const Fd& dir, const std::string& dir_path,
                             pid_t pid, uint64_t start_ticks) {
  absl::StatusOr<std::string> line = ReadAt(dir, dir_path, "stat");
  if (!line.ok()) return line.status();
  absl::StatusOr<ProcStat> stat = ParseProcStat(*line);
  if (!stat.ok()) return stat.status();
  if (stat->start_ticks != start_ticks) {
    return absl::NotFoundError(absl::StrCat(
        "pid ", pid, " now belongs to another process (start ticks ",
        stat->start_ticks, ", want ", start_ticks, ")"));
  }
  return absl::OkStatus();
}

std::string ProcDirPath(absl::string_view proc_root, pid_t pid) {
  return absl::StrCat(proc_root, "/", pid);
}

}  // namespace

std::map<std::string, std::string> ParseProcStatus(absl::string_view text) {
  std::map<std::string, std::string> fields;
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
    const size_t colon = line.find(':');
    if (colon == absl::string_view::npos) continue;
    fields[std::string(absl::StripAsciiWhitespace(line.substr(0, colon)))] =
        std::string(absl::StripAsciiWhitespace(line.substr(colon + 1)));
  }
  return fields;
}

absl::StatusOr<uint64_t> ReadStartTicks(absl::string_view proc_root,
                                        pid_t pid) {
  const std::string dir_path = ProcDirPath(proc_root, pid);
  absl::StatusOr<Fd> dir = OpenProcDir(dir_path);
  if (!dir.ok()) return dir.status();
  absl::StatusOr<std::string> line = ReadAt(*dir, dir_path, "stat");
  if (!line.ok()) return line.status();
  absl::StatusOr<ProcStat> stat = ParseProcStat(*line);
  if (!stat.ok()) return stat.status();
  return stat->start_ticks;
}

absl::StatusOr<LiveView> ReadLiveView(absl::string_view proc_root, pid_t pid,
                                      uint64_t start_ticks) {
  const std::string dir_path = ProcDirPath(proc_root, pid);
  // Every read goes through one fd of the /proc/PID directory: the fd stays
  // bound to the process it was opened for, so once that process is gone the
  // reads fail (ESRCH) instead of reaching a newcomer that got the pid.
  PM_ASSIGN_OR_RETURN(Fd dir, OpenProcDir(dir_path));
  PM_RETURN_IF_ERROR(CheckStartTicks(dir, dir_path, pid, start_ticks));
  PM_ASSIGN_OR_RETURN(std::string status_text,
                      ReadAt(dir, dir_path, "status"));
  LiveView view;
  view.proc_status = ParseProcStatus(status_text);
  if (auto it = view.proc_status.find("VmRSS"); it != view.proc_status.end()) {
    // "1234 kB"
    uint64_t kib = 0;
    std::vector<absl::string_view> parts =
        absl::StrSplit(it->second, ' ', absl::SkipEmpty());
    if (!parts.empty() && absl::SimpleAtoi(parts[0], &kib)) {
      view.rss_bytes = kib * 1024;
    }
  }
  if (auto it = view.proc_status.find("Threads");
      it != view.proc_status.end()) {
    // A count that is not one (garbage, or negative) reads as unknown: 0.
    if (!absl::SimpleAtoi(it->second, &view.threads) || view.threads < 0) {
      view.threads = 0;
    }
  }
  // The process may have died, and its pid been reused, between the first
  // check and the status read; only a second matching check proves that the
  // status read belongs to our process.
  PM_RETURN_IF_ERROR(CheckStartTicks(dir, dir_path, pid, start_ticks));
  return view;
}

}  // namespace pm::registry
