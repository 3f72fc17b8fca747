#include "common/cgroup_usage.h"

#include <stdlib.h>

#include <filesystem>
#include <fstream>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace pm {
namespace {

using ::testing::ElementsAre;
using ::testing::Pair;

// A fake cgroupfs tree in a temp dir: directories with the files a test
// writes into them.
class FakeTree : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* tmp = getenv("TEST_TMPDIR");
    std::string tmpl = std::string(tmp ? tmp : "/tmp") + "/cgroup_usage.XXXXXX";
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    root_ = tmpl;
  }
  void TearDown() override { std::filesystem::remove_all(root_); }

  std::string Dir(const std::string& name) {
    std::string dir = root_ + "/" + name;
    std::filesystem::create_directories(dir);
    return dir;
  }
  static void Write(const std::string& dir, const std::string& name,
                    const std::string& text) {
    std::ofstream(dir + "/" + name) << text;
  }

  std::string root_;
};

TEST(ParseKeyedCountersTest, TakesNumericLinesOnly) {
  EXPECT_THAT(ParseKeyedCounters("usage_usec 12\nnr_periods 3\n"
                                 "junk\nname value\nlow 0\n"),
              ElementsAre(Pair("low", 0u), Pair("nr_periods", 3u),
                          Pair("usage_usec", 12u)));
  EXPECT_TRUE(ParseKeyedCounters("").empty());
}

TEST_F(FakeTree, CgroupV2WithControllers) {
  const std::string v2 = Dir("unified/pm/1");
  Write(v2, "memory.current", "1048576\n");
  Write(v2, "memory.peak", "4194304\n");
  Write(v2, "memory.events", "low 0\nhigh 0\nmax 7\noom 1\noom_kill 1\n");
  Write(v2, "cpu.stat",
        "usage_usec 2500000\nuser_usec 2000000\nsystem_usec 500000\n"
        "nr_periods 40\nnr_throttled 30\nthrottled_usec 1500000\n");
  Write(v2, "pids.current", "3\n");
  Write(v2, "pids.events", "max 12\n");
  CgroupDirs dirs;
  dirs.unified = v2;
  pm::v1::ResourceUsage usage = ReadCgroupUsage(dirs);
  EXPECT_EQ(usage.memory_bytes(), 1048576u);
  EXPECT_EQ(usage.memory_peak_bytes(), 4194304u);
  EXPECT_EQ(usage.oom_kills(), 1u);
  EXPECT_EQ(usage.memory_limit_hits(), 7u);
  EXPECT_EQ(usage.cpu_time().seconds(), 2);
  EXPECT_EQ(usage.cpu_time().nanos(), 500000000);
  EXPECT_EQ(usage.cpu_periods(), 40u);
  EXPECT_EQ(usage.cpu_throttled_periods(), 30u);
  EXPECT_EQ(usage.cpu_throttled_time().seconds(), 1);
  EXPECT_EQ(usage.tasks(), 3u);
  EXPECT_EQ(usage.task_limit_hits(), 12u);
}

TEST_F(FakeTree, HybridTakesCpuTimeFromV2AndTheRestFromV1) {
  // cgroup2 without controllers: only cpu.stat's core fields and the
  // process lists.
  const std::string v2 = Dir("unified/pm/1");
  Write(v2, "cpu.stat", "usage_usec 1000\nuser_usec 600\nsystem_usec 400\n");
  Write(v2, "cgroup.threads", "10\n11\n");
  const std::string memory = Dir("memory/pm/1");
  Write(memory, "memory.usage_in_bytes", "2048\n");
  Write(memory, "memory.max_usage_in_bytes", "8192\n");
  Write(memory, "memory.oom_control",
        "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n");
  Write(memory, "memory.failcnt", "0\n");
  Write(memory, "memory.memsw.failcnt", "5\n");
  const std::string cpu = Dir("cpu/pm/1");
  Write(cpu, "cpu.stat",
        "nr_periods 10\nnr_throttled 4\nthrottled_time 3000000000\n");
  const std::string pids = Dir("pids/pm/1");
  Write(pids, "pids.current", "9\n");
  Write(pids, "pids.events", "max 1\n");
  CgroupDirs dirs;
  dirs.unified = v2;
  dirs.v1 = {{"memory", memory}, {"cpu", cpu}, {"pids", pids}};
  pm::v1::ResourceUsage usage = ReadCgroupUsage(dirs);
  EXPECT_EQ(usage.memory_bytes(), 2048u);
  EXPECT_EQ(usage.memory_peak_bytes(), 8192u);
  EXPECT_EQ(usage.oom_kills(), 2u);
  EXPECT_EQ(usage.memory_limit_hits(), 5u);
  EXPECT_EQ(usage.cpu_time().nanos(), 1000000);
  EXPECT_EQ(usage.cpu_periods(), 10u);
  EXPECT_EQ(usage.cpu_throttled_periods(), 4u);
  EXPECT_EQ(usage.cpu_throttled_time().seconds(), 3);
  EXPECT_EQ(usage.tasks(), 9u);
  EXPECT_EQ(usage.task_limit_hits(), 1u);
}

TEST_F(FakeTree, PureV1TakesCpuTimeFromCpuacctAndCountsTasks) {
  const std::string freezer = Dir("freezer/pm/1");
  Write(freezer, "tasks", "10\n11\n12\n");
  const std::string cpuacct = Dir("cpuacct/pm/1");
  Write(cpuacct, "cpuacct.usage", "2000000000\n");
  CgroupDirs dirs;
  dirs.v1 = {{"freezer", freezer}, {"cpuacct", cpuacct}};
  pm::v1::ResourceUsage usage = ReadCgroupUsage(dirs);
  EXPECT_EQ(usage.cpu_time().seconds(), 2);
  EXPECT_EQ(usage.tasks(), 3u);
  EXPECT_FALSE(usage.has_memory_bytes());
  EXPECT_FALSE(usage.has_oom_kills());
  EXPECT_FALSE(usage.has_cpu_periods());
}

TEST_F(FakeTree, MissingFilesLeaveFieldsUnset) {
  CgroupDirs dirs;
  dirs.unified = root_ + "/gone";
  pm::v1::ResourceUsage usage = ReadCgroupUsage(dirs);
  EXPECT_EQ(usage.ByteSizeLong(), 0u);
  EXPECT_EQ(ReadCgroupUsage(CgroupDirs()).ByteSizeLong(), 0u);
}

TEST_F(FakeTree, NumbersRejectMaxAndJunk) {
  const std::string dir = Dir("x");
  Write(dir, "a", "max\n");
  Write(dir, "b", " 42\n");
  EXPECT_EQ(ReadCgroupNumber(dir, "a"), std::nullopt);
  EXPECT_EQ(ReadCgroupNumber(dir, "b"), 42u);
  EXPECT_EQ(ReadCgroupNumber(dir, "missing"), std::nullopt);
}

}  // namespace
}  // namespace pm
