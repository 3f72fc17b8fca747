// ShimListener: where pm-shims whose supervisor died find the next one.
// It listens on <runtime_dir>/shims.sock (SOCK_SEQPACKET) and hands over
// each shim that connects once it has said Hello.
//
//   PM_ASSIGN_OR_RETURN(std::unique_ptr<ShimListener> listener,
//       ShimListener::Listen(&loop, runtime_dir, [](ShimListener::Adoption a) {
//         // a.hello.uuid, a.hello.pid, a.hello.start_ticks, a.hello.end;
//         // a.pidfd while the leader is unreaped; a.control for Exited, Closed
//       }));
//
// The socket appears already listening: it is bound under a temporary name,
// listen()ed on, then renamed over shims.sock (a shim's connect between a
// plain bind and listen would be refused, and no later inotify event would
// come to make it try again; a stale socket a dead supervisor left is
// replaced the same way). Everything runs on the loop thread.
#ifndef PM_SUPERVISOR_SHIM_LISTENER_H_
#define PM_SUPERVISOR_SHIM_LISTENER_H_

#include <sys/types.h>

#include <functional>
#include <memory>
#include <string>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/fd.h"
#include "shim/protocol.h"
#include "supervisor/event_loop.h"

namespace pm::supervisor {

class ShimListener {
 public:
  // A shim that said Hello.
  struct Adoption {
    shim::Hello hello;
    Fd pidfd;    // the leader's, while it is not reaped (!hello.end)
    Fd control;  // the connection: Exited and Closed come on it
  };
  using OnHello = std::function<void(Adoption)>;

  static constexpr absl::Duration kHelloDeadline = absl::Seconds(5);
  static constexpr size_t kMaxWaiting = 1024;

  // On the loop thread: listens on <runtime_dir>/shims.sock and calls
  // `on_hello` there for each shim that connects and says Hello. A
  // connection whose first message is not a Hello, or that closes first,
  // is logged and closed; so is one that says nothing within
  // kHelloDeadline. At most kMaxWaiting connections wait for their Hello at
  // once; more are closed as they come (each holds an fd: a flood of silent
  // connections must not exhaust the supervisor's). Errors name the call (socket, bind, listen,
  // rename) and the path.
  static absl::StatusOr<std::unique_ptr<ShimListener>> Listen(
      EventLoop* loop, const std::string& runtime_dir, OnHello on_hello,
      absl::Duration hello_deadline = kHelloDeadline);
  // On the loop thread: stops listening and removes the socket file (if it
  // is still ours); connections not yet past Hello are closed.
  ~ShimListener();

  const std::string& path() const { return path_; }


 private:
  ShimListener(EventLoop* loop, std::string path, OnHello on_hello,
               absl::Duration hello_deadline);
  void OnAcceptable();
  void OnFirstMessage(int fd);

  EventLoop* const loop_;
  const std::string path_;
  const OnHello on_hello_;
  const absl::Duration hello_deadline_;
  Fd socket_;
  std::pair<dev_t, ino_t> inode_;  // of the socket file, once renamed
  // Accepted, waiting for their Hello, with the timer that closes them.
  struct Waiting {
    Fd conn;
    EventLoop::TimerId deadline = 0;
  };
  absl::flat_hash_map<int, Waiting> waiting_;
};

}  // namespace pm::supervisor

#endif  // PM_SUPERVISOR_SHIM_LISTENER_H_
