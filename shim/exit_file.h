// The exit file: how a managed process ended, written by its shim next to
// its output (`<state_dir>/procs/<uuid>/exit`) once the leader is reaped,
// so the end survives every pm service and the shim itself.
//
//   ProcessEnd end{ExitStatus::Exited(3), absl::Now(), writer.end_offset()};
//   PM_RETURN_IF_ERROR(WriteExitFile(proc_dir, end));   // atomic
//   PM_ASSIGN_OR_RETURN(std::optional<ProcessEnd> got, ReadExitFile(proc_dir));
//
// The format, version 1: four lines of ASCII, each ending in '\n', nothing
// else:
//   pm-shim-exit 1
//   status exited CODE                 (CODE 0..255)
//        | status signaled SIGNAL core|nocore   (SIGNAL 1..64)
//   ended_ns NANOSECONDS               (realtime, since the Unix epoch, >= 0)
//   output_end OFFSET                  (the output's end offset at the exit)
// Version 2, of a process with a restart policy: "pm-shim-exit 2", the same
// three lines, then
//   run N                              (the last run, N >= 1)
//   gave_up 0|1                        (1: the restarts' cap ended it)
// Numbers are decimal without sign or leading zeros. The parser accepts
// exactly these; anything else (another version, a torn file, trailing
// bytes) is INVALID_ARGUMENT naming the line.
#ifndef PM_SHIM_EXIT_FILE_H_
#define PM_SHIM_EXIT_FILE_H_

#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "common/exit_status.h"

namespace pm::shim {

inline constexpr char kExitFileName[] = "exit";

// How and when the leader ended, and how much output there was by then.
struct ProcessEnd {
  ExitStatus status;
  absl::Time ended;
  uint64_t output_end = 0;
  bool operator==(const ProcessEnd& o) const {
    return status == o.status && ended == o.ended && output_end == o.output_end;
  }
};

// What the exit file says: the end, and with a restart policy (version 2)
// the last run and whether the restarts' cap ended it.
struct ExitRecord {
  ProcessEnd end;
  std::optional<uint32_t> run;
  bool gave_up = false;  // only with `run`
  bool operator==(const ExitRecord& o) const {
    return end == o.end && run == o.run && gave_up == o.gave_up;
  }
};

std::string FormatExitFile(const ExitRecord& record);
absl::StatusOr<ExitRecord> ParseExitFile(absl::string_view text);

// Writes `dir`/exit atomically: a temporary file in `dir`, fsync, rename
// over `exit`, fsync of `dir`. A reader sees no file or the whole one.
// Errors name the call and the path.
absl::Status WriteExitFile(const std::string& dir, const ExitRecord& record);

// `dir`/exit parsed; nullopt when there is none (the process has not ended,
// or its shim died first). Errors: the read's, or ParseExitFile's.
absl::StatusOr<std::optional<ExitRecord>> ReadExitFile(const std::string& dir);

}  // namespace pm::shim

#endif  // PM_SHIM_EXIT_FILE_H_
