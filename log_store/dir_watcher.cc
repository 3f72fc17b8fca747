#include "log_store/dir_watcher.h"

#include <errno.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <unistd.h>

#include <utility>

#include "absl/container/flat_hash_set.h"
#include "common/log.h"
#include "common/status.h"

namespace pm::log_store {

absl::StatusOr<std::unique_ptr<DirWatcher>> DirWatcher::Start(
    std::function<void(int wd)> on_change) {
  Fd inotify(inotify_init1(IN_CLOEXEC | IN_NONBLOCK));
  if (!inotify) return ErrnoError("inotify_init1");
  Fd stop(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!stop) return ErrnoError("eventfd");
  std::unique_ptr<DirWatcher> watcher(
      new DirWatcher(std::move(inotify), std::move(stop), std::move(on_change)));
  watcher->thread_ = std::thread([w = watcher.get()] { w->Run(); });
  return watcher;
}

DirWatcher::DirWatcher(Fd inotify, Fd stop,
                       std::function<void(int wd)> on_change)
    : inotify_(std::move(inotify)),
      stop_(std::move(stop)),
      on_change_(std::move(on_change)) {}

DirWatcher::~DirWatcher() {
  const uint64_t one = 1;
  if (write(stop_.get(), &one, sizeof(one)) != sizeof(one)) {
    PM_LOG(ERROR) << ErrnoError("write", "the DirWatcher's stop eventfd");
  }
  thread_.join();
}

absl::StatusOr<int> DirWatcher::Watch(const std::string& dir) {
  const int wd =
      inotify_add_watch(inotify_.get(), dir.c_str(),
                        IN_MODIFY | IN_CREATE | IN_DELETE | IN_MOVED_TO |
                            IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR);
  if (wd < 0) return ErrnoError("inotify_add_watch", dir);
  return wd;
}

void DirWatcher::Unwatch(int wd) { inotify_rm_watch(inotify_.get(), wd); }

void DirWatcher::Run() {
  alignas(struct inotify_event) char buffer[16 << 10];
  while (true) {
    struct pollfd fds[2] = {{inotify_.get(), POLLIN, 0},
                            {stop_.get(), POLLIN, 0}};
    if (poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      PM_LOG(ERROR) << ErrnoError("poll", "the DirWatcher's inotify fd")
                    << "; followers of output written by other processes "
                       "are no longer woken";
      return;
    }
    if (fds[1].revents != 0) return;
    absl::flat_hash_set<int> changed;
    while (true) {
      const ssize_t n = read(inotify_.get(), buffer, sizeof(buffer));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;  // EAGAIN: drained
      for (ssize_t pos = 0; pos < n;) {
        const auto* event =
            reinterpret_cast<const struct inotify_event*>(buffer + pos);
        // IN_Q_OVERFLOW has wd -1: events were lost, so wake everyone.
        changed.insert(event->wd);
        pos += sizeof(struct inotify_event) + event->len;
      }
    }
    for (int wd : changed) on_change_(wd);
  }
}

}  // namespace pm::log_store
