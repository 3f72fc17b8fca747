// How the pm CLI shows processes to people and to scripts: the state words,
// the `pm status` block, the `pm list` table, the one-line final state and
// the shell exit code of an ended process, and protobuf's JSON mapping for
// --output=json.
//
//   std::cout << FormatStatusBlock(status, absl::LocalTimeZone());
//   std::cout << DescribeEnd(status) << "\n";   // "exited with code 3"
//   return ShellExitCode(status);               // 3; 137 for SIGKILL
#ifndef PM_CLI_FORMAT_H_
#define PM_CLI_FORMAT_H_

#include <google/protobuf/message.h>

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "pm/v1/process_manager.pb.h"

namespace pm::cli {

// "running", "stopping", "exited", "signaled", "lost", "backoff",
// "unknown" (STATE_UNKNOWN: its host is unreachable), "unspecified"; "state
// N" for a number this pm does not know.
std::string StateName(pm::v1::ProcessStatus::State state);

// Whether the process has ended (exited, signaled or lost).
bool HasEnded(const pm::v1::ProcessStatus& status);

// The final state in words: "exited with code 3", "killed by signal 9
// (SIGKILL) (core dumped)", "lost: how it ended is unknown"; "running
// (pid 42)" or "stopping (pid 42)" while it has not ended; "unknown: host b
// unreachable since ... (last known: running, pid 42)" while its host is
// unreachable.
std::string DescribeEnd(const pm::v1::ProcessStatus& status);

// How it came to end: "ended by itself", "ended after the SIGTERM of a
// stop", "killed: the stop's grace period ran out"; "" when unknown.
std::string DescribeTermination(pm::v1::ProcessStatus::Termination termination);

// The conventional shell exit code of an ended process: its exit code, or
// 128 + the signal, or kShellCodeLost when its end is unknown (LOST). 1 for
// a process that has not ended.
int ShellExitCode(const pm::v1::ProcessStatus& status);
// Not 0 (it may have failed) nor a code it could have exited with by
// itself in the usual conventions (126, 127 and 128 + n are the shell's).
inline constexpr int kShellCodeLost = 125;

// A word as a POSIX shell would need it typed: as is when it is plain,
// else in single quotes, or $'...' when it holds control characters or
// bytes that are not UTF-8 (each as \xNN: "caf\xe9" in Latin-1 is
// $'caf\xe9').
std::string ShellQuote(absl::string_view word);

// `text` fit for one line of a message: what is not UTF-8 and control
// characters (a newline a user typed into an id) as \xNN, so nothing
// typed can break the line or reach the terminal as a control.
std::string OneLine(absl::string_view text);

// A path to show on a line of its own: as is when it is UTF-8 without
// control characters, else $'...' quoted as ShellQuote does.
std::string PrintablePath(absl::string_view path);

// The executable and its arguments (their string or bytes forms, whichever
// is set), shell-quoted, space-separated.
std::string FormatCommand(const pm::v1::ProcessStatus& status);

// "512 B", "1.5 KiB", "12.0 MiB".
std::string FormatBytes(uint64_t bytes);

// A size as given, without rounding: in the largest binary unit that
// divides it ("256 MiB", "1536 KiB"), else in bytes ("1000000 B").
std::string FormatExactBytes(uint64_t bytes);

// "pid", "net", "mount" (as --isolate takes them); "unknown" otherwise.
std::string IsolationName(pm::v1::Isolation isolation);

// The limits on one line: "memory 256 MiB, cpus 0.5, pids 64, io weight
// 200"; "" when there are none.
std::string FormatLimits(const pm::v1::Limits& limits);

// What the OOM killer did to the process's tree, or "" when it did nothing:
// "killed by the OOM killer (memory limit 32 MiB reached)" when it ended
// the process itself, "the OOM killer killed 1 process of its tree (memory
// limit 32 MiB reached)" when only descendants.
std::string DescribeOom(const pm::v1::ProcessStatus& status);

// A run time to the millisecond below 10 s, else to the second: "250ms",
// "3.5s", "1h2m3s".
std::string FormatRunTime(absl::Duration duration);

// The `pm status` block: one "field: value" line each (the node in a
// cluster, state, and for STATE_UNKNOWN why and the last known state, an
// OOM line when the OOM killer struck, pid, command, started, run time, the
// end and
// how it came, limits, namespaces, cgroup, rss, threads, ...), then the
// resource usage of the whole tree, then the /proc status fields sorted by
// name. Sizes and times in human units; times of day in `zone`.
std::string FormatStatusBlock(const pm::v1::ProcessStatus& status,
                              absl::TimeZone zone);

// The `pm list` table: a header, then one aligned row per process (UUID,
// NAME, STATE, PID, EXIT, STARTED, COMMAND) in the order given. EXIT says
// "SIGKILL (OOM)" for a process the OOM killer ended. A NODE column follows
// NAME when any process has a node (a cluster's), so a single host's table
// is unchanged.
std::string FormatTable(const pm::v1::ListResponse& list, absl::TimeZone zone);

// Rows of cells as columns padded to the widest cell, two spaces apart; the
// last column is not padded. Each row ends with a newline.
std::string AlignColumns(const std::vector<std::vector<std::string>>& rows);

// `message` in protobuf's JSON mapping (lowerCamelCase names, every field
// printed, defaults too) on one line, without a trailing newline. INTERNAL
// if the conversion fails.
absl::StatusOr<std::string> ToJson(const google::protobuf::Message& message);

}  // namespace pm::cli

#endif  // PM_CLI_FORMAT_H_
