// Every command and flag of `pm`, declared once, on CLI11: the parser, the
// help (`pm help`, `pm COMMAND --help`), the usage lines and the README's
// command list are all made from this one tree.
//
//   Arguments arguments;
//   std::unique_ptr<CLI::App> tree = MakeCommandTree(arguments);
//   tree->parse(args);  // args reversed, as CLI11 takes a vector
//   // arguments.command, arguments.invocation.grace, arguments.env, ...
//
// ParseInvocation (cli/invocation.h) does that and turns CLI11's errors into
// pm's one-line usage errors. A typed flag (a duration, a size, a signal, a
// limit, an enum) is checked as it is parsed, with the checks and ranges of
// cli/limits.h and common/ (common/limit_ranges.h, common/stop_request.h,
// common/output_request.h): its error names the flag, the value and what is
// accepted.
//
// Conventions of the declarations: a command's description is its one-line
// summary, a blank line, then its details; its footer holds its examples,
// one command line per line. Global flags are the root's; every command
// falls through to them, so they go before or after the command. start and
// run end their flags at `--` or at the first word that is not a flag:
// everything after it is the command, verbatim.
#ifndef PM_CLI_COMMAND_TREE_H_
#define PM_CLI_COMMAND_TREE_H_

#include <CLI/CLI.hpp>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/types/optional.h"
#include "cli/invocation.h"

namespace pm::cli {

// --tail: all (the default), now, or a number of lines.
struct TailFlag {
  enum Kind { kAll, kNow, kLines };
  Kind kind = kAll;
  uint64_t lines = 0;
};

// What the command line gave, as the declarations bind it. ParseInvocation
// finishes it into an Invocation with what needs pm's environment (--env K,
// --env-file, --inherit-env, a relative --cwd) or spans several flags
// (--gateway and its companions, --tail against --since).
struct Arguments {
  // The command given (set as soon as its word is read), if any.
  absl::optional<Command> command;
  // "start", "list", ...: the command's name as declared.
  std::string command_name;
  // Whether the command declares --output (text or json).
  bool prints_json = false;
  bool version = false;
  // Global flags, unset when not given.
  absl::optional<std::string> runtime_dir;
  absl::optional<std::string> gateway;
  absl::optional<std::string> ca_file;
  absl::optional<std::string> cert_file;
  absl::optional<std::string> key_file;
  absl::optional<std::string> user;
  absl::optional<std::string> password_file;
  OutputFormat output = OutputFormat::kText;
  // What needs nothing more: ids, signals, durations, limits, bools.
  Invocation invocation;
  // start and run: EXECUTABLE ARGS..., and the flags read with pm's
  // environment.
  std::vector<std::string> command_line;
  std::vector<std::string> env;
  std::vector<std::string> env_files;
  bool inherit_env = false;
  absl::optional<std::string> cwd;
  // list and events.
  std::vector<std::string> filters;
  bool all = false;
  // logs.
  TailFlag tail;
  bool from_start = false;
  // help.
  std::string help_topic;
};

// The root app `pm`, its global flags and one subcommand per command, every
// value bound to `arguments` (which must outlive it). With `only` (a
// command's name or alias), that command alone: it parses that command's
// lines as the whole tree does, in a fraction of the time (CLI11 makes each
// option of several std::functions and checks its names against every one
// before it: `perf record` of `pm status` put 14% of its samples in
// building the whole tree, 0.7% in building one command's). A word that
// names no command gives the whole tree.
std::unique_ptr<CLI::App> MakeCommandTree(Arguments& arguments,
                                          absl::string_view only = {});

// "usage: pm stop [--grace DURATION] [--output json] ID" and a pointer to
// the full help; the overview's usage for "" or an unknown command.
std::string UsageText(absl::string_view command);

// The full help of `command` (a name or an alias), or the overview for ""
// (every command, the global flags, environment, exit codes, examples).
std::string HelpText(absl::string_view command);

// The name of the command `word` names ("list" for its alias "ps"); unset
// for a word that names none.
absl::optional<std::string> CommandName(absl::string_view word);

// The README's command list: a Markdown table, one row per command with its
// synopsis and summary.
std::string CommandListMarkdown();

// `pm completion bash`: a bash completion script made from the tree (the
// commands and aliases, each one's flags and the global ones; a flag's
// value by its kind: files, directories, signals, policies, states, event
// kinds, isolations, output formats), which completes an ID operand with
// the names and UUIDs `pm list --all` prints, run with the global flags
// typed on the line.
std::string BashCompletion();

}  // namespace pm::cli

#endif  // PM_CLI_COMMAND_TREE_H_
