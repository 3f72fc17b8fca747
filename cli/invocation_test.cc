#include "cli/invocation.h"

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace pm::cli {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Pair;
using ::testing::UnorderedElementsAre;

GlobalOptions Defaults() {
  GlobalOptions defaults;
  defaults.runtime_dir = "/run/pm";
  return defaults;
}

Environment TestEnvironment() {
  return {{"HOME=/home/u", "PATH=/usr/bin:/bin", "EMPTY="}, "/home/u/src"};
}

Invocation MustParse(const std::vector<std::string>& args) {
  absl::StatusOr<Invocation> invocation =
      ParseInvocation(args, Defaults(), TestEnvironment());
  EXPECT_TRUE(invocation.ok()) << invocation.status();
  return invocation.ok() ? *invocation : Invocation();
}

// The message of a usage error (and that it is one).
std::string UsageError(const std::vector<std::string>& args) {
  absl::StatusOr<Invocation> invocation =
      ParseInvocation(args, Defaults(), TestEnvironment());
  EXPECT_EQ(invocation.status().code(), absl::StatusCode::kInvalidArgument);
  return std::string(invocation.status().message());
}

TEST(InvocationTest, StartTakesRepeatedEnvAndTheCommandVerbatim) {
  Invocation invocation = MustParse({"start", "--env", "A=1", "--env=B=x=y",
                                     "--", "sh", "-c", "echo $A", "--env"});
  EXPECT_EQ(invocation.command, Command::kStart);
  EXPECT_EQ(invocation.start.executable(), "sh");
  EXPECT_THAT(invocation.start.args(), ElementsAre("-c", "echo $A", "--env"));
  EXPECT_THAT(invocation.start.env(),
              UnorderedElementsAre(Pair("A", "1"), Pair("B", "x=y")));
  EXPECT_EQ(invocation.runtime_dir, "/run/pm");
  EXPECT_TRUE(invocation.start.working_dir().empty());
}

TEST(InvocationTest, StartCommandBeginsAtTheFirstWordWithoutDoubleDash) {
  Invocation invocation = MustParse({"start", "ls", "-l", "--cwd", "/"});
  EXPECT_EQ(invocation.start.executable(), "ls");
  EXPECT_THAT(invocation.start.args(), ElementsAre("-l", "--cwd", "/"));
  EXPECT_TRUE(invocation.start.working_dir().empty());
}

TEST(InvocationTest, InheritEnvCopiesOursAndEnvOverrides) {
  Invocation invocation =
      MustParse({"start", "--inherit-env", "--env", "HOME=/tmp", "--", "env"});
  EXPECT_THAT(
      invocation.start.env(),
      UnorderedElementsAre(Pair("HOME", "/tmp"), Pair("PATH", "/usr/bin:/bin"),
                           Pair("EMPTY", "")));
}

TEST(InvocationTest, EnvWithoutValueCopiesThatVariable) {
  Invocation invocation = MustParse({"start", "--env", "PATH", "--", "env"});
  EXPECT_THAT(invocation.start.env(),
              UnorderedElementsAre(Pair("PATH", "/usr/bin:/bin")));
  EXPECT_THAT(UsageError({"start", "--env", "NOPE", "--", "env"}),
              HasSubstr("NOPE is not set"));
  EXPECT_THAT(UsageError({"start", "--env", "=1", "--", "env"}),
              HasSubstr("the name is empty"));
}

TEST(InvocationTest, RelativeCwdIsResolvedWhereTheUserIs) {
  EXPECT_EQ(
      MustParse({"start", "--cwd", "build", "--", "ls"}).start.working_dir(),
      "/home/u/src/build");
  EXPECT_EQ(MustParse({"start", "--cwd=/var", "--", "ls"}).start.working_dir(),
            "/var");
}

TEST(InvocationTest, StartWithoutCommandIsAUsageError) {
  EXPECT_THAT(UsageError({"start"}), HasSubstr("missing the command"));
  EXPECT_THAT(UsageError({"start", "--env", "A=1", "--"}),
              HasSubstr("missing the command"));
  EXPECT_THAT(UsageError({"run", "--bogus", "--", "ls"}),
              HasSubstr("run: unknown flag --bogus"));
}

TEST(InvocationTest, IdCommandsNeedExactlyOneUuid) {
  EXPECT_EQ(UsageError({"stop"}), "stop: missing the process UUID");
  EXPECT_EQ(UsageError({"status"}), "status: missing the process UUID");
  EXPECT_EQ(UsageError({"logs", "-f"}), "logs: missing the process UUID");
  EXPECT_EQ(UsageError({"wait"}), "wait: missing the process UUID");
  EXPECT_EQ(UsageError({"status", "a", "b"}),
            "status: unexpected argument \"b\"");
  EXPECT_EQ(UsageError({"list", "x"}), "list: unexpected argument \"x\"");
  EXPECT_EQ(MustParse({"status", "abc"}).id, "abc");
}

TEST(InvocationTest, Grace) {
  EXPECT_FALSE(MustParse({"stop", "id"}).grace.has_value());
  EXPECT_EQ(MustParse({"stop", "--grace", "2s", "id"}).grace, absl::Seconds(2));
  EXPECT_EQ(MustParse({"stop", "--grace=500ms", "id"}).grace,
            absl::Milliseconds(500));
  EXPECT_EQ(MustParse({"stop", "--grace=3", "id"}).grace, absl::Seconds(3));
  EXPECT_EQ(MustParse({"stop", "--grace=0", "id"}).grace, absl::ZeroDuration());
  EXPECT_EQ(MustParse({"run", "--grace=1m", "--", "ls"}).grace,
            absl::Minutes(1));
  EXPECT_THAT(UsageError({"stop", "--grace=soon", "id"}),
              HasSubstr("--grace takes a duration"));
  EXPECT_THAT(UsageError({"stop", "--grace=-1s", "id"}),
              HasSubstr("out of range"));
}

TEST(InvocationTest, Logs) {
  Invocation plain = MustParse({"logs", "id"});
  EXPECT_EQ(plain.command, Command::kLogs);
  EXPECT_FALSE(plain.follow);
  EXPECT_TRUE(plain.from_start);
  Invocation follow = MustParse({"logs", "-f", "--tail=now", "id"});
  EXPECT_TRUE(follow.follow);
  EXPECT_FALSE(follow.from_start);
  EXPECT_TRUE(MustParse({"logs", "id", "--follow", "--from-start"}).follow);
  EXPECT_THAT(UsageError({"logs", "--tail=10", "id"}),
              HasSubstr("--tail takes only \"now\""));
  EXPECT_THAT(UsageError({"logs", "--tail=now", "--from-start", "id"}),
              HasSubstr("contradict"));
}

TEST(InvocationTest, ListAndItsAlias) {
  EXPECT_EQ(MustParse({"list"}).command, Command::kList);
  EXPECT_EQ(MustParse({"ps"}).command, Command::kList);
}

TEST(InvocationTest, OutputFormat) {
  EXPECT_EQ(MustParse({"list"}).output, OutputFormat::kText);
  EXPECT_EQ(MustParse({"list", "--output=json"}).output, OutputFormat::kJson);
  EXPECT_EQ(MustParse({"status", "--output", "json", "id"}).output,
            OutputFormat::kJson);
  GlobalOptions json = Defaults();
  json.output = "json";
  EXPECT_EQ(ParseInvocation({"wait", "id"}, json, TestEnvironment())->output,
            OutputFormat::kJson);
  EXPECT_THAT(ParseInvocation({"logs", "id"}, json, TestEnvironment())
                  .status()
                  .message(),
              HasSubstr("logs has no --output=json"));
  EXPECT_THAT(UsageError({"list", "--output=yaml"}),
              HasSubstr("--output must be text or json"));
}

TEST(InvocationTest, RuntimeDirAfterTheCommandWins) {
  EXPECT_EQ(MustParse({"list", "--runtime_dir=/x"}).runtime_dir, "/x");
  EXPECT_EQ(MustParse({"list", "--runtime-dir", "/y"}).runtime_dir, "/y");
  EXPECT_THAT(UsageError({"list", "--runtime_dir="}), HasSubstr("is empty"));
}

TEST(InvocationTest, Help) {
  Invocation overview = MustParse({"help"});
  EXPECT_EQ(overview.command, Command::kHelp);
  EXPECT_EQ(overview.help_topic, "");
  EXPECT_EQ(MustParse({"help", "ps"}).help_topic, "list");
  Invocation stop_help = MustParse({"stop", "--help"});
  EXPECT_EQ(stop_help.command, Command::kHelp);
  EXPECT_EQ(stop_help.help_topic, "stop");
  EXPECT_EQ(MustParse({"logs", "-h"}).help_topic, "logs");
  // After --, --help belongs to the command being started.
  EXPECT_EQ(MustParse({"start", "--", "ls", "--help"}).command,
            Command::kStart);
  EXPECT_THAT(UsageError({"help", "bogus"}), HasSubstr("unknown command"));
}

TEST(InvocationTest, UnknownCommand) {
  EXPECT_EQ(UsageError({"frobnicate"}), "unknown command \"frobnicate\"");
  EXPECT_EQ(UsageError({}), "missing a command");
}

TEST(InvocationTest, SplitAtCommand) {
  SplitArgs split = SplitAtCommand({"--runtime_dir", "/x", "list", "-f"});
  EXPECT_THAT(split.global_flags, ElementsAre("--runtime_dir", "/x"));
  EXPECT_THAT(split.command, ElementsAre("list", "-f"));
  split = SplitAtCommand({"--output=json", "start", "--", "ls"});
  EXPECT_THAT(split.global_flags, ElementsAre("--output=json"));
  EXPECT_THAT(split.command, ElementsAre("start", "--", "ls"));
  split = SplitAtCommand({"--", "list"});
  EXPECT_THAT(split.global_flags, IsEmpty());
  EXPECT_THAT(split.command, ElementsAre("list"));
  EXPECT_THAT(SplitAtCommand({"-h"}).command, IsEmpty());
}

TEST(InvocationTest, HelpTexts) {
  const std::string overview = HelpText("");
  for (const char* command :
       {"start", "run", "stop", "status", "list", "logs", "wait", "help"}) {
    EXPECT_THAT(overview, HasSubstr(absl::StrCat("\n  ", command, " ")))
        << command;
    EXPECT_THAT(HelpText(command),
                HasSubstr(absl::StrCat("usage: pm ", command, " ")));
  }
  EXPECT_THAT(HelpText("start"), HasSubstr("--inherit-env"));
  EXPECT_THAT(HelpText("run"), HasSubstr("Ctrl+C"));
  EXPECT_THAT(
      UsageText("stop"),
      HasSubstr("usage: pm stop [--grace DURATION] [--output json] UUID"));
  EXPECT_THAT(UsageText("bogus"), HasSubstr("usage: pm [--runtime_dir DIR]"));
}

}  // namespace
}  // namespace pm::cli
