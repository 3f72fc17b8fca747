// The supervisor's asynchronous gRPC operations (calls, streams) whose
// callbacks may still post to its event loop: the loop must outlive them,
// so the supervisor's destructor waits until none is pending.
//
//   PendingAsyncOps().Begin();  // before starting the call
//   ... in its last callback: PendingAsyncOps().End();
//   PendingAsyncOps().WaitForNone(absl::Seconds(5));
#ifndef PM_SUPERVISOR_ASYNC_OPS_H_
#define PM_SUPERVISOR_ASYNC_OPS_H_

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace pm::supervisor {

class AsyncOps {
 public:
  void Begin() {
    absl::MutexLock lock(&mu_);
    ++pending_;
  }
  void End() {
    absl::MutexLock lock(&mu_);
    --pending_;
  }
  // False if some were still pending after `timeout`.
  bool WaitForNone(absl::Duration timeout) {
    auto none = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return pending_ == 0; };
    absl::MutexLock lock(&mu_);
    return mu_.AwaitWithTimeout(absl::Condition(&none), timeout);
  }

 private:
  absl::Mutex mu_;
  int pending_ ABSL_GUARDED_BY(mu_) = 0;
};

// The process's one counter.
inline AsyncOps& PendingAsyncOps() {
  static AsyncOps* const ops = new AsyncOps;
  return *ops;
}

}  // namespace pm::supervisor

#endif  // PM_SUPERVISOR_ASYNC_OPS_H_
