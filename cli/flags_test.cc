#include "cli/flags.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace pm::cli {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

const std::vector<FlagSpec> kSpecs = {
    {"env", FlagSpec::kValue, "K=V", "", /*repeated=*/true},
    {"cwd", FlagSpec::kValue, "DIR", ""},
    {"inherit-env", FlagSpec::kBool, "", ""},
    {"follow", FlagSpec::kBool, "", "", false, 'f'},
    {"runtime_dir", FlagSpec::kValue, "DIR", ""},
    {"quiet", FlagSpec::kBool, "", "", false, 'q'},
    {"last", FlagSpec::kValue, "N", "", false, 'n'},
};

ParsedFlags MustParse(const std::vector<std::string>& args,
                      bool stop_at_positional = false) {
  absl::StatusOr<ParsedFlags> flags =
      ParseFlags(kSpecs, args, stop_at_positional);
  EXPECT_TRUE(flags.ok()) << flags.status();
  return flags.ok() ? *flags : ParsedFlags();
}

TEST(FlagsTest, RepeatedFlagKeepsEveryValueInOrder) {
  ParsedFlags flags = MustParse({"--env", "A=1", "--env=B=2", "-env", "C=3"});
  EXPECT_THAT(flags.GetAll("env"), ElementsAre("A=1", "B=2", "C=3"));
}

TEST(FlagsTest, SingleFlagKeepsTheLastValue) {
  ParsedFlags flags = MustParse({"--cwd=/a", "--cwd", "/b"});
  EXPECT_EQ(flags.Get("cwd"), "/b");
  EXPECT_THAT(flags.GetAll("cwd"), ElementsAre("/b"));
}

TEST(FlagsTest, DashesAndUnderscoresAreTheSame) {
  ParsedFlags flags = MustParse({"--inherit_env", "--runtime-dir=/run"});
  EXPECT_TRUE(flags.GetBool("inherit-env"));
  EXPECT_EQ(flags.Get("runtime_dir"), "/run");
}

TEST(FlagsTest, BoolForms) {
  EXPECT_TRUE(MustParse({"-f"}).GetBool("follow"));
  EXPECT_TRUE(MustParse({"--follow"}).GetBool("follow"));
  EXPECT_FALSE(MustParse({"--follow=false"}).GetBool("follow"));
  EXPECT_FALSE(MustParse({}).GetBool("follow"));
  EXPECT_FALSE(MustParse({}).Has("follow"));
}

TEST(FlagsTest, BoolWithAValueIsAnError) {
  absl::StatusOr<ParsedFlags> flags =
      ParseFlags(kSpecs, {"--follow=yes"}, false);
  ASSERT_EQ(flags.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(flags.status().message(), HasSubstr("--follow takes no value"));
}

TEST(FlagsTest, UnknownFlagIsNamed) {
  absl::StatusOr<ParsedFlags> flags = ParseFlags(kSpecs, {"--bogus=1"}, false);
  ASSERT_EQ(flags.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(flags.status().message(), "unknown flag --bogus=1");
  EXPECT_EQ(ParseFlags(kSpecs, {"-x"}, false).status().message(),
            "unknown flag -x");
}

TEST(FlagsTest, MissingValueIsNamed) {
  absl::StatusOr<ParsedFlags> flags = ParseFlags(kSpecs, {"--cwd"}, false);
  ASSERT_EQ(flags.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(flags.status().message(), HasSubstr("--cwd needs a value"));
}

TEST(FlagsTest, ShortFlagsBundleAsGetoptTakesThem) {
  ParsedFlags flags = MustParse({"-fq"});
  EXPECT_TRUE(flags.GetBool("follow"));
  EXPECT_TRUE(flags.GetBool("quiet"));
  EXPECT_EQ(MustParse({"-qn5"}).Get("last"), "5");
  ParsedFlags next = MustParse({"-qn", "7", "x"});
  EXPECT_EQ(next.Get("last"), "7");
  EXPECT_THAT(next.positional, ElementsAre("x"));
  // A long name spelled with one dash still wins ("-cwd /a").
  EXPECT_EQ(MustParse({"-cwd", "/a"}).Get("cwd"), "/a");
  EXPECT_EQ(ParseFlags(kSpecs, {"-fx"}, false).status().message(),
            "unknown flag -fx");
  EXPECT_THAT(ParseFlags(kSpecs, {"-qn"}, false).status().message(),
              HasSubstr("-n needs a value"));
}

TEST(FlagsTest, DoubleDashEndsTheFlags) {
  ParsedFlags flags =
      MustParse({"--env", "A=1", "--", "sh", "--env", "-c", "--", "x"});
  EXPECT_THAT(flags.GetAll("env"), ElementsAre("A=1"));
  EXPECT_THAT(flags.positional, ElementsAre("sh", "--env", "-c", "--", "x"));
}

TEST(FlagsTest, FlagsMayFollowPositionalsUnlessStopped) {
  EXPECT_TRUE(MustParse({"id", "-f"}).GetBool("follow"));
  ParsedFlags stopped = MustParse({"ls", "-f", "--env=A"}, true);
  EXPECT_FALSE(stopped.Has("follow"));
  EXPECT_THAT(stopped.positional, ElementsAre("ls", "-f", "--env=A"));
}

TEST(FlagsTest, LoneDashIsAWord) {
  ParsedFlags flags = MustParse({"-"});
  EXPECT_THAT(flags.positional, ElementsAre("-"));
  EXPECT_THAT(MustParse({"--"}).positional, IsEmpty());
}

}  // namespace
}  // namespace pm::cli
