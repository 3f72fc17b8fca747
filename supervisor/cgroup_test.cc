#include "supervisor/cgroup.h"

#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <functional>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "supervisor/test_util.h"

namespace pm::supervisor {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;
using ::testing::MatchesRegex;
using ::testing::Pair;

std::string ReadText(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void WriteText(const std::string& path, const std::string& text) {
  std::ofstream(path) << text;
}

// --- Parsing ------------------------------------------------------------------

TEST(CgroupParseTest, MountsOfAHybridHost) {
  const std::string mountinfo =
      "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n"
      "32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime shared:9 - cgroup "
      "cgroup rw,cpuacct,cpu\n"
      "35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n"
      "40 31 0:37 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,xattr,name=systemd\n"
      "41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n"
      "50 23 0:40 /sub /mnt/with\\040space rw - cgroup2 cgroup2 rw\n"
      "garbage line\n";
  std::vector<CgroupMount> mounts = ParseCgroupMounts(mountinfo);
  ASSERT_EQ(mounts.size(), 5u);
  EXPECT_EQ(mounts[0].version, 1);
  EXPECT_EQ(mounts[0].mount_point, "/sys/fs/cgroup/cpu,cpuacct");
  EXPECT_THAT(mounts[0].controllers, ElementsAre("cpu", "cpuacct"));
  EXPECT_THAT(mounts[1].controllers, ElementsAre("memory"));
  EXPECT_THAT(mounts[2].controllers, ElementsAre("name=systemd"));
  EXPECT_EQ(mounts[3].version, 2);
  EXPECT_EQ(mounts[3].root, "/");
  EXPECT_THAT(mounts[3].controllers, IsEmpty());
  EXPECT_EQ(mounts[4].root, "/sub");
  EXPECT_EQ(mounts[4].mount_point, "/mnt/with space");
}

TEST(CgroupParseTest, ProcCgroupKeysSortTheControllers) {
  EXPECT_THAT(ParseProcCgroup("9:name=systemd:/\n4:memory:/a/b\n"
                              "2:cpuacct,cpu:/c\n0::/d:e\nbad\n"),
              ElementsAre(Pair("", "/d:e"), Pair("cpu,cpuacct", "/c"),
                          Pair("memory", "/a/b"), Pair("name=systemd", "/")));
}

TEST(CgroupParseTest, Modes) {
  EXPECT_EQ(*ParseCgroupMode("auto"), CgroupMode::kAuto);
  EXPECT_EQ(*ParseCgroupMode("v2"), CgroupMode::kV2);
  EXPECT_EQ(*ParseCgroupMode("v1"), CgroupMode::kV1);
  EXPECT_EQ(*ParseCgroupMode("off"), CgroupMode::kOff);
  absl::StatusOr<CgroupMode> bad = ParseCgroupMode("v3");
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(bad.status().message(), HasSubstr("want auto, v2, v1 or off"));
}

// --- A fake cgroupfs in a temp dir -----------------------------------------------

// A temp dir with a fake /proc/self (mountinfo, cgroup) whose mounts point
// at plain directories below it. mkdir works there as on cgroupfs, but no
// control file appears by itself.
class FakeCgroupfsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* tmp = getenv("TEST_TMPDIR");
    std::string tmpl = std::string(tmp ? tmp : "/tmp") + "/cgroup_test.XXXXXX";
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    root_ = tmpl;
    std::filesystem::create_directories(root_ + "/proc");
    options_.proc_self = root_ + "/proc";
    options_.name_prefix = "t.";
  }
  void TearDown() override { std::filesystem::remove_all(root_); }

  // A cgroup2 mount at <root>/unified; the supervisor in `own`.
  void FakeV2(const std::string& own, const std::string& mount_root = "/") {
    std::filesystem::create_directories(root_ + "/unified");
    WriteText(root_ + "/proc/mountinfo",
              absl::StrCat("41 31 0:38 ", mount_root, " ", root_,
                           "/unified rw - cgroup2 cgroup2 rw\n"));
    WriteText(root_ + "/proc/cgroup", absl::StrCat("0::", own, "\n"));
  }

  std::string root_;
  CgroupOptions options_;
};

TEST_F(FakeCgroupfsTest, OffRefusesLimitsButNotPlainStarts) {
  options_.mode = CgroupMode::kOff;
  std::unique_ptr<Cgroups> cgroups = Cgroups::Init(options_);
  EXPECT_FALSE(cgroups->enabled());
  EXPECT_THAT(cgroups->summary(), HasSubstr("--cgroups=off"));
  EXPECT_TRUE(cgroups->CheckLimits(pm::v1::Limits()).ok());
  pm::v1::Limits limits;
  limits.set_memory_bytes(1 << 20);
  limits.set_pids(3);
  absl::Status refused = cgroups->CheckLimits(limits);
  EXPECT_EQ(refused.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(refused.message(), HasSubstr("(memory, pids)"));
  EXPECT_THAT(refused.message(), HasSubstr("--cgroups=off"));
}

TEST_F(FakeCgroupfsTest, NoCgroupMountsMeansNoCgroups) {
  WriteText(root_ + "/proc/mountinfo",
            "31 23 0:28 / /sys/fs/cgroup rw - tmpfs tmpfs rw\n");
  WriteText(root_ + "/proc/cgroup", "0::/\n");
  std::unique_ptr<Cgroups> cgroups = Cgroups::Init(options_);
  EXPECT_FALSE(cgroups->enabled());
  EXPECT_THAT(cgroups->summary(),
              HasSubstr("no cgroup2 is mounted; no cgroup v1 freezer is mounted"));
}

TEST_F(FakeCgroupfsTest, UnwritableHierarchyMeansNoCgroupsAndSaysWhy) {
  // A file where the parent cgroup should go: mkdir fails (as EACCES would
  // for a user without delegation).
  FakeV2("/svc");
  WriteText(root_ + "/unified/svc", "not a directory");
  std::unique_ptr<Cgroups> cgroups = Cgroups::Init(options_);
  EXPECT_FALSE(cgroups->enabled());
  pm::v1::Limits limits;
  limits.set_cpus(0.5);
  absl::Status refused = cgroups->CheckLimits(limits);
  EXPECT_EQ(refused.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(refused.message(),
              HasSubstr(absl::StrCat("mkdir(\"", root_, "/unified/svc/pm\")")));
  EXPECT_THAT(refused.message(), HasSubstr("ENOTDIR"));
}

TEST_F(FakeCgroupfsTest, DefaultParentIsPmBelowOurOwnCgroup) {
  FakeV2("/svc");
  std::unique_ptr<Cgroups> cgroups = Cgroups::Init(options_);
  ASSERT_TRUE(cgroups->enabled()) << cgroups->summary();
  EXPECT_TRUE(std::filesystem::is_directory(root_ + "/unified/svc/pm"));
  EXPECT_THAT(cgroups->summary(), HasSubstr(root_ + "/unified/svc/pm"));
  // The probe is gone again.
  EXPECT_FALSE(std::filesystem::exists(root_ + "/unified/svc/pm/t.probe"));
}

TEST_F(FakeCgroupfsTest, ParentFlagIsUsedAsIs) {
  FakeV2("/svc");
  options_.parent = "/elsewhere/pm";
  std::unique_ptr<Cgroups> cgroups = Cgroups::Init(options_);
  ASSERT_TRUE(cgroups->enabled()) << cgroups->summary();
  EXPECT_TRUE(std::filesystem::is_directory(root_ + "/unified/elsewhere/pm"));
  EXPECT_FALSE(std::filesystem::exists(root_ + "/unified/svc"));
}

TEST_F(FakeCgroupfsTest, ParentOutsideTheMountedSubtreeIsRefused) {
  FakeV2("/svc", "/container");
  std::unique_ptr<Cgroups> cgroups = Cgroups::Init(options_);
  EXPECT_FALSE(cgroups->enabled());
  EXPECT_THAT(cgroups->summary(),
              HasSubstr("cgroup /svc/pm is outside the subtree /container"));
}

TEST_F(FakeCgroupfsTest, MountedSubtreeMapsPathsBelowItsRoot) {
  FakeV2("/container/svc", "/container");
  std::unique_ptr<Cgroups> cgroups = Cgroups::Init(options_);
  ASSERT_TRUE(cgroups->enabled()) << cgroups->summary();
  EXPECT_TRUE(std::filesystem::is_directory(root_ + "/unified/svc/pm"));
}

TEST_F(FakeCgroupfsTest, CgroupV2WithoutControllersRefusesLimitsNamingWhy) {
  // Like --cgroups=v2 on a hybrid host: cgroup2 has no controllers.
  FakeV2("/svc");
  options_.mode = CgroupMode::kV2;
  std::unique_ptr<Cgroups> cgroups = Cgroups::Init(options_);
  ASSERT_TRUE(cgroups->enabled());
  EXPECT_TRUE(cgroups->CheckLimits(pm::v1::Limits()).ok());
  pm::v1::Limits limits;
  limits.set_memory_bytes(64 << 20);
  absl::Status refused = cgroups->CheckLimits(limits);
  EXPECT_EQ(refused.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(refused.message(),
              HasSubstr(absl::StrCat("memory limit: cgroup2 offers no memory "
                                     "controller under ",
                                     root_, "/unified/svc/pm")));
  EXPECT_THAT(refused.message(), HasSubstr("--cgroups=v2"));
  EXPECT_THAT(refused.message(), Not(HasSubstr("cpu limit")));
  EXPECT_THAT(cgroups->summary(), HasSubstr("limits enforced: none"));
}

TEST_F(FakeCgroupfsTest, ControllerWithoutItsFileIsRefused) {
  // The controller is offered and enabled, but a new cgroup lacks the file
  // (here because the fake kernel makes none): the probe catches it.
  FakeV2("/svc");
  std::filesystem::create_directories(root_ + "/unified/svc/pm");
  WriteText(root_ + "/unified/svc/pm/cgroup.controllers", "cpu memory pids\n");
  WriteText(root_ + "/unified/svc/pm/cgroup.subtree_control", "");
  options_.mode = CgroupMode::kV2;
  std::unique_ptr<Cgroups> cgroups = Cgroups::Init(options_);
  ASSERT_TRUE(cgroups->enabled());
  pm::v1::Limits limits;
  limits.set_pids(10);
  absl::Status refused = cgroups->CheckLimits(limits);
  EXPECT_EQ(refused.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(refused.message(),
              HasSubstr(absl::StrCat("pids limit: a new cgroup under ", root_,
                                     "/unified/svc/pm has no pids.max")));
}

TEST_F(FakeCgroupfsTest, WriteLimitsToCgroupV2Files) {
  const std::string dir = root_ + "/v2";
  std::filesystem::create_directories(dir);
  for (const char* file : {"memory.max", "memory.swap.max", "cpu.max",
                           "pids.max", "io.weight"}) {
    WriteText(dir + "/" + file, "");
  }
  LimitFiles files;
  files.memory_dir = files.cpu_dir = files.pids_dir = files.io_dir = dir;
  files.memory_file = "memory.max";
  files.memory_swap_file = "memory.swap.max";
  files.cpu_file = "cpu.max";
  files.io_file = "io.weight";
  pm::v1::Limits limits;
  limits.set_memory_bytes(256 << 20);
  limits.set_cpus(0.2);
  limits.set_pids(64);
  limits.set_io_weight(500);
  ASSERT_TRUE(WriteLimits(limits, files).ok());
  EXPECT_EQ(ReadText(dir + "/memory.max"), "268435456");
  EXPECT_EQ(ReadText(dir + "/memory.swap.max"), "0");
  EXPECT_EQ(ReadText(dir + "/cpu.max"), "20000 100000");
  EXPECT_EQ(ReadText(dir + "/pids.max"), "64");
  EXPECT_EQ(ReadText(dir + "/io.weight"), "default 500");
}

TEST_F(FakeCgroupfsTest, WriteLimitsToCgroupV1Files) {
  const std::string dir = root_ + "/v1";
  std::filesystem::create_directories(dir);
  for (const char* file :
       {"memory.limit_in_bytes", "memory.memsw.limit_in_bytes",
        "cpu.cfs_period_us", "cpu.cfs_quota_us", "blkio.bfq.weight"}) {
    WriteText(dir + "/" + file, "");
  }
  LimitFiles files;
  files.memory_dir = files.cpu_dir = files.io_dir = dir;
  files.memory_file = "memory.limit_in_bytes";
  files.memory_swap_file = "memory.memsw.limit_in_bytes";
  files.cpu_file = "cpu.cfs_quota_us";
  files.io_file = "blkio.bfq.weight";
  pm::v1::Limits limits;
  limits.set_memory_bytes(1 << 20);
  limits.set_cpus(1.5);
  limits.set_io_weight(300);
  ASSERT_TRUE(WriteLimits(limits, files).ok());
  EXPECT_EQ(ReadText(dir + "/memory.limit_in_bytes"), "1048576");
  EXPECT_EQ(ReadText(dir + "/memory.memsw.limit_in_bytes"), "1048576");
  EXPECT_EQ(ReadText(dir + "/cpu.cfs_period_us"), "100000");
  EXPECT_EQ(ReadText(dir + "/cpu.cfs_quota_us"), "150000");
  EXPECT_EQ(ReadText(dir + "/blkio.bfq.weight"), "300");
}

TEST_F(FakeCgroupfsTest, WriteLimitsNamesTheFileThatFailed) {
  LimitFiles files;
  files.pids_dir = root_ + "/nowhere";
  pm::v1::Limits limits;
  limits.set_pids(5);
  absl::Status status = WriteLimits(limits, files);
  EXPECT_EQ(status.code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(status.message(),
            absl::StrCat("write(\"", root_,
                         "/nowhere/pids.max\", \"5\"): No such file or "
                         "directory (ENOENT)"));
}

// --- Adopt's checks of a record, on the fake cgroupfs --------------------------------

TEST_F(FakeCgroupfsTest, AdoptWithoutCgroupsIsAFailedPrecondition) {
  options_.mode = CgroupMode::kOff;
  std::unique_ptr<Cgroups> cgroups = Cgroups::Init(options_);
  CgroupDirs dirs;
  dirs.unified = root_ + "/unified/svc/pm/9.1";
  absl::StatusOr<std::unique_ptr<ProcessCgroup>> adopted = cgroups->Adopt(dirs);
  EXPECT_EQ(adopted.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(adopted.status().message(), HasSubstr("--cgroups=off"));
}

TEST_F(FakeCgroupfsTest, AdoptTakesOnlyDirectoriesDirectlyBelowTheParent) {
  FakeV2("/svc");
  std::unique_ptr<Cgroups> cgroups = Cgroups::Init(options_);
  ASSERT_TRUE(cgroups->enabled()) << cgroups->summary();
  const std::string svc = root_ + "/unified/svc";
  const std::string parent = svc + "/pm";
  // A cgroup an earlier supervisor left, one inside it, one beside our
  // parent, and symlinks a hostile record could go through.
  std::filesystem::create_directories(parent + "/9.1/nested");
  WriteText(parent + "/9.1/cgroup.events", "populated 1\nfrozen 0\n");
  std::filesystem::create_directories(svc + "/victim");
  std::filesystem::create_directory_symlink(svc, svc + "/escape");
  std::filesystem::create_directory_symlink("../victim", parent + "/9.2");
  std::filesystem::create_directory_symlink("pm", svc + "/pmlink");

  const int fds_before = OpenFdCount();
  auto refused = [&](const CgroupDirs& dirs, const std::string& named,
                     const std::string& why) {
    absl::StatusOr<std::unique_ptr<ProcessCgroup>> adopted = cgroups->Adopt(dirs);
    EXPECT_EQ(adopted.status().code(), absl::StatusCode::kInvalidArgument)
        << named << ": " << adopted.status();
    EXPECT_THAT(adopted.status().message(),
                HasSubstr(absl::StrCat("\"", named, "\" ", why)));
  };
  auto unified = [](const std::string& dir) {
    CgroupDirs dirs;
    dirs.unified = dir;
    return dirs;
  };
  const std::string below = absl::StrCat("is not directly below ", parent,
                                         ", this supervisor's parent cgroup");
  refused(unified(parent), parent, below);
  refused(unified(svc + "/victim"), svc + "/victim", below);
  refused(unified(parent + "/9.1/nested"), parent + "/9.1/nested", below);
  refused(unified(svc + "/escape/victim"), svc + "/escape/victim", below);
  refused(unified(parent + "/9.2"), parent + "/9.2", "is not a directory");
  // ".." is refused even where it would lead back into the parent.
  refused(unified(parent + "/../pm/9.1"), parent + "/../pm/9.1",
          "is not a plain absolute path");
  refused(unified(parent + "/9.1/../../victim"), parent + "/9.1/../../victim",
          "is not a plain absolute path");
  refused(unified("svc/pm/9.1"), "svc/pm/9.1", "is not a plain absolute path");
  refused(unified(parent + "/9.1/"), parent + "/9.1/",
          "is not a plain absolute path");
  CgroupDirs v1_only;
  v1_only.v1["memory"] = parent + "/9.1";
  refused(v1_only, parent + "/9.1",
          "is in the cgroup v1 memory hierarchy, which this supervisor does "
          "not use");
  absl::StatusOr<std::unique_ptr<ProcessCgroup>> none = cgroups->Adopt(CgroupDirs());
  EXPECT_EQ(none.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(none.status().message(),
              HasSubstr("(none) have none in cgroup2 at " + root_ + "/unified"));
  // Nothing was touched, and nothing was left open.
  for (const std::string& dir : {parent + "/9.1/nested", svc + "/victim"}) {
    EXPECT_TRUE(std::filesystem::is_directory(dir)) << dir;
  }
  EXPECT_EQ(OpenFdCount(), fds_before);

  // A symlink that leads into the parent is followed: paths compare
  // canonically, and the cgroup is spelled as Create spells it.
  absl::StatusOr<std::unique_ptr<ProcessCgroup>> adopted =
      cgroups->Adopt(unified(svc + "/pmlink/9.1"));
  ASSERT_TRUE(adopted.ok()) << adopted.status();
  EXPECT_EQ((*adopted)->dirs().unified, parent + "/9.1");
  EXPECT_EQ((*adopted)->path(), parent + "/9.1");
  EXPECT_GE((*adopted)->events_fd(), 0);
  EXPECT_TRUE((*adopted)->Populated());
}

// --- The real cgroupfs of this host (root, as CI runs) ----------------------------

pm::v1::StartRequest Shell(const std::string& script) {
  pm::v1::StartRequest request;
  request.set_executable("/bin/sh");
  request.add_args("-c");
  request.add_args(script);
  return request;
}


// Waits (on its pidfd) until a process that is not our child has exited.
bool WaitGone(pid_t pid) {
  int pidfd = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
  if (pidfd < 0) return errno == ESRCH;
  struct pollfd p = {pidfd, POLLIN, 0};
  const bool gone = poll(&p, 1, 10000) == 1;
  close(pidfd);
  return gone;
}

void Reap(const SpawnedChild& child) {
  siginfo_t info = {};
  waitid(static_cast<idtype_t>(P_PIDFD), child.pidfd.get(), &info, WEXITED);
}

// Waits for cgroup.events to say "populated 0" (v2) or, on v1, for the
// members to be gone.
void WaitEmpty(ProcessCgroup& cgroup) {
  if (cgroup.events_fd() >= 0) {
    int epoll = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {};
    ev.events = EPOLLPRI;
    ASSERT_EQ(epoll_ctl(epoll, EPOLL_CTL_ADD, cgroup.events_fd(), &ev), 0);
    for (int i = 0; i < 100 && cgroup.Populated(); ++i) {
      epoll_wait(epoll, &ev, 1, 1000);
    }
    close(epoll);
  }
  EXPECT_FALSE(cgroup.Populated());
}

class RealCgroupTest : public ::testing::Test {
 protected:
  std::unique_ptr<Cgroups> InitOrSkip(CgroupMode mode,
                                      std::string name_prefix = "",
                                      std::string parent = "") {
    CgroupOptions options;
    options.mode = mode;
    options.parent = std::move(parent);
    options.name_prefix = name_prefix.empty()
                              ? absl::StrCat("unit", getpid(), ".")
                              : std::move(name_prefix);
    std::unique_ptr<Cgroups> cgroups = Cgroups::Init(options);
    if (!cgroups->enabled()) return nullptr;
    return cgroups;
  }
};

TEST_F(RealCgroupTest, ChildIsBornInItsCgroupAndKillReachesADaemon) {
  std::unique_ptr<Cgroups> cgroups = InitOrSkip(CgroupMode::kAuto);
  if (!cgroups) GTEST_SKIP() << "no usable cgroups here";
  absl::StatusOr<std::unique_ptr<ProcessCgroup>> cgroup =
      cgroups->Create(pm::v1::Limits());
  ASSERT_TRUE(cgroup.ok()) << cgroup.status();
  ProcessCgroup& cg = **cgroup;
  EXPECT_FALSE(cg.Populated());

  // The leader starts a daemon in a session of its own, then waits.
  absl::StatusOr<SpawnedChild> child = Spawn(
      Shell("cat /proc/self/cgroup >&2; "
            "setsid sh -c 'trap \"\" TERM; exec sleep 1000' & echo $!; "
            "exec sleep 1000"),
      cg.spawn_options());
  ASSERT_TRUE(child.ok()) << child.status();
  cg.CloseSpawnFds();
  pid_t daemon = 0;
  ASSERT_TRUE(absl::SimpleAtoi(ReadLine(child->stdout_read.get()), &daemon));
  EXPECT_TRUE(cg.Populated());

  cg.Kill();
  Reap(*child);
  // It was in its cgroup before it ran a line of its own.
  EXPECT_THAT(ReadAll(child->stderr_read.get()),
              HasSubstr(cg.path().substr(cg.path().rfind("/pm/"))));
  EXPECT_TRUE(WaitGone(daemon));
  WaitEmpty(cg);
  const std::string dir = cg.path();
  EXPECT_TRUE(cg.Remove().ok());
  EXPECT_FALSE(std::filesystem::exists(dir));
  EXPECT_TRUE(cg.Remove().ok());  // idempotent
}

TEST_F(RealCgroupTest, LimitsLandInTheFilesAndUsageIsRead) {
  std::unique_ptr<Cgroups> cgroups = InitOrSkip(CgroupMode::kAuto);
  if (!cgroups) GTEST_SKIP() << "no usable cgroups here";
  pm::v1::Limits limits;
  limits.set_memory_bytes(64 << 20);
  limits.set_cpus(0.5);
  limits.set_pids(16);
  if (!cgroups->CheckLimits(limits).ok()) {
    GTEST_SKIP() << cgroups->CheckLimits(limits);
  }
  absl::StatusOr<std::unique_ptr<ProcessCgroup>> cgroup = cgroups->Create(limits);
  ASSERT_TRUE(cgroup.ok()) << cgroup.status();
  ProcessCgroup& cg = **cgroup;
  const CgroupDirs& dirs = cg.dirs();
  auto number = [](const std::string& dir, const char* file) {
    return ReadCgroupNumber(dir, file);
  };
  if (!dirs.V1("memory").empty()) {
    EXPECT_EQ(number(dirs.V1("memory"), "memory.limit_in_bytes"), 64u << 20);
  } else {
    EXPECT_EQ(number(dirs.unified, "memory.max"), 64u << 20);
  }
  if (!dirs.V1("cpu").empty()) {
    EXPECT_EQ(number(dirs.V1("cpu"), "cpu.cfs_quota_us"), 50000u);
  } else {
    EXPECT_EQ(ReadText(dirs.unified + "/cpu.max"), "50000 100000\n");
  }
  const std::string pids_dir =
      dirs.V1("pids").empty() ? dirs.unified : dirs.V1("pids");
  EXPECT_EQ(number(pids_dir, "pids.max"), 16u);

  absl::StatusOr<SpawnedChild> child =
      Spawn(Shell("echo ready; exec sleep 1000"), cg.spawn_options());
  ASSERT_TRUE(child.ok()) << child.status();
  cg.CloseSpawnFds();
  EXPECT_EQ(ReadLine(child->stdout_read.get()), "ready");
  pm::v1::ResourceUsage usage = cg.ReadUsage();
  EXPECT_EQ(usage.tasks(), 1u);
  EXPECT_GT(usage.memory_bytes(), 0u);
  EXPECT_TRUE(usage.has_cpu_time());
  EXPECT_EQ(usage.oom_kills(), 0u);
  cg.Kill();
  Reap(*child);
  WaitEmpty(cg);
  EXPECT_TRUE(cg.Remove().ok());
}

// On a hybrid host a process joins a v1 hierarchy only where its usage or
// its limits need it: memory always, pids only with a pids limit.
TEST_F(RealCgroupTest, HybridJoinsV1HierarchiesOnlyWhereNeeded) {
  std::unique_ptr<Cgroups> cgroups = InitOrSkip(CgroupMode::kAuto);
  if (!cgroups) GTEST_SKIP() << "no usable cgroups here";
  pm::v1::Limits with_pids;
  with_pids.set_pids(16);
  absl::StatusOr<std::unique_ptr<ProcessCgroup>> plain =
      cgroups->Create(pm::v1::Limits());
  ASSERT_TRUE(plain.ok()) << plain.status();
  const CgroupDirs& dirs = (*plain)->dirs();
  if (dirs.unified.empty() || dirs.V1("memory").empty() ||
      !cgroups->CheckLimits(with_pids).ok()) {
    EXPECT_TRUE((*plain)->Remove().ok());
    GTEST_SKIP() << "not a hybrid host with v1 memory and pids";
  }
  // cgroup2 tracks; v1 memory for usage; nothing else.
  EXPECT_EQ(dirs.v1.size(), 1u) << "joins " << dirs.v1.begin()->first;
  EXPECT_EQ(dirs.V1("pids"), "");
  EXPECT_EQ(dirs.V1("cpu"), "");

  absl::StatusOr<SpawnedChild> child = Spawn(
      Shell("cat /proc/self/cgroup; echo end; exec sleep 1000"),
      (*plain)->spawn_options());
  ASSERT_TRUE(child.ok()) << child.status();
  (*plain)->CloseSpawnFds();
  std::map<std::string, std::string> paths;
  for (std::string line = ReadLine(child->stdout_read.get()); line != "end" && !line.empty();
       line = ReadLine(child->stdout_read.get())) {
    std::map<std::string, std::string> one = ParseProcCgroup(line + "\n");
    paths.insert(one.begin(), one.end());
  }
  const std::string name = (*plain)->path().substr((*plain)->path().rfind('/'));
  EXPECT_THAT(paths[""], HasSubstr(name));
  EXPECT_THAT(paths["memory"], HasSubstr(name));
  EXPECT_THAT(paths["pids"], Not(HasSubstr(name)));
  // Usage is whole all the same: CPU time and tasks come from cgroup2.
  pm::v1::ResourceUsage usage = (*plain)->ReadUsage();
  EXPECT_EQ(usage.tasks(), 1u);
  EXPECT_GT(usage.memory_bytes(), 0u);
  EXPECT_TRUE(usage.has_cpu_time());
  (*plain)->Kill();
  Reap(*child);
  WaitEmpty(**plain);
  EXPECT_TRUE((*plain)->Remove().ok());

  absl::StatusOr<std::unique_ptr<ProcessCgroup>> limited = cgroups->Create(with_pids);
  ASSERT_TRUE(limited.ok()) << limited.status();
  EXPECT_NE((*limited)->dirs().V1("pids"), "");
  EXPECT_EQ(ReadCgroupNumber((*limited)->dirs().V1("pids"), "pids.max"), 16u);
  EXPECT_EQ((*limited)->dirs().V1("cpu"), "");
  EXPECT_TRUE((*limited)->Remove().ok());
}

TEST_F(RealCgroupTest, SignalMembersSkipsTheProcessGroup) {
  std::unique_ptr<Cgroups> cgroups = InitOrSkip(CgroupMode::kAuto);
  if (!cgroups) GTEST_SKIP() << "no usable cgroups here";
  absl::StatusOr<std::unique_ptr<ProcessCgroup>> cgroup =
      cgroups->Create(pm::v1::Limits());
  ASSERT_TRUE(cgroup.ok()) << cgroup.status();
  ProcessCgroup& cg = **cgroup;
  // The leader would say "term" if it got the signal; it reports when its
  // daemon (another session) has ended.
  absl::StatusOr<SpawnedChild> child =
      Spawn(Shell("trap 'echo term' TERM; "
                  "setsid sh -c 'echo $$; exec sleep 1000' & "
                  "wait $!; echo daemon-ended"),
            cg.spawn_options());
  ASSERT_TRUE(child.ok()) << child.status();
  cg.CloseSpawnFds();
  pid_t daemon = 0;
  ASSERT_TRUE(absl::SimpleAtoi(ReadLine(child->stdout_read.get()), &daemon));
  cg.SignalMembers(SIGTERM, child->pid);
  EXPECT_EQ(ReadAll(child->stdout_read.get()), "daemon-ended\n");
  Reap(*child);
  WaitEmpty(cg);
  EXPECT_TRUE(cg.Remove().ok());
}

TEST_F(RealCgroupTest, V1FreezerTracksAndKillsTheTree) {
  std::unique_ptr<Cgroups> cgroups = InitOrSkip(CgroupMode::kV1);
  if (!cgroups) GTEST_SKIP() << "no cgroup v1 freezer here";
  EXPECT_THAT(cgroups->summary(), HasSubstr("cgroup v1 freezer"));
  absl::StatusOr<std::unique_ptr<ProcessCgroup>> cgroup =
      cgroups->Create(pm::v1::Limits());
  ASSERT_TRUE(cgroup.ok()) << cgroup.status();
  ProcessCgroup& cg = **cgroup;
  EXPECT_EQ(cg.events_fd(), -1);
  EXPECT_FALSE(cg.kill_is_atomic());
  absl::StatusOr<SpawnedChild> child = Spawn(
      Shell("setsid sh -c 'trap \"\" TERM; exec sleep 1000' & echo $!; "
            "exec sleep 1000"),
      cg.spawn_options());
  ASSERT_TRUE(child.ok()) << child.status();
  cg.CloseSpawnFds();
  pid_t daemon = 0;
  ASSERT_TRUE(absl::SimpleAtoi(ReadLine(child->stdout_read.get()), &daemon));
  EXPECT_TRUE(cg.Populated());
  EXPECT_THAT(ReadText(absl::StrCat("/proc/", daemon, "/cgroup")),
              HasSubstr(cg.path().substr(cg.path().find("/pm/"))));
  cg.Kill();
  Reap(*child);
  EXPECT_TRUE(WaitGone(daemon));
  EXPECT_FALSE(cg.Populated());
  EXPECT_TRUE(cg.Remove().ok());
}

// --- Re-adoption, on the real cgroupfs --------------------------------------------

// A stand-in for a supervisor: a process whose pid names its cgroups
// ("<pid>."), alive until Die(), so that until then no Init sweeps them
// away as leftovers.
class SupervisorStandIn {
 public:
  SupervisorStandIn() {
    pid_ = fork();
    if (pid_ == 0) {
      for (;;) pause();
    }
    EXPECT_GT(pid_, 0);
  }
  ~SupervisorStandIn() { Die(); }
  std::string name_prefix() const { return absl::StrCat(pid_, "."); }
  // Killed and reaped: its pid is free (and allocated cyclically, so not
  // reused while the test runs).
  void Die() {
    if (pid_ <= 0) return;
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }

 private:
  pid_t pid_ = -1;
};

// A parent cgroup of a test's own (--cgroup_parent), in every hierarchy,
// removed at the end. Below the shared default parent, Init's sweep by any
// other supervisor or test run would remove the empty cgroups of a dead
// supervisor's prefix, and so race with the test's own.
class PrivateParent {
 public:
  PrivateParent() : path_(absl::StrCat("/pm-adopt-test.", getpid())) {}
  ~PrivateParent() {
    for (const CgroupMount& mount :
         ParseCgroupMounts(ReadText("/proc/self/mountinfo"))) {
      if (mount.root != "/") continue;
      const std::string dir = mount.mount_point + path_;
      if (rmdir(dir.c_str()) != 0 && errno != ENOENT) {
        ADD_FAILURE() << "rmdir(\"" << dir << "\"): " << strerror(errno);
      }
    }
  }
  const std::string& path() const { return path_; }

 private:
  const std::string path_;
};

// Every directory of `dirs`.
std::vector<std::string> AllDirs(const CgroupDirs& dirs) {
  std::vector<std::string> all;
  if (!dirs.unified.empty()) all.push_back(dirs.unified);
  for (const auto& [controller, dir] : dirs.v1) all.push_back(dir);
  return all;
}

// `dirs` with each entry that is `from` (the tracker's) replaced by `to`.
CgroupDirs Replace(CgroupDirs dirs, const std::string& from,
                   const std::string& to) {
  if (dirs.unified == from) dirs.unified = to;
  for (auto& [controller, dir] : dirs.v1) {
    if (dir == from) dir = to;
  }
  return dirs;
}

// A supervisor makes a cgroup and starts a process (with a daemon of its
// own) in it, and dies; the next one, with another name prefix, adopts the
// cgroup from the recorded directories and does all a supervisor does with
// a cgroup of its own: tracks it, signals and kills its members, removes
// it once empty.
void AdoptsTheCgroupOfADeadSupervisor(
    const std::function<std::unique_ptr<Cgroups>(std::string)>& init) {
  SupervisorStandIn supervisor;
  std::unique_ptr<Cgroups> first = init(supervisor.name_prefix());
  if (!first) GTEST_SKIP() << "no usable cgroups here";
  absl::StatusOr<std::unique_ptr<ProcessCgroup>> cgroup =
      first->Create(pm::v1::Limits());
  ASSERT_TRUE(cgroup.ok()) << cgroup.status();
  absl::StatusOr<std::unique_ptr<ProcessCgroup>> idle =
      first->Create(pm::v1::Limits());
  ASSERT_TRUE(idle.ok()) << idle.status();
  // The daemon says its pid once it is in a session of its own and ignores
  // SIGTERM.
  absl::StatusOr<SpawnedChild> child = Spawn(
      Shell("setsid sh -c 'trap \"\" TERM; echo $$; exec sleep 1000' & "
            "exec sleep 1000"),
      (*cgroup)->spawn_options());
  ASSERT_TRUE(child.ok()) << child.status();
  (*cgroup)->CloseSpawnFds();
  pid_t daemon = 0;
  ASSERT_TRUE(absl::SimpleAtoi(ReadLine(child->stdout_read.get()), &daemon));
  const CgroupDirs recorded = (*cgroup)->dirs();
  const std::string tracker_dir = (*cgroup)->path();
  const CgroupDirs idle_dirs = (*idle)->dirs();
  // The supervisor dies: its objects go, its cgroups stay.
  cgroup->reset();
  idle->reset();
  first.reset();
  supervisor.Die();

  std::unique_ptr<Cgroups> second = init("");
  ASSERT_NE(second, nullptr);
  // Init swept the empty leftover away but not the populated one.
  for (const std::string& dir : AllDirs(idle_dirs)) {
    EXPECT_FALSE(std::filesystem::exists(dir)) << dir;
  }
  for (const std::string& dir : AllDirs(recorded)) {
    EXPECT_TRUE(std::filesystem::is_directory(dir)) << dir;
  }

  absl::StatusOr<std::unique_ptr<ProcessCgroup>> adopted =
      second->Adopt(recorded);
  ASSERT_TRUE(adopted.ok()) << adopted.status();
  ProcessCgroup& cg = **adopted;
  EXPECT_EQ(cg.path(), tracker_dir);
  EXPECT_EQ(cg.dirs().unified, recorded.unified);
  EXPECT_EQ(cg.dirs().v1, recorded.v1);
  const SpawnOptions spawn = cg.spawn_options();
  EXPECT_EQ(spawn.cgroup2_dir_fd, -1);
  EXPECT_THAT(spawn.joins, IsEmpty());
  EXPECT_TRUE(cg.Populated());
  EXPECT_EQ(cg.ReadUsage().tasks(), 2u);  // the leader and its daemon

  // Another Init (as of a supervisor restarted once more) leaves it too.
  EXPECT_NE(init(""), nullptr);
  for (const std::string& dir : AllDirs(recorded)) {
    EXPECT_TRUE(std::filesystem::is_directory(dir)) << dir;
  }

  // Members are found through the adopted cgroup: the leader gets SIGTERM,
  // the daemon (a process group of its own) is skipped.
  cg.SignalMembers(SIGTERM, daemon);
  siginfo_t info = {};
  ASSERT_EQ(waitid(static_cast<idtype_t>(P_PIDFD), child->pidfd.get(), &info,
                   WEXITED),
            0);
  EXPECT_EQ(info.si_code, CLD_KILLED);
  EXPECT_EQ(info.si_status, SIGTERM);
  EXPECT_TRUE(cg.Populated());

  // The kill reaches the daemon; on cgroup2 the events fd says so.
  int epoll = -1;
  if (cg.events_fd() >= 0) {
    epoll = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {};
    ev.events = EPOLLPRI;
    ASSERT_EQ(epoll_ctl(epoll, EPOLL_CTL_ADD, cg.events_fd(), &ev), 0);
  }
  cg.Kill();
  EXPECT_TRUE(WaitGone(daemon));
  if (epoll >= 0) {
    struct epoll_event ev = {};
    EXPECT_EQ(epoll_wait(epoll, &ev, 1, 10000), 1);
    EXPECT_TRUE(ev.events & EPOLLPRI);
    close(epoll);
  }
  WaitEmpty(cg);

  EXPECT_TRUE(cg.Remove().ok());
  for (const std::string& dir : AllDirs(recorded)) {
    EXPECT_FALSE(std::filesystem::exists(dir)) << dir;
  }
}

TEST_F(RealCgroupTest, AdoptsTheCgroupOfADeadSupervisor) {
  PrivateParent parent;
  AdoptsTheCgroupOfADeadSupervisor([&](std::string prefix) {
    return InitOrSkip(CgroupMode::kAuto, std::move(prefix), parent.path());
  });
}

TEST_F(RealCgroupTest, V1FreezerAdoptsTheCgroupOfADeadSupervisor) {
  PrivateParent parent;
  AdoptsTheCgroupOfADeadSupervisor([&](std::string prefix) {
    std::unique_ptr<Cgroups> cgroups =
        InitOrSkip(CgroupMode::kV1, std::move(prefix), parent.path());
    if (cgroups) {
      EXPECT_THAT(cgroups->summary(), HasSubstr("cgroup v1 freezer"));
    }
    return cgroups;
  });
}

// Two stacks share a parent cgroup (both supervisors started from one
// shell): each sweeps only its own leftovers, so the empty cgroup a process
// keeps between two runs of a restart policy is never removed by the other
// stack's supervisor. Untagged leftovers (a build before tags) are swept.
TEST_F(RealCgroupTest, TheSweepTakesOnlyItsOwnStacksLeftovers) {
  PrivateParent parent;
  const std::string a = CgroupStackTag("/stack/a");
  const std::string b = CgroupStackTag("/stack/b");
  ASSERT_NE(a, b);
  EXPECT_EQ(a, CgroupStackTag("/stack/a"));
  EXPECT_THAT(a, MatchesRegex("s[0-9a-f]{12}"));
  auto init = [&](const std::string& stack, const std::string& prefix) {
    CgroupOptions options;
    options.parent = parent.path();
    options.stack = stack;
    options.name_prefix = prefix;
    return Cgroups::Init(options);
  };
  SupervisorStandIn dead_a, dead_untagged;
  std::unique_ptr<Cgroups> first =
      init(a, absl::StrCat(a, ".", dead_a.name_prefix()));
  if (!first->enabled()) GTEST_SKIP() << "no usable cgroups here";
  absl::StatusOr<std::unique_ptr<ProcessCgroup>> of_a =
      first->Create(pm::v1::Limits());
  ASSERT_TRUE(of_a.ok()) << of_a.status();
  EXPECT_THAT((*of_a)->path(), HasSubstr(absl::StrCat("/", a, ".")));
  std::unique_ptr<Cgroups> old = init("", dead_untagged.name_prefix());
  absl::StatusOr<std::unique_ptr<ProcessCgroup>> untagged =
      old->Create(pm::v1::Limits());
  ASSERT_TRUE(untagged.ok()) << untagged.status();
  const CgroupDirs a_dirs = (*of_a)->dirs();
  const CgroupDirs untagged_dirs = (*untagged)->dirs();
  of_a->reset();
  untagged->reset();
  first.reset();
  old.reset();
  dead_a.Die();
  dead_untagged.Die();

  // Stack b's supervisor starts: the untagged leftover goes, a's stays.
  EXPECT_NE(init(b, ""), nullptr);
  for (const std::string& dir : AllDirs(untagged_dirs)) {
    EXPECT_FALSE(std::filesystem::exists(dir)) << dir;
  }
  for (const std::string& dir : AllDirs(a_dirs)) {
    EXPECT_TRUE(std::filesystem::is_directory(dir)) << dir;
  }
  // Stack a's own next supervisor sweeps it.
  EXPECT_NE(init(a, ""), nullptr);
  for (const std::string& dir : AllDirs(a_dirs)) {
    EXPECT_FALSE(std::filesystem::exists(dir)) << dir;
  }
}

TEST_F(RealCgroupTest, AdoptRefusesDirectoriesOutsideItsParents) {
  std::unique_ptr<Cgroups> cgroups = InitOrSkip(CgroupMode::kAuto);
  if (!cgroups) GTEST_SKIP() << "no usable cgroups here";
  absl::StatusOr<std::unique_ptr<ProcessCgroup>> a = cgroups->Create(pm::v1::Limits());
  ASSERT_TRUE(a.ok()) << a.status();
  absl::StatusOr<std::unique_ptr<ProcessCgroup>> b = cgroups->Create(pm::v1::Limits());
  ASSERT_TRUE(b.ok()) << b.status();
  const CgroupDirs dirs = (*a)->dirs();
  const std::string tracker = (*a)->path();
  const std::string parent = tracker.substr(0, tracker.rfind('/'));
  const std::string name = tracker.substr(tracker.rfind('/') + 1);
  const std::string nested = tracker + "/nested";
  ASSERT_EQ(mkdir(nested.c_str(), 0755), 0) << nested;

  auto refused = [&](const CgroupDirs& record, const std::string& named,
                     const std::string& why) {
    absl::StatusOr<std::unique_ptr<ProcessCgroup>> adopted = cgroups->Adopt(record);
    EXPECT_EQ(adopted.status().code(), absl::StatusCode::kInvalidArgument)
        << named << ": " << adopted.status();
    EXPECT_THAT(adopted.status().message(),
                HasSubstr(absl::StrCat("\"", named, "\" ", why)));
  };
  const std::string below = absl::StrCat("is not directly below ", parent);
  refused(Replace(dirs, tracker, parent), parent, below);
  refused(Replace(dirs, tracker, nested), nested, below);
  const std::string dotdot = absl::StrCat(nested, "/../../", name);
  refused(Replace(dirs, tracker, dotdot), dotdot, "is not a plain absolute path");
  if (!dirs.unified.empty() && !dirs.V1("memory").empty()) {
    // A cgroup2 directory recorded as the memory one, and two cgroups'
    // directories mixed in one record.
    CgroupDirs crossed = dirs;
    crossed.v1["memory"] = dirs.unified;
    refused(crossed, dirs.unified, "is not directly below");
    CgroupDirs mixed = dirs;
    mixed.v1["memory"] = (*b)->dirs().V1("memory");
    refused(mixed, mixed.v1["memory"], "is not named");
  }
  // Nothing was removed.
  for (const std::string& dir : AllDirs(dirs)) {
    EXPECT_TRUE(std::filesystem::is_directory(dir)) << dir;
  }
  EXPECT_TRUE(std::filesystem::is_directory(nested));
  EXPECT_TRUE(std::filesystem::is_directory(parent));
  ASSERT_EQ(rmdir(nested.c_str()), 0);
  EXPECT_TRUE((*a)->Remove().ok());
  EXPECT_TRUE((*b)->Remove().ok());
}

TEST_F(RealCgroupTest, AdoptOfARemovedCgroupIsNotFound) {
  std::unique_ptr<Cgroups> cgroups = InitOrSkip(CgroupMode::kAuto);
  if (!cgroups) GTEST_SKIP() << "no usable cgroups here";
  absl::StatusOr<std::unique_ptr<ProcessCgroup>> cgroup =
      cgroups->Create(pm::v1::Limits());
  ASSERT_TRUE(cgroup.ok()) << cgroup.status();
  const CgroupDirs dirs = (*cgroup)->dirs();
  const std::string tracker = (*cgroup)->path();
  ASSERT_TRUE((*cgroup)->Remove().ok());
  absl::StatusOr<std::unique_ptr<ProcessCgroup>> adopted = cgroups->Adopt(dirs);
  EXPECT_EQ(adopted.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(adopted.status().message(),
              HasSubstr(absl::StrCat("lstat(\"", tracker, "\")")));
}

// A supervisor killed in the middle of Remove (which takes the tracker
// last) leaves the tracker with other hierarchies' directories gone.
TEST_F(RealCgroupTest, AdoptLeavesOutAGoneDirectoryBesideTheTracker) {
  std::unique_ptr<Cgroups> cgroups = InitOrSkip(CgroupMode::kAuto);
  if (!cgroups) GTEST_SKIP() << "no usable cgroups here";
  absl::StatusOr<std::unique_ptr<ProcessCgroup>> cgroup =
      cgroups->Create(pm::v1::Limits());
  ASSERT_TRUE(cgroup.ok()) << cgroup.status();
  const CgroupDirs dirs = (*cgroup)->dirs();
  const std::string memory = dirs.V1("memory");
  if (memory.empty() || memory == (*cgroup)->path()) {
    EXPECT_TRUE((*cgroup)->Remove().ok());
    GTEST_SKIP() << "no v1 memory hierarchy beside the tracker";
  }
  ASSERT_EQ(rmdir(memory.c_str()), 0) << memory;
  absl::StatusOr<std::unique_ptr<ProcessCgroup>> adopted = cgroups->Adopt(dirs);
  ASSERT_TRUE(adopted.ok()) << adopted.status();
  EXPECT_EQ((*adopted)->dirs().V1("memory"), "");
  EXPECT_EQ((*adopted)->path(), (*cgroup)->path());
  EXPECT_TRUE((*adopted)->Remove().ok());
  EXPECT_FALSE(std::filesystem::exists((*cgroup)->path()));
}

}  // namespace
}  // namespace pm::supervisor
