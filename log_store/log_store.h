// The log_store's logic: each process's output on disk in the state dir
// (<state_dir>/procs/<id>/output, segment_log files; see output_log.h),
// read, never written: the process's pm-shim writes it with a
// segment_log::Writer (which also keeps the per-process cap) and writes the
// end record when the output ends. The store finds logs on disk, wakes
// their followers through one inotify watch per followed directory, and
// keeps the total cap over every process's output.
//
//   LogStore::Options options;
//   options.state_dir = state_dir;
//   PM_ASSIGN_OR_RETURN(std::unique_ptr<LogStore> store,
//                       LogStore::Create(options));
//   PM_ASSIGN_OR_RETURN(std::shared_ptr<OutputLog> log, store->Find(id));
//   store->Follow(log);  ...  store->Unfollow(*log);
//
// Memory does not grow with output or with the processes ever read: a log in
// memory is its id, its directory and its waiting readers, and beyond
// max_logs the least recently found logs that no reader holds are
// forgotten (not deleted: a Find finds their output on disk again).
//
// The total cap (max_total_bytes over every process's output) is kept over
// what is on disk, since the writers are other processes: at Create, and
// then every total_cap_interval on a thread of its own,
// segment_log::DeleteOldestSegments runs over every output directory of the
// state dir. It never deletes a live output's newest segment (unsealed: its
// shim may be writing it), so the total may stay over the cap by up to one
// segment per live process, and between two runs by what the shims wrote
// meanwhile.
//
// Thread-safe. Lock order: the store's lock, then a log's lock.
#ifndef PM_LOG_STORE_LOG_STORE_H_
#define PM_LOG_STORE_LOG_STORE_H_

#include <cstddef>
#include <cstdint>
#include <list>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "log_store/dir_watcher.h"
#include "log_store/output_log.h"
#include "segment_log/retention.h"

namespace pm::log_store {

class LogStore {
 public:
  struct Options {
    // The state dir (common/state_dir.h); must exist.
    std::string state_dir;
    // Cap on the output of all processes on disk (see above).
    uint64_t max_total_bytes = uint64_t{1} << 30;
    // How often the total cap runs after Create; InfiniteDuration: only at
    // Create (and EnforceTotalCap calls).
    absl::Duration total_cap_interval = absl::Seconds(5);
    // Logs kept in memory while no reader holds them; older ones are found
    // again on disk.
    size_t max_logs = 10000;
  };

  // Starts the inotify watcher, enforces the total cap once over what is on
  // disk, and starts the total cap's thread. INVALID_ARGUMENT for an empty
  // state_dir, a zero cap or a non-positive interval; the failed call
  // (mkdir, inotify_init1, opendir, ...) otherwise.
  static absl::StatusOr<std::unique_ptr<LogStore>> Create(Options options);
  // Stops the total cap's thread and the inotify thread first: they call
  // into the store.
  ~LogStore();
  LogStore(const LogStore&) = delete;
  LogStore& operator=(const LogStore&) = delete;

  // The log of process `id`: one this store holds, else one whose output
  // directory is on disk (written by a shim, now or before a restart).
  // Ids are compared without regard to case; the directory is named by the
  // lower-case form. INVALID_ARGUMENT for a malformed id; NOT_FOUND ("no
  // output for process <id>") if there is no such directory.
  absl::StatusOr<std::shared_ptr<OutputLog>> Find(absl::string_view id);

  // A follower of `log` starts / ends: the first one watches the log's
  // directory with inotify (changes wake the log's watchers), the last one
  // stops. A failed watch is returned (the follower is counted all the
  // same, and the next follower tries the watch again).
  absl::Status Follow(const std::shared_ptr<OutputLog>& log);
  void Unfollow(const OutputLog& log);

  // Runs the total cap now (see above). Errors name the call (opendir, stat,
  // unlink) and the path.
  absl::StatusOr<segment_log::TotalCapResult> EnforceTotalCap();

  // Runs of the total cap since Create (the one in Create included), and a
  // wait until there were at least `runs`; false if `timeout` passed first.
  uint64_t total_cap_runs() const;
  bool WaitForTotalCapRuns(uint64_t runs, absl::Duration timeout) const;

  // Logs held in memory, and the directories watched with inotify.
  size_t log_count() const;
  size_t watched_dir_count() const;

  // For the metrics (README, "Metrics"): followers now; the output's bytes
  // on disk as of the last run of the total cap (its segment files, after
  // what it deleted); and the bytes the total cap deleted since Create.
  size_t follower_count() const;
  uint64_t retained_bytes() const;
  uint64_t total_cap_deleted_bytes() const;

 private:
  struct Held {
    std::shared_ptr<OutputLog> log;
    // Its place in lru_.
    std::list<std::string>::iterator used;
  };
  struct Watched {
    int wd = -1;
    size_t followers = 0;
  };

  explicit LogStore(Options options);

  // Forgets the least recently found logs no reader holds while more than
  // max_logs are held.
  void EvictLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The output directories under the state dir's procs/.
  absl::StatusOr<std::vector<std::string>> OutputDirs() const;
  // The inotify watcher's callback: wakes, never reads.
  void OnDirChanged(int wd);
  // The total cap's thread: a run every total_cap_interval until stopped.
  void RunTotalCap();

  const Options options_;
  std::unique_ptr<DirWatcher> dir_watcher_;

  mutable absl::Mutex mu_;
  // Every log held, keyed by lower-case id.
  absl::flat_hash_map<std::string, Held> logs_ ABSL_GUARDED_BY(mu_);
  // Their ids, most recently found first.
  std::list<std::string> lru_ ABSL_GUARDED_BY(mu_);
  // Followed logs by id, and their ids by watch descriptor.
  absl::flat_hash_map<std::string, Watched> watched_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<int, std::string> watched_ids_ ABSL_GUARDED_BY(mu_);
  size_t followers_ ABSL_GUARDED_BY(mu_) = 0;

  // One run of the total cap at a time (the thread's, a caller's).
  absl::Mutex cap_mu_;
  mutable absl::Mutex runs_mu_;
  uint64_t cap_runs_ ABSL_GUARDED_BY(runs_mu_) = 0;
  uint64_t retained_bytes_ ABSL_GUARDED_BY(runs_mu_) = 0;
  uint64_t cap_deleted_bytes_ ABSL_GUARDED_BY(runs_mu_) = 0;
  bool stopping_ ABSL_GUARDED_BY(runs_mu_) = false;
  std::thread cap_thread_;
};

}  // namespace pm::log_store

#endif  // PM_LOG_STORE_LOG_STORE_H_
