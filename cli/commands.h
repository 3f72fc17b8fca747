// The pm commands, written against the pm::Client interface: the local
// Library today, any other implementation (a fake in tests, a remote
// gateway client) with no change here.
//
//   Context context{&std::cout, &std::cerr, absl::LocalTimeZone(),
//                   &interrupts};
//   return RunCli({"logs", "-f", id}, defaults, environment, context,
//                 [](const std::string& dir) {
//                   return pm::Client::ConnectLocal(dir);
//                 });
//
// Every failure is one line on stderr, "pm: <what failed>: <why>", and an
// exit code from invocation.h: kExitFailed for a failed operation,
// kExitUsage (with the usage) for a bad command line.
#ifndef PM_CLI_COMMANDS_H_
#define PM_CLI_COMMANDS_H_

#include <functional>
#include <memory>
#include <ostream>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "cli/interrupts.h"
#include "cli/invocation.h"
#include "client/client.h"

namespace pm::cli {

// Where a command writes, how it shows times, and how Ctrl+C reaches it.
struct Context {
  std::ostream* out;
  std::ostream* err;
  absl::TimeZone time_zone;
  Interrupts* interrupts;
};

// Makes the client for a runtime dir; called only once a command needs one
// (help and usage errors do not).
using Connector = std::function<absl::StatusOr<std::unique_ptr<pm::Client>>(
    const std::string& runtime_dir)>;

// The whole of `pm` after the global flags: parses `args` (the command word
// and its arguments), prints help or the usage, or connects and runs the
// command. Returns the process exit code.
int RunCli(const std::vector<std::string>& args, const GlobalOptions& defaults,
           const Environment& environment, const Context& context,
           const Connector& connect);

// Runs one parsed command (not kHelp) and returns the exit code.
int Execute(const Invocation& invocation, pm::Client& client,
            const Context& context);

// "pm: <what>: <why>" on one line; an UNAVAILABLE service gets a hint that
// the stack may not be up.
std::string ErrorLine(absl::string_view what, const absl::Status& status);

}  // namespace pm::cli

#endif  // PM_CLI_COMMANDS_H_
