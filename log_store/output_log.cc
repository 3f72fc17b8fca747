#include "log_store/output_log.h"

#include <errno.h>
#include <sys/stat.h>

#include <algorithm>
#include <limits>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/status.h"

namespace pm::log_store {

OutputLog::OutputLog(std::string id, std::string dir,
                     segment_log::WriterOptions writer_options)
    : id_(std::move(id)),
      dir_(std::move(dir)),
      writer_options_(writer_options) {}

absl::Status OutputLog::OpenForAppend() {
  absl::MutexLock lock(&mu_);
  if (closed_ || writer_ != nullptr) return absl::OkStatus();
  // The process's own directory first: the Writer creates only the last
  // component. The shim makes the same two.
  const std::string parent = dir_.substr(0, dir_.rfind('/'));
  const std::string procs = parent.substr(0, parent.rfind('/'));
  for (const std::string& dir : {procs, parent}) {
    if (mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
      return ErrnoError("mkdir", dir);
    }
  }
  PM_ASSIGN_OR_RETURN(std::unique_ptr<segment_log::Writer> writer,
                      segment_log::Writer::Open(dir_, writer_options_));
  end_ = std::max(end_, writer->end_offset());
  if (writer->closed()) {
    // Closed before a restart: nothing more to write, no fds to hold.
    closed_ = true;
    return absl::OkStatus();
  }
  writer_ = std::move(writer);
  return absl::OkStatus();
}

absl::Status OutputLog::CheckRange(absl::string_view what, uint64_t offset,
                                   uint64_t length) const {
  if (length <= std::numeric_limits<uint64_t>::max() - offset) {
    return absl::OkStatus();
  }
  return absl::InvalidArgumentError(
      absl::StrCat("output of process ", id_, ": ", what, " at offset ",
                   offset, " of ", length, " bytes overflows the offset"));
}

absl::Status OutputLog::RequireWriterLocked(absl::string_view what,
                                            uint64_t upto) const {
  if (closed_) {
    return absl::FailedPreconditionError(
        absl::StrCat("output of process ", id_, " was closed at offset ", end_,
                     "; refusing ", what, " up to offset ", upto));
  }
  if (writer_ == nullptr) {
    return absl::FailedPreconditionError(absl::StrCat(
        "output of process ", id_, " is not open for appending"));
  }
  return absl::OkStatus();
}

absl::StatusOr<OutputLog::Update> OutputLog::AppendData(
    uint64_t offset, segment_log::Stream stream, absl::string_view data) {
  if (stream != segment_log::Stream::kStdout &&
      stream != segment_log::Stream::kStderr) {
    return absl::InvalidArgumentError(
        absl::StrCat("output of process ", id_, ": data at offset ", offset,
                     " names no stream (want stdout or stderr)"));
  }
  PM_RETURN_IF_ERROR(CheckRange("data", offset, data.size()));
  const uint64_t data_end = offset + data.size();
  Update update;
  Waiters to_wake;
  {
    absl::MutexLock lock(&mu_);
    if (data_end <= end_) return CurrentLocked();  // a resent prefix
    PM_RETURN_IF_ERROR(RequireWriterLocked("data", data_end));
    const uint64_t retained_before = writer_->retained_bytes();
    const absl::Time now = absl::Now();
    absl::Status error;
    if (offset < end_) {
      data.remove_prefix(end_ - offset);
    } else if (offset > end_) {
      // The bytes in between never reached us (the supervisor's spool
      // overflowed while we were gone).
      error = writer_->AppendGap(offset - end_, now);
    }
    // Records no larger than a segment, so the per-process cap (whole
    // segments) holds within one segment even for one large piece.
    while (!data.empty()) {
      const absl::string_view piece =
          data.substr(0, writer_options_.segment_bytes);
      absl::Status appended = writer_->Append(stream, piece, now);
      if (error.ok()) error = std::move(appended);
      data.remove_prefix(piece.size());
    }
    end_ = writer_->end_offset();
    update = MakeUpdateLocked(retained_before, std::move(error));
    to_wake = TakeWaitersLocked();
  }
  WakeAll(std::move(to_wake));
  return update;
}

absl::StatusOr<OutputLog::Update> OutputLog::AppendGap(uint64_t offset,
                                                       uint64_t length) {
  PM_RETURN_IF_ERROR(CheckRange("gap", offset, length));
  Update update;
  Waiters to_wake;
  {
    absl::MutexLock lock(&mu_);
    if (offset + length <= end_) return CurrentLocked();
    PM_RETURN_IF_ERROR(RequireWriterLocked("a gap", offset + length));
    const uint64_t retained_before = writer_->retained_bytes();
    absl::Status error =
        writer_->AppendGap(offset + length - end_, absl::Now());
    end_ = writer_->end_offset();
    update = MakeUpdateLocked(retained_before, std::move(error));
    to_wake = TakeWaitersLocked();
  }
  WakeAll(std::move(to_wake));
  return update;
}

absl::StatusOr<OutputLog::Update> OutputLog::Close(uint64_t end_offset) {
  Update update;
  Waiters to_wake;
  {
    absl::MutexLock lock(&mu_);
    if (closed_) {
      if (end_offset == end_) return CurrentLocked();
      return absl::FailedPreconditionError(
          absl::StrCat("output of process ", id_, " was closed at offset ",
                       end_, ", not at ", end_offset));
    }
    if (end_offset < end_) {
      return absl::InvalidArgumentError(absl::StrCat(
          "output of process ", id_, ": close at offset ", end_offset,
          " but output up to offset ", end_, " was already taken in"));
    }
    PM_RETURN_IF_ERROR(RequireWriterLocked("a close", end_offset));
    const uint64_t retained_before = writer_->retained_bytes();
    const absl::Time now = absl::Now();
    // A failed gap stays pending in the Writer, which writes it before the
    // end record.
    (void)writer_->AppendGap(end_offset - end_, now);
    end_ = writer_->end_offset();
    PM_RETURN_IF_ERROR(Annotate(
        writer_->Close(now),
        absl::StrCat("writing the end of the output of process ", id_)));
    closed_ = true;
    update = MakeUpdateLocked(retained_before, {});
    update.closed_now = true;
    // Nothing more will be written: give back its fds.
    writer_.reset();
    to_wake = TakeWaitersLocked();
  }
  WakeAll(std::move(to_wake));
  return update;
}

absl::StatusOr<std::unique_ptr<segment_log::Reader>> OutputLog::OpenReader()
    const {
  return segment_log::Reader::Open(dir_);
}

absl::StatusOr<uint64_t> OutputLog::StartOffset(
    const segment_log::Reader& reader, std::optional<uint64_t> from_offset,
    bool from_start, bool follow) const {
  absl::MutexLock lock(&mu_);
  const uint64_t end = std::max(end_, reader.end_offset());
  const bool closed = closed_ || reader.closed();
  if (from_offset.has_value()) {
    // A follower of a live log may wait for an offset not written yet.
    if (*from_offset > end && (!follow || closed)) {
      return absl::OutOfRangeError(absl::StrCat(
          "from_offset ", *from_offset, " is past the end of the output of ",
          "process ", id_, " (", end, " bytes so far)"));
    }
    return *from_offset;
  }
  return from_start ? 0 : end;
}

void OutputLog::Watch(std::weak_ptr<Watcher> watcher) {
  absl::MutexLock lock(&mu_);
  const Watcher* key = watcher.lock().get();
  if (key != nullptr) waiters_.emplace(key, std::move(watcher));
}

void OutputLog::Unwatch(const Watcher* watcher) {
  absl::MutexLock lock(&mu_);
  waiters_.erase(watcher);
}

void OutputLog::Wake() {
  Waiters to_wake;
  {
    absl::MutexLock lock(&mu_);
    to_wake = TakeWaitersLocked();
  }
  WakeAll(std::move(to_wake));
}

uint64_t OutputLog::end_offset() const {
  absl::MutexLock lock(&mu_);
  return end_;
}

bool OutputLog::closed() const {
  absl::MutexLock lock(&mu_);
  return closed_;
}

bool OutputLog::appending() const {
  absl::MutexLock lock(&mu_);
  return writer_ != nullptr;
}

size_t OutputLog::watcher_count() const {
  absl::MutexLock lock(&mu_);
  return waiters_.size();
}

OutputLog::Update OutputLog::CurrentLocked() const {
  Update update;
  update.end_offset = end_;
  update.closed = closed_;
  return update;
}

OutputLog::Update OutputLog::MakeUpdateLocked(uint64_t retained_before,
                                              absl::Status write_error) const {
  Update update;
  update.end_offset = end_;
  update.closed = closed_;
  if (writer_ != nullptr && writer_->retained_bytes() > retained_before) {
    update.grown_bytes = writer_->retained_bytes() - retained_before;
  }
  update.write_error = std::move(write_error);
  return update;
}

OutputLog::Waiters OutputLog::TakeWaitersLocked() {
  Waiters taken;
  taken.swap(waiters_);
  return taken;
}

void OutputLog::WakeAll(Waiters waiters) {
  for (auto& [key, weak] : waiters) {
    // The watcher may have gone since it registered; the weak reference
    // keeps a live one alive for the call.
    if (std::shared_ptr<Watcher> watcher = weak.lock()) {
      watcher->OnLogChanged();
    }
  }
}

}  // namespace pm::log_store
