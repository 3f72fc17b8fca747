#include "segment_log/writer.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_core.h"

namespace pm::segment_log {
namespace {

absl::Status MakeDir(const std::string& dir) {
  if (mkdir(dir.c_str(), 0700) == 0 || errno == EEXIST) {
    return absl::OkStatus();
  }
  return ErrnoError("mkdir", dir);
}

// Writes all of `header` then `payload` at `pos`. A short write (the disk
// filling up mid-record) is continued until it completes or fails.
absl::Status PwriteAll(int fd, const std::string& path, uint64_t pos,
                       absl::string_view header, absl::string_view payload) {
  uint64_t done = 0;
  const uint64_t total = header.size() + payload.size();
  while (done < total) {
    struct iovec iov[2];
    int count = 0;
    if (done < header.size()) {
      iov[count++] = {const_cast<char*>(header.data()) + done,
                      header.size() - done};
      if (!payload.empty()) {
        iov[count++] = {const_cast<char*>(payload.data()), payload.size()};
      }
    } else {
      const uint64_t in_payload = done - header.size();
      iov[count++] = {const_cast<char*>(payload.data()) + in_payload,
                      payload.size() - in_payload};
    }
    ssize_t n = pwritev(fd, iov, count, static_cast<off_t>(pos + done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoError("pwritev", path);
    if (n == 0) return ErrnoError("pwritev", path, EIO);
    done += n;
  }
  return absl::OkStatus();
}

}  // namespace

Writer::Writer(std::string dir, WriterOptions options)
    : dir_(std::move(dir)), options_(options) {}

absl::StatusOr<std::unique_ptr<Writer>> Writer::Open(std::string dir,
                                                     WriterOptions options) {
  if (options.segment_bytes == 0 || options.max_bytes == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("segment_log::Writer(\"", dir,
                     "\"): segment_bytes and max_bytes must be positive"));
  }
  std::unique_ptr<Writer> writer(new Writer(std::move(dir), options));
  PM_RETURN_IF_ERROR(MakeDir(writer->dir_));
  PM_ASSIGN_OR_RETURN(writer->dir_fd_,
                      Fd::Open(writer->dir_, O_RDONLY | O_DIRECTORY));
  PM_RETURN_IF_ERROR(writer->LoadSegments());
  if (writer->segments_.empty()) {
    PM_RETURN_IF_ERROR(writer->StartSegment(0));
  } else {
    PM_RETURN_IF_ERROR(writer->ResumeLastSegment());
  }
  return writer;
}

absl::Status Writer::LoadSegments() {
  PM_ASSIGN_OR_RETURN(std::vector<SegmentFile> files, ListSegments(dir_));
  for (SegmentFile& file : files) {
    struct stat st;
    if (stat(file.path.c_str(), &st) != 0) {
      // Deleted between the listing and now (the log_store's total cap).
      if (errno == ENOENT) continue;
      return ErrnoError("stat", file.path);
    }
    segments_.push_back({file.first_offset, std::move(file.path),
                         static_cast<uint64_t>(st.st_size),
                         (st.st_mode & 0777) == kSealedSegmentMode});
    retained_bytes_ += st.st_size;
  }
  return absl::OkStatus();
}

absl::Status Writer::ResumeLastSegment() {
  Segment& last = segments_.back();
  if (last.sealed) return ResumeAfterSealedSegment();
  PM_ASSIGN_OR_RETURN(current_, Fd::Open(last.path, O_RDWR));
  RecordScanner scanner(current_.get(), last.path, last.first_offset);
  PM_ASSIGN_OR_RETURN(bool has_header, scanner.Start());
  uint64_t good_size = 0;
  if (has_header) {
    while (true) {
      PM_ASSIGN_OR_RETURN(std::optional<Record> record, scanner.Next());
      if (!record) break;
      NoteRecord(*record);
    }
    good_size = scanner.pos();
  }
  if (good_size != last.bytes) {
    // The torn tail of a crash (or a header never completed): cut it, so
    // the next record follows the last good one.
    if (ftruncate(current_.get(), static_cast<off_t>(good_size)) != 0) {
      return ErrnoError("ftruncate", last.path);
    }
    retained_bytes_ -= last.bytes - good_size;
    last.bytes = good_size;
  }
  if (!has_header) {
    const std::string header = EncodeFileHeader();
    PM_RETURN_IF_ERROR(PwriteAll(current_.get(), last.path, 0, header, {}));
    last.bytes = header.size();
    retained_bytes_ += header.size();
  }
  end_offset_ = written_end_ = scanner.offset();
  if (scanner.ended()) state_ = State::kClosed;
  return absl::OkStatus();
}

absl::Status Writer::ResumeAfterSealedSegment() {
  // A writer finished with it: it is whole. If it holds the end record the
  // output is closed; otherwise (a crash between sealing it and starting
  // the next) writing goes on in a new segment.
  const Segment& last = segments_.back();
  PM_ASSIGN_OR_RETURN(current_, Fd::Open(last.path, O_RDONLY));
  RecordScanner scanner(current_.get(), last.path, last.first_offset);
  PM_ASSIGN_OR_RETURN(bool has_header, scanner.Start());
  while (has_header) {
    PM_ASSIGN_OR_RETURN(std::optional<Record> record, scanner.Next());
    if (!record) break;
  }
  end_offset_ = written_end_ = scanner.offset();
  if (scanner.ended()) {
    state_ = State::kClosed;
    return absl::OkStatus();
  }
  if (scanner.offset() == last.first_offset) {
    // It covers no bytes (only run starts): a new segment would have its
    // name. Writing goes on in it.
    if (fchmod(current_.get(), kOpenSegmentMode) != 0) {
      return ErrnoError("fchmod", last.path);
    }
    segments_.back().sealed = false;
    return ResumeLastSegment();
  }
  return StartSegment(scanner.offset());
}

absl::Status Writer::StartSegment(uint64_t first_offset) {
  const std::string path = absl::StrCat(dir_, "/", SegmentName(first_offset));
  // O_TRUNC: a file of that name can only be the leftover of a start that
  // failed half-way (no record was ever written past its offset).
  PM_ASSIGN_OR_RETURN(
      Fd fd, Fd::Open(path, O_RDWR | O_CREAT | O_TRUNC, kOpenSegmentMode));
  absl::Status status = PwriteAll(fd.get(), path, 0, EncodeFileHeader(), {});
  if (!status.ok()) {
    unlink(path.c_str());
    return status;
  }
  // The segment left behind is complete: seal it (only after the new one
  // exists, so the newest segment is never sealed while output runs) and
  // start writing it back to disk, without waiting (an fsync here would
  // stall the shim's loop, and the process on its pipe, for as long as the
  // disk takes to write a whole segment; Close waits instead). A failure
  // loses nothing yet (the bytes are in the page cache), so it is reported
  // after the record is written, not as lost bytes.
  if (!segments_.empty() && !segments_.back().sealed) {
    segments_.back().sealed = true;
    const std::string& old_path = segments_.back().path;
    absl::Status status;
    // No writeback is forced here: sync_file_range(SYNC_FILE_RANGE_WRITE)
    // waits when the disk's queue is full, which stalled a sustained
    // capture (0.11 GB/s with it, 0.19 without, same disk and run); the
    // kernel writes the segment back within its dirty expiry.
    if (fchmod(current_.get(), kSealedSegmentMode) != 0) {
      status = ErrnoError("fchmod", old_path);
    }
    if (sync_error_.ok()) sync_error_ = status;
  }
  current_ = std::move(fd);
  segments_.push_back({first_offset, path, kFileHeaderBytes, false});
  retained_bytes_ += kFileHeaderBytes;
  return absl::OkStatus();
}

absl::Status Writer::Append(Stream stream, absl::string_view data,
                            absl::Time when) {
  if (state_ != State::kOpen) {
    return absl::FailedPreconditionError(
        absl::StrCat("segment_log \"", dir_, "\": append after Close"));
  }
  if (stream != Stream::kStdout && stream != Stream::kStderr) {
    return absl::InvalidArgumentError(
        absl::StrCat("segment_log \"", dir_, "\": append to stream ",
                     static_cast<int>(stream)));
  }
  absl::Status status = WritePendingGap();
  while (status.ok() && !data.empty()) {
    Record record;
    record.kind = RecordKind::kData;
    record.stream = stream;
    record.offset = end_offset_;
    record.time = when;
    absl::string_view piece = data.substr(0, kMaxPayloadBytes);
    record.length = piece.size();
    status = WriteRecord(record, piece);
    if (status.ok()) {
      end_offset_ = written_end_ = record.end();
      data.remove_prefix(piece.size());
    }
  }
  if (!data.empty()) {
    // Lost, but counted: the gap is written with the next record that fits.
    if (pending_gap_bytes() == 0) gap_time_ = when;
    status = Annotate(status,
                      absl::StrCat(data.size(), " bytes of output at offset ",
                                   end_offset_, " lost"));
    end_offset_ += data.size();
    lost_bytes_ += data.size();
  }
  EnforceCap();
  if (status.ok()) status = std::exchange(sync_error_, absl::OkStatus());
  return status;
}

absl::Status Writer::AppendGap(uint64_t length, absl::Time when) {
  if (state_ != State::kOpen) {
    return absl::FailedPreconditionError(
        absl::StrCat("segment_log \"", dir_, "\": gap after Close"));
  }
  if (length > UINT64_MAX - end_offset_) {
    return absl::InvalidArgumentError(
        absl::StrCat("segment_log \"", dir_, "\": a gap of ", length,
                     " bytes at offset ", end_offset_, " overflows"));
  }
  if (length == 0) return absl::OkStatus();
  if (pending_gap_bytes() == 0) gap_time_ = when;
  end_offset_ += length;
  return WritePendingGap();
}

void Writer::NoteRecord(const Record& record) {
  if (record.kind != RecordKind::kRunStart) {
    run_start_at_.reset();
    run_starts_in_a_row_ = 0;
    return;
  }
  run_starts_in_a_row_ = run_start_at_ == record.offset ? run_starts_in_a_row_ + 1 : 1;
  run_start_at_ = record.offset;
}

absl::Status Writer::AppendRunStart(uint32_t run, absl::Time when) {
  if (state_ != State::kOpen) {
    return absl::FailedPreconditionError(
        absl::StrCat("segment_log \"", dir_, "\": run start after Close"));
  }
  if (run < 2) {
    return absl::InvalidArgumentError(absl::StrCat(
        "segment_log \"", dir_, "\": run start of run ", run,
        " (the first run's start is the output's)"));
  }
  PM_RETURN_IF_ERROR(WritePendingGap());
  if (run_start_at_ == end_offset_ && run_starts_in_a_row_ >= kMaxRunStartsInARow) {
    return absl::OkStatus();
  }
  Record mark;
  mark.kind = RecordKind::kRunStart;
  mark.offset = end_offset_;
  mark.length = 0;
  mark.time = when;
  mark.run = run;
  absl::Status status = WriteRecord(mark, {});
  EnforceCap();
  if (!status.ok()) {
    return Annotate(status, absl::StrCat("the start of run ", run,
                                         " is not marked"));
  }
  return std::exchange(sync_error_, absl::OkStatus());
}

absl::Status Writer::WritePendingGap() {
  while (written_end_ < end_offset_) {
    Record gap;
    gap.kind = RecordKind::kGap;
    gap.offset = written_end_;
    gap.length = std::min(end_offset_ - written_end_, kMaxGapBytes);
    gap.time = gap_time_;
    PM_RETURN_IF_ERROR(WriteRecord(gap, {}));
    written_end_ = gap.end();
  }
  return absl::OkStatus();
}

absl::Status Writer::WriteRecord(const Record& record,
                                 absl::string_view payload) {
  // Run starts stay in the segment of the record after them, the one a
  // reader from their offset opens: a segment that ends with one is not
  // left for a new one at that offset. Nor is one that covers no bytes (it
  // holds only run starts): the new one would have its name. Such a
  // segment grows by a record header per run that writes nothing.
  if (segments_.back().bytes >= options_.segment_bytes &&
      segments_.back().bytes > kFileHeaderBytes &&
      segments_.back().first_offset != record.offset &&
      run_start_at_ != record.offset) {
    PM_RETURN_IF_ERROR(StartSegment(record.offset));
  }
  PM_RETURN_IF_ERROR(WriteAt(EncodeRecordHeader(record, payload), payload));
  NoteRecord(record);
  return absl::OkStatus();
}

absl::Status Writer::WriteAt(const std::string& header,
                             absl::string_view payload) {
  Segment& segment = segments_.back();
  absl::Status status =
      PwriteAll(current_.get(), segment.path, segment.bytes, header, payload);
  if (status.ok()) {
    const uint64_t added = header.size() + payload.size();
    segment.bytes += added;
    retained_bytes_ += added;
    return status;
  }
  // Part of the record may be on disk: cut it, so the next record follows
  // the last good one (pwritev at segment.bytes would write over it anyway,
  // but a shorter record would leave its tail behind).
  if (ftruncate(current_.get(), static_cast<off_t>(segment.bytes)) != 0) {
    status = Annotate(status, ErrnoError("ftruncate", segment.path).message());
  }
  return status;
}

absl::Status Writer::Close(absl::Time when) {
  if (state_ == State::kClosed) return absl::OkStatus();
  state_ = State::kClosing;
  PM_RETURN_IF_ERROR(WritePendingGap());
  Record end;
  end.kind = RecordKind::kEnd;
  end.offset = end_offset_;
  end.length = 0;
  end.time = when;
  PM_RETURN_IF_ERROR(WriteRecord(end, {}));
  state_ = State::kClosed;
  absl::Status status = std::exchange(sync_error_, absl::OkStatus());
  absl::Status sealed = SealAndSync();
  return status.ok() ? sealed : status;
}

absl::Status Writer::SealAndSync() {
  const std::string& path = segments_.back().path;
  if (fsync(current_.get()) != 0) return ErrnoError("fsync", path);
  if (fchmod(current_.get(), kSealedSegmentMode) != 0) {
    return ErrnoError("fchmod", path);
  }
  if (fsync(dir_fd_.get()) != 0) return ErrnoError("fsync", dir_);
  return absl::OkStatus();
}

void Writer::EnforceCap() {
  while (retained_bytes_ > options_.max_bytes && segments_.size() > 1) {
    const Segment& oldest = segments_.front();
    // ENOENT: the log_store's total cap deleted it first; either way its
    // bytes are gone. Any other failure leaves it for the next append.
    if (unlink(oldest.path.c_str()) == 0) {
      capped_bytes_ += segments_[1].first_offset - oldest.first_offset;
    } else if (errno != ENOENT) {
      return;
    }
    retained_bytes_ -= oldest.bytes;
    segments_.pop_front();
  }
}

}  // namespace pm::segment_log
