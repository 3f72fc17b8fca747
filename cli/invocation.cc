#include "cli/invocation.h"

#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <map>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "cli/flags.h"
#include "cli/limits.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/command_line.h"
#include "common/fd.h"
#include "common/exit_status.h"
#include "common/names.h"
#include "common/output_request.h"
#include "common/status_core.h"
#include "common/stop_request.h"

namespace pm::cli {
namespace {

// Help lines end before this column.
constexpr size_t kHelpWidth = 79;

constexpr char kUsage[] =
    "usage: pm [--runtime_dir DIR] COMMAND [FLAGS] [ARGS...]\n"
    "       pm --gateway HOST:PORT --ca FILE --cert FILE --key FILE --user "
    "NAME\n"
    "          [--password_file FILE] COMMAND [FLAGS] [ARGS...]\n";

struct CommandInfo {
  Command command;
  std::string name;
  std::string alias;
  // What follows "pm <name>" in the usage line.
  std::string synopsis;
  std::string summary;
  std::string details;
  // The command's own flags; the global ones are added by Specs().
  std::vector<FlagSpec> flags;
  bool takes_output = false;
  // start and run: the first non-flag word begins the command.
  bool takes_command = false;
};

FlagSpec OutputFlag() {
  return {"output", FlagSpec::kValue, "text|json",
          "json prints the reply in protobuf's JSON mapping, for scripts"};
}

FlagSpec GraceFlag(absl::string_view what) {
  return {"grace", FlagSpec::kValue, "DURATION",
          absl::StrCat("time between SIGTERM and SIGKILL ", what,
                       ": 500ms, 10s, 1m (default 10s; at most 1h; 0: SIGKILL "
                       "to the whole tree at once, no SIGTERM)")};
}

FlagSpec ReconnectFlag() {
  return {"reconnect-timeout", FlagSpec::kValue, "DURATION",
          "when the output stream is lost (the log_store or the gateway "
          "restarts), how long to try to get it back, resuming after the "
          "last byte printed (default 60s; 0: give up at once)"};
}

const char kReconnectHelp[] =
    "If the output stream is lost (the log_store or the gateway restarts),\n"
    "pm says so on stderr, reconnects and resumes after the last byte it\n"
    "printed: no byte twice; bytes the store lost meanwhile are announced\n"
    "as any gap is. It gives up after --reconnect-timeout (60s).";

std::vector<FlagSpec> StartFlags() {
  return {
      {"name", FlagSpec::kValue, "NAME",
       "a name for the process, unique among the processes on record (1 to 64 "
       "of A-Z a-z 0-9 _ . -); every command that takes an ID takes it"},
      {"label", FlagSpec::kValue, "KEY=VALUE",
       "a label to select the process by (`pm list --filter "
       "label=KEY=VALUE`; repeatable)",
       /*repeated=*/true},
      {"env", FlagSpec::kValue, "K=V",
       "set a variable of the process's environment (repeatable); --env K "
       "copies K from pm's own environment",
       /*repeated=*/true},
      {"inherit-env", FlagSpec::kBool, "",
       "start from pm's own environment (--env then adds or overrides)"},
      {"env-file", FlagSpec::kValue, "FILE",
       "variables from FILE, one K=V per line (K alone copies it from pm's "
       "environment; blank lines and lines starting with # are skipped), "
       "before --env (repeatable)",
       /*repeated=*/true},
      {"cwd", FlagSpec::kValue, "DIR",
       "the working directory (relative to the current one); default: the "
       "current one (through --gateway: /)"},
      {"memory", FlagSpec::kValue, "SIZE",
       "memory limit (RAM and swap) of the process and its descendants: "
       "bytes, or K, M, G with binary units (256M, 1.5G); past it the OOM "
       "killer ends a process"},
      {"cpus", FlagSpec::kValue, "N",
       "CPU limit in cores, 0.01 to 100000: 0.5 is half a core, 2 two cores"},
      {"pids", FlagSpec::kValue, "N",
       "most tasks (processes and threads) alive at once; fork and clone "
       "fail beyond it"},
      {"io-weight", FlagSpec::kValue, "N",
       "relative IO weight, 1 to 10000 (the kernel's default is 100)"},
      {"isolate", FlagSpec::kValue, "pid,net,mount",
       "namespaces of its own, comma-separated (repeatable): pid (it is PID "
       "1 and sees only its own processes; implies mount), net (only a "
       "loopback interface), mount (private mounts)",
       /*repeated=*/true},
  };
}

// The paragraph of start's and run's help on --memory, --cpus, --pids,
// --io-weight and --isolate.
constexpr char kLimitsHelp[] =
    "Limits (--memory, --cpus, --pids, --io-weight) hold for the process and\n"
    "every process it starts, through its cgroup. A limit the host cannot\n"
    "enforce fails the start, naming what is missing: none is ever ignored.\n"
    "A process past --memory is killed by the OOM killer (exit 137), which\n"
    "`pm status` shows. --isolate gives it namespaces of its own.";

const std::vector<CommandInfo>& Commands() {
  static const auto* commands = new std::vector<CommandInfo>{
      {Command::kStart, "start", "",
       "[--name NAME] [--label K=V]... [--env K=V]... [--inherit-env] "
       "[--cwd DIR] [LIMITS] [--isolate LIST] -- EXECUTABLE [ARGS...]",
       "start a process and print its UUID",
       "Starts EXECUTABLE with ARGS and prints the new process's UUID alone "
       "on\n"
       "stdout, so that id=$(pm start -- sleep 100) works. EXECUTABLE is a "
       "path\n"
       "or a name looked up on the process's PATH. Everything after -- (or\n"
       "after the first word that is not a flag) is the command, verbatim:\n"
       "arguments, --env values and --cwd reach the process as the bytes\n"
       "given, UTF-8 or not (caf\\xe9 in Latin-1 stays one byte 0xe9).\n"
       "\n"
       "The process's environment is only what --env gives (and a default\n"
       "PATH) unless --inherit-env copies pm's own first ($PM_PASSWORD "
       "aside).\n"
       "If the process cannot be started, for example because EXECUTABLE does\n"
       "not exist, nothing is started and the OS error is printed.\n"
       "\n" +
           std::string(kLimitsHelp),
       [] {
         std::vector<FlagSpec> flags = StartFlags();
         flags.push_back(OutputFlag());
         return flags;
       }(),
       /*takes_output=*/true, /*takes_command=*/true},
      {Command::kRun, "run", "",
       "[--name NAME] [--label K=V]... [--env K=V]... [--inherit-env] "
       "[--cwd DIR] [LIMITS] [--isolate LIST] -- EXECUTABLE [ARGS...]",
       "start a process, print its output, exit with its exit code",
       "Starts a process as `pm start` does, prints its output (stdout and\n"
       "stderr, from the first byte) on stdout as it comes, and exits with "
       "the\n"
       "process's own exit code, or 128+N when signal N killed it, like\n"
       "`docker run`.\n"
       "\n"
       "Ctrl+C stops the process (SIGTERM, then SIGKILL after --grace) and\n"
       "keeps printing its output until it has ended; pm then exits with its\n"
       "code (143 for SIGTERM). A second Ctrl+C leaves at once (exit 130) and\n"
       "lets the stop carry on. If pm itself fails, it prints why and exits "
       "1.\n"
       "\n" +
           std::string(kReconnectHelp) + "\n\n" + std::string(kLimitsHelp) +
           "\nWhen the OOM killer ended the process or one of its "
           "descendants, pm\n"
           "says so on stderr.",
       [] {
         std::vector<FlagSpec> flags = StartFlags();
         flags.push_back({"rm", FlagSpec::kBool, "",
                          "remove the process's record and output once it "
                          "has ended"});
         flags.push_back(GraceFlag("when Ctrl+C stops the process"));
         flags.push_back(ReconnectFlag());
         return flags;
       }(),
       /*takes_output=*/false, /*takes_command=*/true},
      {Command::kStop,
       "stop",
       "",
       "[--grace DURATION] [--output json] ID",
       "stop a process: SIGTERM, grace period, SIGKILL",
       "Stops a process and its whole process group: SIGTERM, then SIGKILL\n"
       "once the grace period has passed. Prints how the process ended, e.g.\n"
       "\"killed by signal 15 (SIGTERM)\" or \"exited with code 0\" (at once "
       "for\n"
       "a process that had already ended). If it would not stop (a member of\n"
       "its group outlived SIGKILL), prints its status and exits 1.\n"
       "\n"
       "A stop can always be escalated: another `pm stop` with a shorter\n"
       "--grace while one is in progress brings its SIGKILL forward, and\n"
       "--grace 0 kills the whole tree at once; every waiting stop then\n"
       "prints how the process ended.",
       {GraceFlag("of this stop"), OutputFlag()},
       /*takes_output=*/true},
      {Command::kStatus,
       "status",
       "",
       "[--output json] ID",
       "show a process's state, exit, resources and /proc status",
       "Shows a process's record: state, pid, command, start time, run time,\n"
       "how it ended (exit code or signal, core dump, whether a stop ended "
       "it),\n"
       "its output size, its limits and namespaces, the resource usage of its\n"
       "whole tree (memory now and at peak, CPU time, tasks, OOM kills, limit\n"
       "hits, CPU throttling) and, while it runs, its memory, threads and the\n"
       "fields of /proc/PID/status. A process the OOM killer ended, or one\n"
       "whose descendants it killed, gets an \"OOM:\" line near the top.",
       {OutputFlag()},
       /*takes_output=*/true},
      {Command::kList,
       "list",
       "ps",
       "[-a|--all] [--filter FILTER]... [-n|--last N] [-q] [--output json]",
       "list the processes, newest first (alias: ps)",
       "Lists the running processes (and those being stopped), newest first:\n"
       "UUID, name, state, pid, exit code (or the signal that killed it), start\n"
       "time and command. --all lists every process on record, ended ones too.\n"
       "\n"
       "Filters (repeatable; a process must match them all, and two state=\n"
       "filters mean either state): state=STATE (running, stopping, exited,\n"
       "signaled, lost; implies --all), name=NAME, label=KEY=VALUE (the label\n"
       "has that value) or label=KEY (the label is set).",
       {{"all", FlagSpec::kBool, "", "every process on record, not only the live ones",
         false, 'a'},
        {"filter", FlagSpec::kValue, "FILTER",
         "state=STATE, name=NAME, label=KEY=VALUE or label=KEY (repeatable)",
         /*repeated=*/true},
        {"last", FlagSpec::kValue, "N", "only the N newest", false, 'n'},
        {"quiet", FlagSpec::kBool, "", "print the UUIDs alone, one per line",
         false, 'q'},
        OutputFlag()},
       /*takes_output=*/true},
      {Command::kLogs,
       "logs",
       "",
       "[-f|--follow] [--tail N|all|now] [--since WHEN] [--until WHEN] "
       "[-t|--timestamps] [--stdout|--stderr] ID",
       "print a process's output (stdout and stderr)",
       "Prints a process's output, stdout and stderr both, as raw bytes on\n"
       "stdout. Without -f: everything retained so far, then exits. With -f:\n"
       "also what the process writes next, until it has ended and its output\n"
       "is drained, or until Ctrl+C (exit 130).\n"
       "\n"
       "Output over the output store's cap is not retained. It is never\n"
       "skipped silently: a notice \"pm: [N bytes not retained before offset\n"
       "X]\" goes to stderr where bytes are missing.\n"
       "\n" +
           std::string(kReconnectHelp),
       {ReconnectFlag(),
        {"follow", FlagSpec::kBool, "",
         "keep printing new output until the process has ended", false, 'f'},
        {"from-start", FlagSpec::kBool, "",
         "begin at the oldest retained byte (the default)"},
        {"tail", FlagSpec::kValue, "N",
         "only the last N lines (all: everything; now: only what the "
         "process writes from now on, with -f)"},
        {"since", FlagSpec::kValue, "WHEN",
         "only output read since WHEN: a duration ago (10m, 1h30m) or an "
         "RFC 3339 time (2026-12-04T08:00:00Z)"},
        {"until", FlagSpec::kValue, "WHEN",
         "only output read until WHEN (as --since); ends a follow there"},
        {"timestamps", FlagSpec::kBool, "",
         "begin each line with the time it was read (RFC 3339, UTC)", false,
         't'},
        {"stdout", FlagSpec::kBool, "", "only the process's stdout"},
        {"stderr", FlagSpec::kBool, "", "only the process's stderr"}}},
      {Command::kWait,
       "wait",
       "",
       "[--output json] ID",
       "wait for a process to end, exit with its exit code",
       "Waits until a process has ended, prints how it ended and exits with\n"
       "its exit code, or 128+N when signal N killed it.",
       {OutputFlag()},
       /*takes_output=*/true},
      {Command::kKill,
       "kill",
       "",
       "[-s|--signal SIGNAL] [--leader] [--output json] ID",
       "send a signal to a process (default SIGKILL)",
       "Sends SIGNAL to a running process's whole process group, or with\n"
       "--leader to the process pm started alone. SIGNAL is a number or a\n"
       "name as kill(1) takes it: 15, TERM, SIGTERM, HUP, RTMIN+3. The\n"
       "default is KILL, as `docker kill`. Prints the process's UUID. Unlike\n"
       "`pm stop` it sends one signal and returns: nothing waits for the\n"
       "process to end. A process that has ended gets nothing (exit 1).",
       {{"signal", FlagSpec::kValue, "SIGNAL",
         "the signal, by number or name (default KILL)", false, 's'},
        {"leader", FlagSpec::kBool, "",
         "only the process pm started, not its process group"},
        OutputFlag()},
       /*takes_output=*/true},
      {Command::kRm,
       "rm",
       "",
       "[-f|--force] [--output json] ID...",
       "remove ended processes: their records and output",
       "Deletes each process's record and its retained output. Its UUID then\n"
       "answers \"was removed\", and its name is free for a new process. A\n"
       "process that has not ended is refused unless -f, which kills its\n"
       "whole tree at once (SIGKILL) first. Prints each UUID removed; exits 1\n"
       "if any could not be.",
       {{"force", FlagSpec::kBool, "", "kill a running process first", false,
         'f'},
        OutputFlag()},
       /*takes_output=*/true},
      {Command::kPrune,
       "prune",
       "",
       "[--output json]",
       "remove every ended process (records and output)",
       "Removes every process that has ended (exited, signaled or lost), as\n"
       "`pm rm` does for each, and prints their UUIDs and how many. Through\n"
       "a gateway, only the caller's own.",
       {OutputFlag()},
       /*takes_output=*/true},
      {Command::kEvents,
       "events",
       "",
       "[--filter FILTER]... [--after SEQUENCE] [--output json]",
       "print the processes' state changes as they happen",
       "Prints one line per event until Ctrl+C (exit 130): its sequence\n"
       "number, time, kind (started, stopping, running, exited, signaled,\n"
       "lost, oom, removed), the process's UUID and name, and how it ended.\n"
       "--after N first prints the retained events after sequence N (0: all\n"
       "retained), so a script that saw N resumes with no gap; events no\n"
       "longer retained are announced on stderr. With --output json, each\n"
       "event is a line of JSON.\n"
       "\n"
       "Filters (repeatable, all must match): id=ID (a UUID, name or prefix),\n"
       "name=NAME, label=KEY=VALUE or label=KEY, kind=KIND (repeatable: any).\n"
       "\n" +
           std::string(kReconnectHelp),
       {{"filter", FlagSpec::kValue, "FILTER",
         "id=ID, name=NAME, label=KEY[=VALUE] or kind=KIND (repeatable)",
         /*repeated=*/true},
        {"after", FlagSpec::kValue, "SEQUENCE",
         "begin after this sequence number (0: every retained event)"},
        ReconnectFlag(),
        OutputFlag()},
       /*takes_output=*/true},
      {Command::kHelp,
       "help",
       "",
       "[COMMAND]",
       "show the help of a command",
       "Shows the help of COMMAND, or the overview of every command.",
       {}},
  };
  return *commands;
}

const CommandInfo* FindCommand(absl::string_view word) {
  for (const CommandInfo& info : Commands()) {
    if (word == info.name || (!info.alias.empty() && word == info.alias)) {
      return &info;
    }
  }
  return nullptr;
}

FlagSpec HelpFlag() {
  return {"help", FlagSpec::kBool, "", "show this help", false, 'h'};
}

// Where the commands go: the local sockets, or a gateway. Their names are
// gflags' too (main.cc), so they keep its underscores.
std::vector<FlagSpec> ConnectionFlags() {
  return {
      {"runtime_dir", FlagSpec::kValue, "DIR",
       "the directory of the services' unix sockets (default: "
       "$PM_RUNTIME_DIR, else $XDG_RUNTIME_DIR/pm, else /tmp/pm-UID)"},
      {"gateway", FlagSpec::kValue, "HOST:PORT",
       "go through the pm gateway at HOST:PORT (mutual TLS and a user's "
       "password) instead of the local sockets; needs the flags below"},
      {"ca", FlagSpec::kValue, "FILE",
       "with --gateway: the CA certificate (PEM) the gateway's certificate "
       "chains to"},
      {"cert", FlagSpec::kValue, "FILE",
       "with --gateway: this client's certificate (PEM)"},
      {"key", FlagSpec::kValue, "FILE",
       "with --gateway: this client's private key (PEM)"},
      {"user", FlagSpec::kValue, "NAME", "with --gateway: the user name"},
      {"password_file", FlagSpec::kValue, "FILE",
       "with --gateway: the file whose first line is the password (default: "
       "the password in $PM_PASSWORD; there is no --password flag)"},
  };
}

// The command's flags and the global ones it accepts after its name.
std::vector<FlagSpec> Specs(const CommandInfo& info) {
  std::vector<FlagSpec> specs = info.flags;
  for (FlagSpec& spec : ConnectionFlags()) specs.push_back(std::move(spec));
  specs.push_back(HelpFlag());
  return specs;
}

std::string FlagLines(const std::vector<FlagSpec>& specs) {
  std::vector<std::pair<std::string, std::string>> lines;
  size_t width = 0;
  for (const FlagSpec& spec : specs) {
    std::string left = spec.short_name != 0
                           ? absl::StrCat("-", std::string(1, spec.short_name),
                                          ", --", spec.name)
                           : absl::StrCat("--", spec.name);
    if (spec.kind == FlagSpec::kValue)
      absl::StrAppend(&left, " ", spec.value_name);
    width = std::max(width, left.size());
    lines.emplace_back(std::move(left), spec.help);
  }
  // Help starts in one column for every flag and wraps before column 80.
  const size_t column = 2 + width + 2;
  std::string text;
  for (const auto& [left, help] : lines) {
    absl::StrAppend(&text, "  ", left,
                    std::string(width - left.size() + 2, ' '));
    size_t used = column;
    bool first = true;
    for (absl::string_view word :
         absl::StrSplit(help, ' ', absl::SkipEmpty())) {
      if (!first && used + 1 + word.size() > kHelpWidth) {
        absl::StrAppend(&text, "\n", std::string(column, ' '));
        used = column;
        first = true;
      }
      absl::StrAppend(&text, first ? "" : " ", word);
      used += (first ? 0 : 1) + word.size();
      first = false;
    }
    text += "\n";
  }
  return text;
}

absl::Status Usage(absl::string_view message) {
  return absl::InvalidArgumentError(message);
}

absl::StatusOr<OutputFormat> ParseOutput(absl::string_view value) {
  if (value == "text") return OutputFormat::kText;
  if (value == "json") return OutputFormat::kJson;
  return Usage(
      absl::StrCat("--output must be text or json, not \"", value, "\""));
}

// The value of --`flag`: "10s", "500ms", "1m30s", or a bare number of
// seconds; not negative.
absl::StatusOr<absl::Duration> ParseDurationFlag(absl::string_view flag,
                                                 absl::string_view value) {
  absl::Duration duration;
  int64_t seconds = 0;
  if (absl::SimpleAtoi(value, &seconds)) {
    duration = absl::Seconds(seconds);
  } else if (!absl::ParseDuration(value, &duration)) {
    return Usage(
        absl::StrCat("--", flag, " takes a duration like 500ms, 10s or 1m, "
                     "not \"",
                     value, "\""));
  }
  if (duration < absl::ZeroDuration()) {
    return Usage(absl::StrCat("--", flag, " ", value, " is out of range"));
  }
  return duration;
}

absl::StatusOr<absl::Duration> ParseGrace(absl::string_view value) {
  absl::StatusOr<absl::Duration> parsed = ParseDurationFlag("grace", value);
  if (!parsed.ok()) return parsed.status();
  const absl::Duration grace = *parsed;
  if (grace > absl::Milliseconds(kMaxGracePeriodMs)) {
    return Usage(absl::StrCat(
        "--grace ", value, " is above the maximum, ",
        absl::FormatDuration(absl::Milliseconds(kMaxGracePeriodMs)),
        " (--grace 0 kills at once)"));
  }
  return grace;
}

// The value of K in `environment`, if set.
absl::optional<std::string> Lookup(const Environment& environment,
                                   absl::string_view key) {
  for (const std::string& variable : environment.variables) {
    if (variable.size() > key.size() && variable[key.size()] == '=' &&
        absl::string_view(variable).substr(0, key.size()) == key) {
      return variable.substr(key.size() + 1);
    }
  }
  return absl::nullopt;
}

// The process's environment as it is built: later entries override.
using EnvMap = std::map<std::string, std::string>;

absl::Status AddEnv(absl::string_view assignment,
                    const Environment& environment, EnvMap& env) {
  const size_t eq = assignment.find('=');
  const std::string key(assignment.substr(0, eq));
  if (key.empty()) {
    return Usage(absl::StrCat("--env ", assignment, ": the name is empty"));
  }
  if (eq != absl::string_view::npos) {
    env[key] = std::string(assignment.substr(eq + 1));
    return absl::OkStatus();
  }
  absl::optional<std::string> value = Lookup(environment, key);
  if (!value) {
    return Usage(absl::StrCat("--env ", key, ": ", key,
                              " is not set in pm's environment (use K=V)"));
  }
  env[key] = *value;
  return absl::OkStatus();
}

// The variables of an --env-file: K=V lines (K alone: from pm's own
// environment); blank lines and # comments skipped. A usage error names
// the file and the line.
// The most of an --env-file read: a whole command (executable, arguments,
// environment) is capped at 256 KiB by the supervisor anyway, and a path
// like /dev/zero must not hang pm or fill its memory.
constexpr size_t kMaxEnvFileBytes = 1 << 20;

absl::StatusOr<std::string> ReadEnvFile(const std::string& path) {
  PM_ASSIGN_OR_RETURN(Fd file, Fd::Open(path, O_RDONLY));
  std::string text;
  char buffer[64 << 10];
  for (;;) {
    const ssize_t n = read(file.get(), buffer, sizeof(buffer));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoError("read", path);
    if (n == 0) return text;
    text.append(buffer, static_cast<size_t>(n));
    if (text.size() > kMaxEnvFileBytes) {
      return absl::InvalidArgumentError(
          absl::StrCat("over ", kMaxEnvFileBytes, " bytes; an environment file is at most that"));
    }
  }
}

absl::Status AddEnvFile(const std::string& path, const Environment& environment,
                        EnvMap& env) {
  absl::StatusOr<std::string> text = ReadEnvFile(path);
  if (!text.ok()) {
    return Usage(absl::StrCat("--env-file ", path, ": ", text.status().message()));
  }
  int number = 0;
  for (absl::string_view line : absl::StrSplit(*text, '\n')) {
    ++number;
    absl::ConsumeSuffix(&line, "\r");
    const absl::string_view trimmed = absl::StripLeadingAsciiWhitespace(line);
    if (trimmed.empty() || trimmed[0] == '#') continue;
    const size_t eq = line.find('=');
    const std::string key(line.substr(0, eq));
    auto bad = [&](absl::string_view why) {
      return Usage(absl::StrCat("--env-file ", path, " line ", number, ": ", why));
    };
    if (key.empty()) return bad("the name is empty");
    if (eq != absl::string_view::npos) {
      env[key] = std::string(line.substr(eq + 1));
      continue;
    }
    absl::optional<std::string> value = Lookup(environment, key);
    if (!value) return bad(absl::StrCat(key, " is not set in pm's environment (use K=V)"));
    env[key] = *value;
  }
  return absl::OkStatus();
}

// --memory, --cpus, --pids, --io-weight and --isolate into `start`.
absl::Status ParseLimits(const ParsedFlags& flags,
                         pm::v1::StartRequest& start) {
  pm::v1::Limits& limits = *start.mutable_limits();
  if (flags.Has("memory")) {
    absl::StatusOr<uint64_t> memory =
        ParseByteSize("--memory", flags.Get("memory"));
    if (!memory.ok()) return memory.status();
    limits.set_memory_bytes(*memory);
  }
  if (flags.Has("cpus")) {
    absl::StatusOr<double> cpus = ParseCpus(flags.Get("cpus"));
    if (!cpus.ok()) return cpus.status();
    limits.set_cpus(*cpus);
  }
  if (flags.Has("pids")) {
    absl::StatusOr<uint32_t> pids = ParsePids(flags.Get("pids"));
    if (!pids.ok()) return pids.status();
    limits.set_pids(*pids);
  }
  if (flags.Has("io-weight")) {
    absl::StatusOr<uint32_t> weight = ParseIoWeight(flags.Get("io-weight"));
    if (!weight.ok()) return weight.status();
    limits.set_io_weight(*weight);
  }
  // No limit asked for: no Limits message on the wire either.
  if (limits.ByteSizeLong() == 0) start.clear_limits();
  for (const std::string& list : flags.GetAll("isolate")) {
    absl::Status added = AddIsolation(list, start);
    if (!added.ok()) return added;
  }
  return absl::OkStatus();
}

absl::Status ParseStart(const ParsedFlags& flags,
                        const Environment& environment,
                        Invocation& invocation) {
  if (flags.positional.empty()) {
    return Usage("missing the command to run (pm start -- EXECUTABLE ARGS...)");
  }
  // Bytes, as the shell gave them: PutCommandLine sends what is not UTF-8
  // in the request's bytes forms.
  pm::CommandLine command;
  command.executable = flags.positional[0];
  command.args.assign(flags.positional.begin() + 1, flags.positional.end());
  EnvMap env;
  if (flags.GetBool("inherit-env")) {
    for (const std::string& variable : environment.variables) {
      const size_t eq = variable.find('=');
      if (eq == std::string::npos || eq == 0) continue;
      // pm's own secret stays pm's: the process would otherwise carry the
      // gateway password in its environment (`--env PM_PASSWORD` still
      // passes it on for whoever means to).
      if (variable.compare(0, eq, kPasswordVariable) == 0) continue;
      env[variable.substr(0, eq)] = variable.substr(eq + 1);
    }
  }
  for (const std::string& path : flags.GetAll("env-file")) {
    absl::Status added = AddEnvFile(path, environment, env);
    if (!added.ok()) return added;
  }
  for (const std::string& assignment : flags.GetAll("env")) {
    absl::Status added = AddEnv(assignment, environment, env);
    if (!added.ok()) return added;
  }
  command.env.assign(env.begin(), env.end());
  if (flags.Has("cwd")) {
    const std::string cwd = flags.Get("cwd");
    if (cwd.empty()) return Usage("--cwd is empty");
    // The supervisor has a working directory of its own: a relative path
    // means what it means where the user typed it.
    command.working_dir = cwd[0] == '/' || environment.cwd.empty()
                              ? cwd
                              : absl::StrCat(environment.cwd, "/", cwd);
  } else if (!invocation.connection.gateway && !environment.cwd.empty()) {
    // As in a shell: `pm run ./script.sh` runs where it was typed. (Not
    // through a gateway: this directory is on another machine.)
    command.working_dir = environment.cwd;
  }
  pm::v1::StartRequest& start = invocation.start;
  PutCommandLine(command, start);
  if (flags.Has("name")) {
    start.set_name(flags.Get("name"));
    if (absl::Status valid = ValidateName(start.name()); !valid.ok()) {
      return Usage(absl::StrCat("--name: ", valid.message()));
    }
  }
  for (const std::string& label : flags.GetAll("label")) {
    const size_t eq = label.find('=');
    if (eq == std::string::npos) {
      return Usage(absl::StrCat("--label takes KEY=VALUE, not \"", label, "\""));
    }
    (*start.mutable_labels())[label.substr(0, eq)] = label.substr(eq + 1);
  }
  if (absl::Status valid = ValidateLabels(start.labels()); !valid.ok()) {
    return Usage(absl::StrCat("--label: ", valid.message()));
  }
  return ParseLimits(flags, start);
}

// --all, --filter, --last and -q of `pm list` into a ListRequest.
absl::Status ParseList(const ParsedFlags& flags, Invocation& invocation) {
  pm::v1::ListRequest& list = invocation.list;
  bool any_state = flags.GetBool("all");
  for (const std::string& filter : flags.GetAll("filter")) {
    const size_t eq = filter.find('=');
    const std::string kind = filter.substr(0, eq);
    const std::string value = eq == std::string::npos ? "" : filter.substr(eq + 1);
    auto bad = [&](absl::string_view why) {
      return Usage(absl::StrCat("--filter ", filter, ": ", why));
    };
    if (eq == std::string::npos || value.empty()) {
      return bad("want state=STATE, name=NAME, label=KEY=VALUE or label=KEY");
    }
    if (kind == "state") {
      pm::v1::ProcessStatus::State state;
      if (!pm::v1::ProcessStatus::State_Parse(
              absl::StrCat("STATE_", absl::AsciiStrToUpper(value)), &state) ||
          state == pm::v1::ProcessStatus::STATE_UNSPECIFIED) {
        return bad("the state is one of running, stopping, exited, signaled, lost");
      }
      list.add_states(state);
      any_state = true;
    } else if (kind == "name") {
      if (!list.name().empty() && list.name() != value) {
        return bad("a process has one name: two name= filters match nothing");
      }
      list.set_name(value);
    } else if (kind == "label") {
      absl::StatusOr<LabelSelector> selector = ParseLabelSelector(value);
      if (!selector.ok()) return bad(selector.status().message());
      list.add_label_selector(value);
    } else {
      return bad(absl::StrCat("unknown filter \"", kind,
                              "\" (state, name and label are known)"));
    }
  }
  if (!any_state) {
    // As `docker ps`: the live ones unless --all.
    list.add_states(pm::v1::ProcessStatus::STATE_RUNNING);
    list.add_states(pm::v1::ProcessStatus::STATE_STOPPING);
  }
  if (flags.Has("last")) {
    uint32_t last = 0;
    if (!absl::SimpleAtoi(flags.Get("last"), &last) || last == 0) {
      return Usage(absl::StrCat("--last takes a number above 0, not \"",
                                flags.Get("last"), "\""));
    }
    list.set_limit(last);
  }
  invocation.quiet = flags.GetBool("quiet");
  return absl::OkStatus();
}

absl::Status ParseEvents(const ParsedFlags& flags, Invocation& invocation) {
  pm::v1::WatchRequest& watch = invocation.watch;
  for (const std::string& filter : flags.GetAll("filter")) {
    const size_t eq = filter.find('=');
    const std::string kind = filter.substr(0, eq);
    const std::string value = eq == std::string::npos ? "" : filter.substr(eq + 1);
    auto bad = [&](absl::string_view why) {
      return Usage(absl::StrCat("--filter ", filter, ": ", why));
    };
    if (eq == std::string::npos || value.empty()) {
      return bad("want id=ID, name=NAME, label=KEY[=VALUE] or kind=KIND");
    }
    if (kind == "id") {
      watch.set_id(value);
    } else if (kind == "name") {
      watch.set_name(value);
    } else if (kind == "label") {
      absl::StatusOr<LabelSelector> selector = ParseLabelSelector(value);
      if (!selector.ok()) return bad(selector.status().message());
      watch.add_label_selector(value);
    } else if (kind == "kind") {
      pm::v1::Event::Kind parsed;
      if (!pm::v1::Event::Kind_Parse(
              absl::StrCat("KIND_", absl::AsciiStrToUpper(value)), &parsed) ||
          parsed == pm::v1::Event::KIND_UNSPECIFIED) {
        return bad("the kind is one of started, stopping, running, exited, "
                   "signaled, lost, oom, removed");
      }
      watch.add_kinds(parsed);
    } else {
      return bad(absl::StrCat("unknown filter \"", kind,
                              "\" (id, name, label and kind are known)"));
    }
  }
  if (flags.Has("after")) {
    uint64_t after = 0;
    if (!absl::SimpleAtoi(flags.Get("after"), &after)) {
      return Usage(absl::StrCat("--after takes a sequence number, not \"",
                                flags.Get("after"), "\""));
    }
    watch.set_after_sequence(after);
  }
  return absl::OkStatus();
}

absl::Status TakeId(const CommandInfo& info, const ParsedFlags& flags,
                    Invocation& invocation) {
  if (flags.positional.empty()) {
    return Usage(absl::StrCat(info.name,
                              ": missing the process (its UUID, its name or a "
                              "unique prefix of its UUID)"));
  }
  if (flags.positional.size() > 1) {
    return Usage(absl::StrCat(info.name, ": unexpected argument \"",
                              flags.positional[1], "\""));
  }
  invocation.id = flags.positional[0];
  return absl::OkStatus();
}

// --since and --until: a duration ago, or an RFC 3339 time.
absl::StatusOr<absl::Time> ParseWhen(absl::string_view flag,
                                     absl::string_view value, absl::Time now) {
  absl::Time time;
  std::string error;
  if (absl::ParseTime(absl::RFC3339_full, value, &time, &error)) return time;
  absl::Duration ago;
  int64_t seconds = 0;
  if (absl::SimpleAtoi(value, &seconds)) {
    ago = absl::Seconds(seconds);
  } else if (!absl::ParseDuration(value, &ago)) {
    return Usage(absl::StrCat(
        "--", flag, " takes a duration ago (10m, 1h30m) or an RFC 3339 time "
        "(2026-12-04T08:00:00Z), not \"", value, "\""));
  }
  if (ago < absl::ZeroDuration()) {
    return Usage(absl::StrCat("--", flag, " ", value, " is in the future"));
  }
  return now - ago;
}

absl::Status ParseLogs(const ParsedFlags& flags, Invocation& invocation) {
  invocation.follow = flags.GetBool("follow");
  invocation.timestamps = flags.GetBool("timestamps");
  invocation.stdout_only = flags.GetBool("stdout");
  invocation.stderr_only = flags.GetBool("stderr");
  const absl::Time now = absl::Now();
  for (const char* flag : {"since", "until"}) {
    if (!flags.Has(flag)) continue;
    absl::StatusOr<absl::Time> when = ParseWhen(flag, flags.Get(flag), now);
    if (!when.ok()) return when.status();
    (std::string(flag) == "since" ? invocation.since : invocation.until) = *when;
  }
  if (invocation.since && invocation.until && *invocation.until < *invocation.since) {
    return Usage("--until is before --since");
  }
  if (flags.Has("tail") && flags.Get("tail") == "all") {
    // Everything retained: the default.
  } else if (flags.Has("tail") && flags.Get("tail") != "now") {
    uint64_t lines = 0;
    if (!absl::SimpleAtoi(flags.Get("tail"), &lines) || lines > kMaxTailLines) {
      return Usage(absl::StrCat("--tail takes a number of lines (0 to ",
                                kMaxTailLines, "), all or now, not \"",
                                flags.Get("tail"), "\""));
    }
    invocation.tail_lines = lines;
  } else if (flags.Has("tail")) {
    if (flags.GetBool("from-start")) {
      return Usage("--from-start and --tail=now contradict each other");
    }
    if (invocation.since) {
      return Usage("--since and --tail=now contradict each other");
    }
    invocation.from_start = false;
  }
  return absl::OkStatus();
}

absl::Status ParseArguments(const CommandInfo& info, const ParsedFlags& flags,
                            const Environment& environment,
                            Invocation& invocation) {
  switch (info.command) {
    case Command::kHelp:
      if (flags.positional.size() > 1) {
        return Usage("help takes one command name at most");
      }
      if (!flags.positional.empty()) {
        if (!IsCommand(flags.positional[0])) {
          return Usage(absl::StrCat("help: unknown command \"",
                                    flags.positional[0], "\""));
        }
        invocation.help_topic = FindCommand(flags.positional[0])->name;
      }
      return absl::OkStatus();
    case Command::kStart:
    case Command::kRun:
      invocation.remove_after = flags.GetBool("rm");
      return ParseStart(flags, environment, invocation);
    case Command::kList:
      if (!flags.positional.empty()) {
        return Usage(absl::StrCat(info.name, ": unexpected argument \"",
                                  flags.positional[0], "\""));
      }
      return ParseList(flags, invocation);
    case Command::kLogs: {
      absl::Status logs = ParseLogs(flags, invocation);
      if (!logs.ok()) return logs;
      return TakeId(info, flags, invocation);
    }
    case Command::kStop:
    case Command::kStatus:
    case Command::kWait:
      return TakeId(info, flags, invocation);
    case Command::kKill: {
      if (flags.Has("signal")) {
        absl::StatusOr<int> sig = ParseSignal(flags.Get("signal"));
        if (!sig.ok()) return Usage(absl::StrCat("kill: ", sig.status().message()));
        invocation.signal = *sig;
      }
      invocation.leader_only = flags.GetBool("leader");
      return TakeId(info, flags, invocation);
    }
    case Command::kRm:
      if (flags.positional.empty()) {
        return Usage("rm: missing the process (its UUID, its name or a "
                     "unique prefix of its UUID)");
      }
      invocation.ids = flags.positional;
      invocation.force = flags.GetBool("force");
      return absl::OkStatus();
    case Command::kEvents:
      if (!flags.positional.empty()) {
        return Usage(absl::StrCat(info.name, ": unexpected argument \"",
                                  flags.positional[0], "\""));
      }
      return ParseEvents(flags, invocation);
    case Command::kPrune:
      if (!flags.positional.empty()) {
        return Usage(absl::StrCat(info.name, ": unexpected argument \"",
                                  flags.positional[0], "\""));
      }
      return absl::OkStatus();
  }
  return absl::OkStatus();
}

// A global flag's value: given after the command, else before it.
std::string Pick(const ParsedFlags& flags, const std::string& name,
                 const std::string& before) {
  return flags.Has(name) ? flags.Get(name) : before;
}

// "HOST:PORT" with a host and a port number, as gRPC takes it.
absl::Status CheckTarget(absl::string_view target) {
  const size_t colon = target.rfind(':');
  uint32_t port = 0;
  if (colon == absl::string_view::npos || colon == 0 ||
      !absl::SimpleAtoi(target.substr(colon + 1), &port) || port == 0 ||
      port > 65535) {
    return Usage(
        absl::StrCat("--gateway takes HOST:PORT (e.g. localhost:8080), "
                     "not \"",
                     target, "\""));
  }
  return absl::OkStatus();
}

// The local runtime dir, or the gateway and all it needs.
absl::StatusOr<Connection> ParseConnection(const ParsedFlags& flags,
                                           const GlobalOptions& defaults,
                                           const Environment& environment) {
  Connection connection;
  connection.runtime_dir = Pick(flags, "runtime_dir", defaults.runtime_dir);
  if (connection.runtime_dir.empty()) return Usage("--runtime_dir is empty");
  if (flags.Has("gateway") && flags.Get("gateway").empty()) {
    return Usage("--gateway is empty");
  }
  pm::RemoteOptions remote;
  remote.target = Pick(flags, "gateway", defaults.gateway);
  remote.ca_file = Pick(flags, "ca", defaults.ca_file);
  remote.cert_file = Pick(flags, "cert", defaults.cert_file);
  remote.key_file = Pick(flags, "key", defaults.key_file);
  remote.user = Pick(flags, "user", defaults.user);
  remote.password_file = Pick(flags, "password_file", defaults.password_file);
  // The flags that only mean something with --gateway, and their values.
  const std::vector<std::pair<std::string, const std::string*>> options = {
      {"--ca FILE", &remote.ca_file},
      {"--cert FILE", &remote.cert_file},
      {"--key FILE", &remote.key_file},
      {"--user NAME", &remote.user},
      {"--password_file FILE", &remote.password_file},
  };

  if (remote.target.empty()) {
    // Ignoring them would send the command to the local stack instead of
    // where the user meant it to go.
    std::vector<std::string> stray;
    for (const auto& [flag, value] : options) {
      if (!value->empty()) stray.push_back(flag.substr(0, flag.find(' ')));
    }
    if (!stray.empty()) {
      return Usage(absl::StrCat(absl::StrJoin(stray, ", "),
                                stray.size() == 1 ? " applies" : " apply",
                                " only with --gateway HOST:PORT"));
    }
    return connection;
  }
  absl::Status checked = CheckTarget(remote.target);
  if (!checked.ok()) return checked;
  std::vector<std::string> missing;
  for (size_t i = 0; i + 1 < options.size(); ++i) {  // all but password_file
    if (options[i].second->empty()) missing.push_back(options[i].first);
  }
  if (!missing.empty()) {
    return Usage(
        absl::StrCat("--gateway also needs ", absl::StrJoin(missing, ", ")));
  }
  if (remote.password_file.empty()) {
    remote.password = Lookup(environment, kPasswordVariable).value_or("");
    if (remote.password.empty()) {
      return Usage(absl::StrCat("--gateway needs the password of ", remote.user,
                                ": set $", kPasswordVariable,
                                " or give --password_file FILE"));
    }
  }
  connection.gateway = std::move(remote);
  return connection;
}

// Whether the global flag `name` (canonical, without "=value") takes the next
// word as its value.
bool TakesValue(const std::string& name) {
  if (name == "output") return true;
  for (const FlagSpec& spec : ConnectionFlags()) {
    if (spec.kind == FlagSpec::kValue && CanonicalFlagName(spec.name) == name) {
      return true;
    }
  }
  return false;
}

}  // namespace

std::string Connection::Describe() const {
  return gateway ? absl::StrCat("the gateway at ", gateway->target)
                 : runtime_dir;
}

bool IsPasswordFlag(absl::string_view arg) {
  if (arg.size() < 2 || arg[0] != '-') return false;
  absl::string_view name = absl::StripPrefix(arg.substr(1), "-");
  name = name.substr(0, name.find('='));
  return CanonicalFlagName(name) == "password";
}

std::string NoPasswordFlagMessage() {
  return absl::StrCat(
      "there is no --password flag: a command line is visible to every user "
      "of the machine (ps, /proc); set $",
      kPasswordVariable, " or give --password_file FILE");
}

bool IsCommand(absl::string_view word) { return FindCommand(word) != nullptr; }

SplitArgs SplitAtCommand(const std::vector<std::string>& args) {
  SplitArgs split;
  size_t i = 0;
  for (; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (arg == "--") {
      ++i;
      break;
    }
    if (arg.size() < 2 || arg[0] != '-') break;
    split.global_flags.push_back(arg);
    const std::string name = CanonicalFlagName(
        absl::StripPrefix(absl::StripPrefix(absl::string_view(arg), "-"), "-"));
    if (TakesValue(name) && i + 1 < args.size()) {
      split.global_flags.push_back(args[++i]);
    }
  }
  split.command.assign(args.begin() + i, args.end());
  return split;
}

absl::StatusOr<Invocation> ParseInvocation(const std::vector<std::string>& args,
                                           const GlobalOptions& defaults,
                                           const Environment& environment) {
  if (args.empty()) return Usage("missing a command");
  const CommandInfo* info = FindCommand(args[0]);
  if (info == nullptr) {
    return Usage(absl::StrCat("unknown command \"", args[0], "\""));
  }
  const std::vector<std::string> rest(args.begin() + 1, args.end());
  absl::StatusOr<ParsedFlags> flags =
      ParseFlags(Specs(*info), rest, info->takes_command);
  if (!flags.ok()) {
    absl::string_view unknown = flags.status().message();
    if (absl::ConsumePrefix(&unknown, "unknown flag ") &&
        IsPasswordFlag(unknown)) {
      return Usage(absl::StrCat(info->name, ": ", NoPasswordFlagMessage()));
    }
    return Usage(absl::StrCat(info->name, ": ", flags.status().message()));
  }

  Invocation invocation;
  if (flags->GetBool("help")) {
    invocation.help_topic = info->name == "help" ? "" : info->name;
    return invocation;
  }
  invocation.command = info->command;
  absl::StatusOr<Connection> connection =
      ParseConnection(*flags, defaults, environment);
  if (!connection.ok()) return connection.status();
  invocation.connection = *std::move(connection);
  absl::StatusOr<OutputFormat> output = ParseOutput(
      flags->Has("output") ? flags->Get("output") : defaults.output);
  if (!output.ok()) return output.status();
  if (*output == OutputFormat::kJson && !info->takes_output &&
      info->command != Command::kHelp) {
    return Usage(absl::StrCat(info->name, " has no --output=json"));
  }
  invocation.output = *output;
  if (flags->Has("grace")) {
    absl::StatusOr<absl::Duration> grace = ParseGrace(flags->Get("grace"));
    if (!grace.ok()) return grace.status();
    invocation.grace = *grace;
  }
  if (flags->Has("reconnect-timeout")) {
    absl::StatusOr<absl::Duration> timeout =
        ParseDurationFlag("reconnect-timeout", flags->Get("reconnect-timeout"));
    if (!timeout.ok()) return timeout.status();
    invocation.reconnect_timeout = *timeout;
  }
  absl::Status arguments =
      ParseArguments(*info, *flags, environment, invocation);
  if (!arguments.ok()) return arguments;
  return invocation;
}

std::string UsageText(absl::string_view command) {
  const CommandInfo* info = FindCommand(command);
  if (info == nullptr) {
    return absl::StrCat(kUsage, "\nRun 'pm help' for the commands.\n");
  }
  return absl::StrCat("usage: pm ", info->name, " ", info->synopsis, "\n",
                      "Run 'pm ", info->name, " --help' for details.\n");
}

std::string HelpText(absl::string_view command) {
  const CommandInfo* info = FindCommand(command);
  if (info != nullptr) {
    std::vector<FlagSpec> flags = info->flags;
    flags.push_back(HelpFlag());
    return absl::StrCat(
        "usage: pm ", info->name, " ", info->synopsis, "\n\n", info->details,
        "\n\nFlags:\n", FlagLines(flags),
        "\nThe global flags (--runtime_dir, or --gateway and its --ca, "
        "--cert,\n"
        "--key, --user, --password_file) go before or after the command; see\n"
        "'pm help'.\n");
  }
  std::string commands;
  for (const CommandInfo& c : Commands()) {
    absl::StrAppend(&commands, "  ", c.name,
                    std::string(8 - c.name.size(), ' '), c.summary, "\n");
  }
  return absl::StrCat(
      "pm starts, stops, inspects and reads the output of Linux processes,\n"
      "each named by a UUID. It talks to the local pm services over the unix\n"
      "sockets in the runtime dir (start them with `make up`), or with\n"
      "--gateway to a pm gateway over mutual TLS, as a user with a password.\n"
      "\n",
      kUsage,
      "\n"
      "Commands:\n",
      commands,
      "\n"
      "Global flags (before or after the command):\n",
      [] {
        std::vector<FlagSpec> flags = ConnectionFlags();
        flags.push_back(OutputFlag());
        return FlagLines(flags);
      }(),
      "\n"
      "Environment:\n"
      "  PM_PASSWORD     the password for --gateway, when --password_file is\n"
      "                  not given (pm does not pass it on with "
      "--inherit-env)\n"
      "  PM_RUNTIME_DIR  the default of --runtime_dir\n"
      "\n"
      "Exit codes: 0 success, 1 a failed operation, 2 bad usage, 130 Ctrl+C;\n"
      "run and wait exit with the process's code (128+N when signal N killed\n"
      "it).\n"
      "\n"
      "Examples:\n"
      "  id=$(pm start -- sleep 100)\n"
      "  pm logs -f \"$id\"\n"
      "  pm stop --grace 2s \"$id\"\n"
      "  pm list\n"
      "  pm run --env GREETING=hi -- sh -c 'echo \"$GREETING\"; exit 3'\n"
      "  pm run --memory 256M --cpus 0.5 --pids 64 --isolate=pid,net -- make\n"
      "  pm --gateway=localhost:8080 --ca certs/dev/ca.pem \\\n"
      "     --cert certs/dev/client.pem --key certs/dev/client.key \\\n"
      "     --user demo --password_file certs/dev/demo.password list\n"
      "\n"
      "Run 'pm help COMMAND' or 'pm COMMAND --help' for a command's flags.\n");
}

}  // namespace pm::cli
