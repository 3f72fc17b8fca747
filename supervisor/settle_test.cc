#include "supervisor/settle.h"

#include <filesystem>

#include <signal.h>
#include <sys/stat.h>

#include <string>

#include "absl/time/time.h"
#include "common/proto_time.h"
#include "common/state_layout.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "segment_log/test_util.h"
#include "shim/exit_file.h"

namespace pm::supervisor {
namespace {

using ::pm::v1::ProcessStatus;
using ::testing::HasSubstr;

constexpr char kId[] = "6a1c1f0e-3b2d-4e5f-8a9b-0c1d2e3f4a5b";

ProcessStatus Record(ProcessStatus::State state) {
  ProcessStatus record;
  record.set_id(kId);
  record.set_state(state);
  return record;
}

class SettleTest : public ::testing::Test {
 protected:
  std::string state_dir() const { return tmp_.path(); }
  void WriteExit(const shim::ExitRecord& end) {
    ASSERT_EQ(mkdir(tmp_.Sub("procs").c_str(), 0700), 0);
    const std::string dir = ProcessDir(state_dir(), kId);
    ASSERT_EQ(mkdir(dir.c_str(), 0700), 0);
    ASSERT_TRUE(shim::WriteExitFile(dir, end).ok());
  }
  segment_log::TempDir tmp_;
};

TEST_F(SettleTest, AnExitFileGivesTheTrueExitCodeEndTimeAndOutputEnd) {
  const absl::Time ended = absl::FromUnixNanos(1764700000123456789);
  WriteExit({{ExitStatus::Exited(3), ended, 42}, std::nullopt, false});
  pm::internal::v1::UpdateRecordRequest update =
      SettleUnadopted(Record(ProcessStatus::STATE_RUNNING), state_dir());
  EXPECT_EQ(update.id(), kId);
  EXPECT_EQ(update.state(), ProcessStatus::STATE_EXITED);
  EXPECT_EQ(update.end().exit_code(), 3);
  EXPECT_EQ(FromProtoTimestamp(update.end().ended_at()), ended);
  EXPECT_EQ(update.end().output_bytes(), 42u);
  EXPECT_EQ(update.end().termination(), ProcessStatus::TERMINATION_BY_ITSELF);
  EXPECT_EQ(update.end().end_reason(), "exited with code 3");
}

// A process with a restart policy whose shim gave it up and exited while
// no supervisor listened: the exit file (version 2) names its last run and
// the give-up, and the record says both.
TEST_F(SettleTest, AnExitFileOfAGivenUpProcessCarriesItsRunsAndTheGiveUp) {
  ProcessStatus record = Record(ProcessStatus::STATE_BACKOFF);
  record.mutable_restart()->set_policy(pm::v1::RestartPolicy::POLICY_ON_FAILURE);
  record.mutable_restart()->set_max_restarts(2);
  record.set_run(2);
  record.set_restarts(1);
  record.mutable_last_run()->set_run(1);
  record.mutable_last_run()->set_exit_code(1);
  *record.mutable_started_at() = ToProtoTimestamp(absl::FromUnixSeconds(1764700000));
  WriteExit({{ExitStatus::Exited(1), absl::FromUnixSeconds(1764700009), 30}, 3, true});
  pm::internal::v1::UpdateRecordRequest update = SettleUnadopted(record, state_dir());
  EXPECT_EQ(update.state(), ProcessStatus::STATE_EXITED);
  EXPECT_EQ(update.end().exit_code(), 1);
  ASSERT_TRUE(update.has_run());
  EXPECT_EQ(update.run().run(), 3u);
  EXPECT_EQ(update.run().restarts(), 2u);
  EXPECT_EQ(update.run().pid(), 0);
  EXPECT_TRUE(update.run().gave_up());
  EXPECT_EQ(FromProtoTimestamp(update.run().started_at()),
            FromProtoTimestamp(record.started_at()));
  // Run 1's end is not run 2's (which ended while no supervisor listened).
  EXPECT_FALSE(update.run().has_last_run());
  EXPECT_EQ(update.end().end_reason(),
            "exited with code 1; given up after 2 restarts (2 within its life)");

  // Stopped while it waited after run 2 (found by review): run 2's end,
  // on record, stays the last run's.
  record.set_state(ProcessStatus::STATE_BACKOFF);
  record.mutable_last_run()->set_run(2);
  std::filesystem::remove(ProcessDir(state_dir(), kId) + "/exit");
  ASSERT_TRUE(shim::WriteExitFile(ProcessDir(state_dir(), kId),
                                  {{ExitStatus::Exited(1), absl::FromUnixSeconds(1764700009), 30},
                                   2,
                                   false})
                  .ok());
  update = SettleUnadopted(record, state_dir());
  ASSERT_TRUE(update.run().has_last_run());
  EXPECT_EQ(update.run().last_run().run(), 2u);
}

TEST_F(SettleTest, ASignalDuringAStopIsAfterSigtermOrKilled) {
  shim::ProcessEnd term{ExitStatus::Signaled(SIGTERM), absl::Now(), 0};
  pm::internal::v1::UpdateRecordRequest update =
      UpdateOfShimEnd(Record(ProcessStatus::STATE_STOPPING), term);
  EXPECT_EQ(update.state(), ProcessStatus::STATE_SIGNALED);
  EXPECT_EQ(update.end().signal(), SIGTERM);
  EXPECT_EQ(update.end().termination(), ProcessStatus::TERMINATION_AFTER_SIGTERM);

  shim::ProcessEnd kill{ExitStatus::Signaled(SIGKILL), absl::Now(), 0};
  update = UpdateOfShimEnd(Record(ProcessStatus::STATE_STOPPING), kill);
  EXPECT_EQ(update.end().termination(), ProcessStatus::TERMINATION_KILLED);
  update = UpdateOfShimEnd(Record(ProcessStatus::STATE_RUNNING), kill);
  EXPECT_EQ(update.end().termination(), ProcessStatus::TERMINATION_BY_ITSELF);
}

TEST_F(SettleTest, NoShimAndNoExitFileIsLostSayingSo) {
  pm::internal::v1::UpdateRecordRequest update =
      SettleUnadopted(Record(ProcessStatus::STATE_RUNNING), state_dir());
  EXPECT_EQ(update.state(), ProcessStatus::STATE_LOST);
  EXPECT_FALSE(update.end().has_ended_at());
  EXPECT_THAT(update.end().end_reason(),
              HasSubstr("found neither its shim nor an exit file in"));
  EXPECT_THAT(update.end().end_reason(), HasSubstr(kId));
}

TEST_F(SettleTest, AnUnreadableExitFileIsLostNamingWhy) {
  ASSERT_EQ(mkdir(tmp_.Sub("procs").c_str(), 0700), 0);
  const std::string dir = ProcessDir(state_dir(), kId);
  ASSERT_EQ(mkdir(dir.c_str(), 0700), 0);
  FILE* f = fopen((dir + "/exit").c_str(), "w");
  ASSERT_NE(f, nullptr);
  fputs("pm-shim-exit 1\nstatus exi", f);  // torn
  fclose(f);
  pm::internal::v1::UpdateRecordRequest update =
      SettleUnadopted(Record(ProcessStatus::STATE_RUNNING), state_dir());
  EXPECT_EQ(update.state(), ProcessStatus::STATE_LOST);
  EXPECT_THAT(update.end().end_reason(), HasSubstr("could not read its exit file"));
}

}  // namespace
}  // namespace pm::supervisor
