#include "common/file_limit.h"

#include <errno.h>
#include <sys/resource.h>

#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace pm {
namespace {

using ::testing::HasSubstr;

// Restores this test process's RLIMIT_NOFILE when it goes.
class FileLimitTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &saved_), 0); }
  void TearDown() override { EXPECT_EQ(setrlimit(RLIMIT_NOFILE, &saved_), 0); }
  rlimit saved_;
};

TEST_F(FileLimitTest, RaisesTheSoftLimitToTheHardOneAndReturnsTheOriginal) {
  if (saved_.rlim_max < 64) GTEST_SKIP() << "a hard limit below 64";
  rlimit low = saved_;
  low.rlim_cur = 32;
  ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &low), 0);

  absl::StatusOr<rlimit> original = RaiseFileLimit();
  ASSERT_TRUE(original.ok()) << original.status();
  EXPECT_EQ(original->rlim_cur, 32u);
  EXPECT_EQ(original->rlim_max, saved_.rlim_max);
  rlimit now;
  ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &now), 0);
  EXPECT_EQ(now.rlim_cur, saved_.rlim_max);
  EXPECT_EQ(now.rlim_max, saved_.rlim_max);

  // Again: already at the hard limit, nothing changes.
  original = RaiseFileLimit();
  ASSERT_TRUE(original.ok()) << original.status();
  EXPECT_EQ(original->rlim_cur, saved_.rlim_max);
}

TEST_F(FileLimitTest, AnEmfileFailureBecomesResourceExhaustedNamingTheLimit) {
  rlimit now;
  ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &now), 0);
  absl::Status explained = ExplainFileExhaustion(
      Annotate(ErrnoError("pipe2", "", EMFILE), "start"), "the supervisor");
  EXPECT_EQ(explained.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(explained.message(),
            absl::StrCat("start: pipe2(): Too many open files (EMFILE): the "
                         "supervisor's RLIMIT_NOFILE is ",
                         FormatFileLimit(now.rlim_cur), " (hard limit ",
                         FormatFileLimit(now.rlim_max), ")"));
  EXPECT_EQ(ErrnoOf(explained), EMFILE);

  absl::Status system = ExplainFileExhaustion(
      ErrnoStatus("clone3(CLONE_PIDFD)", ENFILE), "the supervisor");
  EXPECT_EQ(system.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(system.message(),
              HasSubstr("(ENFILE): the system's open-file table is full"));
}

TEST_F(FileLimitTest, OtherErrorsAreLeftAsTheyAre) {
  const absl::Status enoent = ErrnoError("open", "/nope", ENOENT);
  EXPECT_EQ(ExplainFileExhaustion(enoent, "the supervisor"), enoent);
  // Out of memory is RESOURCE_EXHAUSTED too, but not a file limit.
  const absl::Status enomem = ErrnoError("clone", "", ENOMEM);
  EXPECT_EQ(ExplainFileExhaustion(enomem, "the supervisor"), enomem);
  const absl::Status capped = absl::ResourceExhaustedError("too many processes");
  EXPECT_EQ(ExplainFileExhaustion(capped, "the supervisor"), capped);
}

TEST(FormatFileLimitTest, NumbersAndUnlimited) {
  EXPECT_EQ(FormatFileLimit(1024), "1024");
  EXPECT_EQ(FormatFileLimit(RLIM_INFINITY), "unlimited");
}

}  // namespace
}  // namespace pm
