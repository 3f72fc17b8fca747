#include "log_store/output_log.h"

#include <utility>

#include "absl/strings/str_cat.h"

namespace pm::log_store {

OutputLog::OutputLog(std::string id, std::string dir)
    : id_(std::move(id)), dir_(std::move(dir)) {}

absl::StatusOr<std::unique_ptr<segment_log::Reader>> OutputLog::OpenReader()
    const {
  return segment_log::Reader::Open(dir_);
}

absl::StatusOr<uint64_t> OutputLog::StartOffset(
    const segment_log::Reader& reader, std::optional<uint64_t> from_offset,
    bool from_start, bool follow) const {
  const uint64_t end = reader.end_offset();
  if (from_offset.has_value()) {
    // A follower of a live output may wait for an offset not written yet.
    if (*from_offset > end && (!follow || reader.closed())) {
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
    to_wake.swap(waiters_);
  }
  for (auto& [key, weak] : to_wake) {
    // The watcher may have gone since it registered; the weak reference
    // keeps a live one alive for the call.
    if (std::shared_ptr<Watcher> watcher = weak.lock()) {
      watcher->OnLogChanged();
    }
  }
}

size_t OutputLog::watcher_count() const {
  absl::MutexLock lock(&mu_);
  return waiters_.size();
}

}  // namespace pm::log_store
