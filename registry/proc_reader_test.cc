// The live /proc view: the /proc/PID/stat and status parsers on strings and
// fake trees, and the Registry reading a real child's /proc.
#include "registry/proc_reader.h"

#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/proc_test_util.h"
#include "common/utf8_fields.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "registry/registry.h"

extern char** environ;

namespace pm::registry {
namespace {

using ::pm::internal::v1::CreateRecordRequest;
using ::pm::internal::v1::UpdateRecordRequest;
using ::pm::v1::ProcessStatus;
using ::testing::Contains;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Key;
using ::testing::Pair;

TEST(ParseProcStatusTest, TrimsValuesAndSkipsLinesWithoutAColon) {
  EXPECT_THAT(
      ParseProcStatus("Name:\tsleep\nVmRSS:\t    1234 kB\n"
                      "junk without colon\nThreads:\t1\nEmpty:\n"),
      testing::ElementsAre(Pair("Empty", ""), Pair("Name", "sleep"),
                           Pair("Threads", "1"), Pair("VmRSS", "1234 kB")));
}

// A fake /proc tree: <root>/<pid>/stat and status.
class FakeProcTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = ::testing::TempDir() + "/fake_proc";
    mkdir(root_.c_str(), 0755);
  }

  void WriteProcess(pid_t pid, uint64_t start_ticks,
                    const std::string& status) {
    const std::string dir = absl::StrCat(root_, "/", pid);
    mkdir(dir.c_str(), 0755);
    std::ofstream(dir + "/stat") << StatLine(pid, "fake", start_ticks);
    std::ofstream(dir + "/status") << status;
  }

  std::string root_;
};

TEST_F(FakeProcTest, ReadsTheViewOfTheRecordedProcess) {
  WriteProcess(77, 5000, "Name:\tfake\nState:\tS (sleeping)\n"
                         "VmRSS:\t  2048 kB\nThreads:\t3\n");
  absl::StatusOr<LiveView> view = ReadLiveView(root_, 77, 5000);
  ASSERT_TRUE(view.ok()) << view.status();
  EXPECT_THAT(view->proc_status, Contains(Pair("Name", "fake")));
  EXPECT_THAT(view->proc_status, Contains(Pair("State", "S (sleeping)")));
  EXPECT_EQ(view->rss_bytes, 2048u * 1024);
  EXPECT_EQ(view->threads, 3);
}

// Found by the /proc fuzzer: "Threads:\t-1" gave a negative thread count.
TEST_F(FakeProcTest, AThreadCountThatIsNotACountReadsAsZero) {
  WriteProcess(77, 5000, "Name:\tfake\nThreads:\t-1\n");
  absl::StatusOr<LiveView> view = ReadLiveView(root_, 77, 5000);
  ASSERT_TRUE(view.ok()) << view.status();
  EXPECT_EQ(view->threads, 0);
}

TEST_F(FakeProcTest, AReusedPidIsNotFound) {
  WriteProcess(78, 6001, "Name:\tstranger\nVmRSS:\t100 kB\nThreads:\t1\n");
  absl::StatusOr<LiveView> view = ReadLiveView(root_, 78, 6000);
  EXPECT_EQ(view.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(view.status().message(),
              HasSubstr("pid 78 now belongs to another process"));
}

TEST_F(FakeProcTest, AMissingProcessIsNotFound) {
  absl::StatusOr<LiveView> view = ReadLiveView(root_, 79, 6000);
  EXPECT_EQ(view.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(view.status().message(), HasSubstr("/79"));
}

TEST_F(FakeProcTest, AZombieHasNoRss) {
  WriteProcess(80, 7000, "Name:\tfake\nState:\tZ (zombie)\nThreads:\t1\n");
  absl::StatusOr<LiveView> view = ReadLiveView(root_, 80, 7000);
  ASSERT_TRUE(view.ok()) << view.status();
  EXPECT_EQ(view->rss_bytes, 0u);
  EXPECT_THAT(view->proc_status, Contains(Pair("State", "Z (zombie)")));
}

// The kernel's Name is the first 15 bytes of the executable's file name:
// Latin-1, or a UTF-8 character cut in two. A proto string holding it would
// make GetStatus's answer unreadable to every client (INTERNAL).
TEST_F(FakeProcTest, ProcFieldsThatAreNotUtf8AreEscaped) {
  WriteProcess(81, 8000, "Name:\tcaf\xe9\nState:\tS (sleeping)\n"
                         "Cut:\t\xc3\xa9\xc3\nThreads:\t1\n");
  RegistryOptions options;
  options.proc_root = root_;
  Registry registry(options);
  CreateRecordRequest create;
  create.mutable_spec()->set_executable_bytes("/tmp/caf\xe9");
  create.set_pid(81);
  create.set_start_ticks(8000);
  absl::StatusOr<ProcessStatus> created = registry.CreateRecord(create);
  ASSERT_TRUE(created.ok()) << created.status();
  absl::StatusOr<ProcessStatus> status = registry.GetStatus(created->id());
  ASSERT_TRUE(status.ok()) << status.status();
  EXPECT_THAT(status->proc_status(), Contains(Pair("Name", "caf\\xe9")));
  EXPECT_THAT(status->proc_status(), Contains(Pair("Cut", "\xc3\xa9\\xc3")));
  EXPECT_THAT(status->proc_status(), Contains(Pair("State", "S (sleeping)")));
  EXPECT_TRUE(CheckUtf8Fields(*status).ok());
}

// A real child, `sleep 1000`, killed and reaped when the test ends.
class SleepChild {
 public:
  SleepChild() {
    char arg0[] = "sleep";
    char arg1[] = "1000";
    char* argv[] = {arg0, arg1, nullptr};
    // glibc's posix_spawn returns after the exec, so /proc already shows
    // "sleep" when it returns.
    int err = posix_spawnp(&pid_, "sleep", nullptr, nullptr, argv, environ);
    EXPECT_EQ(err, 0) << strerror(err);
    if (err != 0) pid_ = -1;
  }
  ~SleepChild() { KillAndReap(); }
  SleepChild(const SleepChild&) = delete;
  SleepChild& operator=(const SleepChild&) = delete;

  pid_t pid() const { return pid_; }

  void KillAndReap() {
    if (pid_ <= 0) return;
    kill(pid_, SIGKILL);
    int status = 0;
    waitpid(pid_, &status, 0);
    pid_ = -1;
  }

 private:
  pid_t pid_ = -1;
};

CreateRecordRequest CreateFor(pid_t pid, uint64_t start_ticks) {
  CreateRecordRequest request;
  request.mutable_spec()->set_executable("sleep");
  request.mutable_spec()->add_args("1000");
  request.set_resolved_executable("/usr/bin/sleep");
  request.set_pid(pid);
  request.set_start_ticks(start_ticks);
  return request;
}

void ExpectNoLiveView(const ProcessStatus& status) {
  EXPECT_THAT(status.proc_status(), IsEmpty());
  EXPECT_EQ(status.rss_bytes(), 0u);
  EXPECT_EQ(status.threads(), 0);
}

TEST(LiveProcessTest, GetStatusShowsTheChildsProc) {
  SleepChild child;
  ASSERT_GT(child.pid(), 0);
  absl::StatusOr<uint64_t> ticks = ReadStartTicks("/proc", child.pid());
  ASSERT_TRUE(ticks.ok()) << ticks.status();

  Registry registry;
  absl::StatusOr<ProcessStatus> created =
      registry.CreateRecord(CreateFor(child.pid(), *ticks));
  ASSERT_TRUE(created.ok()) << created.status();
  EXPECT_THAT(created->proc_status(), IsEmpty());  // CreateRecord stays quick

  absl::StatusOr<ProcessStatus> status = registry.GetStatus(created->id());
  ASSERT_TRUE(status.ok()) << status.status();
  EXPECT_THAT(status->proc_status(), Contains(Pair("Name", "sleep")));
  EXPECT_THAT(status->proc_status(),
              Contains(Pair("Pid", absl::StrCat(child.pid()))));
  EXPECT_THAT(status->proc_status(), Contains(Key("VmRSS")));
  EXPECT_GT(status->rss_bytes(), 0u);
  EXPECT_EQ(status->threads(), 1);

  // List never reads /proc.
  pm::v1::ListResponse list = registry.List();
  ASSERT_EQ(list.processes_size(), 1);
  ExpectNoLiveView(list.processes(0));
}

TEST(LiveProcessTest, MismatchedStartTicksShowNoProcFields) {
  SleepChild child;
  ASSERT_GT(child.pid(), 0);
  absl::StatusOr<uint64_t> ticks = ReadStartTicks("/proc", child.pid());
  ASSERT_TRUE(ticks.ok()) << ticks.status();

  // As if our process had ended and `sleep` had been given its pid.
  Registry registry;
  absl::StatusOr<ProcessStatus> created =
      registry.CreateRecord(CreateFor(child.pid(), *ticks - 1));
  ASSERT_TRUE(created.ok()) << created.status();
  absl::StatusOr<ProcessStatus> status = registry.GetStatus(created->id());
  ASSERT_TRUE(status.ok()) << status.status();
  EXPECT_EQ(status->state(), ProcessStatus::STATE_RUNNING);
  ExpectNoLiveView(*status);

  absl::StatusOr<LiveView> view =
      ReadLiveView("/proc", child.pid(), *ticks - 1);
  EXPECT_EQ(view.status().code(), absl::StatusCode::kNotFound);
}

TEST(LiveProcessTest, AReapedChildShowsNoProcFields) {
  SleepChild child;
  ASSERT_GT(child.pid(), 0);
  absl::StatusOr<uint64_t> ticks = ReadStartTicks("/proc", child.pid());
  ASSERT_TRUE(ticks.ok()) << ticks.status();
  Registry registry;
  absl::StatusOr<ProcessStatus> created =
      registry.CreateRecord(CreateFor(child.pid(), *ticks));
  ASSERT_TRUE(created.ok()) << created.status();

  // Gone before its exit report reached the registry.
  child.KillAndReap();
  absl::StatusOr<ProcessStatus> status = registry.GetStatus(created->id());
  ASSERT_TRUE(status.ok()) << status.status();
  EXPECT_EQ(status->state(), ProcessStatus::STATE_RUNNING);
  ExpectNoLiveView(*status);
}

TEST(LiveProcessTest, AnEndedRecordReadsNoProc) {
  SleepChild child;
  ASSERT_GT(child.pid(), 0);
  absl::StatusOr<uint64_t> ticks = ReadStartTicks("/proc", child.pid());
  ASSERT_TRUE(ticks.ok()) << ticks.status();
  Registry registry;
  absl::StatusOr<ProcessStatus> created =
      registry.CreateRecord(CreateFor(child.pid(), *ticks));
  ASSERT_TRUE(created.ok()) << created.status();

  UpdateRecordRequest exited;
  exited.set_id(created->id());
  exited.set_state(ProcessStatus::STATE_EXITED);
  ASSERT_TRUE(registry.UpdateRecord(exited).ok());
  // The process is still there, but the record says it ended: no live view.
  absl::StatusOr<ProcessStatus> status = registry.GetStatus(created->id());
  ASSERT_TRUE(status.ok()) << status.status();
  ExpectNoLiveView(*status);
}

TEST(ReadStartTicksTest, ANonexistentPidIsNotFound) {
  // Above the kernel's pid_max limit (4194304), so never a live pid.
  absl::StatusOr<uint64_t> ticks = ReadStartTicks("/proc", 99999999);
  EXPECT_EQ(ticks.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(ticks.status().message(), HasSubstr("/proc/99999999"));
}

}  // namespace
}  // namespace pm::registry
