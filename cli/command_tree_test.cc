#include "cli/command_tree.h"

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
            "usage: pm list [-a|--all] [--filter FILTER]... [-n|--last N] "
            "[-q|--quiet]\n"
            "               [--output json]\n"
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

}  // namespace
}  // namespace pm::cli
