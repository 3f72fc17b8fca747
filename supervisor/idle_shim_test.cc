// IdleShimMaker against the real pm-shim: idle shims forked by one zygote,
// exec'd when the zygote is gone, and the zygote ended and reaped at Stop.
#include "supervisor/idle_shim.h"

#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/fd.h"
#include "common/proc.h"
#include "gtest/gtest.h"
#include "segment_log/test_util.h"

namespace pm::supervisor {
namespace {

std::string ShimBinary() { return absl::StrCat(getenv("TEST_SRCDIR"), "/pm/shim/pm-shim"); }

// The arguments of `pid`, separated by spaces.
std::string CommandLineOf(pid_t pid) {
  absl::StatusOr<std::string> text = ReadFile(absl::StrCat("/proc/", pid, "/cmdline"));
  if (!text.ok()) return text.status().ToString();
  std::replace(text->begin(), text->end(), '\0', ' ');
  return *text;
}

bool Exited(int pidfd) {
  pollfd p = {pidfd, POLLIN, 0};
  return poll(&p, 1, 30000) == 1;
}

class IdleShimMakerTest : public ::testing::Test {
 protected:
  shim::ShimLaunch Launch() { return {ShimBinary(), tmp_.Sub("state"), tmp_.path()}; }
  // The arguments of a shim exec'd by posix_spawn, which returns at the
  // exec's point of no return (the new arguments are laid out a moment
  // later): read once the shim has made its process's first segment.
  std::string ExecdCommandLineOf(const shim::LaunchedShim& shim) {
    EXPECT_TRUE(segment_log::WaitForPath(absl::StrCat(
        tmp_.Sub("state"), "/procs/", shim.process_id, "/output/00000000000000000000.seg")));
    return CommandLineOf(shim.pid);
  }
  segment_log::TempDir tmp_;
};

TEST_F(IdleShimMakerTest, ShimsAreForkedByOneZygoteAsChildrenOfTheCaller) {
  IdleShimMaker maker(Launch());
  absl::StatusOr<shim::LaunchedShim> a = maker.Make();
  ASSERT_TRUE(a.ok()) << a.status();
  absl::StatusOr<shim::LaunchedShim> b = maker.Make();
  ASSERT_TRUE(b.ok()) << b.status();
  const pid_t zygote = maker.zygote_pid();
  ASSERT_GT(zygote, 0);

  EXPECT_NE(a->process_id, b->process_id);
  for (const shim::LaunchedShim* shim : {&*a, &*b}) {
    absl::StatusOr<ProcStat> stat = ReadProcStat(shim->pid);
    ASSERT_TRUE(stat.ok()) << stat.status();
    EXPECT_EQ(stat->ppid, getpid());
    // Forked, not exec'd: the zygote's arguments.
    EXPECT_TRUE(absl::StrContains(CommandLineOf(shim->pid), "--zygote"))
        << CommandLineOf(shim->pid);
  }
  EXPECT_EQ(maker.zygote_pid(), zygote) << "a second zygote was started";
  EXPECT_TRUE(EndIdleShim(*std::move(a)).ok());
  EXPECT_TRUE(EndIdleShim(*std::move(b)).ok());
}

TEST_F(IdleShimMakerTest, AZygoteThatDiedIsEndedAndTheShimIsExecdInstead) {
  IdleShimMaker maker(Launch());
  absl::StatusOr<shim::LaunchedShim> first = maker.Make();
  ASSERT_TRUE(first.ok()) << first.status();
  const pid_t zygote = maker.zygote_pid();
  ASSERT_GT(zygote, 0);
  Fd watch(static_cast<int>(syscall(SYS_pidfd_open, zygote, 0)));
  ASSERT_TRUE(watch);
  ASSERT_EQ(kill(zygote, SIGKILL), 0);
  ASSERT_TRUE(Exited(watch.get()));

  absl::StatusOr<shim::LaunchedShim> next = maker.Make();
  ASSERT_TRUE(next.ok()) << next.status();
  const std::string execd = ExecdCommandLineOf(*next);
  EXPECT_TRUE(absl::StrContains(execd, "--process_id=" + next->process_id)) << execd;
  EXPECT_FALSE(absl::StrContains(execd, "--zygote")) << execd;
  EXPECT_EQ(maker.zygote_pid(), -1);
  // The dead zygote was reaped, not left a zombie.
  siginfo_t info = {};
  EXPECT_NE(waitid(static_cast<idtype_t>(P_PIDFD), watch.get(), &info, WEXITED | WNOHANG), 0);
  EXPECT_EQ(errno, ECHILD);
  EXPECT_TRUE(EndIdleShim(*std::move(first)).ok());
  EXPECT_TRUE(EndIdleShim(*std::move(next)).ok());
}

TEST_F(IdleShimMakerTest, StopEndsAndReapsTheZygoteAndLaterShimsAreExecd) {
  IdleShimMaker maker(Launch());
  absl::StatusOr<shim::LaunchedShim> shim = maker.Make();
  ASSERT_TRUE(shim.ok()) << shim.status();
  const pid_t zygote = maker.zygote_pid();
  Fd watch(static_cast<int>(syscall(SYS_pidfd_open, zygote, 0)));
  ASSERT_TRUE(watch);

  maker.Stop();

  pollfd exited = {watch.get(), POLLIN, 0};
  EXPECT_EQ(poll(&exited, 1, 0), 1) << "the zygote still runs";
  siginfo_t info = {};
  EXPECT_NE(waitid(static_cast<idtype_t>(P_PIDFD), watch.get(), &info, WEXITED | WNOHANG), 0);
  EXPECT_EQ(errno, ECHILD) << "the zygote was not reaped";
  absl::StatusOr<shim::LaunchedShim> after = maker.Make();
  ASSERT_TRUE(after.ok()) << after.status();
  const std::string execd = ExecdCommandLineOf(*after);
  EXPECT_TRUE(absl::StrContains(execd, "--process_id=" + after->process_id)) << execd;
  EXPECT_FALSE(absl::StrContains(execd, "--zygote")) << execd;
  EXPECT_TRUE(EndIdleShim(*std::move(shim)).ok());
  EXPECT_TRUE(EndIdleShim(*std::move(after)).ok());
}

}  // namespace
}  // namespace pm::supervisor
