#include "common/exit_status.h"

#include <signal.h>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace pm {
namespace {

using ::testing::HasSubstr;

TEST(ParseSignalTest, TakesWhatKillTakes) {
  EXPECT_EQ(*ParseSignal("9"), SIGKILL);
  EXPECT_EQ(*ParseSignal("HUP"), SIGHUP);
  EXPECT_EQ(*ParseSignal("SIGTERM"), SIGTERM);
  EXPECT_EQ(*ParseSignal("sigusr1"), SIGUSR1);
  EXPECT_EQ(*ParseSignal("int"), SIGINT);
  EXPECT_EQ(*ParseSignal("RTMIN"), SIGRTMIN);
  EXPECT_EQ(*ParseSignal("SIGRTMIN+3"), SIGRTMIN + 3);
  EXPECT_EQ(*ParseSignal("rtmax-1"), SIGRTMAX - 1);
  EXPECT_EQ(*ParseSignal("RTMAX"), SIGRTMAX);
  EXPECT_EQ(*ParseSignal("64"), SIGRTMAX);
}

TEST(ParseSignalTest, RefusesWhatIsNoSignal) {
  for (const char* bad : {"0", "-1", "65", "", "SIG", "FOO", "RTMIN-1",
                          "RTMAX+1", "RTMIN+99", "RTMINx", "9x", "SIGKILLX"}) {
    absl::StatusOr<int> parsed = ParseSignal(bad);
    EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument)
        << bad;
    EXPECT_THAT(parsed.status().message(), HasSubstr("is not a signal")) << bad;
  }
}

TEST(SignalNameTest, NamesAndNumbers) {
  EXPECT_EQ(SignalName(SIGTERM), "SIGTERM");
  EXPECT_EQ(SignalName(99), "signal 99");
}

}  // namespace
}  // namespace pm
