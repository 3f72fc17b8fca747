// The log_store's logic: process id -> OutputLog, with the caps that bound
// its memory (per process, in total, and on the number of closed logs kept).
//
//   LogStore::Options options;
//   options.max_total_bytes = uint64_t{1} << 30;
//   LogStore store(options);
//   // The supervisor's Append stream:
//   PM_ASSIGN_OR_RETURN(std::shared_ptr<OutputLog> log, store.Open(id));
//   PM_ASSIGN_OR_RETURN(auto update, store.AppendData(*log, 0,
//                                        OutputStream::kStdout, "hi\n"));
//   PM_ASSIGN_OR_RETURN(update, store.Close(*log, 3));
//   // A reader:
//   PM_ASSIGN_OR_RETURN(std::shared_ptr<OutputLog> found, store.Find(id));
//
// Every change to a log's retained bytes goes through the store, so the
// total is exact. When the total exceeds its cap the store drops the oldest
// chunks of closed logs first (the oldest closed log first), then of the
// largest open log. Readers keep their log alive through the shared_ptr; a
// log evicted by the closed-log count is emptied, so a reader still on it
// sees the rest as dropped.
//
// Thread-safe. Lock order: the store's lock, then a log's lock.
#ifndef PM_LOG_STORE_LOG_STORE_H_
#define PM_LOG_STORE_LOG_STORE_H_

#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "log_store/output_log.h"

namespace pm::log_store {

class LogStore {
 public:
  struct Options {
    // Retention cap of each process's log (see OutputLog::Options).
    uint64_t max_bytes_per_process = uint64_t{64} << 20;
    // Cap on the bytes retained by all logs together.
    uint64_t max_total_bytes = uint64_t{1} << 30;
    // Closed logs kept; the oldest closed log is evicted beyond this.
    size_t max_closed_logs = 10000;
    size_t max_chunk_bytes = OutputLog::Options().max_chunk_bytes;
    size_t chunk_overhead_bytes = OutputLog::Options().chunk_overhead_bytes;
  };

  explicit LogStore(Options options);
  LogStore(const LogStore&) = delete;
  LogStore& operator=(const LogStore&) = delete;

  // The log of process `id`, created empty if new (ids are compared without
  // regard to case). INVALID_ARGUMENT for a malformed id.
  absl::StatusOr<std::shared_ptr<OutputLog>> Open(absl::string_view id);

  // OutputLog::AppendData, AppendGap and Close (same results and errors) on
  // a log from Open, keeping the store's caps.
  absl::StatusOr<OutputLog::Update> AppendData(OutputLog& log, uint64_t offset,
                                               OutputStream stream,
                                               absl::string_view data);
  absl::StatusOr<OutputLog::Update> AppendOwnedData(OutputLog& log,
                                                    uint64_t offset,
                                                    OutputStream stream,
                                                    std::string&& data);
  absl::StatusOr<OutputLog::Update> AppendGap(OutputLog& log, uint64_t offset,
                                              uint64_t length);
  absl::StatusOr<OutputLog::Update> Close(OutputLog& log, uint64_t end_offset);

  // The log of process `id` for reading. INVALID_ARGUMENT for a malformed
  // id; NOT_FOUND ("no output for process <id>") if the store has none.
  absl::StatusOr<std::shared_ptr<OutputLog>> Find(absl::string_view id) const;

  // Bytes retained by all logs (data plus per-chunk overhead).
  uint64_t total_retained_bytes() const;
  // Bytes retained for process `id`; errors as Find.
  absl::StatusOr<uint64_t> RetainedBytes(absl::string_view id) const;
  // Logs held, and how many of them are closed.
  size_t log_count() const;
  size_t closed_log_count() const;

 private:
  // Applies a log's change of retained bytes and enforces the caps.
  absl::StatusOr<OutputLog::Update> Account(
      OutputLog& log, absl::StatusOr<OutputLog::Update> update);
  void EnforceTotalCapLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void EnforceClosedCountLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The oldest closed log still retaining bytes, else the open log
  // retaining the most; null if no log retains anything.
  OutputLog* PickVictimLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Whether `log` is the one the store holds under its id (an Append stream
  // may still hold a log the store has evicted).
  bool HoldsLocked(const OutputLog& log) const
      ABSL_SHARED_LOCKS_REQUIRED(mu_);

  const Options options_;
  mutable absl::Mutex mu_;
  // Every log, keyed by lower-case id.
  absl::flat_hash_map<std::string, std::shared_ptr<OutputLog>> logs_
      ABSL_GUARDED_BY(mu_);
  // The logs not closed yet (a subset of logs_).
  absl::flat_hash_set<OutputLog*> open_ ABSL_GUARDED_BY(mu_);
  // Closed logs, oldest close first.
  std::deque<std::shared_ptr<OutputLog>> closed_ ABSL_GUARDED_BY(mu_);
  // closed_[0, closed_emptied_) retain nothing: closed logs never grow and
  // the total cap empties them oldest first, so the emptied ones are a
  // prefix and need not be scanned again.
  size_t closed_emptied_ ABSL_GUARDED_BY(mu_) = 0;
  // Signed: see EnforceTotalCapLocked.
  int64_t total_retained_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace pm::log_store

#endif  // PM_LOG_STORE_LOG_STORE_H_
