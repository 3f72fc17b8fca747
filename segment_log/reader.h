// Reader: one process's output read back from its segment files (format.h),
// for the log_store. It holds a cursor's worth of state (the segment it is
// in and where), never the output itself.
//
//   PM_ASSIGN_OR_RETURN(std::unique_ptr<Reader> reader, Reader::Open(dir));
//   uint64_t cursor = 0;  // or reader->start_offset(), or a client's offset
//   while (true) {
//     PM_ASSIGN_OR_RETURN(std::optional<Chunk> chunk, reader->Read(cursor));
//     if (!chunk) break;  // nothing more yet; reader->closed(): nor ever
//     // chunk->dropped_before bytes before chunk->offset are gone for good
//     Send(chunk->offset, chunk->stream, chunk->data);
//     cursor = chunk->offset + chunk->data.size();
//   }
//
// To follow a live output, watch the directory with inotify (IN_MODIFY |
// IN_CREATE | IN_DELETE) before the first Read, and Read again after each
// event until Read returns nullopt and closed() is true: every append
// modifies a segment, so an event queued between a Read and the wait is
// never missed.
//
// The writer (another process) may append while a Reader reads: a record
// being written, or a torn tail the writer has not cut yet, reads as the end
// of the output for now, and a later Read continues once it is complete.
// Retention (the writer's per-process cap, the log_store's total cap) may
// delete segments at any time, also the one the Reader is in: the bytes it
// did not read yet are reported in the next chunk's dropped_before, never as
// an error. A record that fails its checksum in a segment that is not the
// last is treated like a deleted segment: the Reader skips to the next one
// and reports the bytes in between as dropped.
//
// Not thread-safe: one Reader per reading stream (they are cheap: one open
// fd and a read buffer).
#ifndef PM_SEGMENT_LOG_READER_H_
#define PM_SEGMENT_LOG_READER_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/fd.h"
#include "segment_log/format.h"

namespace pm::segment_log {

// Which streams a reader wants.
struct StreamSet {
  bool out = true;
  bool err = true;
  bool Has(Stream stream) const {
    return stream == Stream::kStdout ? out : err;
  }
};

// One piece of output as a reader gets it: consecutive bytes of one stream.
struct Chunk {
  // Absolute offset of data[0]; for an empty chunk, where the next byte
  // will be.
  uint64_t offset = 0;
  // Bytes between the reader's cursor and `offset` that it will never get
  // (deleted by retention, or lost as a gap).
  uint64_t dropped_before = 0;
  // The stream of `data`; meaningless for an empty chunk.
  Stream stream = Stream::kStdout;
  // When data[0] was read; InfinitePast for an empty chunk, except a run
  // start's: when the run started.
  absl::Time time = absl::InfinitePast();
  std::string data;
  // Nonzero: an empty chunk marking where this run of a restarted process
  // started (format.h's run start record); its first byte, if any, is at
  // `offset`. A Read from a cursor gets the marks at that offset and after
  // it, each once as long as the reader moves on from where the last chunk
  // left it (a Read from an earlier cursor gets them again).
  uint32_t run_start = 0;
};

class Reader {
 public:
  static constexpr size_t kDefaultMaxReadBytes = 1 << 20;

  // A reader of the output in `dir`. NOT_FOUND naming opendir and the
  // directory if it does not exist. The directory may hold no segment yet.
  static absl::StatusOr<std::unique_ptr<Reader>> Open(std::string dir);

  Reader(const Reader&) = delete;
  Reader& operator=(const Reader&) = delete;

  // The output at or after `cursor`, as one chunk of at most `max_bytes`
  // (> 0) bytes of one stream, or a run start mark (Chunk::run_start). When nothing is retained between the cursor
  // and the end of what is written, an empty chunk there reports the lost
  // bytes. nullopt when the cursor is at (or past) the end of what is
  // written so far; closed() then says whether more can come. The next
  // cursor is offset + data.size(). Errors only for I/O failures (naming
  // the call and the segment), never for deleted segments or torn records.
  // A chunk holds only records read within `merge_within` of its first
  // one, so its time stands for all of its bytes.
  absl::StatusOr<std::optional<Chunk>> Read(
      uint64_t cursor, size_t max_bytes = kDefaultMaxReadBytes,
      absl::Duration merge_within = absl::InfiniteDuration());

  // Re-reads the extent of the output: the oldest retained offset, the end
  // of what is written, and whether the end record is there. Reads only
  // what the newest segment gained since the last Refresh.
  absl::Status Refresh();

  // As of the last Refresh (Open does one) or Read that went further: the
  // offset of the oldest retained record, the offset after the last record
  // written, and whether the end record is written (the process and every
  // holder of its pipes are gone: nothing will be appended).
  uint64_t start_offset() const { return start_offset_; }
  uint64_t end_offset() const { return end_offset_; }
  bool closed() const { return closed_; }
  // The segments in the directory as of the last listing (Open, Refresh,
  // and every Read that returns nullopt list it). None, since a Writer
  // makes its first segment when it opens the directory and the caps never
  // delete a live output's newest one, means an ended output that lost
  // every segment (or a directory no Writer got to yet).
  size_t listed_segments() const { return segments_.size(); }

  // Seek by time: the offset of the first retained record read at or after
  // `time` (a gap's offset if that is one), or the end of what is written if
  // none is. Assumes record times do not go backwards (CLOCK_REALTIME may:
  // then it is the first such record after the last segment that starts
  // before `time`).
  absl::StatusOr<uint64_t> OffsetAt(absl::Time time);

  // Seek by lines: the offset where the last `lines` lines of the streams
  // `streams` selects begin (counted over them in order, as `tail -n`; a
  // last line without its newline counts), the oldest retained offset when
  // fewer are retained, the end of what is written for 0. Reads segments
  // from the newest back, each whole, until it has found enough newlines:
  // the cost is the size of the segments the lines span (one segment, at
  // most 8 MiB, for a short tail), never the whole output. Memory: `lines`
  // + 1 offsets at most.
  absl::StatusOr<uint64_t> OffsetOfLastLines(uint64_t lines,
                                             StreamSet streams = {});

 private:
  // One segment open for reading, with a scanner at a record boundary.
  struct OpenSegment {
    OpenSegment(SegmentFile file, Fd fd);
    SegmentFile file;
    Fd fd;
    RecordScanner scanner;
    bool has_header = false;
  };

  explicit Reader(std::string dir);

  absl::Status List();
  // The listed segment to read `cursor` from: the last one starting at or
  // before it, else the oldest; nullopt if there is none.
  std::optional<SegmentFile> SegmentFor(uint64_t cursor) const;
  // The listed segment after `first_offset`, if any.
  std::optional<SegmentFile> SegmentAfter(uint64_t first_offset) const;
  // Opens `file`; nullptr if it is gone (deleted since the listing).
  absl::StatusOr<std::unique_ptr<OpenSegment>> OpenFile(
      const SegmentFile& file);
  // Makes current_ the segment holding `cursor` (or the first after it),
  // positioned at or before `cursor`. current_ stays null if the directory
  // holds no segment.
  absl::Status Position(uint64_t cursor);
  // Whether the file behind `segment` has been deleted.
  absl::StatusOr<bool> Deleted(const OpenSegment& segment) const;
  // The next record of current_, moving on to the next segment when this
  // one's valid part ends and a later one exists. nullopt at the end of what
  // is written.
  absl::StatusOr<std::optional<Record>> NextRecord();
  // The next valid record of `segment` (reading its header first if the
  // writer has written it since), or nullopt where its valid part ends.
  absl::StatusOr<std::optional<Record>> NextInSegment(OpenSegment& segment);
  // Closes tail_ once its segment is deleted or behind current_.
  absl::Status DropStaleTail();
  // Appends following data records of `stream` to `chunk` up to max_bytes.
  absl::Status ExtendChunk(Chunk& chunk, size_t max_bytes,
                           absl::Duration merge_within);
  void NoteEnd(uint64_t offset, bool closed);

  std::string dir_;
  std::vector<SegmentFile> segments_;  // the last listing, oldest first
  std::unique_ptr<OpenSegment> current_;
  // The newest segment as Refresh last scanned it.
  std::unique_ptr<OpenSegment> tail_;
  uint64_t start_offset_ = 0;
  uint64_t end_offset_ = 0;
  bool closed_ = false;
};

}  // namespace pm::segment_log

#endif  // PM_SEGMENT_LOG_READER_H_
