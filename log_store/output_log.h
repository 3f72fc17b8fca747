// One process's output as the log_store keeps it: on disk, in the process's
// output directory in the state dir (<state_dir>/procs/<id>/output), in the
// segment_log format. The log_store writes it (from the supervisor's Append
// stream) through a segment_log::Writer; readers read it back with a
// segment_log::Reader each. In memory there is only the extent (end offset,
// closed) and who waits for more.
//
//   OutputLog log(id, ProcessOutputDir(state_dir, id), writer_options);
//   PM_RETURN_IF_ERROR(log.OpenForAppend());
//   PM_ASSIGN_OR_RETURN(auto update,
//                       log.AppendData(0, segment_log::Stream::kStdout, "hi\n"));
//   PM_ASSIGN_OR_RETURN(update, log.Close(3));
//   // A reader:
//   PM_ASSIGN_OR_RETURN(std::unique_ptr<segment_log::Reader> reader,
//                       log.OpenReader());
//   PM_ASSIGN_OR_RETURN(uint64_t cursor,
//                       log.StartOffset(*reader, std::nullopt, true));
//
// Offsets are absolute in the process's combined output (stdout and stderr
// in arrival order) and count every byte the process wrote, kept or not.
// An append returns once its bytes are written to the segment files (in
// the page cache: they survive a kill -9 of the log_store). A write that
// fails (a full disk) loses the bytes but not their count: the Writer
// records a gap, the append succeeds and says so in Update::write_error.
//
// Thread-safe. Watchers are called outside the log's lock, from the thread
// whose append (or the store's inotify event) woke them.
#ifndef PM_LOG_STORE_OUTPUT_LOG_H_
#define PM_LOG_STORE_OUTPUT_LOG_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "segment_log/reader.h"
#include "segment_log/writer.h"

namespace pm::log_store {

class OutputLog {
 public:
  // The log after an append, a gap or a close.
  struct Update {
    uint64_t end_offset = 0;
    bool closed = false;
    // True only for the call that closed the log.
    bool closed_now = false;
    // Growth of the files (header and payload bytes written, less what the
    // per-process cap deleted meanwhile, never below 0): for the store's
    // estimate of the total on disk.
    uint64_t grown_bytes = 0;
    // The write that failed, if one did: the bytes are lost (a gap) but
    // the append goes on.
    absl::Status write_error;
  };

  // Something waiting for the log to grow or close.
  class Watcher {
   public:
    virtual ~Watcher() = default;
    // Called once per Watch registration, outside the log's lock; the
    // watcher reads the files again from here.
    virtual void OnLogChanged() = 0;
  };

  // `dir` is the output directory; it need not exist until OpenForAppend.
  OutputLog(std::string id, std::string dir,
            segment_log::WriterOptions writer_options);
  OutputLog(const OutputLog&) = delete;
  OutputLog& operator=(const OutputLog&) = delete;

  const std::string& id() const { return id_; }
  const std::string& dir() const { return dir_; }

  // Makes the log ready to take output: opens the directory's Writer
  // (creating the directory and its parent), which resumes after what is
  // on disk, so end_offset() is the end of what an earlier log_store wrote.
  // A closed log needs none (its Writer was let go with its fds). Errors are
  // the Writer's (mkdir, open, pread, ftruncate and the path).
  absl::Status OpenForAppend();

  // Writes `data` read at `offset`. A prefix below end_offset() is already
  // on disk (a resend after a reconnect) and is skipped; if `offset` is past
  // the end, the bytes in between become a gap record. Wakes waiting
  // readers. INVALID_ARGUMENT for an offset that overflows;
  // FAILED_PRECONDITION for new bytes after the close or before
  // OpenForAppend.
  absl::StatusOr<Update> AppendData(uint64_t offset, segment_log::Stream stream,
                                    absl::string_view data);

  // Records [offset, offset + length) as lost; the part below end_offset()
  // is ignored. INVALID_ARGUMENT if the range overflows; FAILED_PRECONDITION
  // if it reaches past the end of a closed log or comes before
  // OpenForAppend.
  absl::StatusOr<Update> AppendGap(uint64_t offset, uint64_t length);

  // Ends the output at `end_offset` (bytes between end_offset() and it are
  // lost): writes the end record, fsyncs, lets the Writer go, and wakes
  // readers so they drain and finish. Repeating the close at the same offset
  // is OK. INVALID_ARGUMENT if more was taken in than `end_offset`;
  // FAILED_PRECONDITION if it was closed at another offset; the Writer's
  // error (UNAVAILABLE-worthy: the caller may retry) if the end record could
  // not be written.
  absl::StatusOr<Update> Close(uint64_t end_offset);

  // A reader of the files (segment_log::Reader::Open: NOT_FOUND if the
  // directory does not exist).
  absl::StatusOr<std::unique_ptr<segment_log::Reader>> OpenReader() const;

  // Where a reader starts: `from_offset` if set (it may lie before the
  // oldest retained byte: the first chunk then reports the drop), else 0 for
  // `from_start`, else the current end ("now"). `from_offset` past the end
  // is OUT_OF_RANGE (naming both offsets), except for a follower (`follow`)
  // of a log still open: it waits there. The extent is the log's and the
  // `reader`'s (freshly opened), whichever knows more.
  absl::StatusOr<uint64_t> StartOffset(const segment_log::Reader& reader,
                                       std::optional<uint64_t> from_offset,
                                       bool from_start,
                                       bool follow = false) const;

  // Registers `watcher` for one OnLogChanged call at the next change (an
  // append, a gap, the close here, or Wake). The log keeps only a weak
  // reference; registering again before the call is a no-op. Register
  // before reading again, so a change between the read and the wait is
  // never missed.
  void Watch(std::weak_ptr<Watcher> watcher);
  // Forgets a registration of `watcher`, if any. Call before destroying a
  // watcher that may still be registered.
  void Unwatch(const Watcher* watcher);
  // Calls every registered watcher (the files changed under another
  // writer: the store's inotify).
  void Wake();

  // The offset after the last byte taken in (written or lost), as far as
  // this log_store knows (0 for a log it has only read).
  uint64_t end_offset() const;
  // Whether this log_store closed the log (or found it closed at
  // OpenForAppend).
  bool closed() const;
  // Whether a Writer is open (an Append stream may write).
  bool appending() const;
  // Readers currently registered with Watch.
  size_t watcher_count() const;

 private:
  using Waiters =
      absl::flat_hash_map<const Watcher*, std::weak_ptr<Watcher>>;

  // Checks that [offset, offset + length) fits in 64 bits.
  absl::Status CheckRange(absl::string_view what, uint64_t offset,
                          uint64_t length) const;
  // FAILED_PRECONDITION unless a Writer is open.
  absl::Status RequireWriterLocked(absl::string_view what, uint64_t upto) const
      ABSL_SHARED_LOCKS_REQUIRED(mu_);
  // The extent, for a call that changed nothing.
  Update CurrentLocked() const ABSL_SHARED_LOCKS_REQUIRED(mu_);
  // The extent after a change, with the files' growth since
  // `retained_before` (the Writer's retained_bytes before it).
  Update MakeUpdateLocked(uint64_t retained_before, absl::Status write_error)
      const ABSL_SHARED_LOCKS_REQUIRED(mu_);
  Waiters TakeWaitersLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  static void WakeAll(Waiters waiters);

  const std::string id_;
  const std::string dir_;
  const segment_log::WriterOptions writer_options_;

  mutable absl::Mutex mu_;
  // Open from OpenForAppend to the close.
  std::unique_ptr<segment_log::Writer> writer_ ABSL_GUARDED_BY(mu_);
  uint64_t end_ ABSL_GUARDED_BY(mu_) = 0;
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
  Waiters waiters_ ABSL_GUARDED_BY(mu_);
};

}  // namespace pm::log_store

#endif  // PM_LOG_STORE_OUTPUT_LOG_H_
