// DirWatcher: one inotify fd and one thread for every directory the
// log_store follows, so output written by another process (the shim)
// wakes its followers with no polling and no thread per follower.
//
//   PM_ASSIGN_OR_RETURN(std::unique_ptr<DirWatcher> watcher,
//                       DirWatcher::Start([&](int wd) { WakeLogOf(wd); }));
//   PM_ASSIGN_OR_RETURN(int wd, watcher->Watch(output_dir));
//   ...
//   watcher->Unwatch(wd);
//
// A directory's watch reports a file created (a segment rotation),
// modified (an append, the end record), moved in or deleted in it (the
// caps), and the directory itself deleted or moved away: every segment_log
// write modifies a segment, so a reader that registered before reading
// again misses no change, and no reader needs to poll. Events are
// coalesced per read of the inotify fd: `on_change` is called once per
// watch descriptor per batch, on the watcher's thread, with no lock held.
// Watching the same directory twice gives the same descriptor (inotify's
// rule): callers count their uses.
//
// Thread-safe. Stops (and joins its thread) when destroyed.
#ifndef PM_LOG_STORE_DIR_WATCHER_H_
#define PM_LOG_STORE_DIR_WATCHER_H_

#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "common/fd.h"

namespace pm::log_store {

class DirWatcher {
 public:
  // Creates the inotify fd and an eventfd to stop the thread, and starts
  // the thread. Errors name inotify_init1 or eventfd and the OS reason
  // (EMFILE: the user's inotify instances, fs.inotify.max_user_instances).
  static absl::StatusOr<std::unique_ptr<DirWatcher>> Start(
      std::function<void(int wd)> on_change);
  ~DirWatcher();
  DirWatcher(const DirWatcher&) = delete;
  DirWatcher& operator=(const DirWatcher&) = delete;

  // Watches `dir`; returns its watch descriptor. Errors name
  // inotify_add_watch and the directory (ENOENT, ENOSPC: the user's
  // fs.inotify.max_user_watches).
  absl::StatusOr<int> Watch(const std::string& dir);
  // Stops watching; a descriptor the kernel already dropped (its directory
  // was removed) is ignored.
  void Unwatch(int wd);

 private:
  DirWatcher(Fd inotify, Fd stop, std::function<void(int wd)> on_change);
  void Run();

  const Fd inotify_;
  const Fd stop_;
  const std::function<void(int wd)> on_change_;
  std::thread thread_;
};

}  // namespace pm::log_store

#endif  // PM_LOG_STORE_DIR_WATCHER_H_
