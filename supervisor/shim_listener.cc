#include "supervisor/shim_listener.h"

#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <utility>
#include <variant>

#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "common/status.h"

namespace pm::supervisor {
namespace {

absl::StatusOr<sockaddr_un> AddressOf(const std::string& path) {
  sockaddr_un addr = {};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof(addr.sun_path)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "socket path ", path, " is longer than ", sizeof(addr.sun_path) - 1,
        " bytes"));
  }
  memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  return addr;
}

}  // namespace

ShimListener::ShimListener(EventLoop* loop, std::string path, OnHello on_hello,
                           absl::Duration hello_deadline)
    : loop_(loop),
      path_(std::move(path)),
      on_hello_(std::move(on_hello)),
      hello_deadline_(hello_deadline) {}

absl::StatusOr<std::unique_ptr<ShimListener>> ShimListener::Listen(
    EventLoop* loop, const std::string& runtime_dir, OnHello on_hello,
    absl::Duration hello_deadline) {
  std::unique_ptr<ShimListener> listener(new ShimListener(
      loop, absl::StrCat(runtime_dir, "/", shim::kShimsSocketName),
      std::move(on_hello), hello_deadline));
  const std::string temp = absl::StrCat(listener->path_, ".", getpid(), ".new");
  PM_ASSIGN_OR_RETURN(sockaddr_un addr, AddressOf(temp));
  listener->socket_ =
      Fd(socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!listener->socket_) return ErrnoError("socket", "AF_UNIX, SOCK_SEQPACKET");
  unlink(temp.c_str());  // one a supervisor with our pid left
  if (bind(listener->socket_.get(), reinterpret_cast<sockaddr*>(&addr),
           sizeof(addr)) != 0) {
    return ErrnoError("bind", temp);
  }
  if (listen(listener->socket_.get(), SOMAXCONN) != 0) {
    const absl::Status status = ErrnoError("listen", temp);
    unlink(temp.c_str());
    return status;
  }
  if (rename(temp.c_str(), listener->path_.c_str()) != 0) {
    const absl::Status status =
        ErrnoError("rename", absl::StrCat(temp, " to ", listener->path_));
    unlink(temp.c_str());
    return status;
  }
  // A socket's fstat names sockfs, not the file: its identity on disk is
  // kept to tell, at the end, whether the name is still ours.
  struct stat on_disk;
  if (stat(listener->path_.c_str(), &on_disk) != 0) {
    return ErrnoError("stat", listener->path_);
  }
  listener->inode_ = {on_disk.st_dev, on_disk.st_ino};
  ShimListener* raw = listener.get();
  PM_RETURN_IF_ERROR(loop->Watch(listener->socket_.get(), EPOLLIN,
                                 [raw](uint32_t) { raw->OnAcceptable(); }));
  return listener;
}

ShimListener::~ShimListener() {
  // Only if still ours: a newer supervisor may have renamed its own over it.
  struct stat on_disk;
  if (stat(path_.c_str(), &on_disk) == 0 &&
      std::make_pair(on_disk.st_dev, on_disk.st_ino) == inode_) {
    unlink(path_.c_str());
  }
  loop_->Unwatch(socket_.get());
  for (auto& [fd, waiting] : waiting_) {
    loop_->Unwatch(fd);
    loop_->Cancel(waiting.deadline);
  }
}

void ShimListener::OnAcceptable() {
  for (;;) {
    Fd conn(accept4(socket_.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK));
    if (!conn) {
      if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
        PM_LOG(WARNING) << ErrnoError("accept4", path_);
      }
      return;
    }
    if (waiting_.size() >= kMaxWaiting) {
      PM_LOG(WARNING) << kMaxWaiting << " connections on " << path_
                      << " wait for their Hello already; another is closed";
      continue;
    }
    const int fd = conn.get();
    absl::Status watched =
        loop_->Watch(fd, EPOLLIN, [this, fd](uint32_t) { OnFirstMessage(fd); });
    if (!watched.ok()) {
      PM_LOG(WARNING) << "a shim's connection on " << path_ << ": " << watched;
      continue;
    }
    const EventLoop::TimerId deadline = loop_->RunAfter(hello_deadline_, [this, fd] {
      auto it = waiting_.find(fd);
      if (it == waiting_.end()) return;
      PM_LOG(WARNING) << "a connection on " << path_ << " said nothing for "
                      << absl::FormatDuration(hello_deadline_) << "; closed";
      loop_->Unwatch(fd);
      waiting_.erase(it);
    });
    waiting_.emplace(fd, Waiting{std::move(conn), deadline});
  }
}

void ShimListener::OnFirstMessage(int fd) {
  auto it = waiting_.find(fd);
  if (it == waiting_.end()) return;
  absl::StatusOr<shim::Received> got = shim::ReceiveMessage(fd);
  if (!got.ok() && got.status().code() == absl::StatusCode::kUnavailable) {
    return;  // EAGAIN: woken for nothing
  }
  loop_->Unwatch(fd);
  loop_->Cancel(it->second.deadline);
  Fd conn = std::move(it->second.conn);
  waiting_.erase(it);
  if (!got.ok()) {
    PM_LOG(WARNING) << "a shim on " << path_ << " said no Hello: " << got.status();
    return;
  }
  auto* hello = std::get_if<shim::Hello>(&got->message);
  if (hello == nullptr) {
    PM_LOG(WARNING) << "a shim on " << path_ << " began with "
                    << shim::MessageName(got->message) << ", not Hello; closed";
    return;
  }
  Adoption adoption{*std::move(hello), Fd(), std::move(conn)};
  if (!got->fds.empty()) adoption.pidfd = std::move(got->fds[0]);
  on_hello_(std::move(adoption));
}

}  // namespace pm::supervisor
