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

}  // namespace
}  // namespace pm::supervisor
