#include "cli/command_tree.h"

#include <stdio.h>
#include <sys/stat.h>

#include <fstream>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace pm::cli {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;

// Every command's name, from the tree itself.
std::vector<std::string> CommandNames() {
  Arguments arguments;
  std::unique_ptr<CLI::App> tree = MakeCommandTree(arguments);
  std::vector<std::string> names;
  for (const CLI::App* command : tree->get_subcommands({})) {
    names.push_back(command->get_name());
  }
  return names;
}

TEST(CommandTreeTest, HelpFitsAnEightyColumnTerminal) {
  std::vector<std::string> topics = CommandNames();
  topics.push_back("");  // the overview
  ASSERT_GE(topics.size(), 12u);
  for (const std::string& topic : topics) {
    for (absl::string_view line : absl::StrSplit(HelpText(topic), '\n')) {
      EXPECT_LT(line.size(), 80u) << "pm help " << topic << ": " << line;
    }
    for (absl::string_view line : absl::StrSplit(UsageText(topic), '\n')) {
      EXPECT_LT(line.size(), 80u) << "usage of " << topic << ": " << line;
    }
  }
}

TEST(CommandTreeTest, EveryCommandShowsAnExampleAndEveryFlagItDeclares) {
  Arguments arguments;
  std::unique_ptr<CLI::App> tree = MakeCommandTree(arguments);
  for (const CLI::App* command : tree->get_subcommands({})) {
    const std::string help = HelpText(command->get_name());
    EXPECT_THAT(help, StartsWith(absl::StrCat("usage: pm ", command->get_name())));
    const size_t examples = help.find("\nExamples:\n  ");
    ASSERT_NE(examples, std::string::npos) << command->get_name();
    EXPECT_THAT(help.substr(examples), HasSubstr("pm ")) << command->get_name();
    for (const CLI::Option* option : command->get_options()) {
      if (option->get_positional()) continue;
      EXPECT_THAT(help, HasSubstr(absl::StrCat("--", option->get_lnames()[0])))
          << command->get_name();
      EXPECT_THAT(UsageText(command->get_name()),
                  HasSubstr(absl::StrCat("--", option->get_lnames()[0])))
          << command->get_name();
    }
  }
}

TEST(CommandTreeTest, UsageLinesAreMadeFromTheDeclarations) {
  EXPECT_EQ(UsageText("stop"),
            "usage: pm stop [--grace DURATION] [--output json] ID\n"
            "Run 'pm stop --help' for details.\n");
  EXPECT_EQ(UsageText("ps"),
            "usage: pm list [-a|--all] [--filter FILTER]... [--node NAME] "
            "[-n|--last N]\n"
            "               [-q|--quiet] [--output json]\n"
            "Run 'pm list --help' for details.\n");
  EXPECT_THAT(UsageText("start"), HasSubstr("-- EXECUTABLE [ARGS...]"));
  EXPECT_THAT(UsageText("rm"), HasSubstr("[-f|--force] [--output json] ID..."));
  EXPECT_THAT(UsageText(""), StartsWith("usage: pm [--runtime_dir DIR]"));
}

TEST(CommandTreeTest, CommandNamesAndAliases) {
  EXPECT_EQ(CommandName("ps"), "list");
  EXPECT_EQ(CommandName("list"), "list");
  EXPECT_EQ(CommandName("events"), "events");
  EXPECT_FALSE(CommandName("frobnicate").has_value());
  EXPECT_FALSE(CommandName("").has_value());
}

// The README's list of commands is this tree's: a command added here and
// not there (or the other way round) fails.
TEST(CommandTreeTest, TheReadmeListsTheCommandsOfTheTree) {
  std::ifstream file("README.md");
  ASSERT_TRUE(file.good()) << "README.md is not among the test's data";
  std::stringstream readme;
  readme << file.rdbuf();
  EXPECT_TRUE(absl::StrContains(readme.str(), CommandListMarkdown()))
      << "Paste this table into the README's command list:\n"
      << CommandListMarkdown();
  for (const std::string& name : CommandNames()) {
    EXPECT_THAT(CommandListMarkdown(), HasSubstr(absl::StrCat("`pm ", name, "`")));
  }
}

// Runs `script` in bash (with `completion` loaded and a `t LINE` that
// prints what completing LINE offers, one line per call, sorted) and
// returns its stdout.
std::string Bash(const std::string& completion, const std::string& script) {
  const std::string dir = ::testing::TempDir();
  const std::string file = dir + "/pm_completion.bash";
  std::ofstream(file) << completion;
  // A pm that lists two processes, one named: what `pm list --all` prints.
  const std::string fake = dir + "/fake_pm";
  std::ofstream(fake)
      << "#!/bin/sh\n"
         "echo \"$@\" >> " << dir << "/fake_pm.args\n"
         "cat <<'EOF'\n"
         "UUID                                  NAME  STATE    PID  EXIT  STARTED  COMMAND\n"
         "0b7e3d1c-6a1f-4e8e-9f3c-2d6a5b4c3d2e  web   running  7    -     now      sleep 1\n"
         "9a1e3d1c-6a1f-4e8e-9f3c-2d6a5b4c3d2f  -     exited   8    0     now      true\n"
         "EOF\n";
  EXPECT_EQ(chmod(fake.c_str(), 0755), 0);
  const std::string program = dir + "/program.bash";
  std::ofstream(program)
      << "source " << file << "\n"
      << "t() { COMP_LINE=\"$1\"; COMP_POINT=${#1}; _pm; "
         "printf '%s\\n' \"${COMPREPLY[@]}\" | sort | tr '\\n' ' '; echo; }\n"
      << "pm=" << fake << "\n" << script;
  FILE* out = popen(absl::StrCat("bash ", program, " 2>&1").c_str(), "r");
  EXPECT_NE(out, nullptr);
  std::string text;
  char buffer[4096];
  size_t n;
  while (out != nullptr && (n = fread(buffer, 1, sizeof(buffer), out)) > 0) {
    text.append(buffer, n);
  }
  if (out != nullptr) {
    EXPECT_EQ(pclose(out), 0) << text;
  }
  return text;
}

TEST(CommandTreeTest, TheBashCompletionCompletesCommandsFlagsValuesAndProcesses) {
  const std::string completion = BashCompletion();
  EXPECT_EQ(Bash(completion, ""), "");  // it loads without a word on stderr
  for (const std::string& name : CommandNames()) {
    EXPECT_TRUE(absl::StrContains(completion, absl::StrCat(" ", name, " ")) ||
                absl::StrContains(completion, absl::StrCat(" ", name, "'")))
        << name;
  }
  const std::string got = Bash(completion,
                               "t \"$pm st\"\n"
                               "t \"$pm stop \"\n"
                               "t \"$pm --runtime-dir /r stop w\"\n"
                               "t \"$pm kill -s TER\"\n"
                               "t \"$pm start --restart \"\n"
                               "t \"$pm start --restart=al\"\n"
                               "t \"$pm ps --filter state=ex\"\n"
                               "t \"$pm events --filter kind=gave\"\n"
                               "t \"$pm logs --t\"\n"
                               "t \"$pm --out\"\n"
                               "t \"$pm stop web \"\n"
                               "t \"$pm start --name x -- sh -c --gr\"\n"
                               "t \"$pm help lo\"\n"
                               "t \"$pm completion \"\n"
                               "t \"$pm ps --filter state=unk\"\n"
                               "t \"$pm ps --filter no\"\n"
                               "t \"$pm ps --no\"\n"
                               "t \"$pm run --no\"\n");
  std::vector<std::string> lines = absl::StrSplit(got, '\n');
  ASSERT_GE(lines.size(), 18u) << got;
  EXPECT_EQ(lines[0], "start status stop ");
  EXPECT_EQ(lines[1],
            "0b7e3d1c-6a1f-4e8e-9f3c-2d6a5b4c3d2e 9a1e3d1c-6a1f-4e8e-9f3c-2d6a5b4c3d2f web ");
  EXPECT_EQ(lines[2], "web ");
  EXPECT_EQ(lines[3], "TERM ");
  EXPECT_EQ(lines[4], "always no on-failure ");
  EXPECT_EQ(lines[5], "always ");
  EXPECT_EQ(lines[6], "state=exited ");
  EXPECT_EQ(lines[7], "kind=gave_up ");
  EXPECT_EQ(lines[8], "--tail --timestamps ");
  EXPECT_EQ(lines[9], "--output ");
  EXPECT_EQ(lines[10], " ");  // stop takes one process
  // After start's command, its own words: no flag of pm's.
  EXPECT_THAT(lines[11], Not(HasSubstr("--grace")));
  EXPECT_EQ(lines[12], "logs ");
  EXPECT_EQ(lines[13], "bash ");
  // A cluster's: the state of a process whose host is unreachable, and
  // the host to list or run on.
  EXPECT_EQ(lines[14], "state=unknown ");
  EXPECT_EQ(lines[15], "node= ");
  EXPECT_EQ(lines[16], "--node ");
  EXPECT_EQ(lines[17], "--node ");
  // The processes were listed with the global flags of the line.
  std::ifstream args(::testing::TempDir() + "/fake_pm.args");
  std::stringstream listed;
  listed << args.rdbuf();
  EXPECT_THAT(listed.str(), HasSubstr("--runtime-dir /r list --all\n"));
}

}  // namespace
}  // namespace pm::cli
