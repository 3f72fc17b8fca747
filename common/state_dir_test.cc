#include "common/state_dir.h"

#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <string>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace pm {
namespace {

using ::testing::HasSubstr;

std::string MakeTempDir() {
  std::string tmpl = absl::StrCat(getenv("TEST_TMPDIR"), "/pm_state.XXXXXX");
  return mkdtemp(tmpl.data());
}

StateDirInputs User(uid_t uid) {
  StateDirInputs inputs;
  inputs.uid = uid;
  inputs.xdg_state_home = "/home/u/.state";
  inputs.home = "/home/u";
  return inputs;
}

TEST(ResolveStateDirTest, FlagWinsOverEverything) {
  StateDirInputs inputs = User(0);
  inputs.pm_state_dir = "/from/env";
  EXPECT_EQ(ResolveStateDir("/from/flag", inputs), "/from/flag");
}

TEST(ResolveStateDirTest, EnvironmentWinsOverTheDefaults) {
  StateDirInputs inputs = User(0);
  inputs.pm_state_dir = "/from/env";
  EXPECT_EQ(ResolveStateDir("", inputs), "/from/env");
}

TEST(ResolveStateDirTest, RootGetsVarLib) {
  EXPECT_EQ(ResolveStateDir("", User(0)), "/var/lib/pm");
}

TEST(ResolveStateDirTest, UserGetsXdgStateHomeThenHome) {
  StateDirInputs inputs = User(1000);
  EXPECT_EQ(ResolveStateDir("", inputs), "/home/u/.state/pm");
  inputs.xdg_state_home.clear();
  EXPECT_EQ(ResolveStateDir("", inputs), "/home/u/.local/state/pm");
  inputs.home.clear();
  EXPECT_EQ(ResolveStateDir("", inputs), "");
}

TEST(ResolveStateDirTest, ThisProcessReadsTheEnvironment) {
  setenv("PM_STATE_DIR", "/somewhere/state", 1);
  EXPECT_EQ(StateDirFlagOrDefault(""), "/somewhere/state");
  EXPECT_EQ(StateDirFlagOrDefault("/flag"), "/flag");
  unsetenv("PM_STATE_DIR");
  StateDirInputs inputs = StateDirInputs::OfThisProcess();
  EXPECT_EQ(inputs.uid, getuid());
}

TEST(ProcessOutputDirTest, IsTheOutputDirUnderProcs) {
  EXPECT_EQ(ProcsDir("/s"), "/s/procs");
  EXPECT_EQ(ProcessOutputDir("/s", "0b7e3d1c-6a1f-4e8e-9f3c-2d6a5b4c3d2e"),
            "/s/procs/0b7e3d1c-6a1f-4e8e-9f3c-2d6a5b4c3d2e/output");
}

TEST(EnsureStateDirTest, CreatesPrivateDirectoryAndTightensIt) {
  const std::string dir = MakeTempDir() + "/a/b/pm";
  ASSERT_TRUE(EnsureStateDir(dir).ok());
  struct stat st;
  ASSERT_EQ(stat(dir.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  ASSERT_EQ(chmod(dir.c_str(), 0777), 0);
  ASSERT_TRUE(EnsureStateDir(dir).ok());
  ASSERT_EQ(stat(dir.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
}

TEST(EnsureStateDirTest, RefusesAFileAndNamesIt) {
  const std::string path = MakeTempDir() + "/file";
  FILE* f = fopen(path.c_str(), "we");
  ASSERT_NE(f, nullptr);
  fclose(f);
  absl::Status status = EnsureStateDir(path);
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(status.message(), HasSubstr("state dir " + path));
}

TEST(EnsureStateDirTest, RefusesADirectoryOfAnotherUser) {
  if (getuid() != 0) GTEST_SKIP() << "needs root to chown";
  const std::string dir = MakeTempDir() + "/theirs";
  ASSERT_EQ(mkdir(dir.c_str(), 0700), 0);
  ASSERT_EQ(chown(dir.c_str(), 12345, 12345), 0);
  absl::Status status = EnsureStateDir(dir);
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(status.message(), HasSubstr("owned by uid 12345"));
}

TEST(EnsureStateDirTest, RefusesAnEmptyPath) {
  EXPECT_EQ(EnsureStateDir("").code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace pm
