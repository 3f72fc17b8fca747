#include "log_store/output_log.h"

#include <algorithm>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace pm::log_store {
namespace {

// a + b, or nullopt if it does not fit in 64 bits.
std::optional<uint64_t> CheckedAdd(uint64_t a, uint64_t b) {
  if (b > std::numeric_limits<uint64_t>::max() - a) return std::nullopt;
  return a + b;
}

}  // namespace

OutputLog::OutputLog(std::string id, Options options)
    : id_(std::move(id)),
      max_bytes_(options.max_bytes),
      max_chunk_bytes_(static_cast<size_t>(std::max<uint64_t>(
          1, std::min<uint64_t>(options.max_chunk_bytes,
                                options.max_bytes / 4)))),
      chunk_overhead_bytes_(options.chunk_overhead_bytes) {}

absl::StatusOr<OutputLog::Update> OutputLog::AppendData(
    uint64_t offset, OutputStream stream, absl::string_view data) {
  return AppendDataImpl(offset, stream, data, nullptr);
}

absl::StatusOr<OutputLog::Update> OutputLog::AppendOwnedData(
    uint64_t offset, OutputStream stream, std::string&& data) {
  const absl::string_view view(data);
  return AppendDataImpl(offset, stream, view, &data);
}

absl::StatusOr<OutputLog::Update> OutputLog::AppendDataImpl(
    uint64_t offset, OutputStream stream, absl::string_view data,
    std::string* owned) {
  if (stream != OutputStream::kStdout && stream != OutputStream::kStderr) {
    return absl::InvalidArgumentError(
        absl::StrCat("output of process ", id_, ": data at offset ", offset,
                     " names no stream (want stdout or stderr)"));
  }
  std::optional<uint64_t> data_end = CheckedAdd(offset, data.size());
  if (!data_end) {
    return absl::InvalidArgumentError(
        absl::StrCat("output of process ", id_, ": data at offset ", offset,
                     " of ", data.size(), " bytes overflows the offset"));
  }
  Update update;
  Waiters to_wake;
  {
    absl::MutexLock lock(&mu_);
    if (*data_end <= end_) return MakeUpdateLocked(0);  // a resent prefix
    if (closed_) {
      return absl::FailedPreconditionError(absl::StrCat(
          "output of process ", id_, " was closed at offset ", end_,
          "; refusing data up to offset ", *data_end));
    }
    if (offset < end_) {
      data.remove_prefix(end_ - offset);
      owned = nullptr;  // only part of it is new
    } else if (offset > end_) {
      end_ = offset;  // the bytes in between were lost
    }
    // A large piece the caller hands over becomes a chunk as it is: the
    // bytes are not copied again (capture of a fast writer is copy-bound).
    const uint64_t added =
        owned != nullptr && owned->size() >= kOwnedChunkMinBytes &&
                owned->size() <= max_chunk_bytes_
            ? StoreOwnedLocked(stream, std::move(*owned))
            : StoreLocked(stream, data);
    const uint64_t freed = EnforceCapLocked();
    update = MakeUpdateLocked(static_cast<int64_t>(added) -
                              static_cast<int64_t>(freed));
    to_wake = TakeWaitersLocked();
  }
  Wake(std::move(to_wake));
  return update;
}

absl::StatusOr<OutputLog::Update> OutputLog::AppendGap(uint64_t offset,
                                                       uint64_t length) {
  std::optional<uint64_t> gap_end = CheckedAdd(offset, length);
  if (!gap_end) {
    return absl::InvalidArgumentError(
        absl::StrCat("output of process ", id_, ": gap at offset ", offset,
                     " of ", length, " bytes overflows the offset"));
  }
  Update update;
  Waiters to_wake;
  {
    absl::MutexLock lock(&mu_);
    if (*gap_end <= end_) return MakeUpdateLocked(0);
    if (closed_) {
      return absl::FailedPreconditionError(
          absl::StrCat("output of process ", id_, " was closed at offset ",
                       end_, "; refusing a gap up to offset ", *gap_end));
    }
    end_ = *gap_end;
    update = MakeUpdateLocked(0);
    to_wake = TakeWaitersLocked();
  }
  Wake(std::move(to_wake));
  return update;
}

absl::StatusOr<OutputLog::Update> OutputLog::Close(uint64_t end_offset) {
  Update update;
  Waiters to_wake;
  {
    absl::MutexLock lock(&mu_);
    if (closed_) {
      if (end_offset == end_) return MakeUpdateLocked(0);
      return absl::FailedPreconditionError(
          absl::StrCat("output of process ", id_, " was closed at offset ",
                       end_, ", not at ", end_offset));
    }
    if (end_offset < end_) {
      return absl::InvalidArgumentError(absl::StrCat(
          "output of process ", id_, ": close at offset ", end_offset,
          " but output up to offset ", end_, " was already taken in"));
    }
    end_ = end_offset;
    closed_ = true;
    // The last chunk will not grow any more: give back its spare capacity.
    if (!chunks_.empty()) chunks_.back().data.shrink_to_fit();
    update = MakeUpdateLocked(0);
    update.closed_now = true;
    to_wake = TakeWaitersLocked();
  }
  Wake(std::move(to_wake));
  return update;
}

uint64_t OutputLog::DropOldest(uint64_t bytes) {
  absl::MutexLock lock(&mu_);
  uint64_t freed = 0;
  while (freed < bytes && !chunks_.empty()) freed += DropFrontLocked();
  return freed;
}

absl::StatusOr<uint64_t> OutputLog::StartOffset(
    std::optional<uint64_t> from_offset, bool from_start, bool follow) const {
  absl::MutexLock lock(&mu_);
  if (from_offset.has_value()) {
    // A follower of a live log may wait for an offset not written yet.
    if (*from_offset > end_ && (!follow || closed_)) {
      return absl::OutOfRangeError(absl::StrCat(
          "from_offset ", *from_offset, " is past the end of the output of ",
          "process ", id_, " (", end_, " bytes so far)"));
    }
    return *from_offset;
  }
  return from_start ? 0 : end_;
}

std::optional<OutputLog::Chunk> OutputLog::Read(uint64_t cursor,
                                                uint64_t limit,
                                                size_t max_bytes) const {
  absl::MutexLock lock(&mu_);
  const uint64_t upto = std::min(limit, end_);
  if (cursor >= upto) return std::nullopt;

  auto first = FirstEndingAfterLocked(cursor);
  Chunk out;
  if (first == chunks_.end() || first->offset >= upto) {
    // Nothing retained before `upto`: report the hole on its own.
    out.offset = upto;
    out.dropped_before = upto - cursor;
    return out;
  }
  out.offset = std::max(cursor, first->offset);
  out.dropped_before = out.offset - cursor;
  out.stream = first->stream;

  // Size the copy first so the data is allocated once.
  size_t size = 0;
  uint64_t pos = out.offset;
  for (auto it = first; it != chunks_.end() && it->offset <= pos &&
                        it->stream == out.stream && pos < upto &&
                        size < max_bytes;
       ++it) {
    const uint64_t take = std::min<uint64_t>(
        {it->end() - pos, upto - pos, max_bytes - size});
    size += take;
    pos += take;
  }
  out.data.reserve(size);
  pos = out.offset;
  for (auto it = first; out.data.size() < size; ++it) {
    const uint64_t take =
        std::min<uint64_t>(it->end() - pos, size - out.data.size());
    out.data.append(it->data, pos - it->offset, take);
    pos += take;
  }
  return out;
}

OutputLog::WaitResult OutputLog::WaitPast(uint64_t cursor,
                                          std::weak_ptr<Watcher> watcher) {
  absl::MutexLock lock(&mu_);
  if (end_ > cursor) return WaitResult::kDataReady;
  if (closed_) return WaitResult::kClosed;
  const Watcher* key = watcher.lock().get();
  if (key != nullptr) waiters_.emplace(key, std::move(watcher));
  return WaitResult::kRegistered;
}

void OutputLog::Unwatch(const Watcher* watcher) {
  absl::MutexLock lock(&mu_);
  waiters_.erase(watcher);
}

uint64_t OutputLog::end_offset() const {
  absl::MutexLock lock(&mu_);
  return end_;
}

uint64_t OutputLog::first_retained_offset() const {
  absl::MutexLock lock(&mu_);
  return chunks_.empty() ? end_ : chunks_.front().offset;
}

bool OutputLog::closed() const {
  absl::MutexLock lock(&mu_);
  return closed_;
}

size_t OutputLog::watcher_count() const {
  absl::MutexLock lock(&mu_);
  return waiters_.size();
}

uint64_t OutputLog::StoreLocked(OutputStream stream, absl::string_view data) {
  uint64_t added = 0;
  if (!chunks_.empty()) {
    StoredChunk& last = chunks_.back();
    if (last.end() == end_ && last.stream == stream &&
        last.data.size() < max_chunk_bytes_) {
      const size_t take =
          std::min(data.size(), max_chunk_bytes_ - last.data.size());
      last.data.append(data.data(), take);
      data.remove_prefix(take);
      end_ += take;
      added += take;
    }
  }
  while (!data.empty()) {
    // The previous chunk is sealed now; growth by doubling may have left it
    // with up to twice the capacity the accounting counts.
    if (!chunks_.empty()) chunks_.back().data.shrink_to_fit();
    const size_t take = std::min(data.size(), max_chunk_bytes_);
    chunks_.push_back(
        StoredChunk{end_, stream, std::string(data.substr(0, take))});
    data.remove_prefix(take);
    end_ += take;
    added += take + chunk_overhead_bytes_;
  }
  retained_bytes_.store(retained_bytes_.load(std::memory_order_relaxed) + added,
                        std::memory_order_relaxed);
  return added;
}

uint64_t OutputLog::StoreOwnedLocked(OutputStream stream, std::string data) {
  // The previous chunk is sealed now (see StoreLocked).
  if (!chunks_.empty()) chunks_.back().data.shrink_to_fit();
  const uint64_t size = data.size();
  chunks_.push_back(StoredChunk{end_, stream, std::move(data)});
  end_ += size;
  const uint64_t added = size + chunk_overhead_bytes_;
  retained_bytes_.store(retained_bytes_.load(std::memory_order_relaxed) + added,
                        std::memory_order_relaxed);
  return added;
}

uint64_t OutputLog::EnforceCapLocked() {
  uint64_t freed = 0;
  while (retained_bytes_.load(std::memory_order_relaxed) > max_bytes_ &&
         !chunks_.empty()) {
    freed += DropFrontLocked();
  }
  return freed;
}

uint64_t OutputLog::DropFrontLocked() {
  const uint64_t freed = chunks_.front().data.size() + chunk_overhead_bytes_;
  chunks_.pop_front();
  retained_bytes_.store(retained_bytes_.load(std::memory_order_relaxed) - freed,
                        std::memory_order_relaxed);
  return freed;
}

std::deque<OutputLog::StoredChunk>::const_iterator
OutputLog::FirstEndingAfterLocked(uint64_t cursor) const {
  // The first chunk starting after the cursor; the one before it may still
  // cover the cursor.
  auto it = std::upper_bound(
      chunks_.begin(), chunks_.end(), cursor,
      [](uint64_t offset, const StoredChunk& c) { return offset < c.offset; });
  if (it != chunks_.begin() && std::prev(it)->end() > cursor) --it;
  return it;
}

OutputLog::Update OutputLog::MakeUpdateLocked(int64_t retained_delta) const {
  Update update;
  update.end_offset = end_;
  update.closed = closed_;
  update.retained_delta = retained_delta;
  return update;
}

OutputLog::Waiters OutputLog::TakeWaitersLocked() {
  Waiters taken;
  taken.swap(waiters_);
  return taken;
}

void OutputLog::Wake(Waiters waiters) {
  for (auto& [key, weak] : waiters) {
    // The watcher may have gone since it registered; the weak reference
    // keeps a live one alive for the call.
    if (std::shared_ptr<Watcher> watcher = weak.lock()) {
      watcher->OnLogChanged();
    }
  }
}

}  // namespace pm::log_store
