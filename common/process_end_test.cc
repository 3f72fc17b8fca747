#include "common/process_end.h"

#include "gtest/gtest.h"

namespace pm {
namespace {

using ::pm::internal::v1::ProcessEnd;
using ::pm::v1::ProcessStatus;

ProcessEnd FullEnd() {
  ProcessEnd end;
  end.set_exit_code(3);
  end.set_signal(9);
  end.set_core_dumped(true);
  end.mutable_ended_at()->set_seconds(1700000000);
  end.set_termination(ProcessStatus::TERMINATION_KILLED);
  end.set_output_bytes(4096);
  end.mutable_usage()->set_oom_kills(1);
  end.set_oom_killed(true);
  end.set_end_reason("killed by signal 9 (SIGKILL)");
  return end;
}

TEST(ProcessEndTest, RoundTripsEveryFieldThroughAStatus) {
  ProcessStatus status;
  status.set_id("kept");
  status.set_state(ProcessStatus::STATE_SIGNALED);
  ApplyProcessEnd(FullEnd(), status);
  EXPECT_EQ(ProcessEndOf(status).SerializeAsString(),
            FullEnd().SerializeAsString());
  // Only the end fields are touched.
  EXPECT_EQ(status.id(), "kept");
  EXPECT_EQ(status.state(), ProcessStatus::STATE_SIGNALED);
}

TEST(ProcessEndTest, ApplyingAnEmptyEndClearsTheOldOne) {
  ProcessStatus status;
  ApplyProcessEnd(FullEnd(), status);
  ApplyProcessEnd(ProcessEnd(), status);
  EXPECT_FALSE(status.has_ended_at());
  EXPECT_FALSE(status.has_usage());
  EXPECT_EQ(status.exit_code(), 0);
  EXPECT_EQ(status.end_reason(), "");
  EXPECT_EQ(ProcessEndOf(status).ByteSizeLong(), 0u);
}

TEST(ProcessEndTest, ExitedSignaledAndLostAreTheEndStates) {
  EXPECT_TRUE(IsEndState(ProcessStatus::STATE_EXITED));
  EXPECT_TRUE(IsEndState(ProcessStatus::STATE_SIGNALED));
  EXPECT_TRUE(IsEndState(ProcessStatus::STATE_LOST));
  EXPECT_FALSE(IsEndState(ProcessStatus::STATE_RUNNING));
  EXPECT_FALSE(IsEndState(ProcessStatus::STATE_STOPPING));
  EXPECT_FALSE(IsEndState(ProcessStatus::STATE_BACKOFF));
  // Its host is unreachable: what the process does now is not known, and
  // it may well run on.
  EXPECT_FALSE(IsEndState(ProcessStatus::STATE_UNKNOWN));
  EXPECT_FALSE(IsEndState(ProcessStatus::STATE_UNSPECIFIED));
}

}  // namespace
}  // namespace pm
