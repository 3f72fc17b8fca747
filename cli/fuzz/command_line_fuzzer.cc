// Fuzzes ParseInvocation, the `pm` command line: the input's lines are the
// words after `pm`. Whatever they are, the outcome is an Invocation or an
// INVALID_ARGUMENT whose message is one non-empty line, and the usage and
// help that would follow can be made.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "absl/strings/str_split.h"
#include "cli/command_tree.h"
#include "cli/invocation.h"
#include "testing/fuzz/fuzz_check.h"

namespace {

// What a parse gave, as text: two parses agree when these are equal.
std::string Outcome(const absl::StatusOr<pm::cli::Invocation>& parsed,
                    const std::string& command) {
  if (!parsed.ok()) return absl::StrCat(command, " error: ", parsed.status().message());
  const pm::cli::Invocation& i = *parsed;
  return absl::StrCat(
      command, " ", static_cast<int>(i.command), " ", i.help_topic, " ",
      i.connection.Describe(), " ", static_cast<int>(i.output), " ", i.id, " ",
      absl::StrJoin(i.ids, ","), " ", i.signal, i.leader_only, i.force,
      i.remove_after, i.quiet, i.follow, i.from_start, i.timestamps,
      i.stdout_only, i.stderr_only, " ", i.watch.ShortDebugString(), " ",
      i.list.ShortDebugString(), " ",
      // (The whole tree's start flags make start's empty limits and restart
      // as they are declared; only start and run read them.)
      i.command == pm::cli::Command::kStart || i.command == pm::cli::Command::kRun
          ? i.start.ShortDebugString()
          : "", " ",
      i.grace ? absl::FormatDuration(*i.grace) : "-", " ",
      i.tail_lines ? absl::StrCat(*i.tail_lines) : "-", " ",
      absl::FormatDuration(i.reconnect_timeout));
}

// Whether two parses' --since or --until agree: a relative one ("10m") is
// taken from the clock at each parse.
bool SameTime(const absl::optional<absl::Time>& a, const absl::optional<absl::Time>& b) {
  if (!a || !b) return !a && !b;
  return absl::AbsDuration(*a - *b) < absl::Seconds(10);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string input(reinterpret_cast<const char*>(data), size);
  // argv words hold no NUL: it splits words as a newline does.
  std::vector<std::string> args =
      absl::StrSplit(input, absl::ByAnyChar(absl::string_view("\n\0", 2)));
  for (const std::string& arg : args) {
    // --env-file reads the file it names; the fuzzer must not read
    // whatever path it makes up (a fifo would block it).
    if (absl::StrContains(arg, "env-file") || absl::StrContains(arg, "env_file")) {
      return 0;
    }
  }
  pm::cli::GlobalOptions defaults{"/run/pm-fuzz"};
  pm::cli::Environment environment{{"HOME=/h", "PM_PASSWORD=x"}, "/h"};
  std::string command;
  absl::StatusOr<pm::cli::Invocation> invocation =
      pm::cli::ParseInvocation(args, defaults, environment, &command);
  // The tree of the first word's command alone parses as the whole one.
  std::string whole_command;
  const absl::StatusOr<pm::cli::Invocation> whole = pm::cli::ParseInvocation(
      args, defaults, environment, &whole_command, pm::cli::TreeScope::kWhole);
  PM_FUZZ_CHECK(Outcome(invocation, command) == Outcome(whole, whole_command))
      << Outcome(invocation, command) << "\n" << Outcome(whole, whole_command);
  if (invocation.ok() && whole.ok()) {
    PM_FUZZ_CHECK(SameTime(invocation->since, whole->since));
    PM_FUZZ_CHECK(SameTime(invocation->until, whole->until));
  }
  if (!invocation.ok()) {
    PM_FUZZ_CHECK(invocation.status().code() == absl::StatusCode::kInvalidArgument)
        << invocation.status();
    PM_FUZZ_CHECK(!invocation.status().message().empty());
    PM_FUZZ_CHECK(!absl::StrContains(invocation.status().message(), '\n'))
        << invocation.status();
    PM_FUZZ_CHECK(!pm::cli::UsageText(command).empty()) << command;
    return 0;
  }
  switch (invocation->command) {
    case pm::cli::Command::kHelp:
      PM_FUZZ_CHECK(!pm::cli::HelpText(invocation->help_topic).empty());
      break;
    case pm::cli::Command::kStart:
    case pm::cli::Command::kRun:
      PM_FUZZ_CHECK(!invocation->start.executable().empty() ||
                    !invocation->start.executable_bytes().empty());
      break;
    case pm::cli::Command::kStop:
    case pm::cli::Command::kStatus:
    case pm::cli::Command::kLogs:
    case pm::cli::Command::kWait:
    case pm::cli::Command::kKill:
      PM_FUZZ_CHECK(!invocation->id.empty());
      break;
    case pm::cli::Command::kRm:
      PM_FUZZ_CHECK(!invocation->ids.empty());
      break;
    default:
      break;
  }
  return 0;
}
