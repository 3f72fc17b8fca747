#include "supervisor/event_loop.h"

#include <fcntl.h>
#include <sys/epoll.h>
#include <unistd.h>

#include <thread>
#include <vector>

#include "absl/synchronization/notification.h"
#include "gtest/gtest.h"

namespace pm::supervisor {
namespace {

TEST(EventLoopTest, RunsPostsTimersAndFdCallbacksInOrder) {
  EventLoop loop;
  ASSERT_TRUE(loop.Init().ok());
  std::thread thread([&] { loop.Run(); });

  int fds[2];
  ASSERT_EQ(pipe2(fds, O_CLOEXEC | O_NONBLOCK), 0);
  std::vector<std::string> seen;  // loop thread only
  absl::Notification done;
  loop.Post([&] {
    ASSERT_TRUE(loop.Watch(fds[0], EPOLLIN, [&](uint32_t) {
                      char c;
                      while (read(fds[0], &c, 1) == 1) seen.push_back("fd");
                      loop.Unwatch(fds[0]);
                      loop.RunAfter(absl::Milliseconds(5), [&] {
                        seen.push_back("late timer");
                        done.Notify();
                      });
                    }).ok());
    EventLoop::TimerId cancelled =
        loop.RunAfter(absl::Milliseconds(1), [&] { seen.push_back("cancelled"); });
    loop.Cancel(cancelled);
    loop.RunAfter(absl::ZeroDuration(), [&] {
      seen.push_back("timer");
      ASSERT_EQ(write(fds[1], "x", 1), 1);
    });
  });
  ASSERT_TRUE(done.WaitForNotificationWithTimeout(absl::Seconds(10)));
  loop.Quit();
  thread.join();
  EXPECT_EQ(seen, (std::vector<std::string>{"timer", "fd", "late timer"}));
  close(fds[0]);
  close(fds[1]);
}

TEST(EventLoopTest, PostFromManyThreads) {
  EventLoop loop;
  ASSERT_TRUE(loop.Init().ok());
  std::thread thread([&] { loop.Run(); });
  int count = 0;  // loop thread only
  absl::Notification done;
  std::vector<std::thread> posters;
  for (int t = 0; t < 4; ++t) {
    posters.emplace_back([&] {
      for (int i = 0; i < 1000; ++i) {
        loop.Post([&] {
          if (++count == 4000) done.Notify();
        });
      }
    });
  }
  for (auto& p : posters) p.join();
  ASSERT_TRUE(done.WaitForNotificationWithTimeout(absl::Seconds(10)));
  loop.Quit();
  thread.join();
  EXPECT_EQ(count, 4000);
}

// A timer an hour away, hastened, fires now; one due sooner is never
// delayed by a later Hasten; a timer that has fired is no longer pending.
TEST(EventLoopTest, HastenBringsATimerForwardButNeverDelaysIt) {
  EventLoop loop;
  ASSERT_TRUE(loop.Init().ok());
  std::thread thread([&] { loop.Run(); });
  std::vector<std::string> seen;  // loop thread only
  absl::Notification both;
  EventLoop::TimerId far = 0, soon = 0;
  bool hastened_far = false, hastened_soon = false;
  loop.Post([&] {
    far = loop.RunAfter(absl::Hours(1), [&] {
      seen.push_back("far");
      if (seen.size() == 2) both.Notify();
    });
    soon = loop.RunAfter(absl::ZeroDuration(), [&] {
      seen.push_back("soon");
      if (seen.size() == 2) both.Notify();
    });
    hastened_soon = loop.Hasten(soon, absl::Hours(2));
    hastened_far = loop.Hasten(far, absl::Milliseconds(1));
  });
  ASSERT_TRUE(both.WaitForNotificationWithTimeout(absl::Seconds(30)))
      << "the hastened timer did not fire";
  bool fired_is_pending = true;
  absl::Notification asked;
  loop.Post([&] {
    fired_is_pending = loop.Hasten(far, absl::ZeroDuration());
    asked.Notify();
  });
  asked.WaitForNotification();
  loop.Quit();
  thread.join();
  EXPECT_TRUE(hastened_far);
  EXPECT_TRUE(hastened_soon);
  EXPECT_FALSE(fired_is_pending);
  EXPECT_EQ(seen, (std::vector<std::string>{"soon", "far"}));
}

#ifndef NDEBUG
// Loop state has no lock: a timer armed or cancelled from another thread
// while the loop runs is a data race, and dies at once naming the call
// rather than corrupting the timer map when the timing is unlucky.
TEST(EventLoopDeathTest, TimerCallsOffTheLoopThreadDie) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(
      {
        EventLoop loop;
        if (!loop.Init().ok()) abort();
        absl::Notification running;
        std::thread thread([&] { loop.Run(); });
        loop.Post([&] { running.Notify(); });
        running.WaitForNotification();
        loop.Cancel(loop.RunAfter(absl::Seconds(1), [] {}));
      },
      "EventLoop::RunAfter called off the loop thread");
}

TEST(EventLoopTest, TimerCallsBeforeAndAfterRunAreAllowedAnywhere) {
  EventLoop loop;
  ASSERT_TRUE(loop.Init().ok());
  bool fired = false;
  loop.RunAfter(absl::ZeroDuration(), [&] {
    fired = true;
    loop.Quit();
  });
  std::thread thread([&] { loop.Run(); });
  thread.join();
  EXPECT_TRUE(fired);
  loop.Cancel(loop.RunAfter(absl::Seconds(1), [] {}));  // after Run: fine
}
#endif

}  // namespace
}  // namespace pm::supervisor
