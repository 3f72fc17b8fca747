#include "common/fd.h"

#include <fcntl.h>
#include <unistd.h>

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace pm {
namespace {

using ::testing::HasSubstr;

TEST(ReadFileTest, ReadsSizelessProcFilesToTheEnd) {
  absl::StatusOr<std::string> status = ReadFile("/proc/self/status");
  ASSERT_TRUE(status.ok()) << status.status();
  EXPECT_THAT(*status, HasSubstr("\nPid:\t" + std::to_string(getpid()) + "\n"));
}

TEST(ReadFileTest, MissingFileNamesTheCallAndPath) {
  absl::StatusOr<std::string> missing = ReadFile("/no/such/file");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(missing.status().message(), HasSubstr("open(\"/no/such/file\")"));
}

TEST(ReadFileTest, ReadsMoreThanOneBuffer) {
  const std::string path = std::string(getenv("TEST_TMPDIR")) + "/big";
  const std::string text(100000, 'x');
  Fd out(open(path.c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0600));
  ASSERT_EQ(write(out.get(), text.data(), text.size()),
            static_cast<ssize_t>(text.size()));
  EXPECT_EQ(*ReadFile(path), text);
}

}  // namespace
}  // namespace pm
