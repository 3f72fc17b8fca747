#include "common/fd.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <iterator>
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

TEST(WriteFileAtomicallyTest, ReplacesTheFileWithTheModeAskedAndLeavesNoTempFile) {
  const std::string path = std::string(getenv("TEST_TMPDIR")) + "/replaced";
  ASSERT_TRUE(WriteFileAtomically(path, "old and longer\n", 0600).ok());
  // An fd open on the old file keeps the old text: the new one is another
  // file, renamed over it.
  Fd old(open(path.c_str(), O_RDONLY | O_CLOEXEC));
  ASSERT_TRUE(WriteFileAtomically(path, "new\n", 0644).ok());
  EXPECT_EQ(*ReadFile(path), "new\n");
  EXPECT_EQ(*ReadToEnd(old.get(), path), "old and longer\n");
  struct stat info = {};
  ASSERT_EQ(stat(path.c_str(), &info), 0);
  EXPECT_EQ(info.st_mode & 0777, 0644u);
  // Nothing else is left in the directory.
  int entries = 0;
  for (const auto& entry :
       std::filesystem::directory_iterator(std::string(getenv("TEST_TMPDIR")))) {
    if (entry.path().filename().string().rfind("replaced", 0) == 0) ++entries;
  }
  EXPECT_EQ(entries, 1);
}

TEST(WriteFileAtomicallyTest, AFailureNamesTheFileAndKeepsTheOldOne) {
  const std::string dir = std::string(getenv("TEST_TMPDIR")) + "/kept";
  ASSERT_EQ(mkdir(dir.c_str(), 0700), 0);
  // A directory where the file should go: the rename fails.
  ASSERT_EQ(mkdir((dir + "/file").c_str(), 0700), 0);
  absl::Status failed = WriteFileAtomically(dir + "/file", "text", 0644);
  EXPECT_THAT(failed.message(), HasSubstr("rename(\"" + dir + "/file\")"));
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(dir),
                          std::filesystem::directory_iterator()),
            1);  // the directory "file" alone: no temp file left
  struct stat info = {};
  ASSERT_EQ(stat((dir + "/file").c_str(), &info), 0);
  EXPECT_TRUE(S_ISDIR(info.st_mode));
}

}  // namespace
}  // namespace pm
