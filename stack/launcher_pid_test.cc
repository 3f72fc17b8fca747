#include "stack/launcher_pid.h"

#include <signal.h>
#include <stdlib.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "common/fd.h"
#include "gtest/gtest.h"

namespace pm::stack {
namespace {

class LauncherPidTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/pm_pid.XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string dir_;
};

TEST_F(LauncherPidTest, SignalsTheProcessThatWroteIt) {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGUSR1);
  ASSERT_EQ(pthread_sigmask(SIG_BLOCK, &set, nullptr), 0);
  Fd sigfd(signalfd(-1, &set, SFD_CLOEXEC));
  ASSERT_TRUE(sigfd.valid());
  ASSERT_TRUE(WriteLauncherPidFile(dir_).ok());
  ASSERT_TRUE(SignalLauncher(dir_, SIGUSR1).ok());
  struct signalfd_siginfo info;
  ASSERT_EQ(read(sigfd.get(), &info, sizeof(info)), sizeof(info));
  EXPECT_EQ(info.ssi_signo, SIGUSR1);
  RemoveLauncherPidFile(dir_);
  EXPECT_FALSE(std::filesystem::exists(LauncherPidFile(dir_)));
}

// One launcher per runtime dir: a second lock is refused, naming the
// running launcher; once the first is let go, it can be taken again.
TEST_F(LauncherPidTest, ASecondLockOfTheRuntimeDirIsRefusedNamingTheLauncher) {
  absl::StatusOr<Fd> first = LockRuntimeDir(dir_);
  ASSERT_TRUE(first.ok()) << first.status();
  ASSERT_TRUE(WriteLauncherPidFile(dir_).ok());

  absl::StatusOr<Fd> second = LockRuntimeDir(dir_);
  EXPECT_EQ(second.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(second.status().message().find("a pm stack already runs on " + dir_),
            std::string::npos)
      << second.status();
  EXPECT_NE(second.status().message().find("(launcher pid " + std::to_string(getpid()) + ")"),
            std::string::npos)
      << second.status();

  first->reset();
  EXPECT_TRUE(LockRuntimeDir(dir_).ok());
  RemoveLauncherPidFile(dir_);
}

TEST_F(LauncherPidTest, NoFileIsNotFound) {
  absl::Status status = SignalLauncher(dir_, SIGHUP);
  EXPECT_EQ(status.code(), absl::StatusCode::kNotFound) << status;
  EXPECT_NE(status.message().find("no launcher runs on"), absl::string_view::npos)
      << status;
}

TEST_F(LauncherPidTest, AStaleFileNeverSignalsARecycledPid) {
  // Our own pid with another start time: what a dead launcher's file looks
  // like once its pid is reused.
  std::ofstream(LauncherPidFile(dir_)) << getpid() << " 1\n";
  absl::Status status = SignalLauncher(dir_, SIGHUP);
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition) << status;
  EXPECT_NE(status.message().find("is another process now"), absl::string_view::npos)
      << status;
  // And it is not ours to remove.
  RemoveLauncherPidFile(dir_);
  EXPECT_TRUE(std::filesystem::exists(LauncherPidFile(dir_)));
}

TEST_F(LauncherPidTest, AMalformedFileIsNamed) {
  std::ofstream(LauncherPidFile(dir_)) << "garbage";
  absl::Status status = SignalLauncher(dir_, SIGHUP);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
  EXPECT_NE(status.message().find("malformed pid file"), absl::string_view::npos);
}

}  // namespace
}  // namespace pm::stack
