// EventLoop: one thread, epoll, timers, and work posted from other threads.
//
//   EventLoop loop;
//   PM_RETURN_IF_ERROR(loop.Init());
//   std::thread thread([&] { loop.Run(); });
//   loop.Post([&] { /* runs on the loop thread */ });
//   // on the loop thread:
//   loop.Watch(pidfd, EPOLLIN, [](uint32_t events) { ... });
//   EventLoop::TimerId t = loop.RunAfter(absl::Seconds(10), [] { ... });
//   loop.Quit(); thread.join();
//
// Everything but Post and Quit must be called on the loop thread. Callbacks
// run on the loop thread, one at a time, so state owned by the loop needs no
// lock. Nothing polls: the thread sleeps in epoll_wait until an fd, a timer
// or a post wakes it.
#ifndef PM_SUPERVISOR_EVENT_LOOP_H_
#define PM_SUPERVISOR_EVENT_LOOP_H_

#include <stdint.h>

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <thread>
#include <vector>

struct epoll_event;

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/fd.h"

namespace pm::supervisor {

class EventLoop {
 public:
  using FdCallback = std::function<void(uint32_t events)>;
  using TimerId = uint64_t;

  EventLoop() = default;
  EventLoop(const EventLoop&) = delete;
  EventLoop& operator=(const EventLoop&) = delete;

  // Creates the epoll and wakeup fds. Errors name the failing call.
  absl::Status Init();

  // Runs callbacks until Quit(). Call from the thread that owns the loop.
  void Run();
  // Makes Run() return after the current callback. Any thread.
  void Quit();
  // Runs `fn` on the loop thread soon. Any thread. False (and `fn` is
  // dropped) once Run() has returned: the caller must answer on its own.
  bool Post(std::function<void()> fn);

  // Calls `callback` with the epoll events whenever `fd` is ready for
  // `events`. The fd stays owned by the caller; Unwatch before closing it.
  absl::Status Watch(int fd, uint32_t events, FdCallback callback);
  absl::Status Modify(int fd, uint32_t events);
  void Unwatch(int fd);

  // Runs `fn` once after `delay` (monotonic clock).
  TimerId RunAfter(absl::Duration delay, std::function<void()> fn);
  // Cancels a timer that has not fired; a no-op otherwise.
  void Cancel(TimerId id);
  // Makes a timer that has not fired fire within `delay` from now: brought
  // forward if it was due later, left alone if it was due sooner (never
  // delayed). False if it is not pending (fired, cancelled or unknown).
  bool Hasten(TimerId id, absl::Duration delay);

 private:
  // Dies naming `what` when called off the loop thread while Run() runs
  // (unless NDEBUG): loop state has no lock, so such a call is a data race
  // that TSan would only catch when the timing is unlucky. The tests run
  // every service with this check on.
  void CheckOnLoop(const char* what) const;
  void RunUntilQuit(struct epoll_event* events, int max_events);
  void RunDueTimers();
  int NextTimeoutMs() const;
  void DrainPosts();

  Fd epoll_;
  Fd wakeup_;  // eventfd
  bool quit_ = false;
  absl::flat_hash_map<int, std::shared_ptr<FdCallback>> watches_;
  // deadline -> timer id; id -> callback.
  std::multimap<absl::Time, TimerId> timer_queue_;
  absl::flat_hash_map<TimerId, std::pair<absl::Time, std::function<void()>>>
      timers_;
  TimerId next_timer_ = 1;
  // The thread in Run(), or none outside it.
  std::atomic<std::thread::id> loop_thread_{};

  absl::Mutex mu_;
  std::vector<std::function<void()>> posted_ ABSL_GUARDED_BY(mu_);
  bool quit_requested_ ABSL_GUARDED_BY(mu_) = false;
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace pm::supervisor

#endif  // PM_SUPERVISOR_EVENT_LOOP_H_
