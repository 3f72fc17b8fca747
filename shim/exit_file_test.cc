#include "shim/exit_file.h"

#include <stdlib.h>
#include <unistd.h>

#include <string>

#include "common/fd.h"
#include "gtest/gtest.h"

namespace pm::shim {
namespace {

const absl::Time kWhen = absl::FromUnixNanos(1764700000123456789);

TEST(ExitFileTest, FormatIsTheDocumentedText) {
  EXPECT_EQ(FormatExitFile({{ExitStatus::Exited(3), kWhen, 42}, std::nullopt, false}),
            "pm-shim-exit 1\nstatus exited 3\nended_ns 1764700000123456789\n"
            "output_end 42\n");
  EXPECT_EQ(FormatExitFile({{ExitStatus::Signaled(11, true), kWhen, 0}, std::nullopt, false}),
            "pm-shim-exit 1\nstatus signaled 11 core\nended_ns "
            "1764700000123456789\noutput_end 0\n");
  // With a restart policy: version 2, the last run and whether it gave up.
  EXPECT_EQ(FormatExitFile({{ExitStatus::Exited(3), kWhen, 42}, 4, true}),
            "pm-shim-exit 2\nstatus exited 3\nended_ns 1764700000123456789\n"
            "output_end 42\nrun 4\ngave_up 1\n");
}

TEST(ExitFileTest, EveryKindOfEndParsesBack) {
  for (const ExitStatus& status :
       {ExitStatus::Exited(0), ExitStatus::Exited(255), ExitStatus::Signaled(9),
        ExitStatus::Signaled(6, true)}) {
    for (const ExitRecord& record :
         {ExitRecord{{status, kWhen, UINT64_MAX}, std::nullopt, false}, ExitRecord{{status, kWhen, 7}, 1, false},
          ExitRecord{{status, kWhen, 7}, UINT32_MAX, true}}) {
      absl::StatusOr<ExitRecord> parsed = ParseExitFile(FormatExitFile(record));
      ASSERT_TRUE(parsed.ok()) << parsed.status();
      EXPECT_EQ(*parsed, record) << status.ToString();
    }
  }
}

TEST(ExitFileTest, ParserRefusesAnythingElseNamingTheLine) {
  const std::string good = FormatExitFile({{ExitStatus::Exited(3), kWhen, 42}, std::nullopt, false});
  struct Case {
    std::string text;
    std::string fragment;
  };
  const Case cases[] = {
      {"", "cut short"},
      {good.substr(0, good.size() - 1), "cut short"},
      {good.substr(0, 20), "cut short"},
      {"pm-shim-exit 3\nstatus exited 3\nended_ns 1\noutput_end 0\n", "first line"},
      {"pm-shim-exit 2\nstatus exited 3\nended_ns 1\noutput_end 0\n", "4 lines, want 6"},
      {"pm-shim-exit 2\nstatus exited 3\nended_ns 1\noutput_end 0\nrun 0\ngave_up 0\n",
       "run 0"},
      {"pm-shim-exit 2\nstatus exited 3\nended_ns 1\noutput_end 0\nrun 2\ngave_up 2\n",
       "bad number \"2\""},
      {"pm-shim-exit 2\nstatus exited 3\nended_ns 1\noutput_end 0\nrun 4294967296\n"
       "gave_up 0\n",
       "bad number"},
      {good + "extra\n", "5 lines"},
      {"pm-shim-exit 1\nstatus exited 256\nended_ns 1\noutput_end 0\n", "bad number \"256\""},
      {"pm-shim-exit 1\nstatus exited 03\nended_ns 1\noutput_end 0\n", "bad number \"03\""},
      {"pm-shim-exit 1\nstatus exited -1\nended_ns 1\noutput_end 0\n", "bad number"},
      {"pm-shim-exit 1\nstatus signaled 0 core\nended_ns 1\noutput_end 0\n", "signal 0"},
      {"pm-shim-exit 1\nstatus signaled 9 maybe\nended_ns 1\noutput_end 0\n", "bad status line"},
      {"pm-shim-exit 1\nstatus exited 3\nended 1\noutput_end 0\n", "want \"ended_ns N\""},
      {"pm-shim-exit 1\nstatus exited 3\nended_ns 9223372036854775808\noutput_end 0\n",
       "bad number"},
      {"pm-shim-exit 1\nstatus exited 3\nended_ns 1\noutput_end 18446744073709551616\n",
       "bad number"},
  };
  for (const Case& c : cases) {
    absl::StatusOr<ExitRecord> parsed = ParseExitFile(c.text);
    ASSERT_FALSE(parsed.ok()) << c.text;
    EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(parsed.status().message().find(c.fragment), std::string::npos)
        << parsed.status() << " for " << c.text;
  }
}

class ExitFileDirTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/exit_file_test.XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    unlink((dir_ + "/exit").c_str());
    rmdir(dir_.c_str());
  }
  std::string dir_;
};

TEST_F(ExitFileDirTest, WrittenAtomicallyAndReadBack) {
  absl::StatusOr<std::optional<ExitRecord>> none = ReadExitFile(dir_);
  ASSERT_TRUE(none.ok()) << none.status();
  EXPECT_FALSE(none->has_value());

  const ExitRecord end{{ExitStatus::Signaled(9), kWhen, 1234}, 3, false};
  ASSERT_TRUE(WriteExitFile(dir_, end).ok());
  absl::StatusOr<std::optional<ExitRecord>> got = ReadExitFile(dir_);
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_TRUE(got->has_value());
  EXPECT_EQ(**got, end);
  // No temporary file is left beside it.
  EXPECT_NE(access((dir_ + "/exit.tmp").c_str(), F_OK), 0);
}

TEST_F(ExitFileDirTest, WriteErrorNamesTheCallAndPath) {
  absl::Status status =
      WriteExitFile(dir_ + "/missing", {{ExitStatus::Exited(0), kWhen, 0}, std::nullopt, false});
  EXPECT_EQ(status.code(), absl::StatusCode::kNotFound);
  EXPECT_NE(status.message().find("open(\"" + dir_ + "/missing/exit.tmp\")"),
            std::string::npos)
      << status;
}

}  // namespace
}  // namespace pm::shim
