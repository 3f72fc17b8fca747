#include "segment_log/reader.h"

#include <fcntl.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstring>
#include <deque>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_core.h"

namespace pm::segment_log {

Reader::OpenSegment::OpenSegment(SegmentFile file_in, Fd fd_in)
    : file(std::move(file_in)),
      fd(std::move(fd_in)),
      scanner(fd.get(), file.path, file.first_offset) {}

Reader::Reader(std::string dir) : dir_(std::move(dir)) {}

absl::StatusOr<std::unique_ptr<Reader>> Reader::Open(std::string dir) {
  std::unique_ptr<Reader> reader(new Reader(std::move(dir)));
  PM_RETURN_IF_ERROR(reader->Refresh());
  return reader;
}

absl::Status Reader::List() {
  PM_ASSIGN_OR_RETURN(segments_, ListSegments(dir_));
  if (!segments_.empty()) {
    start_offset_ = std::max(start_offset_, segments_.front().first_offset);
  }
  return absl::OkStatus();
}

std::optional<SegmentFile> Reader::SegmentFor(uint64_t cursor) const {
  if (segments_.empty()) return std::nullopt;
  auto after = std::upper_bound(
      segments_.begin(), segments_.end(), cursor,
      [](uint64_t c, const SegmentFile& s) { return c < s.first_offset; });
  return after == segments_.begin() ? segments_.front() : *(after - 1);
}

std::optional<SegmentFile> Reader::SegmentAfter(uint64_t first_offset) const {
  for (const SegmentFile& segment : segments_) {
    if (segment.first_offset > first_offset) return segment;
  }
  return std::nullopt;
}

absl::StatusOr<std::unique_ptr<Reader::OpenSegment>> Reader::OpenFile(
    const SegmentFile& file) {
  absl::StatusOr<Fd> fd = Fd::Open(file.path, O_RDONLY);
  if (!fd.ok()) {
    // Deleted since the listing: retention got there first.
    if (ErrnoOf(fd.status()) == ENOENT) return nullptr;
    return fd.status();
  }
  auto segment = std::make_unique<OpenSegment>(file, std::move(*fd));
  PM_ASSIGN_OR_RETURN(segment->has_header, segment->scanner.Start());
  return segment;
}

absl::StatusOr<bool> Reader::Deleted(const OpenSegment& segment) const {
  struct stat st;
  if (fstat(segment.fd.get(), &st) != 0) {
    return ErrnoError("fstat", segment.file.path);
  }
  return st.st_nlink == 0;
}

absl::Status Reader::Position(uint64_t cursor) {
  if (current_ != nullptr) {
    PM_ASSIGN_OR_RETURN(bool deleted, Deleted(*current_));
    std::optional<SegmentFile> target = SegmentFor(cursor);
    if (deleted || (target && target->first_offset !=
                                  current_->file.first_offset)) {
      // Gone, or the cursor lies in another segment (the listing may be
      // older than the files, but never names one that starts later than
      // where the writer was).
      current_.reset();
    } else if (cursor < current_->scanner.offset()) {
      // Back within this segment: scan it again from its start.
      current_->scanner.Seek(kFileHeaderBytes, current_->file.first_offset);
    }
  }
  while (current_ == nullptr) {
    PM_RETURN_IF_ERROR(List());
    std::optional<SegmentFile> target = SegmentFor(cursor);
    if (!target) return absl::OkStatus();
    PM_ASSIGN_OR_RETURN(current_, OpenFile(*target));
  }
  return DropStaleTail();
}

absl::Status Reader::DropStaleTail() {
  // The newest segment as of the last Refresh, once deleted or behind the
  // reader, is needed no more: its fd goes, so a segment that retention
  // deletes does not stay on disk for as long as a follower lives.
  if (tail_ == nullptr) return absl::OkStatus();
  PM_ASSIGN_OR_RETURN(bool deleted, Deleted(*tail_));
  if (deleted || (current_ != nullptr &&
                  tail_->file.first_offset < current_->file.first_offset)) {
    tail_.reset();
  }
  return absl::OkStatus();
}

absl::StatusOr<std::optional<Record>> Reader::NextInSegment(
    OpenSegment& segment) {
  if (!segment.has_header) {
    // A segment being created: its header may have been written since.
    PM_ASSIGN_OR_RETURN(segment.has_header, segment.scanner.Start());
    if (!segment.has_header) return std::nullopt;
  }
  PM_ASSIGN_OR_RETURN(std::optional<Record> record, segment.scanner.Next());
  if (record) NoteEnd(record->end(), record->kind == RecordKind::kEnd);
  return record;
}

absl::StatusOr<std::optional<Record>> Reader::NextRecord() {
  while (true) {
    OpenSegment& segment = *current_;
    PM_ASSIGN_OR_RETURN(std::optional<Record> record, NextInSegment(segment));
    if (record) return record;
    // The valid part of this segment ends here. If the writer has started
    // a later one, this one is complete: read it once more (the writer may
    // have finished a record here after the read above and before it moved
    // on), then go on to the next.
    PM_RETURN_IF_ERROR(List());
    std::optional<SegmentFile> next = SegmentAfter(segment.file.first_offset);
    if (!next) return std::nullopt;
    PM_ASSIGN_OR_RETURN(record, NextInSegment(segment));
    if (record) return record;
    PM_ASSIGN_OR_RETURN(std::unique_ptr<OpenSegment> opened, OpenFile(*next));
    // Deleted meanwhile: the next round lists again and takes the one
    // after it (the listing only shrinks from the front).
    if (opened != nullptr) {
      current_ = std::move(opened);
      PM_RETURN_IF_ERROR(DropStaleTail());
    }
  }
}

absl::StatusOr<std::optional<Chunk>> Reader::Read(uint64_t cursor,
                                                  size_t max_bytes,
                                                  absl::Duration merge_within) {
  if (max_bytes == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("segment_log::Reader(\"", dir_, "\"): max_bytes is 0"));
  }
  PM_RETURN_IF_ERROR(Position(cursor));
  // Everything before `at` is accounted for: read, or lost.
  uint64_t at = cursor;
  while (current_ != nullptr) {
    PM_ASSIGN_OR_RETURN(std::optional<Record> record, NextRecord());
    if (!record) break;
    RecordScanner& scanner = current_->scanner;
    const uint64_t record_pos = scanner.pos() - record->file_bytes();
    if (record->kind == RecordKind::kEnd) {
      // Stay before it: every later Read finds it again.
      scanner.Seek(record_pos, record->offset);
      break;
    }
    if (record->kind == RecordKind::kRunStart) {
      if (record->offset < at) continue;
      // The scanner stays after it: a Read from the same cursor goes on.
      Chunk mark;
      mark.offset = record->offset;
      mark.dropped_before = record->offset - cursor;
      mark.time = record->time;
      mark.run_start = record->run;
      return mark;
    }
    if (record->end() <= at) continue;
    // A record past the cursor: what lies between was deleted or corrupt.
    at = std::max(at, record->offset);
    if (record->kind == RecordKind::kGap) {
      at = record->end();
      continue;
    }
    Chunk chunk;
    chunk.offset = at;
    chunk.dropped_before = at - cursor;
    chunk.stream = record->stream;
    chunk.time = record->time;
    const uint64_t skip = at - record->offset;
    const uint64_t take = std::min<uint64_t>(max_bytes, record->length - skip);
    if (skip == 0 && take == record->length) {
      chunk.data = std::move(record->payload);
    } else {
      chunk.data = record->payload.substr(skip, take);
    }
    if (skip + take < record->length) {
      // The rest of this record is for the next Read.
      scanner.Seek(record_pos, record->offset);
    } else {
      PM_RETURN_IF_ERROR(ExtendChunk(chunk, max_bytes, merge_within));
    }
    return chunk;
  }
  if (current_ == nullptr) {
    // No segment left (an ended output whose every segment retention
    // deleted): what was known to be written is lost.
    at = std::max(at, end_offset_);
  }
  if (at == cursor) return std::nullopt;
  Chunk lost;
  lost.offset = at;
  lost.dropped_before = at - cursor;
  return lost;
}

absl::Status Reader::ExtendChunk(Chunk& chunk, size_t max_bytes,
                                 absl::Duration merge_within) {
  RecordScanner& scanner = current_->scanner;
  while (chunk.data.size() < max_bytes) {
    const uint64_t pos = scanner.pos();
    const uint64_t offset = scanner.offset();
    PM_ASSIGN_OR_RETURN(std::optional<Record> record, scanner.Next());
    if (!record) return absl::OkStatus();
    NoteEnd(record->end(), record->kind == RecordKind::kEnd);
    const uint64_t room = max_bytes - chunk.data.size();
    if (record->kind != RecordKind::kData || record->stream != chunk.stream ||
        record->length > room || absl::AbsDuration(record->time - chunk.time) > merge_within) {
      scanner.Seek(pos, offset);
      return absl::OkStatus();
    }
    chunk.data += record->payload;
  }
  return absl::OkStatus();
}

void Reader::NoteEnd(uint64_t offset, bool closed) {
  end_offset_ = std::max(end_offset_, offset);
  closed_ = closed_ || closed;
}

absl::Status Reader::Refresh() {
  PM_RETURN_IF_ERROR(List());
  if (segments_.empty()) {
    start_offset_ = std::max(start_offset_, end_offset_);
    return absl::OkStatus();
  }
  // The newest segment is scanned with a cursor of its own (so the reading
  // position is kept), from where the last Refresh left it.
  const SegmentFile& newest = segments_.back();
  if (tail_ == nullptr || tail_->file.first_offset != newest.first_offset) {
    PM_ASSIGN_OR_RETURN(tail_, OpenFile(newest));
    if (tail_ == nullptr) return absl::OkStatus();  // deleted: nothing newer
  }
  NoteEnd(newest.first_offset, false);
  if (!tail_->has_header) {
    PM_ASSIGN_OR_RETURN(tail_->has_header, tail_->scanner.Start());
    if (!tail_->has_header) return absl::OkStatus();
  }
  while (true) {
    PM_ASSIGN_OR_RETURN(std::optional<Record> record, tail_->scanner.Next());
    if (!record) break;
    NoteEnd(record->end(), record->kind == RecordKind::kEnd);
  }
  return absl::OkStatus();
}

absl::StatusOr<uint64_t> Reader::OffsetAt(absl::Time time) {
  PM_RETURN_IF_ERROR(List());
  // The last segment whose first record was read before `time`: the record
  // wanted is in it or after it.
  size_t from = 0;
  for (size_t i = 0; i < segments_.size(); ++i) {
    PM_ASSIGN_OR_RETURN(std::unique_ptr<OpenSegment> segment,
                        OpenFile(segments_[i]));
    if (segment == nullptr || !segment->has_header) continue;
    PM_ASSIGN_OR_RETURN(std::optional<Record> first, segment->scanner.Next());
    if (!first) continue;
    if (first->time >= time) break;
    from = i;
  }
  for (size_t i = from; i < segments_.size(); ++i) {
    PM_ASSIGN_OR_RETURN(std::unique_ptr<OpenSegment> segment,
                        OpenFile(segments_[i]));
    if (segment == nullptr || !segment->has_header) continue;
    while (true) {
      PM_ASSIGN_OR_RETURN(std::optional<Record> record,
                          segment->scanner.Next());
      if (!record) break;
      NoteEnd(record->end(), record->kind == RecordKind::kEnd);
      if (record->time >= time) return record->offset;
    }
  }
  PM_RETURN_IF_ERROR(Refresh());
  return end_offset_;
}

absl::StatusOr<uint64_t> Reader::OffsetOfLastLines(uint64_t lines,
                                                   StreamSet streams) {
  PM_RETURN_IF_ERROR(List());
  PM_RETURN_IF_ERROR(Refresh());
  if (lines == 0) return end_offset_;
  // Newlines found so far, newest last: at most lines + 1 of them (the
  // lines' starts, and one more in case the output ends with a newline).
  std::deque<uint64_t> found;
  const uint64_t keep = lines + 1;
  // Whether the last selected byte (the newest) is a newline; unknown
  // until a segment with selected data has been read.
  std::optional<bool> ends_with_newline;
  // Where the selected output starts: the oldest retained record read.
  uint64_t oldest = end_offset_;
  for (size_t i = segments_.size(); i-- > 0;) {
    PM_ASSIGN_OR_RETURN(std::unique_ptr<OpenSegment> segment,
                        OpenFile(segments_[i]));
    if (segment == nullptr || !segment->has_header) continue;
    std::deque<uint64_t> here;  // this segment's newest newlines
    std::optional<bool> last_is_newline;
    bool any = false;
    while (true) {
      PM_ASSIGN_OR_RETURN(std::optional<Record> record, segment->scanner.Next());
      if (!record) break;
      if (!any) {
        oldest = std::min(oldest, record->offset);
        any = true;
      }
      if (record->kind != RecordKind::kData || !streams.Has(record->stream) ||
          record->payload.empty()) {
        continue;
      }
      const std::string& data = record->payload;
      last_is_newline = data.back() == '\n';
      for (const char* p = data.data(), *end = data.data() + data.size();
           (p = static_cast<const char*>(memchr(p, '\n', end - p))) != nullptr;
           ++p) {
        here.push_back(record->offset + (p - data.data()));
        if (here.size() > keep) here.pop_front();
      }
    }
    if (!ends_with_newline && last_is_newline) ends_with_newline = last_is_newline;
    while (!here.empty() && found.size() < keep) {
      found.push_front(here.back());
      here.pop_back();
    }
    if (found.size() == keep) break;
  }
  // The start of the last line is after the newline before it: the
  // lines-th newline from the end, or the (lines+1)-th when the output
  // ends with one (that one ends the last line).
  const uint64_t needed = ends_with_newline.value_or(false) ? lines + 1 : lines;
  if (found.size() < needed) return std::min(oldest, end_offset_);
  return found[found.size() - needed] + 1;
}

}  // namespace pm::segment_log
