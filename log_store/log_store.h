// The log_store's logic: each process's output on disk in the state dir
// (<state_dir>/procs/<id>/output, segment_log files; see output_log.h),
// the caps on it (per process, in total), and what wakes followers: the
// appending thread for output this log_store writes, one inotify watch per
// followed directory for output another process writes (the shim).
//
//   LogStore::Options options;
//   options.state_dir = state_dir;
//   PM_ASSIGN_OR_RETURN(std::unique_ptr<LogStore> store,
//                       LogStore::Create(options));
//   // The supervisor's Append stream:
//   PM_ASSIGN_OR_RETURN(std::shared_ptr<OutputLog> log, store->Open(id));
//   PM_ASSIGN_OR_RETURN(auto update, store->AppendData(*log, 0,
//                                        segment_log::Stream::kStdout, "hi\n"));
//   PM_ASSIGN_OR_RETURN(update, store->Close(*log, 3));
//   // A reader (also of output from before a restart of the log_store):
//   PM_ASSIGN_OR_RETURN(std::shared_ptr<OutputLog> found, store->Find(id));
//   store->Follow(found);  ...  store->Unfollow(*found);
//
// Memory does not grow with output: a log in memory is its id, its extent
// and its waiting readers; a closed log also lets go of its Writer's fds.
// Closed logs beyond max_closed_logs are forgotten (not deleted: a Find
// finds their output on disk again).
//
// The total cap: the store keeps an estimate of the bytes on disk (what it
// found at Create, plus what its appends grew the files by); when the
// estimate passes max_total_bytes, segment_log::DeleteOldestSegments runs
// over every output directory of the state dir, on the appending thread,
// and the estimate becomes what it found. A live output's current segment
// is never deleted, so when those alone exceed the cap the next run waits
// until another segment's worth was written.
//
// Thread-safe. Lock order: the store's lock, then a log's lock.
#ifndef PM_LOG_STORE_LOG_STORE_H_
#define PM_LOG_STORE_LOG_STORE_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>

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
    // Per-process cap on disk (segment_log::WriterOptions::max_bytes).
    uint64_t max_bytes_per_process = uint64_t{64} << 20;
    // Cap on the output of all processes on disk (see above).
    uint64_t max_total_bytes = uint64_t{1} << 30;
    // Segment size; at most a quarter of max_bytes_per_process, so the
    // per-process cap deletes in quarters.
    uint64_t segment_bytes = uint64_t{8} << 20;
    // Closed logs kept in memory; older ones are found again on disk.
    size_t max_closed_logs = 10000;
  };

  // Starts the inotify watcher and enforces the total cap once over what
  // is on disk (the estimate starts from there). INVALID_ARGUMENT for an
  // empty state_dir or a zero cap; the failed call (mkdir, inotify_init1,
  // opendir, ...) otherwise.
  static absl::StatusOr<std::unique_ptr<LogStore>> Create(Options options);
  // Stops the inotify thread first: it calls into the store.
  ~LogStore();
  LogStore(const LogStore&) = delete;
  LogStore& operator=(const LogStore&) = delete;

  // The log of process `id`, ready to take output (OutputLog::OpenForAppend:
  // it resumes after what is on disk). Ids are compared without regard to
  // case; the directory is named by the lower-case form. INVALID_ARGUMENT for
  // a malformed id; the Writer's error if the directory cannot be opened.
  absl::StatusOr<std::shared_ptr<OutputLog>> Open(absl::string_view id);

  // OutputLog::AppendData, AppendGap and Close (same results and errors) on
  // a log from Open, keeping the caps. A failed write (a full disk) is not
  // an error (the bytes are a gap); it is logged at most once a minute.
  absl::StatusOr<OutputLog::Update> AppendData(OutputLog& log, uint64_t offset,
                                               segment_log::Stream stream,
                                               absl::string_view data);
  absl::StatusOr<OutputLog::Update> AppendGap(OutputLog& log, uint64_t offset,
                                              uint64_t length);
  absl::StatusOr<OutputLog::Update> Close(OutputLog& log, uint64_t end_offset);

  // The log of process `id` for reading: one this store knows, else one
  // whose output directory is on disk (written before a restart, or by a
  // shim). INVALID_ARGUMENT for a malformed id; NOT_FOUND ("no output for
  // process <id>") if there is neither.
  absl::StatusOr<std::shared_ptr<OutputLog>> Find(absl::string_view id);

  // A follower of `log` starts / ends: the first one watches the log's
  // directory with inotify (changes wake the log's watchers), the last one
  // stops. A failed watch is returned (the follower still gets output this
  // store writes).
  absl::Status Follow(const std::shared_ptr<OutputLog>& log);
  void Unfollow(const OutputLog& log);

  // Runs the total cap now (see above) and resets the estimate.
  absl::StatusOr<segment_log::TotalCapResult> EnforceTotalCap();

  // Bytes on disk as the store estimates them.
  uint64_t estimated_total_bytes() const {
    return estimated_total_.load(std::memory_order_relaxed);
  }
  // Logs held in memory, how many of them are closed, and how many are
  // watched with inotify.
  size_t log_count() const;
  size_t closed_log_count() const;
  size_t watched_dir_count() const;
  // Appends whose write failed (their bytes became gaps) since Create.
  uint64_t write_errors() const;

 private:
  struct Watched {
    int wd = -1;
    size_t followers = 0;
  };

  explicit LogStore(Options options);

  // The store's share of an append: note the growth, run the total cap
  // when due, log a failed write, count a close.
  absl::StatusOr<OutputLog::Update> Account(
      OutputLog& log, absl::StatusOr<OutputLog::Update> update);
  void NoteWriteError(const OutputLog& log, const absl::Status& error);
  void EnforceClosedCountLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The output directories under the state dir's procs/.
  absl::StatusOr<std::vector<std::string>> OutputDirs() const;
  std::shared_ptr<OutputLog> MakeLog(const std::string& key) const;
  // The inotify watcher's callback.
  void OnDirChanged(int wd);

  const Options options_;
  const segment_log::WriterOptions writer_options_;
  std::unique_ptr<DirWatcher> dir_watcher_;

  mutable absl::Mutex mu_;
  // Every log held, keyed by lower-case id.
  absl::flat_hash_map<std::string, std::shared_ptr<OutputLog>> logs_
      ABSL_GUARDED_BY(mu_);
  // Ids of the closed logs, oldest close first.
  std::deque<std::string> closed_ ABSL_GUARDED_BY(mu_);
  // Followed logs by id, and their ids by watch descriptor.
  absl::flat_hash_map<std::string, Watched> watched_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<int, std::string> watched_ids_ ABSL_GUARDED_BY(mu_);

  // The total cap: one run at a time; appends that find a run going on
  // leave it to that run.
  absl::Mutex cap_mu_;
  std::atomic<uint64_t> estimated_total_{0};
  std::atomic<uint64_t> cap_threshold_{0};

  mutable absl::Mutex errors_mu_;
  uint64_t write_errors_ ABSL_GUARDED_BY(errors_mu_) = 0;
  uint64_t unlogged_errors_ ABSL_GUARDED_BY(errors_mu_) = 0;
  absl::Time last_error_log_ ABSL_GUARDED_BY(errors_mu_) =
      absl::InfinitePast();
};

}  // namespace pm::log_store

#endif  // PM_LOG_STORE_LOG_STORE_H_
