#include "supervisor/event_loop.h"

#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <limits>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/log.h"
#include "common/status.h"

namespace pm::supervisor {
namespace {

// absl::Now() is the realtime clock; timers use a monotonic one so a clock
// step never fires or delays them.
absl::Time MonotonicNow() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return absl::TimeFromTimespec(ts);
}

}  // namespace

absl::Status EventLoop::Init() {
  epoll_.reset(epoll_create1(EPOLL_CLOEXEC));
  if (!epoll_) return ErrnoError("epoll_create1");
  wakeup_.reset(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!wakeup_) return ErrnoError("eventfd");
  struct epoll_event ev = {};
  ev.events = EPOLLIN;
  ev.data.fd = wakeup_.get();
  if (epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, wakeup_.get(), &ev) != 0) {
    return ErrnoError("epoll_ctl", "EPOLL_CTL_ADD eventfd");
  }
  return absl::OkStatus();
}

bool EventLoop::Post(std::function<void()> fn) {
  bool wake;
  {
    absl::MutexLock lock(&mu_);
    if (stopped_) return false;
    // Only the first post into an empty queue needs to wake the loop: it
    // takes the whole queue when it wakes (DrainPosts swaps under mu_).
    wake = posted_.empty();
    posted_.push_back(std::move(fn));
  }
  if (!wake) return true;
  uint64_t one = 1;
  ssize_t ignored = write(wakeup_.get(), &one, sizeof(one));
  (void)ignored;  // EAGAIN: the counter is already non-zero, a wakeup pends.
  return true;
}

void EventLoop::Quit() {
  {
    absl::MutexLock lock(&mu_);
    quit_requested_ = true;
  }
  Post([] {});
}

void EventLoop::CheckOnLoop(const char* what) const {
#ifdef NDEBUG
  (void)what;
#else
  const std::thread::id loop = loop_thread_.load(std::memory_order_relaxed);
  if (loop == std::thread::id() || loop == std::this_thread::get_id()) return;
  PM_LOG(FATAL) << "EventLoop::" << what
                << " called off the loop thread while the loop runs";
#endif
}

absl::Status EventLoop::Watch(int fd, uint32_t events, FdCallback callback) {
  CheckOnLoop("Watch");
  struct epoll_event ev = {};
  ev.events = events;
  ev.data.fd = fd;
  if (epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &ev) != 0) {
    return ErrnoError("epoll_ctl", absl::StrCat("EPOLL_CTL_ADD fd ", fd));
  }
  watches_[fd] = std::make_shared<FdCallback>(std::move(callback));
  return absl::OkStatus();
}

absl::Status EventLoop::Modify(int fd, uint32_t events) {
  CheckOnLoop("Modify");
  struct epoll_event ev = {};
  ev.events = events;
  ev.data.fd = fd;
  if (epoll_ctl(epoll_.get(), EPOLL_CTL_MOD, fd, &ev) != 0) {
    return ErrnoError("epoll_ctl", absl::StrCat("EPOLL_CTL_MOD fd ", fd));
  }
  return absl::OkStatus();
}

void EventLoop::Unwatch(int fd) {
  CheckOnLoop("Unwatch");
  if (watches_.erase(fd) > 0) {
    epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, fd, nullptr);
  }
}

EventLoop::TimerId EventLoop::RunAfter(absl::Duration delay,
                                       std::function<void()> fn) {
  CheckOnLoop("RunAfter");
  const TimerId id = next_timer_++;
  const absl::Time deadline = MonotonicNow() + delay;
  timer_queue_.emplace(deadline, id);
  timers_[id] = {deadline, std::move(fn)};
  return id;
}

void EventLoop::Cancel(TimerId id) {
  CheckOnLoop("Cancel");
  auto it = timers_.find(id);
  if (it == timers_.end()) return;
  auto range = timer_queue_.equal_range(it->second.first);
  for (auto q = range.first; q != range.second; ++q) {
    if (q->second == id) {
      timer_queue_.erase(q);
      break;
    }
  }
  timers_.erase(it);
}

bool EventLoop::Hasten(TimerId id, absl::Duration delay) {
  CheckOnLoop("Hasten");
  auto it = timers_.find(id);
  if (it == timers_.end()) return false;
  const absl::Time deadline = MonotonicNow() + delay;
  absl::Time& current = it->second.first;
  if (deadline >= current) return true;
  auto range = timer_queue_.equal_range(current);
  for (auto q = range.first; q != range.second; ++q) {
    if (q->second == id) {
      timer_queue_.erase(q);
      break;
    }
  }
  current = deadline;
  timer_queue_.emplace(deadline, id);
  return true;
}

int EventLoop::NextTimeoutMs() const {
  if (timer_queue_.empty()) return -1;
  absl::Duration left = timer_queue_.begin()->first - MonotonicNow();
  if (left <= absl::ZeroDuration()) return 0;
  // Round up so a timer never fires early; clamp so a timer weeks away
  // does not overflow into "wait forever".
  const int64_t ms = absl::ToInt64Milliseconds(left + absl::Milliseconds(1) -
                                               absl::Nanoseconds(1));
  return static_cast<int>(std::min<int64_t>(ms, std::numeric_limits<int>::max()));
}

void EventLoop::RunDueTimers() {
  const absl::Time now = MonotonicNow();
  while (!timer_queue_.empty() && timer_queue_.begin()->first <= now) {
    TimerId id = timer_queue_.begin()->second;
    timer_queue_.erase(timer_queue_.begin());
    auto it = timers_.find(id);
    if (it == timers_.end()) continue;
    std::function<void()> fn = std::move(it->second.second);
    timers_.erase(it);
    fn();
  }
}

void EventLoop::DrainPosts() {
  uint64_t count;
  ssize_t ignored = read(wakeup_.get(), &count, sizeof(count));
  (void)ignored;
  std::vector<std::function<void()>> posted;
  {
    absl::MutexLock lock(&mu_);
    posted.swap(posted_);
    if (quit_requested_) quit_ = true;
  }
  for (auto& fn : posted) fn();
}

void EventLoop::Run() {
  constexpr int kMaxEvents = 64;
  struct epoll_event events[kMaxEvents];
  loop_thread_.store(std::this_thread::get_id(), std::memory_order_relaxed);
  RunUntilQuit(events, kMaxEvents);
  // Work posted before Quit still runs; later posts are refused (Post
  // returns false), so no caller waits on a task that never runs.
  for (;;) {
    std::vector<std::function<void()>> posted;
    {
      absl::MutexLock lock(&mu_);
      if (posted_.empty()) {
        // From here other threads may use the loop's state (a Post that
        // fails drops its task there); mu_ orders them after this thread.
        stopped_ = true;
        loop_thread_.store(std::thread::id(), std::memory_order_relaxed);
        break;
      }
      posted.swap(posted_);
    }
    for (auto& fn : posted) fn();
  }
}

void EventLoop::RunUntilQuit(struct epoll_event* events, int max_events) {
  const int kMaxEvents = max_events;
  while (!quit_) {
    int n = epoll_wait(epoll_.get(), events, kMaxEvents, NextTimeoutMs());
    if (n < 0 && errno != EINTR) break;
    for (int i = 0; i < n; ++i) {
      // Dispatch is by fd number: a callback earlier in this batch may have
      // closed an fd and watched a new one with the same number, so every
      // callback must tolerate a spurious wakeup (EAGAIN, nothing to reap).
      const int fd = events[i].data.fd;
      if (fd == wakeup_.get()) {
        DrainPosts();
        continue;
      }
      auto it = watches_.find(fd);
      if (it == watches_.end()) continue;  // unwatched by an earlier callback
      // Hold a reference: the callback may Unwatch its own fd.
      std::shared_ptr<FdCallback> callback = it->second;
      (*callback)(events[i].events);
    }
    RunDueTimers();
  }
}

}  // namespace pm::supervisor
