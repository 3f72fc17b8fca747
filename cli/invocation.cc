#include "cli/invocation.h"

#include <algorithm>
#include <cstdint>
#include <limits>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "cli/flags.h"

namespace pm::cli {
namespace {

// Help lines end before this column.
constexpr size_t kHelpWidth = 79;

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
                       ": 500ms, 10s, 1m (default 10s; 0: SIGKILL at once)")};
}

std::vector<FlagSpec> StartFlags() {
  return {
      {"env", FlagSpec::kValue, "K=V",
       "set a variable of the process's environment (repeatable); --env K "
       "copies K from pm's own environment",
       /*repeated=*/true},
      {"inherit-env", FlagSpec::kBool, "",
       "start from pm's own environment (--env then adds or overrides)"},
      {"cwd", FlagSpec::kValue, "DIR",
       "the working directory (relative to the current one); default: the "
       "supervisor's"},
  };
}

const std::vector<CommandInfo>& Commands() {
  static const auto* commands = new std::vector<CommandInfo>{
      {Command::kStart, "start", "",
       "[--env K=V]... [--inherit-env] [--cwd DIR] -- EXECUTABLE [ARGS...]",
       "start a process and print its UUID",
       "Starts EXECUTABLE with ARGS and prints the new process's UUID alone "
       "on\n"
       "stdout, so that id=$(pm start -- sleep 100) works. EXECUTABLE is a "
       "path\n"
       "or a name looked up on the process's PATH. Everything after -- (or\n"
       "after the first word that is not a flag) is the command, verbatim.\n"
       "\n"
       "The process's environment is only what --env gives (and a default\n"
       "PATH) unless --inherit-env copies pm's own first. If the process "
       "cannot\n"
       "be started, for example because EXECUTABLE does not exist, nothing is\n"
       "started and the OS error is printed.",
       [] {
         std::vector<FlagSpec> flags = StartFlags();
         flags.push_back(OutputFlag());
         return flags;
       }(),
       /*takes_output=*/true, /*takes_command=*/true},
      {Command::kRun, "run", "",
       "[--env K=V]... [--inherit-env] [--cwd DIR] -- EXECUTABLE [ARGS...]",
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
       "lets the stop carry on. If pm itself fails, it prints why and exits 1.",
       [] {
         std::vector<FlagSpec> flags = StartFlags();
         flags.push_back(GraceFlag("when Ctrl+C stops the process"));
         return flags;
       }(),
       /*takes_output=*/false, /*takes_command=*/true},
      {Command::kStop,
       "stop",
       "",
       "[--grace DURATION] [--output json] UUID",
       "stop a process: SIGTERM, grace period, SIGKILL",
       "Stops a process and its whole process group: SIGTERM, then SIGKILL\n"
       "once the grace period has passed. Prints how the process ended, e.g.\n"
       "\"killed by signal 15 (SIGTERM)\" or \"exited with code 0\" (at once "
       "for\n"
       "a process that had already ended). If it would not stop (a member of\n"
       "its group outlived SIGKILL), prints its status and exits 1.",
       {GraceFlag("of this stop"), OutputFlag()},
       /*takes_output=*/true},
      {Command::kStatus,
       "status",
       "",
       "[--output json] UUID",
       "show a process's state, exit, resources and /proc status",
       "Shows a process's record: state, pid, command, start time, run time,\n"
       "how it ended (exit code or signal, core dump, whether a stop ended "
       "it),\n"
       "its output size and, while it runs, its memory, threads and the "
       "fields\n"
       "of /proc/PID/status.",
       {OutputFlag()},
       /*takes_output=*/true},
      {Command::kList,
       "list",
       "ps",
       "[--output json]",
       "list the processes, newest first (alias: ps)",
       "Lists every process on record, newest first: UUID, state, pid, exit\n"
       "code (or the signal that killed it), start time and command.",
       {OutputFlag()},
       /*takes_output=*/true},
      {Command::kLogs,
       "logs",
       "",
       "[-f|--follow] [--from-start|--tail=now] UUID",
       "print a process's output (stdout and stderr)",
       "Prints a process's output, stdout and stderr both, as raw bytes on\n"
       "stdout. Without -f: everything retained so far, then exits. With -f:\n"
       "also what the process writes next, until it has ended and its output\n"
       "is drained, or until Ctrl+C (exit 130).\n"
       "\n"
       "Output over the output store's cap is not retained. It is never\n"
       "skipped silently: a notice \"pm: [N bytes not retained before offset\n"
       "X]\" goes to stderr where bytes are missing.",
       {{"follow", FlagSpec::kBool, "",
         "keep printing new output until the process has ended", false, 'f'},
        {"from-start", FlagSpec::kBool, "",
         "begin at the oldest retained byte (the default)"},
        {"tail", FlagSpec::kValue, "now",
         "begin with what the process writes from now on (use with -f)"}}},
      {Command::kWait,
       "wait",
       "",
       "[--output json] UUID",
       "wait for a process to end, exit with its exit code",
       "Waits until a process has ended, prints how it ended and exits with\n"
       "its exit code, or 128+N when signal N killed it.",
       {OutputFlag()},
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

std::vector<FlagSpec> GlobalFlags() {
  return {
      {"runtime_dir", FlagSpec::kValue, "DIR",
       "the directory of the services' unix sockets (default: "
       "$PM_RUNTIME_DIR, else $XDG_RUNTIME_DIR/pm, else /tmp/pm-UID)"},
      {"help", FlagSpec::kBool, "", "show this help", false, 'h'},
  };
}

// The command's flags and the global ones it accepts after its name.
std::vector<FlagSpec> Specs(const CommandInfo& info) {
  std::vector<FlagSpec> specs = info.flags;
  for (FlagSpec& spec : GlobalFlags()) specs.push_back(std::move(spec));
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

// "10s", "500ms", "1m30s", or a bare number of seconds.
absl::StatusOr<absl::Duration> ParseGrace(absl::string_view value) {
  absl::Duration grace;
  int64_t seconds = 0;
  if (absl::SimpleAtoi(value, &seconds)) {
    grace = absl::Seconds(seconds);
  } else if (!absl::ParseDuration(value, &grace)) {
    return Usage(
        absl::StrCat("--grace takes a duration like 500ms, 10s or 1m, "
                     "not \"",
                     value, "\""));
  }
  if (grace < absl::ZeroDuration() ||
      absl::ToInt64Milliseconds(grace) > std::numeric_limits<uint32_t>::max()) {
    return Usage(absl::StrCat("--grace ", value, " is out of range"));
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

absl::Status AddEnv(absl::string_view assignment,
                    const Environment& environment,
                    pm::v1::StartRequest& start) {
  const size_t eq = assignment.find('=');
  const std::string key(assignment.substr(0, eq));
  if (key.empty()) {
    return Usage(absl::StrCat("--env ", assignment, ": the name is empty"));
  }
  if (eq != absl::string_view::npos) {
    (*start.mutable_env())[key] = std::string(assignment.substr(eq + 1));
    return absl::OkStatus();
  }
  absl::optional<std::string> value = Lookup(environment, key);
  if (!value) {
    return Usage(absl::StrCat("--env ", key, ": ", key,
                              " is not set in pm's environment (use K=V)"));
  }
  (*start.mutable_env())[key] = *value;
  return absl::OkStatus();
}

absl::Status ParseStart(const ParsedFlags& flags,
                        const Environment& environment,
                        Invocation& invocation) {
  if (flags.positional.empty()) {
    return Usage("missing the command to run (pm start -- EXECUTABLE ARGS...)");
  }
  pm::v1::StartRequest& start = invocation.start;
  start.set_executable(flags.positional[0]);
  for (size_t i = 1; i < flags.positional.size(); ++i) {
    start.add_args(flags.positional[i]);
  }
  if (flags.GetBool("inherit-env")) {
    for (const std::string& variable : environment.variables) {
      const size_t eq = variable.find('=');
      if (eq == std::string::npos || eq == 0) continue;
      (*start.mutable_env())[variable.substr(0, eq)] = variable.substr(eq + 1);
    }
  }
  for (const std::string& assignment : flags.GetAll("env")) {
    absl::Status added = AddEnv(assignment, environment, start);
    if (!added.ok()) return added;
  }
  if (flags.Has("cwd")) {
    const std::string cwd = flags.Get("cwd");
    if (cwd.empty()) return Usage("--cwd is empty");
    // The supervisor has a working directory of its own: a relative path
    // means what it means where the user typed it.
    start.set_working_dir(cwd[0] == '/' || environment.cwd.empty()
                              ? cwd
                              : absl::StrCat(environment.cwd, "/", cwd));
  }
  return absl::OkStatus();
}

absl::Status TakeId(const CommandInfo& info, const ParsedFlags& flags,
                    Invocation& invocation) {
  if (flags.positional.empty()) {
    return Usage(absl::StrCat(info.name, ": missing the process UUID"));
  }
  if (flags.positional.size() > 1) {
    return Usage(absl::StrCat(info.name, ": unexpected argument \"",
                              flags.positional[1], "\""));
  }
  invocation.id = flags.positional[0];
  return absl::OkStatus();
}

absl::Status ParseLogs(const ParsedFlags& flags, Invocation& invocation) {
  invocation.follow = flags.GetBool("follow");
  if (flags.Has("tail")) {
    if (flags.Get("tail") != "now") {
      return Usage(absl::StrCat("--tail takes only \"now\", not \"",
                                flags.Get("tail"), "\""));
    }
    if (flags.GetBool("from-start")) {
      return Usage("--from-start and --tail=now contradict each other");
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
      return ParseStart(flags, environment, invocation);
    case Command::kList:
      if (!flags.positional.empty()) {
        return Usage(absl::StrCat(info.name, ": unexpected argument \"",
                                  flags.positional[0], "\""));
      }
      return absl::OkStatus();
    case Command::kLogs: {
      absl::Status logs = ParseLogs(flags, invocation);
      if (!logs.ok()) return logs;
      return TakeId(info, flags, invocation);
    }
    case Command::kStop:
    case Command::kStatus:
    case Command::kWait:
      return TakeId(info, flags, invocation);
  }
  return absl::OkStatus();
}

}  // namespace

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
    if ((name == "runtime_dir" || name == "output") && i + 1 < args.size()) {
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
    return Usage(absl::StrCat(info->name, ": ", flags.status().message()));
  }

  Invocation invocation;
  if (flags->GetBool("help")) {
    invocation.help_topic = info->name == "help" ? "" : info->name;
    return invocation;
  }
  invocation.command = info->command;
  invocation.runtime_dir = flags->Has("runtime_dir") ? flags->Get("runtime_dir")
                                                     : defaults.runtime_dir;
  if (invocation.runtime_dir.empty()) return Usage("--runtime_dir is empty");
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
  absl::Status arguments =
      ParseArguments(*info, *flags, environment, invocation);
  if (!arguments.ok()) return arguments;
  return invocation;
}

std::string UsageText(absl::string_view command) {
  const CommandInfo* info = FindCommand(command);
  if (info == nullptr) {
    return "usage: pm [--runtime_dir DIR] COMMAND [FLAGS] [ARGS...]\n"
           "Run 'pm help' for the commands.\n";
  }
  return absl::StrCat("usage: pm ", info->name, " ", info->synopsis, "\n",
                      "Run 'pm ", info->name, " --help' for details.\n");
}

std::string HelpText(absl::string_view command) {
  const CommandInfo* info = FindCommand(command);
  if (info != nullptr) {
    return absl::StrCat("usage: pm ", info->name, " ", info->synopsis, "\n\n",
                        info->details, "\n\nFlags:\n", FlagLines(Specs(*info)));
  }
  std::string commands;
  for (const CommandInfo& c : Commands()) {
    absl::StrAppend(&commands, "  ", c.name,
                    std::string(8 - c.name.size(), ' '), c.summary, "\n");
  }
  return absl::StrCat(
      "pm starts, stops, inspects and reads the output of Linux processes,\n"
      "each named by a UUID. It talks to the local pm services over the unix\n"
      "sockets in the runtime dir (start them with `make up`).\n"
      "\n"
      "usage: pm [--runtime_dir DIR] COMMAND [FLAGS] [ARGS...]\n"
      "\n"
      "Commands:\n",
      commands,
      "\n"
      "Global flags (before or after the command):\n",
      FlagLines({GlobalFlags()[0], OutputFlag()}),
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
      "\n"
      "Run 'pm help COMMAND' or 'pm COMMAND --help' for a command's flags.\n");
}

}  // namespace pm::cli
