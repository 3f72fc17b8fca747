// Writer: appends one process's output to its segment files (format.h) on
// disk. The shim owns one per managed process; it is the only writer of the
// directory (the log_store only reads it and deletes whole old segments).
//
//   PM_ASSIGN_OR_RETURN(std::unique_ptr<Writer> writer,
//                       Writer::Open(ProcessOutputDir(state_dir, id),
//                                    WriterOptions{}));
//   absl::Status status =
//       writer->Append(Stream::kStdout, bytes_read, absl::Now());
//   if (!status.ok()) LogRateLimited(status);  // e.g. the bytes became a gap
//   ...
//   PM_RETURN_IF_ERROR(writer->Close(absl::Now()));  // the end record
//
// Failures lose bytes, never the count of them: if a write fails (ENOSPC,
// EFBIG, EIO, ...) the offset still advances, the bytes are recorded as a
// gap as soon as a write succeeds again, and Append returns the error. The
// Writer never blocks on anything but the write itself and never aborts.
//
// Retention: a new segment starts once the current one holds
// `segment_bytes`; while the directory holds more than `max_bytes`, the
// oldest whole segments are deleted (never the one being written, so after
// an append a directory holds at most max_bytes, or only the current
// segment, up to segment_bytes plus one record). Deleted bytes are reported
// to readers in dropped_before. The log_store may delete old segments too
// (the total cap, retention.h); the Writer copes.
//
// Durability: a record is in the page cache once Append returns, so it
// survives kill -9 of the writer (and of every pm service). Nothing is
// fsynced while the output runs (an fsync would stall the caller, and the
// process on its pipe, for as long as the disk takes), nor is writeback
// forced when a segment is full (sync_file_range waits when the disk's
// queue is full); Close fsyncs the last segment and the directory. So a
// power loss keeps all the output of a process whose end record was
// written, and of a running one what the kernel had written back: all but
// about its last 30 s (the kernel's dirty_expire_centisecs); the torn tail
// it may leave is cut when the directory is reopened.
//
// Not thread-safe: one thread (the shim's loop) calls it.
#ifndef PM_SEGMENT_LOG_WRITER_H_
#define PM_SEGMENT_LOG_WRITER_H_

#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "common/fd.h"
#include "segment_log/format.h"

namespace pm::segment_log {

struct WriterOptions {
  // A new segment starts once the current one holds this many bytes.
  uint64_t segment_bytes = 8 << 20;
  // Per-process cap: the oldest whole segments are deleted past it.
  uint64_t max_bytes = 256 << 20;
};

class Writer {
 public:
  // Opens `dir` (created 0700 if missing; its parent must exist) and resumes
  // after what is there: the last segment's torn tail (a partial record, a
  // bad checksum) is cut and writing continues at its end offset; a
  // directory whose output ended stays closed. INVALID_ARGUMENT for a zero
  // segment_bytes or max_bytes; errors name the call (mkdir, open, pread,
  // ftruncate, pwrite) and the path.
  static absl::StatusOr<std::unique_ptr<Writer>> Open(std::string dir,
                                                      WriterOptions options);

  Writer(const Writer&) = delete;
  Writer& operator=(const Writer&) = delete;

  // One data record of `data` from `stream` (several if `data` is longer
  // than kMaxPayloadBytes), read at `when`; it starts at end_offset().
  // Writes a pending gap first. Empty `data` is a no-op. On a failed write
  // the bytes are lost but counted (see above) and the error names the call,
  // the segment and how many bytes at which offset were lost. A segment
  // rotated out that could not be sealed (fchmod) is reported too, after
  // the bytes were written (the
  // message names no loss). FAILED_PRECONDITION after Close.
  absl::Status Append(Stream stream, absl::string_view data, absl::Time when);

  // Records `length` bytes at end_offset() as lost elsewhere (before they
  // reached this writer: a spool that overflowed, a resend that starts past
  // the end), read at `when`, and writes the gap record. Zero is a no-op.
  // A failed write keeps the gap pending (written with the next record)
  // and returns the error. INVALID_ARGUMENT if the offset would overflow;
  // FAILED_PRECONDITION after Close.
  absl::Status AppendGap(uint64_t length, absl::Time when);

  // Marks where run `run` (2 or more) of a restarted process starts: a run
  // start record at end_offset(), covering no bytes, at `when`. Writes a
  // pending gap first. A failed write loses the mark (never bytes) and
  // returns the error. Runs that write nothing in a row are marked up to
  // kMaxRunStartsInARow times; later ones are not (a crash loop that never
  // writes would otherwise grow a segment without end: the cap never
  // deletes the one being written). INVALID_ARGUMENT for a run below 2;
  // FAILED_PRECONDITION after Close.
  static constexpr int kMaxRunStartsInARow = 100;
  absl::Status AppendRunStart(uint32_t run, absl::Time when);

  // Writes the pending gap, if any, and the end record, and fsyncs the
  // segment and the directory. Appends after it are FAILED_PRECONDITION,
  // even if the end record could not be written (then Close may be called
  // again to retry); a second Close after a successful one is OK.
  absl::Status Close(absl::Time when);

  // The offset after the last byte appended (written or lost).
  uint64_t end_offset() const { return end_offset_; }
  // Bytes of the segment files in the directory, as far as this writer
  // knows (another process deleting segments is noticed when the cap is
  // next enforced).
  uint64_t retained_bytes() const { return retained_bytes_; }
  // Bytes lost and not yet recorded as a gap.
  uint64_t pending_gap_bytes() const { return end_offset_ - written_end_; }
  // Output bytes this writer dropped since Open: the offsets the segments
  // its cap deleted covered (not those another process deleted first), and
  // the bytes of appends whose write failed.
  uint64_t capped_bytes() const { return capped_bytes_; }
  uint64_t lost_bytes() const { return lost_bytes_; }
  // Whether the end record is written.
  bool closed() const { return state_ == State::kClosed; }
  const std::string& dir() const { return dir_; }

 private:
  enum class State { kOpen, kClosing, kClosed };
  struct Segment {
    uint64_t first_offset;
    std::string path;
    uint64_t bytes;
    bool sealed;  // read-only: a writer finished with it
  };

  Writer(std::string dir, WriterOptions options);

  // The steps of Open.
  absl::Status LoadSegments();
  absl::Status ResumeLastSegment();
  absl::Status ResumeAfterSealedSegment();
  absl::Status StartSegment(uint64_t first_offset);

  // Keeps run_start_at_ and run_starts_in_a_row_ after `record` is written
  // (or found, when a directory is reopened).
  void NoteRecord(const Record& record);
  // Writes the gap [written_end_, end_offset_) if there is one.
  absl::Status WritePendingGap();
  // Appends one record at the end of the current segment (starting a new
  // segment first when it is full). On failure the segment is cut back to
  // its last good record and nothing of the record counts as written.
  absl::Status WriteRecord(const Record& record, absl::string_view payload);
  absl::Status WriteAt(const std::string& header, absl::string_view payload);
  // fsyncs the current segment, seals it, and fsyncs the directory.
  absl::Status SealAndSync();
  // Deletes the oldest segments while over max_bytes.
  void EnforceCap();

  std::string dir_;
  WriterOptions options_;
  Fd dir_fd_;
  // Oldest first; back() is the one being written, open as `current_`.
  std::deque<Segment> segments_;
  Fd current_;
  State state_ = State::kOpen;
  // Offset after the last byte appended, written or lost.
  uint64_t end_offset_ = 0;
  // Offset after the last record in the files.
  uint64_t written_end_ = 0;
  // When the pending gap's first bytes were read.
  absl::Time gap_time_;
  uint64_t retained_bytes_ = 0;
  uint64_t capped_bytes_ = 0;
  uint64_t lost_bytes_ = 0;
  // The offset of the current segment's last record if it is a run start,
  // and how many run starts in a row end the segment there.
  std::optional<uint64_t> run_start_at_;
  int run_starts_in_a_row_ = 0;
  // A failed writeback start of a rotation, returned by the next Append or
  // Close.
  absl::Status sync_error_;
};

}  // namespace pm::segment_log

#endif  // PM_SEGMENT_LOG_WRITER_H_
