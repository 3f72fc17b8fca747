// What the user asked `pm` to do: the whole command line (global flags,
// the command word, its flags and arguments) parsed into an Invocation.
//
//   GlobalOptions defaults{DefaultRuntimeDir()};
//   absl::StatusOr<Invocation> invocation =
//       ParseInvocation({"stop", "--grace=2s", id}, defaults, environment);
//   if (!invocation.ok()) {
//     std::cerr << "pm: " << invocation.status().message() << "\n"
//               << UsageText("stop");
//     return kExitUsage;
//   }
//
// The commands and their flags are declared once, on CLI11, in
// cli/command_tree.h; this file finishes what the declarations bound into a
// request: pm's own environment for --env K, --env-file and --inherit-env,
// a relative --cwd, --gateway and what it needs, the filters of list and
// events. The global flags (--runtime_dir, --output, and --gateway with its
// --ca, --cert, --key, --user, --password_file) go before or after the
// command.
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
  kHelp, kVersion, kStart, kRun, kStop, kStatus, kList, kLogs, kWait, kKill,
  kRm, kPrune, kEvents, kCompletion
};
enum class OutputFormat { kText, kJson };

// The environment variable that holds the gateway's password.
inline constexpr char kPasswordVariable[] = "PM_PASSWORD";

// What the global flags default to when not given.
struct GlobalOptions {
  // $PM_RUNTIME_DIR, else $XDG_RUNTIME_DIR/pm, else /tmp/pm-UID
  // (common/runtime_dir.h).
  std::string runtime_dir;
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
  // kHelp: the command to explain; "" for the overview. kCompletion: the
  // shell ("bash").
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

// Parses `args`: argv after the program name. INVALID_ARGUMENT with a
// message fit for "pm: <message>" for an unknown command or flag, a missing
// or extra argument, a bad value, gateway flags without --gateway, or
// --gateway without what it needs (--ca, --cert, --key, --user, and a
// password in $PM_PASSWORD or --password_file). --help anywhere before `--`
// (or before the command of start and run) is kHelp for the command given.
// `command_name`, if given, gets the name of the command as far as parsing
// read it ("" if none), for the usage line that follows an error.
//
// `scope` is for tests: kWhole parses with the whole command tree alone,
// which the default (a tree of the first word's command first) must agree
// with on every line.
enum class TreeScope { kFirstWord, kWhole };
absl::StatusOr<Invocation> ParseInvocation(const std::vector<std::string>& args,
                                           const GlobalOptions& defaults,
                                           const Environment& environment,
                                           std::string* command_name = nullptr,
                                           TreeScope scope = TreeScope::kFirstWord);

// Whether `arg` is a --password flag ("--password=x", "-password"), which
// pm refuses: what follows explains why and what to use instead.
bool IsPasswordFlag(absl::string_view arg);
std::string NoPasswordFlagMessage();

}  // namespace pm::cli

#endif  // PM_CLI_INVOCATION_H_
