// One process's output as the log_store sees it: on disk, in the process's
// output directory in the state dir (<state_dir>/procs/<id>/output), in the
// segment_log format, written by the process's pm-shim (a
// segment_log::Writer in another process). The log_store only reads it:
// each reader has a segment_log::Reader of its own. In memory there is only
// the id, the directory and who waits for more.
//
//   OutputLog log(id, ProcessOutputDir(state_dir, id));
//   PM_ASSIGN_OR_RETURN(std::unique_ptr<segment_log::Reader> reader,
//                       log.OpenReader());
//   PM_ASSIGN_OR_RETURN(uint64_t cursor,
//                       log.StartOffset(*reader, std::nullopt, true));
//   log.Watch(weak_watcher);  // before reading again; Wake() calls it
//
// Offsets are absolute in the process's combined output (stdout and stderr
// in the order the shim read them) and count every byte the process wrote,
// kept or not.
//
// Thread-safe. Watchers are called outside the log's lock, from the thread
// that called Wake (the store's inotify thread): a watcher should only take
// note there and read elsewhere.
#ifndef PM_LOG_STORE_OUTPUT_LOG_H_
#define PM_LOG_STORE_OUTPUT_LOG_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "segment_log/reader.h"

namespace pm::log_store {

class OutputLog {
 public:
  // Something waiting for the files to change.
  class Watcher {
   public:
    virtual ~Watcher() = default;
    // Called once per Watch registration, outside the log's lock, on the
    // thread that called Wake: it should only note that there is more to
    // read, not read (other logs' watchers wait behind it).
    virtual void OnLogChanged() = 0;
  };

  // `dir` is the output directory; the shim creates it.
  OutputLog(std::string id, std::string dir);
  OutputLog(const OutputLog&) = delete;
  OutputLog& operator=(const OutputLog&) = delete;

  const std::string& id() const { return id_; }
  const std::string& dir() const { return dir_; }

  // A reader of the files (segment_log::Reader::Open: NOT_FOUND if the
  // directory does not exist).
  absl::StatusOr<std::unique_ptr<segment_log::Reader>> OpenReader() const;

  // Where a reader starts: `from_offset` if set (it may lie before the
  // oldest retained byte: the first chunk then reports the drop), else 0 for
  // `from_start`, else the current end ("now"). `from_offset` past the end
  // is OUT_OF_RANGE (naming both offsets), except for a follower (`follow`)
  // of an output that has not ended: it waits there. The extent is the
  // `reader`'s (freshly opened).
  absl::StatusOr<uint64_t> StartOffset(const segment_log::Reader& reader,
                                       std::optional<uint64_t> from_offset,
                                       bool from_start,
                                       bool follow = false) const;

  // Registers `watcher` for one OnLogChanged call at the next Wake. The log
  // keeps only a weak reference; registering again before the call is a
  // no-op. Register before reading again, so a change between the read and
  // the wait is never missed.
  void Watch(std::weak_ptr<Watcher> watcher);
  // Forgets a registration of `watcher`, if any. Call before destroying a
  // watcher that may still be registered.
  void Unwatch(const Watcher* watcher);
  // Calls every registered watcher (the files changed: the store's inotify).
  void Wake();

  // Readers currently registered with Watch.
  size_t watcher_count() const;

 private:
  using Waiters =
      absl::flat_hash_map<const Watcher*, std::weak_ptr<Watcher>>;

  const std::string id_;
  const std::string dir_;

  mutable absl::Mutex mu_;
  Waiters waiters_ ABSL_GUARDED_BY(mu_);
};

}  // namespace pm::log_store

#endif  // PM_LOG_STORE_OUTPUT_LOG_H_
