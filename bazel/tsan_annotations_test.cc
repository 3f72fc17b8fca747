// Checks bazel/tsan_absl_sync.cc both ways under --config=tsan: pm code
// synchronised through abseil's Mutex, CondVar, Await, LockWhen or
// Notification is not reported, and a real race is still reported, also
// between two critical sections of different mutexes (the annotations must
// not order what the library does not). Each case runs in a child process
// (this binary again, with --case=NAME), since TSan ends a racing process.
// Without TSan there is nothing to check, and the test is skipped.
#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <map>
#include <sstream>
#include <string>
#include <thread>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"

#if defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define PM_TSAN 1
#endif
#endif

extern char** environ;

namespace {

int shared = 0;  // written by both threads of a case

// Keeps both threads alive around their accesses without ordering them
// (relaxed atomics order nothing, to TSan as to the hardware), so a race is
// seen whichever thread runs first.
struct Overlap {
  std::atomic<bool> first_done{false};
  std::atomic<bool> second_done{false};
  void FirstDone() {
    first_done.store(true, std::memory_order_relaxed);
    while (!second_done.load(std::memory_order_relaxed)) std::this_thread::yield();
  }
  void WaitFirst() {
    while (!first_done.load(std::memory_order_relaxed)) std::this_thread::yield();
  }
  void SecondDone() { second_done.store(true, std::memory_order_relaxed); }
};

void Unguarded() {
  Overlap overlap;
  std::thread t([&] {
    shared = 1;
    overlap.FirstDone();
  });
  overlap.WaitFirst();
  shared = 2;
  overlap.SecondDone();
  t.join();
}

void TwoMutexes() {
  Overlap overlap;
  absl::Mutex a, b;
  std::thread t([&] {
    {
      absl::MutexLock lock(&a);
      shared = 1;
    }
    overlap.FirstDone();
  });
  overlap.WaitFirst();
  {
    absl::MutexLock lock(&b);
    shared = 2;
  }
  overlap.SecondDone();
  t.join();
}

void OneMutex() {
  absl::Mutex mu;
  std::thread t([&] {
    absl::MutexLock lock(&mu);
    shared = 1;
  });
  {
    absl::MutexLock lock(&mu);
    shared = 2;
  }
  t.join();
}

// The handoffs below order the two accesses only through the library.
void CondVarHandoff() {
  absl::Mutex mu;
  absl::CondVar cv;
  bool ready = false;
  std::thread t([&] {
    shared = 1;
    absl::MutexLock lock(&mu);
    ready = true;
    cv.Signal();
  });
  {
    absl::MutexLock lock(&mu);
    while (!ready) cv.WaitWithTimeout(&mu, absl::Seconds(30));
  }
  shared = 2;
  t.detach();
}

void AwaitHandoff() {
  absl::Mutex mu;
  int pending = 1;
  std::thread t([&] {
    absl::MutexLock lock(&mu);
    shared = 1;
    --pending;
  });
  {
    absl::MutexLock lock(&mu);
    auto none = [&pending]() { return pending == 0; };
    mu.AwaitWithTimeout(absl::Condition(&none), absl::Seconds(30));
    shared = 2;
  }
  t.join();
}

void LockWhenHandoff() {
  absl::Mutex mu;
  bool ready = false;
  std::thread t([&] {
    shared = 1;
    absl::MutexLock lock(&mu);
    ready = true;
  });
  mu.LockWhen(absl::Condition(&ready));
  mu.Unlock();
  shared = 2;
  t.join();
}

void NotificationHandoff() {
  absl::Notification done;
  std::thread t([&] {
    shared = 1;
    done.Notify();
  });
  done.WaitForNotification();
  shared = 2;
  t.join();
}

void HasBeenNotifiedHandoff() {
  absl::Notification done;
  std::thread t([&] {
    shared = 1;
    done.Notify();
  });
  while (!done.HasBeenNotified()) std::this_thread::yield();
  shared = 2;
  t.join();
}

const std::map<std::string, std::function<void()>>& Cases() {
  static const auto* cases = new std::map<std::string, std::function<void()>>{
      {"unguarded", Unguarded},
      {"two_mutexes", TwoMutexes},
      {"one_mutex", OneMutex},
      {"condvar", CondVarHandoff},
      {"await", AwaitHandoff},
      {"lock_when", LockWhenHandoff},
      {"notification", NotificationHandoff},
      {"has_been_notified", HasBeenNotifiedHandoff},
  };
  return *cases;
}

struct Outcome {
  int exit_code = -1;
  std::string stderr_text;
};

// Runs this binary with --case=NAME, its stderr in a file.
Outcome RunCase(const std::string& name) {
  const std::string err_path =
      std::string(getenv("TEST_TMPDIR") ? getenv("TEST_TMPDIR") : "/tmp") +
      "/tsan_case_" + name + ".err";
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 2, err_path.c_str(),
                                   O_WRONLY | O_CREAT | O_TRUNC, 0600);
  std::string self = "/proc/self/exe";
  std::string flag = "--case=" + name;
  char* argv[] = {self.data(), flag.data(), nullptr};
  pid_t pid = -1;
  Outcome outcome;
  if (posix_spawn(&pid, self.c_str(), &actions, nullptr, argv, environ) != 0) {
    return outcome;
  }
  posix_spawn_file_actions_destroy(&actions);
  int status = 0;
  waitpid(pid, &status, 0);
  outcome.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  std::ifstream in(err_path);
  std::stringstream text;
  text << in.rdbuf();
  outcome.stderr_text = text.str();
  return outcome;
}

class TsanAnnotationsTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
#if !defined(PM_TSAN)
    GTEST_SKIP() << "only meaningful under --config=tsan";
#endif
  }
};

constexpr char kReport[] = "WARNING: ThreadSanitizer: data race";

TEST(TsanAnnotationsRaceTest, UnguardedWritesAreReported) {
#if !defined(PM_TSAN)
  GTEST_SKIP() << "only meaningful under --config=tsan";
#endif
  for (const char* name : {"unguarded", "two_mutexes"}) {
    Outcome outcome = RunCase(name);
    EXPECT_EQ(outcome.exit_code, 66) << name << "\n" << outcome.stderr_text;
    EXPECT_NE(outcome.stderr_text.find(kReport), std::string::npos) << name;
  }
}

TEST_P(TsanAnnotationsTest, HandoffThroughAbseilIsNotReported) {
  Outcome outcome = RunCase(GetParam());
  EXPECT_EQ(outcome.exit_code, 0) << outcome.stderr_text;
  EXPECT_EQ(outcome.stderr_text.find(kReport), std::string::npos)
      << outcome.stderr_text;
}

INSTANTIATE_TEST_SUITE_P(Handoffs, TsanAnnotationsTest,
                         ::testing::Values("one_mutex", "condvar", "await",
                                           "lock_when", "notification",
                                           "has_been_notified"));

}  // namespace

int main(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    if (std::strncmp(argv[i], "--case=", 7) == 0) {
      auto it = Cases().find(argv[i] + 7);
      if (it == Cases().end()) return 2;
      it->second();
      // Read, so the compiler keeps the cases' writes.
      return shared == 1 || shared == 2 ? 0 : 3;
    }
  }
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
