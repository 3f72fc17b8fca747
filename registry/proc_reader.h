// The live /proc view of a process the registry has on record: its
// /proc/PID/status fields, resident set size and thread count.
//
//   PM_ASSIGN_OR_RETURN(uint64_t ticks, pm::registry::ReadStartTicks("/proc", pid));
//   ...
//   absl::StatusOr<pm::registry::LiveView> view =
//       pm::registry::ReadLiveView("/proc", pid, ticks);
//   if (view.ok()) use(view->proc_status.at("Name"), view->rss_bytes);
//
// A pid alone does not name a process: once the process is reaped the kernel
// may hand the pid to another one. The pair (pid, start ticks), where start
// ticks is field 22 of /proc/PID/stat, does, so every read here is checked
// against the start ticks the supervisor recorded, and a pid that now belongs
// to someone else is reported as NOT_FOUND, never read as ours.
#ifndef PM_REGISTRY_PROC_READER_H_
#define PM_REGISTRY_PROC_READER_H_

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace pm::registry {

// Parses the text of /proc/PID/status: one "Key:<whitespace>value" per line.
// Values have surrounding whitespace trimmed ("VmRSS:\t  1234 kB" gives
// "1234 kB"); lines without ':' are skipped. Never fails.
std::map<std::string, std::string> ParseProcStatus(absl::string_view text);

// The start ticks of `pid`, read from <proc_root>/<pid>/stat. NOT_FOUND when
// there is no such process; other errors name the file and the OS reason.
absl::StatusOr<uint64_t> ReadStartTicks(absl::string_view proc_root,
                                        pid_t pid);

struct LiveView {
  // Every field of /proc/PID/status, values trimmed.
  std::map<std::string, std::string> proc_status;
  // VmRSS in bytes; 0 when the kernel reports none (a zombie).
  uint64_t rss_bytes = 0;
  // "Threads"; 0 if absent.
  int32_t threads = 0;
};

// Reads the live view of the process (`pid`, `start_ticks`) from
// <proc_root>/<pid>/. NOT_FOUND when the process is gone or the pid now
// belongs to another process (its start ticks differ), including when that
// happens while reading; other errors name the file and the OS reason.
absl::StatusOr<LiveView> ReadLiveView(absl::string_view proc_root, pid_t pid,
                                      uint64_t start_ticks);

}  // namespace pm::registry

#endif  // PM_REGISTRY_PROC_READER_H_
