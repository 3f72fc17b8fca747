// EventRecorder: for tests, keeps the StackEvents a supervising Stack
// reports (StackOptions::observer) and waits for them.
//
//   pm::stack::EventRecorder events;
//   options.observer = events.Observer();
//   ...
//   stack->PostSignal("log_store", SIGKILL);
//   events.WaitFor(StackEvent::Kind::kHealthy, 1, "log_store");
#ifndef PM_STACK_EVENT_RECORDER_H_
#define PM_STACK_EVENT_RECORDER_H_

#include <functional>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "stack/stack.h"

namespace pm::stack {

class EventRecorder {
 public:
  // The observer to put in StackOptions; the recorder must outlive Run.
  std::function<void(const StackEvent&)> Observer() {
    return [this](const StackEvent& event) { Add(event); };
  }
  void Add(const StackEvent& event) {
    absl::MutexLock lock(&mu_);
    events_.push_back(event);
  }
  // Waits until `n` events of `kind` (of `service`, when not empty) were
  // seen, or `timeout` (a safety net) has passed; returns those seen.
  std::vector<StackEvent> WaitFor(StackEvent::Kind kind, size_t n,
                                  const std::string& service = "",
                                  absl::Duration timeout = absl::Seconds(60)) {
    absl::MutexLock lock(&mu_);
    auto enough = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return MatchingLocked(kind, service).size() >= n;
    };
    mu_.AwaitWithTimeout(absl::Condition(&enough), timeout);
    return MatchingLocked(kind, service);
  }
  std::vector<StackEvent> All() {
    absl::MutexLock lock(&mu_);
    return events_;
  }

 private:
  std::vector<StackEvent> MatchingLocked(StackEvent::Kind kind,
                                         const std::string& service)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    std::vector<StackEvent> found;
    for (const StackEvent& e : events_) {
      if (e.kind == kind && (service.empty() || e.service == service)) {
        found.push_back(e);
      }
    }
    return found;
  }

  absl::Mutex mu_;
  std::vector<StackEvent> events_ ABSL_GUARDED_BY(mu_);
};

}  // namespace pm::stack

#endif  // PM_STACK_EVENT_RECORDER_H_
