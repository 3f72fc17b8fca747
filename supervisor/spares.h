// Spares: things made ahead of need by a thread of their own, so the event
// loop takes a ready one instead of waiting while it is made. The
// supervisor keeps spare cgroups (a mkdir per hierarchy costs about as much
// as the clone and exec) and spare idle pm-shims (a posix_spawn and an
// exec) this way.
//
//   Spares<std::unique_ptr<ProcessCgroup>> spares({
//       .thread_name = "pm-cgroups", .what = "cgroup", .count = 2,
//       .make = [&] { return cgroups->Create(pm::v1::Limits()); },
//       .discard = [](std::unique_ptr<ProcessCgroup> c) { (void)c->Remove(); }});
//   spares.Start();
//   std::optional<std::unique_ptr<ProcessCgroup>> ready = spares.Take();
//   if (!ready) { /* none ready: make one here */ }
//   spares.Stop();   // joins the thread, discards what is left
//
// Start makes `count`, then the thread keeps `count` ready: it makes one
// whenever fewer are, and sleeps on a condition otherwise. If making one fails it logs why once and
// makes no more (Take then finds none and the caller makes its own).
#ifndef PM_SUPERVISOR_SPARES_H_
#define PM_SUPERVISOR_SPARES_H_

#include <pthread.h>

#include <cstddef>
#include <functional>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/log.h"

namespace pm::supervisor {

template <typename T>
class Spares {
 public:
  struct Options {
    std::string thread_name;  // at most 15 characters (pthread_setname_np)
    std::string what;         // for the log: "cgroup", "shim"
    size_t count = 2;
    // Makes one, on the spares' thread.
    std::function<absl::StatusOr<T>()> make;
    // Gets rid of one not taken, at Stop.
    std::function<void(T)> discard;
    // While a Hold is held and some are still ready, a refill waits for the
    // last Hold to go, at most this long (see Hold).
    absl::Duration max_hold = absl::ZeroDuration();
  };

  // Held by a caller while its latency counts (a Start until it answers):
  // the thread does not make a new one meanwhile unless none is left, so
  // the making (a posix_spawn and an exec, or mkdirs) does not take a core
  // from that caller on a small machine. Movable; releases once.
  class Hold {
   public:
    Hold() = default;
    explicit Hold(Spares* spares) : spares_(spares) {}
    Hold(Hold&& other) noexcept : spares_(std::exchange(other.spares_, nullptr)) {}
    Hold& operator=(Hold&& other) noexcept {
      if (this != &other) {
        Release();
        spares_ = std::exchange(other.spares_, nullptr);
      }
      return *this;
    }
    ~Hold() { Release(); }
    void Release() {
      if (spares_ == nullptr) return;
      absl::MutexLock lock(&spares_->mu_);
      --spares_->holds_;
      spares_ = nullptr;
    }

   private:
    Spares* spares_ = nullptr;
  };
  Hold HoldRefills() {
    absl::MutexLock lock(&mu_);
    ++holds_;
    return Hold(this);
  }

  explicit Spares(Options options) : options_(std::move(options)) {}
  Spares(const Spares&) = delete;
  Spares& operator=(const Spares&) = delete;
  ~Spares() { Stop(); }

  // Makes the first `count` here, on the caller's thread (startup is not
  // where latency counts, and a Start right after it finds them ready),
  // then starts the thread that keeps them at `count`.
  void Start() {
    for (size_t i = 0; i < options_.count; ++i) {
      if (!MakeOne()) return;
    }
    thread_ = std::thread([this] {
      pthread_setname_np(pthread_self(), options_.thread_name.c_str());
      MakeUntilStopped();
    });
  }

  // A ready one, or nullopt when none is (the thread refills behind it).
  std::optional<T> Take() {
    absl::MutexLock lock(&mu_);
    if (ready_.empty()) return std::nullopt;
    T taken = std::move(ready_.back());
    ready_.pop_back();
    return taken;
  }

  // Joins the thread and discards every one not taken. Idempotent.
  void Stop() {
    {
      absl::MutexLock lock(&mu_);
      stop_ = true;
    }
    if (thread_.joinable()) thread_.join();
    std::vector<T> left;
    {
      absl::MutexLock lock(&mu_);
      left.swap(ready_);
    }
    for (T& one : left) options_.discard(std::move(one));
  }

 private:
  void MakeUntilStopped() {
    for (;;) {
      mu_.LockWhen(absl::Condition(
          +[](Spares* self) ABSL_EXCLUSIVE_LOCKS_REQUIRED(self->mu_) {
            return self->stop_ || self->ready_.size() < self->options_.count;
          },
          this));
      if (!stop_ && !ready_.empty() && holds_ > 0) {
        mu_.AwaitWithTimeout(
            absl::Condition(
                +[](Spares* self) ABSL_EXCLUSIVE_LOCKS_REQUIRED(self->mu_) {
                  return self->stop_ || self->ready_.empty() || self->holds_ == 0;
                },
                this),
            options_.max_hold);
      }
      const bool stop = stop_;
      mu_.Unlock();
      if (stop) return;
      if (!MakeOne()) return;
    }
  }

  // Makes one and adds it to the ready ones; false (logged) if it failed.
  bool MakeOne() {
    absl::StatusOr<T> made = options_.make();
    if (!made.ok()) {
      PM_LOG(WARNING) << "cannot make a spare " << options_.what << ": "
                      << made.status() << "; Start makes its own";
      return false;
    }
    absl::MutexLock lock(&mu_);
    ready_.push_back(*std::move(made));
    return true;
  }

  const Options options_;
  absl::Mutex mu_;
  std::vector<T> ready_ ABSL_GUARDED_BY(mu_);
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  int holds_ ABSL_GUARDED_BY(mu_) = 0;
  std::thread thread_;
};

}  // namespace pm::supervisor

#endif  // PM_SUPERVISOR_SPARES_H_
