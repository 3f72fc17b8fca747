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

  // On the loop thread: listens on <runtime_dir>/shims.sock and calls
  // `on_hello` there for each shim that connects and says Hello. A
  // connection whose first message is not a Hello, or that closes first,
  // is logged and closed. Errors name the call (socket, bind, listen,
  // rename) and the path.
  static absl::StatusOr<std::unique_ptr<ShimListener>> Listen(
      EventLoop* loop, const std::string& runtime_dir, OnHello on_hello);
  // On the loop thread: stops listening and removes the socket file (if it
  // is still ours); connections not yet past Hello are closed.
  ~ShimListener();

  const std::string& path() const { return path_; }

 private:
  ShimListener(EventLoop* loop, std::string path, OnHello on_hello);
  void OnAcceptable();
  void OnFirstMessage(int fd);

  EventLoop* const loop_;
  const std::string path_;
  const OnHello on_hello_;
  Fd socket_;
  std::pair<dev_t, ino_t> inode_;  // of the socket file, once renamed
  // Accepted, waiting for their Hello.
  absl::flat_hash_map<int, Fd> waiting_;
};

}  // namespace pm::supervisor

#endif  // PM_SUPERVISOR_SHIM_LISTENER_H_
