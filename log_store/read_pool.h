// ReadPool: a few threads that run the reads of followers woken by the
// store's inotify thread, so that thread only wakes (a read that blocks,
// on a slow or dead disk, would hold back every other follower's wake-up)
// and a follower stuck in a read holds one of the pool's threads, not the
// others' wake-ups.
//
//   ReadPool pool(4);
//   pool.Post([weak] { if (auto reader = weak.lock()) reader->Pump(); });
//
// Tasks run in the order posted, each on whichever thread is free. Pending
// tasks are dropped when the pool is destroyed (it joins its threads after
// the running ones return). Thread-safe.
#ifndef PM_LOG_STORE_READ_POOL_H_
#define PM_LOG_STORE_READ_POOL_H_

#include <cstddef>
#include <deque>
#include <functional>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace pm::log_store {

class ReadPool {
 public:
  // Starts `threads` threads (at least 1).
  explicit ReadPool(size_t threads);
  ~ReadPool();
  ReadPool(const ReadPool&) = delete;
  ReadPool& operator=(const ReadPool&) = delete;

  // Runs `task` on one of the pool's threads.
  void Post(std::function<void()> task);

 private:
  void Run();

  absl::Mutex mu_;
  std::deque<std::function<void()>> tasks_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> threads_;
};

}  // namespace pm::log_store

#endif  // PM_LOG_STORE_READ_POOL_H_
