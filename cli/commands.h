// The pm commands, written against the pm::Client interface: the local
// Library, the gateway's remote client or a fake in tests, with no change
// here.
//
//   Context context{&std::cout, &std::cerr, absl::LocalTimeZone(),
//                   &interrupts};
//   return RunCli({"logs", "-f", id}, defaults, environment, context, Connect);
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
  // HOST:PORT when the commands go through a gateway (RunCli sets it), for
  // errors' hints; empty for the local services.
  std::string gateway = "";
  // Where RunCli leaves the client once the command is done, rather than
  // destroying it: a caller that then ends the process at once (main, with
  // _exit) spares the channel's teardown and the join of gRPC's threads.
  // Null: the client goes with RunCli.
  std::unique_ptr<pm::Client>* keep_client = nullptr;
};

// Makes the client for a connection; called only once a command needs one
// (help and usage errors do not).
using Connector = std::function<absl::StatusOr<std::unique_ptr<pm::Client>>(
    const Connection& connection)>;

// The Library's client: pm::Client::ConnectRemote for a gateway, else
// ConnectLocal on the runtime dir. Their errors (e.g. NOT_FOUND for a
// certificate file that is not there).
absl::StatusOr<std::unique_ptr<pm::Client>> Connect(
    const Connection& connection);

// The whole of `pm` after the global flags: parses `args` (the command word
// and its arguments), prints help or the usage, or connects and runs the
// command. Returns the process exit code.
int RunCli(const std::vector<std::string>& args, const GlobalOptions& defaults,
           const Environment& environment, const Context& context,
           const Connector& connect);

// Runs one parsed command (not kHelp) and returns the exit code.
int Execute(const Invocation& invocation, pm::Client& client,
            const Context& context);

// "pm: <what>: <why>" on one line. An UNAVAILABLE service gets a hint that
// the stack may not be up; through a gateway (`gateway` is its HOST:PORT),
// UNAVAILABLE gets hints on reaching it, and a refused login its code
// ("PERMISSION_DENIED: wrong user name or password") and what to check.
std::string ErrorLine(absl::string_view what, const absl::Status& status,
                      absl::string_view gateway = "");

}  // namespace pm::cli

#endif  // PM_CLI_COMMANDS_H_
