// The open streams of a service, tracked so that its shutdown can end them:
// grpc::Server::Shutdown waits for every call, and a stream that lives as
// long as a process (a follower, a supervisor's record stream) would hold
// it until the deadline cancels it.
//
//   class MyReactor : public grpc::ServerBidiReactor<In, Out>,
//                     public pm::StreamReactor { ... };
//   // at the reactor's start, with self_ its own shared_ptr:
//   if (!streams.Add(self_)) { /* shutting down: finish UNAVAILABLE */ }
//   // in OnDone, before dropping self_:
//   streams.Remove(this);
//   // at shutdown:
//   streams.Shutdown();  // RequestShutdown on each live one
#ifndef PM_COMMON_STREAM_SET_H_
#define PM_COMMON_STREAM_SET_H_

#include <cstddef>
#include <memory>

#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace pm {

// A stream's reactor as a StreamSet tracks it until its OnDone.
class StreamReactor {
 public:
  virtual ~StreamReactor() = default;
  // Ends the stream with UNAVAILABLE as soon as no write is in flight.
  virtual void RequestShutdown() = 0;
};

class StreamSet {
 public:
  // Tracks `reactor` until Remove; false (and not tracked) once Shutdown
  // has begun: the reactor should end at once. Holds a weak reference.
  bool Add(const std::shared_ptr<StreamReactor>& reactor);
  void Remove(StreamReactor* reactor);

  // Refuses further Adds and asks every live reactor to end, outside the
  // lock (a reactor may finish at once and Remove itself). Returns how many
  // were asked.
  size_t Shutdown();

  // Reactors added and not yet removed.
  size_t size() const;
  // Waits until size() is `n`; false if `timeout` passed first.
  bool WaitForSize(size_t n, absl::Duration timeout) const;
  // Waits until at least `n` Adds were refused since Shutdown; false if
  // `timeout` passed first.
  bool WaitForRefused(size_t n, absl::Duration timeout) const;

 private:
  mutable absl::Mutex mu_;
  bool shut_down_ ABSL_GUARDED_BY(mu_) = false;
  size_t refused_ ABSL_GUARDED_BY(mu_) = 0;
  absl::flat_hash_map<StreamReactor*, std::weak_ptr<StreamReactor>> live_
      ABSL_GUARDED_BY(mu_);
};

}  // namespace pm

#endif  // PM_COMMON_STREAM_SET_H_
