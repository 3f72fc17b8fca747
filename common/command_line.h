// A process's command as the kernel takes it (bytes), from a StartRequest
// whose fields come as strings or as bytes, and its echo in a ProcessStatus.
//
//   pm::PutCommandLine({"printf", {"%s", "caf\xe9"}}, request);  // a client
//   PM_ASSIGN_OR_RETURN(pm::CommandLine command, pm::CommandLineOf(request));
//   // command.executable, .args, .env, .working_dir: bytes, any encoding
//   pm::v1::ProcessStatus status;
//   pm::EchoCommandLine(command, status);  // UTF-8 into string fields,
//                                          // the rest into *_bytes
//   std::string shown = pm::ExecutableOf(status);  // whichever form is set
//
// A proto3 `string` must be UTF-8 and Linux arguments, environment entries
// and paths are bytes, so pm's protos carry each of these both ways (see
// StartRequest and ProcessStatus in process_manager.proto). Everything that
// runs, records or shows a command goes through here, so the rule of which
// form is used is written once.
#ifndef PM_COMMON_COMMAND_LINE_H_
#define PM_COMMON_COMMAND_LINE_H_

#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/command_line_core.h"
#include "pm/v1/process_manager.pb.h"

namespace pm {

// The command of `request`, each field from its string or its bytes form.
// INVALID_ARGUMENT naming the field(s): the string and the bytes form of
// executable, args or working_dir both set; an empty executable; a NUL byte
// anywhere; an env name that is empty or contains '='; a name given twice
// (in env and env_bytes, or twice in env_bytes). Names in messages have
// their bytes that are not UTF-8 escaped (\xNN); values are never quoted.
absl::StatusOr<CommandLine> CommandLineOf(const pm::v1::StartRequest& request);

// The inverse, for a client holding bytes (a command line's argv): sets
// the executable, args, env and working_dir of `request` from `command`,
// each in its string form when valid UTF-8, else in its bytes form (all
// args in args_bytes when any of them is not UTF-8; an env entry in
// env_bytes when its name or its value is not), the other form cleared.
void PutCommandLine(const CommandLine& command, pm::v1::StartRequest& request);

// Sets the executable, args and working_dir of `status` from `command`:
// each in its string field when valid UTF-8, else in its bytes field (args
// all in args_bytes when any of them is not UTF-8), the other form cleared.
// The env is not echoed (it may hold secrets).
void EchoCommandLine(const CommandLine& command, pm::v1::ProcessStatus& status);
// The same rule for resolved_executable.
void EchoResolvedExecutable(absl::string_view path,
                            pm::v1::ProcessStatus& status);

// Reading back a status, whichever form the value is in (the bytes form
// when set, else the string form).
std::string ExecutableOf(const pm::v1::ProcessStatus& status);
std::vector<std::string> ArgsOf(const pm::v1::ProcessStatus& status);
std::string WorkingDirOf(const pm::v1::ProcessStatus& status);
std::string ResolvedExecutableOf(const pm::v1::ProcessStatus& status);
// And a request's executable (for messages about it).
std::string ExecutableOf(const pm::v1::StartRequest& request);

}  // namespace pm

#endif  // PM_COMMON_COMMAND_LINE_H_
