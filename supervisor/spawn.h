// Spawning a managed process from its StartRequest: a thin layer over
// SpawnCommand (spawn_command.h), which has the mechanism and no protos.
//
//   pm::v1::StartRequest request = ...;
//   PM_RETURN_IF_ERROR(ValidateStartRequest(request));      // INVALID_ARGUMENT
//   PM_ASSIGN_OR_RETURN(SpawnedChild child, Spawn(request));  // exec done
//   // child.pidfd, child.stdout_read, child.stderr_read (non-blocking)
#ifndef PM_SUPERVISOR_SPAWN_H_
#define PM_SUPERVISOR_SPAWN_H_

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/command_line.h"
#include "supervisor/spawn_command.h"
#include "pm/v1/process_manager.pb.h"

namespace pm::supervisor {

// Caps on the size of a command (supervisor --max_args,
// --max_command_bytes). Every record keeps its command for as long as it is
// kept (10,000 ended ones by default), so one absurd command (100,000
// arguments) must not cost the registry megabytes per record, nor every List
// a copy of them. Linux itself allows up to a quarter of the stack limit
// (2 MiB by default) and 128 KiB per string.
struct CommandCaps {
  size_t max_args = 4096;
  // The executable, arguments, environment entries ("NAME=VALUE") and
  // working dir, each counted with a terminating NUL.
  size_t max_bytes = 256 << 10;
};

// INVALID_ARGUMENT for a command CommandLineOf refuses (an empty
// executable, both forms of a field, a NUL byte in any string or bytes, an
// env name that is empty, contains '=' or is given twice), a command over
// `caps` (naming the cap's flag), a limit out of range (cpus not in [0.01,
// 100000], io_weight above 10000), an unknown isolation value, or a name,
// labels or node that break common/names.h's rules; the message names the
// field. (Whether the node is this host's is the Supervisor's to say.)
absl::Status ValidateStartRequest(const pm::v1::StartRequest& request,
                                  const CommandCaps& caps = CommandCaps());

// The namespaces `request.isolate()` asks for (validated beforehand).
SpawnIsolation IsolationOf(const pm::v1::StartRequest& request);

// Starts `request` (validated beforehand) as the leader of a new session
// and process group, stdin /dev/null, stdout and stderr on pipes, in the
// cgroups of `options` and the namespaces of `request.isolate()`. Its
// argv, environment, working directory and PATH lookup are bytes, from
// each field's string or bytes form (CommandLineOf):
//   ISOLATION_PID    CLONE_NEWPID (+ CLONE_NEWNS): a fresh /proc is mounted
//                    over /proc, so the process sees itself as PID 1 there
//   ISOLATION_NET    CLONE_NEWNET: `lo` is brought up, nothing else exists
//   ISOLATION_MOUNT  CLONE_NEWNS: "/" is made recursively private first, so
//                    no mount made inside propagates out
// Returns once the new program runs. Errors: those of SpawnCommand.
absl::StatusOr<SpawnedChild> Spawn(const pm::v1::StartRequest& request,
                                   const SpawnOptions& options = {});

}  // namespace pm::supervisor

#endif  // PM_SUPERVISOR_SPAWN_H_
