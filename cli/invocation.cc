#include "cli/invocation.h"

#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

#include <CLI/CLI.hpp>

#include <algorithm>
#include <map>
#include <memory>
#include <optional>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "cli/command_tree.h"
#include "cli/format.h"
#include "common/command_line.h"
#include "common/fd.h"
#include "common/names.h"
#include "common/restart_policy.h"
#include "common/status_core.h"
#include "common/utf8.h"

namespace pm::cli {
namespace {

absl::Status Usage(absl::string_view message) {
  return absl::InvalidArgumentError(message);
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

// The command, the environment and the working directory of start and run
// into the StartRequest whose name, labels and limits the flags have set.
absl::Status FinishStart(const Arguments& arguments,
                         const Environment& environment,
                         Invocation& invocation) {
  if (arguments.command_line.empty()) {
    return Usage(absl::StrCat(arguments.command_name,
                              ": missing the command to run (pm ",
                              arguments.command_name,
                              " -- EXECUTABLE ARGS...)"));
  }
  if (arguments.command_line[0].empty()) {
    return Usage(absl::StrCat(arguments.command_name,
                              ": the executable is an empty word"));
  }
  // Bytes, as the shell gave them: PutCommandLine sends what is not UTF-8
  // in the request's bytes forms.
  pm::CommandLine command;
  command.executable = arguments.command_line[0];
  command.args.assign(arguments.command_line.begin() + 1,
                      arguments.command_line.end());
  EnvMap env;
  if (arguments.inherit_env) {
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
  for (const std::string& path : arguments.env_files) {
    PM_RETURN_IF_ERROR(AddEnvFile(path, environment, env));
  }
  for (const std::string& assignment : arguments.env) {
    PM_RETURN_IF_ERROR(AddEnv(assignment, environment, env));
  }
  command.env.assign(env.begin(), env.end());
  if (arguments.cwd) {
    const std::string& cwd = *arguments.cwd;
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
  PutCommandLine(command, invocation.start);
  // No limit asked for: no Limits message on the wire either.
  if (invocation.start.limits().ByteSizeLong() == 0) {
    invocation.start.clear_limits();
  }
  pm::v1::StartRequest& start = invocation.start;
  if (start.restart().ByteSizeLong() == 0) {
    start.clear_restart();
  } else {
    if (!RestartsOf(start)) {
      return Usage("--max-restarts, --restart-window and the delays apply only "
                   "with --restart on-failure or always");
    }
    if (absl::Status valid = ValidateRestartPolicy(start.restart()); !valid.ok()) {
      return Usage(valid.message());
    }
  }
  return absl::OkStatus();
}

// --all, --filter, --last and -q of `pm list` into a ListRequest.
absl::Status FinishList(const Arguments& arguments, Invocation& invocation) {
  pm::v1::ListRequest& list = invocation.list;
  bool any_state = arguments.all;
  for (const std::string& filter : arguments.filters) {
    const size_t eq = filter.find('=');
    const std::string kind = filter.substr(0, eq);
    const std::string value = eq == std::string::npos ? "" : filter.substr(eq + 1);
    auto bad = [&](absl::string_view why) {
      return Usage(absl::StrCat("--filter ", filter, ": ", why));
    };
    if (eq == std::string::npos || value.empty()) {
      return bad("want state=STATE, name=NAME, node=NAME, label=KEY=VALUE or "
                 "label=KEY");
    }
    if (kind == "state") {
      pm::v1::ProcessStatus::State state;
      if (!pm::v1::ProcessStatus::State_Parse(
              absl::StrCat("STATE_", absl::AsciiStrToUpper(value)), &state) ||
          state == pm::v1::ProcessStatus::STATE_UNSPECIFIED) {
        return bad("the state is one of running, stopping, exited, signaled, "
                   "lost, backoff, unknown");
      }
      list.add_states(state);
      any_state = true;
    } else if (kind == "name") {
      if (!list.name().empty() && list.name() != value) {
        return bad("a process has one name: two name= filters match nothing");
      }
      list.set_name(value);
    } else if (kind == "node") {
      // --node sets it too.
      if (absl::Status valid = ValidateNodeName(value); !valid.ok()) {
        return bad(valid.message());
      }
      if (!list.node().empty() && list.node() != value) {
        return bad("a process is on one node: two different nodes match nothing");
      }
      list.set_node(value);
    } else if (kind == "label") {
      absl::StatusOr<LabelSelector> selector = ParseLabelSelector(value);
      if (!selector.ok()) return bad(selector.status().message());
      list.add_label_selector(value);
    } else {
      return bad(absl::StrCat("unknown filter \"", kind,
                              "\" (state, name, node and label are known)"));
    }
  }
  if (!any_state) {
    // As `docker ps`: the live ones unless --all.
    list.add_states(pm::v1::ProcessStatus::STATE_RUNNING);
    list.add_states(pm::v1::ProcessStatus::STATE_STOPPING);
  }
  return absl::OkStatus();
}

absl::Status FinishEvents(const Arguments& arguments, Invocation& invocation) {
  pm::v1::WatchRequest& watch = invocation.watch;
  for (const std::string& filter : arguments.filters) {
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
  return absl::OkStatus();
}

// --tail against --from-start and --since, and --since against --until.
absl::Status FinishLogs(const Arguments& arguments, Invocation& invocation) {
  if (invocation.since && invocation.until &&
      *invocation.until < *invocation.since) {
    return Usage("--until is before --since");
  }
  switch (arguments.tail.kind) {
    case TailFlag::kAll:  // everything retained: the default
      break;
    case TailFlag::kLines:
      invocation.tail_lines = arguments.tail.lines;
      break;
    case TailFlag::kNow:
      if (arguments.from_start) {
        return Usage("--from-start and --tail=now contradict each other");
      }
      if (invocation.since) {
        return Usage("--since and --tail=now contradict each other");
      }
      invocation.from_start = false;
      break;
  }
  return absl::OkStatus();
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
absl::StatusOr<Connection> FinishConnection(const Arguments& arguments,
                                            const GlobalOptions& defaults,
                                            const Environment& environment) {
  Connection connection;
  connection.runtime_dir = arguments.runtime_dir.value_or(defaults.runtime_dir);
  if (connection.runtime_dir.empty()) return Usage("--runtime_dir is empty");
  if (arguments.gateway && arguments.gateway->empty()) {
    return Usage("--gateway is empty");
  }
  pm::RemoteOptions remote;
  remote.target = arguments.gateway.value_or("");
  remote.ca_file = arguments.ca_file.value_or("");
  remote.cert_file = arguments.cert_file.value_or("");
  remote.key_file = arguments.key_file.value_or("");
  remote.user = arguments.user.value_or("");
  remote.password_file = arguments.password_file.value_or("");
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

// pm's one line for what CLI11 refused, which `arguments` shows as far as
// it got (the command, if its word was read). `args` is the command line.
std::string ErrorMessage(const CLI::App& tree, const Arguments& arguments,
                         const std::vector<std::string>& args,
                         const CLI::ParseError& error) {
  const std::string prefix =
      arguments.command ? absl::StrCat(arguments.command_name, ": ") : "";
  if (dynamic_cast<const CLI::ExtrasError*>(&error) != nullptr) {
    // The first word left over, and whether a `--` came before it (then it
    // is an argument, whatever it looks like).
    bool after_dashes = false;
    std::string word;
    for (const std::string& extra : tree.remaining(true)) {
      if (extra == "--") {
        after_dashes = true;
        continue;
      }
      word = extra;
      break;
    }
    // CLI11 drops a `--` that ends a command with no operands.
    const auto dashes = std::find(args.begin(), args.end(), "--");
    if (dashes != args.end() && std::find(dashes, args.end(), word) != args.end()) {
      after_dashes = true;
    }
    if (!after_dashes && IsPasswordFlag(word)) {
      return absl::StrCat(prefix, NoPasswordFlagMessage());
    }
    if (!after_dashes && word.size() > 1 && word[0] == '-') {
      return absl::StrCat(prefix, "unknown flag ", word.substr(0, word.find('=')));
    }
    // A word before the command's is not the command's argument.
    const auto command_at =
        std::find(args.begin(), args.end(), arguments.command_name);
    if (!arguments.command ||
        std::find(args.begin(), command_at, word) != command_at) {
      return absl::StrCat("unknown command \"", word, "\"");
    }
    return absl::StrCat(prefix, "unexpected argument \"", word, "\"");
  }
  absl::string_view message = error.what();
  if (dynamic_cast<const CLI::ConversionError*>(&error) != nullptr &&
      absl::ConsumePrefix(&message, "Could not convert: ")) {
    // A bool flag's value: "--follow = maybe".
    const size_t equals = message.find(" = ");
    return absl::StrCat(prefix, message.substr(0, equals),
                        " takes no value (or true or false), not \"",
                        message.substr(equals + 3), "\"");
  }
  if (dynamic_cast<const CLI::ArgumentMismatch*>(&error) != nullptr &&
      absl::EndsWith(message, " missing")) {
    // "--env: 1 required K=V missing"
    return absl::StrCat(prefix, message.substr(0, message.find(':')),
                        " needs a value");
  }
  return absl::StrCat(prefix, message);
}

// What CLI11 would misread, refused first: `--name=` (CLI11 would take the
// next word as its value; no flag of pm's takes an empty one) and `-name`
// for a long flag (CLI11 would read -n -a -m -e). Only the words that are
// pm's: up to `--`, and for start and run up to the command's first word.
absl::Status CheckWords(const CLI::App& tree, const std::vector<std::string>& args) {
  const CLI::App* command = nullptr;
  // Whether the word before was a flag whose value is this word.
  bool value_next = false;
  for (const std::string& arg : args) {
    if (value_next) {
      value_next = false;
      continue;
    }
    if (arg == "--") break;
    if (arg.size() < 2 || arg[0] != '-') {
      if (command == nullptr) {
        for (const CLI::App* sub : tree.get_subcommands({})) {
          if (sub->check_name(arg)) command = sub;
        }
        if (command != nullptr) continue;
      }
      // An operand; for start and run, the command begins.
      if (command != nullptr && command->get_positionals_at_end()) break;
      continue;
    }
    const bool long_form = arg[1] == '-';
    const std::string name =
        arg.substr(long_form ? 2 : 1, arg.find('=') - (long_form ? 2 : 1));
    const CLI::Option* option = nullptr;
    for (const CLI::App* app : {command, &tree}) {
      if (app == nullptr || option != nullptr) continue;
      if (long_form) {
        option = app->get_option_no_throw("--" + name);
        continue;
      }
      if (name.size() > 1 && app->get_option_no_throw("--" + name) != nullptr) {
        return absl::InvalidArgumentError(absl::StrCat(
            "unknown flag ", arg.substr(0, arg.find('=')),
            " (long flags take two dashes: --", name, ")"));
      }
      option = app->get_option_no_throw("-" + name.substr(0, 1));
    }
    if (option == nullptr || option->get_items_expected_max() == 0) continue;
    const size_t equals = arg.find('=');
    if (long_form && equals == arg.size() - 1) {
      return absl::InvalidArgumentError(absl::StrCat(
          command != nullptr ? absl::StrCat(command->get_name(), ": ") : "",
          arg.substr(0, equals), " is empty"));
    }
    // `--name value` and `-n value`: the next word is the value (`-n5`,
    // `-qn 5`: bundles are left to CLI11).
    if (equals == std::string::npos && (long_form || arg.size() == 2)) value_next = true;
  }
  return absl::OkStatus();
}


// The command's own operands: one process, or several for rm.
absl::Status CheckOperands(const Arguments& arguments,
                           const Invocation& invocation) {
  const std::string missing = absl::StrCat(
      arguments.command_name,
      ": missing the process (its UUID, its name or a unique prefix of its "
      "UUID)");
  switch (invocation.command) {
    case Command::kStop:
    case Command::kStatus:
    case Command::kLogs:
    case Command::kWait:
    case Command::kKill:
      if (invocation.id.empty()) return Usage(missing);
      return absl::OkStatus();
    case Command::kRm:
      if (invocation.ids.empty()) return Usage(missing);
      for (const std::string& id : invocation.ids) {
        if (id.empty()) return Usage(absl::StrCat("rm: an empty process id"));
      }
      return absl::OkStatus();
    default:
      return absl::OkStatus();
  }
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
  return name == "password";
}

std::string NoPasswordFlagMessage() {
  return absl::StrCat(
      "there is no --password flag: a command line is visible to every user "
      "of the machine (ps, /proc); set $",
      kPasswordVariable, " or give --password_file FILE");
}

namespace {

// The first word of `args` that is not a flag (before any `--`): the
// command's, on most lines. Empty if there is none.
absl::string_view FirstWord(const std::vector<std::string>& args) {
  for (const std::string& arg : args) {
    if (arg == "--") break;
    if (!arg.empty() && arg[0] != '-') return arg;
  }
  return {};
}

// The words, read by CLI11 into `arguments` with a tree of the command
// `only` names alone (MakeCommandTree), or the whole tree for "". OK (and
// `help` set for a --help), or the usage error. `arguments` shows what was
// read, also when it fails. Reads no file: a line is read again with the
// whole tree when the first tree refuses it, and a file may be a pipe.
absl::Status ReadWords(const std::vector<std::string>& args, Arguments& arguments,
                       absl::string_view only, bool& help) {
  std::unique_ptr<CLI::App> tree = MakeCommandTree(arguments, only);
  PM_RETURN_IF_ERROR(CheckWords(*tree, args));
  std::vector<std::string> reversed(args.rbegin(), args.rend());
  try {
    tree->parse(reversed);
  } catch (const CLI::CallForHelp&) {
    help = true;
  } catch (const CLI::ParseError& error) {
    return Usage(ErrorMessage(*tree, arguments, args, error));
  }
  return absl::OkStatus();
}

// The request the words read make, with pm's environment: the only step
// that reads files (--env-file), once.
absl::StatusOr<Invocation> Finish(Arguments& arguments, bool help,
                                  const GlobalOptions& defaults,
                                  const Environment& environment) {
  if (help) {
    Invocation for_help;
    if (arguments.command && *arguments.command != Command::kHelp) {
      for_help.help_topic = arguments.command_name;
    }
    return for_help;
  }
  Invocation invocation = std::move(arguments.invocation);
  if (arguments.version) {
    invocation.command = Command::kVersion;
    return invocation;
  }
  if (!arguments.command) return Usage("missing a command");
  invocation.command = *arguments.command;
  if (invocation.command == Command::kHelp) {
    if (!arguments.help_topic.empty()) {
      absl::optional<std::string> name = CommandName(arguments.help_topic);
      if (!name) {
        return Usage(absl::StrCat("help: unknown command \"",
                                  arguments.help_topic, "\""));
      }
      invocation.help_topic = *name;
    }
    return invocation;
  }
  if (invocation.command == Command::kCompletion) {
    // Needs no connection; `--output json` is refused as for any command
    // without it.
    if (arguments.output == OutputFormat::kJson) {
      return Usage("completion has no --output=json");
    }
    invocation.help_topic = arguments.help_topic;
    return invocation;
  }
  if (arguments.output == OutputFormat::kJson && !arguments.prints_json) {
    return Usage(absl::StrCat(arguments.command_name, " has no --output=json"));
  }
  invocation.output = arguments.output;
  PM_RETURN_IF_ERROR(CheckOperands(arguments, invocation));
  PM_ASSIGN_OR_RETURN(invocation.connection,
                      FinishConnection(arguments, defaults, environment));
  switch (invocation.command) {
    case Command::kStart:
    case Command::kRun:
      PM_RETURN_IF_ERROR(FinishStart(arguments, environment, invocation));
      break;
    case Command::kList:
      PM_RETURN_IF_ERROR(FinishList(arguments, invocation));
      break;
    case Command::kEvents:
      PM_RETURN_IF_ERROR(FinishEvents(arguments, invocation));
      break;
    case Command::kLogs:
      PM_RETURN_IF_ERROR(FinishLogs(arguments, invocation));
      break;
    default:
      break;
  }
  return invocation;
}

}  // namespace

absl::StatusOr<Invocation> ParseInvocation(const std::vector<std::string>& args,
                                           const GlobalOptions& defaults,
                                           const Environment& environment,
                                           std::string* command_name,
                                           TreeScope scope) {
  Arguments arguments;
  bool help = false;
  // The words are read first with a tree of the command the first word
  // names alone, a small part of the cost of the whole tree
  // (MakeCommandTree). It reads a line of that command as the whole tree
  // does (the trees differ only in the other commands, whose words a line
  // of this one never takes as commands); a line it refuses, or that names
  // no command, is read again by the whole tree, so usage errors are the
  // whole tree's. Then the request is finished once.
  const absl::string_view word =
      scope == TreeScope::kFirstWord ? FirstWord(args) : absl::string_view();
  std::optional<absl::Status> read;
  if (!word.empty()) {
    absl::Status first = ReadWords(args, arguments, word, help);
    if (first.ok() && arguments.command) {
      read = first;
    } else {
      arguments = Arguments();
      help = false;
    }
  }
  if (!read) read = ReadWords(args, arguments, {}, help);
  absl::StatusOr<Invocation> invocation =
      read->ok() ? Finish(arguments, help, defaults, environment)
                 : absl::StatusOr<Invocation>(*read);
  if (command_name != nullptr) *command_name = arguments.command_name;
  if (!invocation.ok()) return Usage(OneLine(invocation.status().message()));
  return invocation;
}

}  // namespace pm::cli
