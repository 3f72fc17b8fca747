// What the user asked `pm` to do: the command line after the global flags,
// parsed into an Invocation, and the help texts.
//
//   GlobalOptions defaults{FLAGS_runtime_dir, FLAGS_output};
//   absl::StatusOr<Invocation> invocation =
//       ParseInvocation({"stop", "--grace=2s", id}, defaults, environment);
//   if (!invocation.ok()) {
//     std::cerr << "pm: " << invocation.status().message() << "\n"
//               << UsageText("stop");
//     return kExitUsage;
//   }
//
// Subcommands are dispatched by their first word. Each parses its own flags
// (cli/flags.h), so `--env` repeats and everything after `--` is the command
// verbatim. The global flags (--runtime_dir, --output, and --gateway with
// its --ca, --cert, --key, --user, --password_file) are accepted before the
// command (through gflags, in main.cc) and after it (here).
//
// There is no --password flag: a command line shows in `ps` and in
// /proc/PID/cmdline to every user of the machine. The gateway's password
// comes from $PM_PASSWORD or from the file --password_file names.
#ifndef PM_CLI_INVOCATION_H_
#define PM_CLI_INVOCATION_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "absl/types/optional.h"
#include "client/client.h"
#include "pm/v1/process_manager.pb.h"

namespace pm::cli {

// The exit codes of pm's own outcomes; `run` and `wait` exit with the
// process's code instead when they get that far.
inline constexpr int kExitOk = 0;
inline constexpr int kExitFailed = 1;
inline constexpr int kExitUsage = 2;
// 128 + SIGINT: ended by Ctrl+C, as a shell reports it.
inline constexpr int kExitInterrupted = 130;

enum class Command {
  kHelp, kStart, kRun, kStop, kStatus, kList, kLogs, kWait, kKill, kRm, kPrune,
  kEvents
};
enum class OutputFormat { kText, kJson };

// The environment variable that holds the gateway's password.
inline constexpr char kPasswordVariable[] = "PM_PASSWORD";

// The global flags' values given before the command (or their defaults).
struct GlobalOptions {
  std::string runtime_dir;
  std::string output = "text";
  // --gateway HOST:PORT and what reaching it takes; empty when not given.
  std::string gateway;
  std::string ca_file;
  std::string cert_file;
  std::string key_file;
  std::string user;
  std::string password_file;
};

// Where the commands go: the local services, or a gateway.
struct Connection {
  // The directory of the local services' sockets; not used with a gateway.
  std::string runtime_dir;
  // With --gateway: the Library's options for it, every file named and the
  // password (from $PM_PASSWORD) or its file set.
  absl::optional<pm::RemoteOptions> gateway;

  // What a failure to connect names: "the gateway at host:8080", or the
  // runtime dir.
  std::string Describe() const;
};

// What pm's own process environment contributes to a start.
struct Environment {
  std::vector<std::string> variables;  // "K=V", as in environ
  std::string cwd;                     // resolves a relative --cwd
};

struct Invocation {
  Command command = Command::kHelp;
  // kHelp: the command to explain; "" for the overview.
  std::string help_topic;
  Connection connection;
  OutputFormat output = OutputFormat::kText;
  // The process of stop, status, logs and wait: its id, its name or a
  // unique prefix of its id.
  std::string id;
  // rm: every process named (id, name or prefix each).
  std::vector<std::string> ids;
  // kill: the signal (a number, checked) and whether to the leader alone.
  int signal = 9;
  bool leader_only = false;
  // rm -f; run --rm (remove the record and output once it has ended).
  bool force = false;
  bool remove_after = false;
  // events: what to watch (id: a reference, resolved by the Library).
  pm::v1::WatchRequest watch;
  // list: what to list; -q (ids alone).
  pm::v1::ListRequest list;
  bool quiet = false;
  // start and run.
  pm::v1::StartRequest start;
  // stop, and the stop of run's Ctrl+C; unset: the server's default (10 s).
  absl::optional<absl::Duration> grace;
  // logs.
  bool follow = false;
  bool from_start = true;
  // --tail N, --since, --until, -t, --stdout/--stderr.
  absl::optional<uint64_t> tail_lines;
  absl::optional<absl::Time> since;
  absl::optional<absl::Time> until;
  bool timestamps = false;
  bool stdout_only = false;
  bool stderr_only = false;
  // logs and run: how long a lost output stream is tried again
  // (--reconnect-timeout; 0: not at all).
  absl::Duration reconnect_timeout = absl::Seconds(60);
};

// Parses `args`: the command word and its arguments. INVALID_ARGUMENT with
// a message fit for "pm: <message>" for an unknown command or flag, a
// missing or extra argument, a bad value, gateway flags without --gateway,
// or --gateway without what it needs (--ca, --cert, --key, --user, and a
// password in $PM_PASSWORD or --password_file).
absl::StatusOr<Invocation> ParseInvocation(const std::vector<std::string>& args,
                                           const GlobalOptions& defaults,
                                           const Environment& environment);

// argv after the program name, split at the command word.
struct SplitArgs {
  // The flags before the command, for gflags.
  std::vector<std::string> global_flags;
  // The command word and everything after it.
  std::vector<std::string> command;
};
// The command word is the first word that is neither a flag nor the value
// of a global flag given as `--runtime_dir DIR`; a `--` before it ends the
// global flags.
SplitArgs SplitAtCommand(const std::vector<std::string>& args);

// Whether `word` names a command ("ps" does: it is list's alias).
bool IsCommand(absl::string_view word);

// Whether `arg` is a --password flag ("--password=x", "-password"), which
// pm refuses: what follows explains why and what to use instead.
bool IsPasswordFlag(absl::string_view arg);
std::string NoPasswordFlagMessage();

// "usage: pm stop [--grace DURATION] [--output json] UUID" and a pointer to
// the full help; the overview's usage for an unknown command.
std::string UsageText(absl::string_view command);

// The full help of `command`, or the overview for "" (every command, the
// global flags, exit codes, examples).
std::string HelpText(absl::string_view command);

}  // namespace pm::cli

#endif  // PM_CLI_INVOCATION_H_
