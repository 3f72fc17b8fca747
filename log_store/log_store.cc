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
#include "common/state_layout.h"
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

}  // namespace

LogStore::LogStore(Options options) : options_(std::move(options)) {}

LogStore::~LogStore() {
  {
    absl::MutexLock lock(&runs_mu_);
    stopping_ = true;
  }
  if (cap_thread_.joinable()) cap_thread_.join();
  dir_watcher_.reset();
}

absl::StatusOr<std::unique_ptr<LogStore>> LogStore::Create(Options options) {
  if (options.state_dir.empty()) {
    return absl::InvalidArgumentError("LogStore: state_dir is empty");
  }
  if (options.max_total_bytes == 0) {
    return absl::InvalidArgumentError(
        "LogStore: max_total_bytes must be positive");
  }
  if (options.total_cap_interval <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        absl::StrCat("LogStore: total_cap_interval must be positive, not ",
                     absl::FormatDuration(options.total_cap_interval)));
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
  if (store->options_.total_cap_interval != absl::InfiniteDuration()) {
    store->cap_thread_ = std::thread([s = store.get()] { s->RunTotalCap(); });
  }
  return store;
}

absl::StatusOr<std::shared_ptr<OutputLog>> LogStore::Find(
    absl::string_view id) {
  PM_ASSIGN_OR_RETURN(std::string key, LogKey(id));
  absl::MutexLock lock(&mu_);
  auto it = logs_.find(key);
  struct stat st;
  if (it != logs_.end()) {
    // Removed with its record (pm rm) since it was cached: gone for a new
    // reader; the readers that hold it see the directory gone.
    if (stat(it->second.log->dir().c_str(), &st) != 0 && errno == ENOENT) {
      lru_.erase(it->second.used);
      logs_.erase(it);
      return absl::NotFoundError(absl::StrCat("no output for process ", id));
    }
    lru_.splice(lru_.begin(), lru_, it->second.used);
    return it->second.log;
  }
  auto log = std::make_shared<OutputLog>(
      key, ProcessOutputDir(options_.state_dir, key));
  if (stat(log->dir().c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    return absl::NotFoundError(absl::StrCat("no output for process ", id));
  }
  lru_.push_front(key);
  logs_.emplace(std::move(key), Held{log, lru_.begin()});
  EvictLocked();
  return log;
}

void LogStore::EvictLocked() {
  // A log a reader still holds stays (forgetting it would let a Find make a
  // second one, whose followers its wake-ups would miss); it counts as used
  // now, so the scan does not meet it again before the others.
  for (size_t tries = lru_.size(); logs_.size() > options_.max_logs && tries > 0;
       --tries) {
    auto oldest = std::prev(lru_.end());
    auto it = logs_.find(*oldest);
    if (it->second.log.use_count() > 1) {
      lru_.splice(lru_.begin(), lru_, oldest);
      continue;
    }
    logs_.erase(it);
    lru_.erase(oldest);
  }
}

absl::Status LogStore::Follow(const std::shared_ptr<OutputLog>& log) {
  absl::MutexLock lock(&mu_);
  Watched& watched = watched_[log->id()];
  ++watched.followers;  // counted either way: Unfollow takes it back
  ++followers_;
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
  if (it == watched_.end()) return;
  --followers_;
  if (--it->second.followers > 0) return;
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
      if (log != logs_.end()) to_wake.push_back(log->second.log);
    }
  }
  // Only wakes: each reader reads in its own reactor (OutputLog::Watcher).
  for (const std::shared_ptr<OutputLog>& log : to_wake) log->Wake();
}

absl::StatusOr<segment_log::TotalCapResult> LogStore::EnforceTotalCap() {
  absl::StatusOr<segment_log::TotalCapResult> result;
  {
    absl::MutexLock cap_lock(&cap_mu_);
    result = [&]() -> absl::StatusOr<segment_log::TotalCapResult> {
      PM_ASSIGN_OR_RETURN(std::vector<std::string> dirs, OutputDirs());
      return segment_log::DeleteOldestSegments(dirs, options_.max_total_bytes);
    }();
  }
  absl::MutexLock lock(&runs_mu_);
  ++cap_runs_;
  if (result.ok()) {
    retained_bytes_ = result->total_bytes - std::min(result->deleted_bytes, result->total_bytes);
    cap_deleted_bytes_ += result->deleted_bytes;
  }
  return result;
}

size_t LogStore::follower_count() const {
  absl::MutexLock lock(&mu_);
  return followers_;
}

uint64_t LogStore::retained_bytes() const {
  absl::MutexLock lock(&runs_mu_);
  return retained_bytes_;
}

uint64_t LogStore::total_cap_deleted_bytes() const {
  absl::MutexLock lock(&runs_mu_);
  return cap_deleted_bytes_;
}

void LogStore::RunTotalCap() {
  while (true) {
    {
      absl::MutexLock lock(&runs_mu_);
      // Waits out the interval, or less when the store is destroyed.
      if (runs_mu_.AwaitWithTimeout(absl::Condition(&stopping_),
                                    options_.total_cap_interval)) {
        return;
      }
    }
    absl::StatusOr<segment_log::TotalCapResult> result = EnforceTotalCap();
    if (!result.ok()) {
      PM_LOG(WARNING) << "the total cap (--max_total_bytes): "
                      << result.status();
    } else if (result->deleted_bytes > 0) {
      PM_LOG(INFO) << "the total cap (--max_total_bytes="
                   << options_.max_total_bytes << ") deleted "
                   << result->deleted_segments << " segments, "
                   << result->deleted_bytes << " of " << result->total_bytes
                   << " bytes";
    }
  }
}

uint64_t LogStore::total_cap_runs() const {
  absl::MutexLock lock(&runs_mu_);
  return cap_runs_;
}

bool LogStore::WaitForTotalCapRuns(uint64_t runs,
                                   absl::Duration timeout) const {
  absl::MutexLock lock(&runs_mu_);
  auto reached = [this, runs]() ABSL_SHARED_LOCKS_REQUIRED(runs_mu_) {
    return cap_runs_ >= runs;
  };
  return runs_mu_.AwaitWithTimeout(absl::Condition(&reached), timeout);
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

size_t LogStore::log_count() const {
  absl::MutexLock lock(&mu_);
  return logs_.size();
}

size_t LogStore::watched_dir_count() const {
  absl::MutexLock lock(&mu_);
  return watched_ids_.size();  // the directories with an inotify watch
}

}  // namespace pm::log_store
