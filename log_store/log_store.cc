#include "log_store/log_store.h"

#include <dirent.h>
#include <errno.h>
#include <sys/stat.h>

#include <algorithm>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/log.h"
#include "common/state_dir.h"
#include "common/status.h"
#include "common/uuid.h"

namespace pm::log_store {
namespace {

// The map key (and directory name) of a process id: UUIDs are valid in
// either case.
absl::StatusOr<std::string> LogKey(absl::string_view id) {
  PM_RETURN_IF_ERROR(ValidateProcessId(id));
  return absl::AsciiStrToLower(id);
}

segment_log::WriterOptions WriterOptionsOf(const LogStore::Options& options) {
  segment_log::WriterOptions writer;
  writer.max_bytes = options.max_bytes_per_process;
  writer.segment_bytes = std::max<uint64_t>(
      1, std::min(options.segment_bytes, options.max_bytes_per_process / 4));
  return writer;
}

// How often a failed write is logged at most.
constexpr absl::Duration kWriteErrorLogInterval = absl::Minutes(1);

}  // namespace

LogStore::LogStore(Options options)
    : options_(std::move(options)), writer_options_(WriterOptionsOf(options_)) {}

LogStore::~LogStore() { dir_watcher_.reset(); }

absl::StatusOr<std::unique_ptr<LogStore>> LogStore::Create(Options options) {
  if (options.state_dir.empty()) {
    return absl::InvalidArgumentError("LogStore: state_dir is empty");
  }
  if (options.max_bytes_per_process == 0 || options.max_total_bytes == 0) {
    return absl::InvalidArgumentError(
        "LogStore: max_bytes_per_process and max_total_bytes must be positive");
  }
  std::unique_ptr<LogStore> store(new LogStore(std::move(options)));
  const std::string procs = ProcsDir(store->options_.state_dir);
  if (mkdir(procs.c_str(), 0700) != 0 && errno != EEXIST) {
    return ErrnoError("mkdir", procs);
  }
  PM_ASSIGN_OR_RETURN(store->dir_watcher_,
                      DirWatcher::Start([s = store.get()](int wd) {
                        s->OnDirChanged(wd);
                      }));
  PM_ASSIGN_OR_RETURN(segment_log::TotalCapResult found,
                      store->EnforceTotalCap());
  if (found.total_bytes > 0) {
    PM_LOG(INFO) << "output on disk in " << procs << ": " << found.total_bytes
                 << " bytes; " << found.deleted_bytes
                 << " deleted to fit --max_total_bytes="
                 << store->options_.max_total_bytes;
  }
  return store;
}

std::shared_ptr<OutputLog> LogStore::MakeLog(const std::string& key) const {
  return std::make_shared<OutputLog>(
      key, ProcessOutputDir(options_.state_dir, key), writer_options_);
}

absl::StatusOr<std::shared_ptr<OutputLog>> LogStore::Open(
    absl::string_view id) {
  PM_ASSIGN_OR_RETURN(std::string key, LogKey(id));
  std::shared_ptr<OutputLog> log;
  {
    absl::MutexLock lock(&mu_);
    std::shared_ptr<OutputLog>& held = logs_[key];
    if (held == nullptr) held = MakeLog(key);
    log = held;
  }
  // Outside the store's lock: it reads the last segment to resume.
  PM_RETURN_IF_ERROR(log->OpenForAppend());
  return log;
}

absl::StatusOr<OutputLog::Update> LogStore::AppendData(
    OutputLog& log, uint64_t offset, segment_log::Stream stream,
    absl::string_view data) {
  return Account(log, log.AppendData(offset, stream, data));
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
    absl::string_view id) {
  PM_ASSIGN_OR_RETURN(std::string key, LogKey(id));
  absl::MutexLock lock(&mu_);
  auto it = logs_.find(key);
  if (it != logs_.end()) return it->second;
  // Output from before a restart of the log_store, or written by a shim.
  std::shared_ptr<OutputLog> log = MakeLog(key);
  struct stat st;
  if (stat(log->dir().c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    return absl::NotFoundError(absl::StrCat("no output for process ", id));
  }
  logs_.emplace(key, log);
  return log;
}

absl::Status LogStore::Follow(const std::shared_ptr<OutputLog>& log) {
  absl::MutexLock lock(&mu_);
  Watched& watched = watched_[log->id()];
  ++watched.followers;  // counted either way: Unfollow takes it back
  // A watch that failed for an earlier follower (no inotify watches left)
  // is tried again for each new one.
  if (watched.wd >= 0) return absl::OkStatus();
  absl::StatusOr<int> wd = dir_watcher_->Watch(log->dir());
  if (!wd.ok()) return wd.status();
  watched.wd = *wd;
  watched_ids_[*wd] = log->id();
  return absl::OkStatus();
}

void LogStore::Unfollow(const OutputLog& log) {
  absl::MutexLock lock(&mu_);
  auto it = watched_.find(log.id());
  if (it == watched_.end() || --it->second.followers > 0) return;
  if (it->second.wd >= 0) {
    dir_watcher_->Unwatch(it->second.wd);
    watched_ids_.erase(it->second.wd);
  }
  watched_.erase(it);
}

void LogStore::OnDirChanged(int wd) {
  std::vector<std::shared_ptr<OutputLog>> to_wake;
  {
    absl::MutexLock lock(&mu_);
    std::vector<const std::string*> ids;
    if (wd == -1) {
      // The kernel's queue overflowed: every log may have changed.
      for (const auto& [watched_wd, id] : watched_ids_) ids.push_back(&id);
    } else if (auto it = watched_ids_.find(wd); it != watched_ids_.end()) {
      ids.push_back(&it->second);
    }
    for (const std::string* id : ids) {
      auto log = logs_.find(*id);
      if (log != logs_.end()) to_wake.push_back(log->second);
    }
  }
  for (const std::shared_ptr<OutputLog>& log : to_wake) {
    // This log_store's own appends wake the log's readers already.
    if (!log->appending()) log->Wake();
  }
}

absl::StatusOr<OutputLog::Update> LogStore::Account(
    OutputLog& log, absl::StatusOr<OutputLog::Update> update) {
  if (!update.ok()) return update;
  if (!update->write_error.ok()) NoteWriteError(log, update->write_error);
  if (update->closed_now) {
    absl::MutexLock lock(&mu_);
    closed_.push_back(log.id());
    EnforceClosedCountLocked();
  }
  const uint64_t estimate =
      estimated_total_.fetch_add(update->grown_bytes,
                                 std::memory_order_relaxed) +
      update->grown_bytes;
  if (estimate > cap_threshold_.load(std::memory_order_relaxed) &&
      cap_mu_.TryLock()) {
    // Another append may have run the cap since the check.
    if (estimated_total_.load(std::memory_order_relaxed) >
        cap_threshold_.load(std::memory_order_relaxed)) {
      absl::StatusOr<segment_log::TotalCapResult> result = EnforceTotalCap();
      if (!result.ok()) {
        PM_LOG(WARNING) << "the total cap (--max_total_bytes): "
                        << result.status();
      }
    }
    cap_mu_.Unlock();
  }
  return update;
}

absl::StatusOr<segment_log::TotalCapResult> LogStore::EnforceTotalCap() {
  PM_ASSIGN_OR_RETURN(std::vector<std::string> dirs, OutputDirs());
  PM_ASSIGN_OR_RETURN(
      segment_log::TotalCapResult result,
      segment_log::DeleteOldestSegments(dirs, options_.max_total_bytes));
  const uint64_t now = result.total_bytes - result.deleted_bytes;
  estimated_total_.store(now, std::memory_order_relaxed);
  // Over the cap still: what is left is live outputs' current segments.
  // Run again once another segment's worth is written, not per append.
  cap_threshold_.store(now > options_.max_total_bytes
                           ? now + writer_options_.segment_bytes
                           : options_.max_total_bytes,
                       std::memory_order_relaxed);
  return result;
}

absl::StatusOr<std::vector<std::string>> LogStore::OutputDirs() const {
  const std::string procs = ProcsDir(options_.state_dir);
  std::unique_ptr<DIR, int (*)(DIR*)> dir(opendir(procs.c_str()), closedir);
  if (dir == nullptr) return ErrnoError("opendir", procs);
  std::vector<std::string> dirs;
  while (struct dirent* entry = readdir(dir.get())) {
    // Only process directories: anything else there is not ours to delete.
    if (!ValidateProcessId(entry->d_name).ok()) continue;
    dirs.push_back(ProcessOutputDir(options_.state_dir, entry->d_name));
  }
  return dirs;
}

void LogStore::NoteWriteError(const OutputLog& log, const absl::Status& error) {
  absl::MutexLock lock(&errors_mu_);
  ++write_errors_;
  const absl::Time now = absl::Now();
  if (now - last_error_log_ < kWriteErrorLogInterval) {
    ++unlogged_errors_;
    return;
  }
  PM_LOG(WARNING) << "output of process " << log.id()
                  << " not written (its bytes are recorded as lost): " << error
                  << (unlogged_errors_ > 0
                          ? absl::StrCat(" (and ", unlogged_errors_,
                                         " failed writes not logged)")
                          : "");
  unlogged_errors_ = 0;
  last_error_log_ = now;
}

void LogStore::EnforceClosedCountLocked() {
  // A log still held elsewhere (a reader, an Append stream) stays until a
  // later close: forgetting it now would let a Find make a second one.
  for (size_t tries = closed_.size();
       closed_.size() > options_.max_closed_logs && tries > 0; --tries) {
    std::string id = std::move(closed_.front());
    closed_.pop_front();
    auto it = logs_.find(id);
    if (it == logs_.end()) continue;
    if (it->second.use_count() > 1) {
      closed_.push_back(std::move(id));
      continue;
    }
    logs_.erase(it);
  }
}

size_t LogStore::log_count() const {
  absl::MutexLock lock(&mu_);
  return logs_.size();
}

size_t LogStore::closed_log_count() const {
  absl::MutexLock lock(&mu_);
  return closed_.size();
}

size_t LogStore::watched_dir_count() const {
  absl::MutexLock lock(&mu_);
  return watched_ids_.size();  // the directories with an inotify watch
}

uint64_t LogStore::write_errors() const {
  absl::MutexLock lock(&errors_mu_);
  return write_errors_;
}

}  // namespace pm::log_store
