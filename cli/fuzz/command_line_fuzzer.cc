// Fuzzes ParseInvocation, the `pm` command line: the input's lines are the
// words after `pm`. Whatever they are, the outcome is an Invocation or an
// INVALID_ARGUMENT whose message is one non-empty line, and the usage and
// help that would follow can be made.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_split.h"
#include "cli/command_tree.h"
#include "cli/invocation.h"
#include "testing/fuzz/fuzz_check.h"

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
