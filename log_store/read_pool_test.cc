// ReadPool: tasks run off the posting thread, and one that blocks holds
// back none of the others.
#include "log_store/read_pool.h"

#include <thread>

#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"

namespace pm::log_store {
namespace {

TEST(ReadPoolTest, ATaskThatBlocksHoldsBackNoOtherTask) {
  ReadPool pool(2);
  absl::Notification release;
  absl::Notification blocked;
  absl::Notification other_ran;
  pool.Post([&] {
    blocked.Notify();
    release.WaitForNotification();
  });
  ASSERT_TRUE(blocked.WaitForNotificationWithTimeout(absl::Seconds(60)));
  pool.Post([&] { other_ran.Notify(); });
  EXPECT_TRUE(other_ran.WaitForNotificationWithTimeout(absl::Seconds(60)));
  release.Notify();
}

TEST(ReadPoolTest, TasksRunOffThePostingThread) {
  ReadPool pool(1);
  absl::Notification ran;
  std::thread::id ran_on;
  pool.Post([&] {
    ran_on = std::this_thread::get_id();
    ran.Notify();
  });
  ASSERT_TRUE(ran.WaitForNotificationWithTimeout(absl::Seconds(60)));
  EXPECT_NE(ran_on, std::this_thread::get_id());
}

}  // namespace
}  // namespace pm::log_store
