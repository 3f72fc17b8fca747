#include "log_store/log_store.h"

#include <limits>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "common/uuid.h"

namespace pm::log_store {
namespace {

// The map key of a process id: UUIDs are valid in either case.
absl::StatusOr<std::string> LogKey(absl::string_view id) {
  PM_RETURN_IF_ERROR(ValidateProcessId(id));
  return absl::AsciiStrToLower(id);
}

}  // namespace

LogStore::LogStore(Options options) : options_(std::move(options)) {}

absl::StatusOr<std::shared_ptr<OutputLog>> LogStore::Open(
    absl::string_view id) {
  PM_ASSIGN_OR_RETURN(std::string key, LogKey(id));
  absl::MutexLock lock(&mu_);
  std::shared_ptr<OutputLog>& log = logs_[key];
  if (log == nullptr) {
    OutputLog::Options log_options;
    log_options.max_bytes = options_.max_bytes_per_process;
    log_options.max_chunk_bytes = options_.max_chunk_bytes;
    log_options.chunk_overhead_bytes = options_.chunk_overhead_bytes;
    log = std::make_shared<OutputLog>(key, log_options);
    open_.insert(log.get());
  }
  return log;
}

absl::StatusOr<OutputLog::Update> LogStore::AppendData(OutputLog& log,
                                                       uint64_t offset,
                                                       OutputStream stream,
                                                       absl::string_view data) {
  return Account(log, log.AppendData(offset, stream, data));
}

absl::StatusOr<OutputLog::Update> LogStore::AppendOwnedData(
    OutputLog& log, uint64_t offset, OutputStream stream, std::string&& data) {
  return Account(log, log.AppendOwnedData(offset, stream, std::move(data)));
}

absl::StatusOr<OutputLog::Update> LogStore::AppendGap(OutputLog& log,
                                                      uint64_t offset,
                                                      uint64_t length) {
  return Account(log, log.AppendGap(offset, length));
}

absl::StatusOr<OutputLog::Update> LogStore::Close(OutputLog& log,
                                                  uint64_t end_offset) {
  return Account(log, log.Close(end_offset));
}

absl::StatusOr<std::shared_ptr<OutputLog>> LogStore::Find(
    absl::string_view id) const {
  PM_ASSIGN_OR_RETURN(std::string key, LogKey(id));
  absl::MutexLock lock(&mu_);
  auto it = logs_.find(key);
  if (it == logs_.end()) {
    return absl::NotFoundError(absl::StrCat("no output for process ", id));
  }
  return it->second;
}

uint64_t LogStore::total_retained_bytes() const {
  absl::MutexLock lock(&mu_);
  return total_retained_ > 0 ? static_cast<uint64_t>(total_retained_) : 0;
}

absl::StatusOr<uint64_t> LogStore::RetainedBytes(absl::string_view id) const {
  PM_ASSIGN_OR_RETURN(std::shared_ptr<OutputLog> log, Find(id));
  return log->retained_bytes();
}

size_t LogStore::log_count() const {
  absl::MutexLock lock(&mu_);
  return logs_.size();
}

size_t LogStore::closed_log_count() const {
  absl::MutexLock lock(&mu_);
  return closed_.size();
}

absl::StatusOr<OutputLog::Update> LogStore::Account(
    OutputLog& log, absl::StatusOr<OutputLog::Update> update) {
  if (!update.ok()) return update;
  absl::MutexLock lock(&mu_);
  // An evicted log was emptied when it left the store and, being closed,
  // takes no more bytes: nothing of it is counted.
  if (!HoldsLocked(log)) return update;
  total_retained_ += update->retained_delta;
  if (update->closed_now) {
    open_.erase(&log);
    closed_.push_back(logs_.find(log.id())->second);
    EnforceClosedCountLocked();
  }
  EnforceTotalCapLocked();
  return update;
}

void LogStore::EnforceTotalCapLocked() {
  // total_retained_ may briefly lag behind the logs (an append changes its
  // log before it is accounted here), so it is signed and the loop stops
  // when nothing more can be dropped.
  while (total_retained_ > static_cast<int64_t>(options_.max_total_bytes)) {
    OutputLog* victim = PickVictimLocked();
    if (victim == nullptr) return;
    const uint64_t freed = victim->DropOldest(
        static_cast<uint64_t>(total_retained_) - options_.max_total_bytes);
    if (freed == 0) return;
    total_retained_ -= static_cast<int64_t>(freed);
  }
}

void LogStore::EnforceClosedCountLocked() {
  while (closed_.size() > options_.max_closed_logs) {
    std::shared_ptr<OutputLog> oldest = std::move(closed_.front());
    closed_.pop_front();
    if (closed_emptied_ > 0) --closed_emptied_;
    total_retained_ -= static_cast<int64_t>(
        oldest->DropOldest(std::numeric_limits<uint64_t>::max()));
    logs_.erase(oldest->id());
  }
}

OutputLog* LogStore::PickVictimLocked() {
  while (closed_emptied_ < closed_.size() &&
         closed_[closed_emptied_]->retained_bytes() == 0) {
    ++closed_emptied_;
  }
  if (closed_emptied_ < closed_.size()) return closed_[closed_emptied_].get();
  OutputLog* largest = nullptr;
  uint64_t largest_bytes = 0;
  for (OutputLog* log : open_) {
    const uint64_t bytes = log->retained_bytes();
    if (bytes > largest_bytes) {
      largest = log;
      largest_bytes = bytes;
    }
  }
  return largest;
}

bool LogStore::HoldsLocked(const OutputLog& log) const {
  auto it = logs_.find(log.id());
  return it != logs_.end() && it->second.get() == &log;
}

}  // namespace pm::log_store
