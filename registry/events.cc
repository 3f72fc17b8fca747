// The registry's events (Watch): made with each change of a record,
// stored in the same write, kept in memory (the newest max_events), and
// read by watchers from a cursor.
#include <algorithm>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/process_end.h"
#include "common/proto_time.h"
#include "common/status.h"
#include "common/uuid.h"
#include "registry/registry.h"

namespace pm::registry {

using pm::v1::Event;
using pm::v1::ProcessStatus;

namespace {

Event::Kind KindOf(ProcessStatus::State state) {
  switch (state) {
    case ProcessStatus::STATE_RUNNING:
      return Event::KIND_RUNNING;
    case ProcessStatus::STATE_STOPPING:
      return Event::KIND_STOPPING;
    case ProcessStatus::STATE_EXITED:
      return Event::KIND_EXITED;
    case ProcessStatus::STATE_SIGNALED:
      return Event::KIND_SIGNALED;
    case ProcessStatus::STATE_LOST:
      return Event::KIND_LOST;
    case ProcessStatus::STATE_BACKOFF:
      return Event::KIND_RESTARTING;
    case ProcessStatus::STATE_UNKNOWN:
      return Event::KIND_UNKNOWN;
    default:
      return Event::KIND_UNSPECIFIED;
  }
}

}  // namespace

bool WatchFilter::Matches(const Event& event) const {
  const ProcessStatus& status = event.status();
  if (!id.empty() && status.id() != id) return false;
  if (!owner_user.empty() && status.owner_user() != owner_user) return false;
  if (!name.empty() && status.name() != name) return false;
  if (!kinds.empty() &&
      std::find(kinds.begin(), kinds.end(), event.kind()) == kinds.end()) {
    return false;
  }
  for (const LabelSelector& selector : selectors) {
    if (!selector.Matches(status.labels())) return false;
  }
  return true;
}

absl::StatusOr<WatchFilter> ParseWatchFilter(const pm::v1::WatchRequest& request) {
  WatchFilter filter;
  if (!request.id().empty()) {
    PM_RETURN_IF_ERROR(ValidateProcessId(request.id()));
    filter.id = absl::AsciiStrToLower(request.id());
  }
  filter.owner_user = request.owner_user();
  filter.name = request.name();
  if (request.label_selector_size() > static_cast<int>(kMaxLabelSelectors)) {
    return absl::InvalidArgumentError(absl::StrCat(
        request.label_selector_size(), " label selectors; at most ",
        kMaxLabelSelectors));
  }
  for (const std::string& text : request.label_selector()) {
    PM_ASSIGN_OR_RETURN(LabelSelector selector, ParseLabelSelector(text));
    filter.selectors.push_back(std::move(selector));
  }
  for (int kind : request.kinds()) {
    if (!Event::Kind_IsValid(kind) || kind == Event::KIND_UNSPECIFIED) {
      return absl::InvalidArgumentError(
          absl::StrCat("kinds: ", kind, " is not an event kind"));
    }
    filter.kinds.push_back(static_cast<Event::Kind>(kind));
  }
  return filter;
}

void Registry::AddEvents(ProcessStatus::State before, const ProcessStatus& after,
                         bool removed, RecordWrite& write, uint32_t run_before) const {
  std::vector<Event::Kind> kinds;
  if (removed) {
    kinds.push_back(Event::KIND_REMOVED);
  } else if (before == ProcessStatus::STATE_UNSPECIFIED) {
    kinds.push_back(Event::KIND_STARTED);
  } else if (after.state() == ProcessStatus::STATE_RUNNING &&
             (before == ProcessStatus::STATE_BACKOFF || after.run() > run_before)) {
    // The next run (told after its backoff, or after a supervisor that
    // missed the backoff adopted it).
    kinds.push_back(Event::KIND_STARTED);
  } else if (after.state() != before) {
    kinds.push_back(KindOf(after.state()));
    if (IsEndState(after.state()) && (after.oom_killed() || after.usage().oom_kills() > 0)) {
      kinds.push_back(Event::KIND_OOM);
    }
    if (IsEndState(after.state()) && after.gave_up()) kinds.push_back(Event::KIND_GAVE_UP);
  }
  const auto now = ToProtoTimestamp(absl::Now());
  uint64_t sequence = next_event_sequence_ + write.events.size();
  for (Event::Kind kind : kinds) {
    Event& event = write.events.emplace_back();
    event.set_sequence(sequence++);
    event.set_kind(kind);
    *event.mutable_time() = now;
    *event.mutable_status() = after;
    // The live view is not part of an event.
    event.mutable_status()->clear_proc_status();
  }
  if (sequence > options_.max_events + 1) {
    write.drop_events_below = sequence - options_.max_events;
  }
}

void Registry::KeepEvents(RecordWrite& write) {
  for (Event& event : write.events) {
    next_event_sequence_ = event.sequence() + 1;
    events_.push_back(std::move(event));
  }
  while (events_.size() > options_.max_events) events_.pop_front();
}

Registry::NextEventResult Registry::NextEvent(uint64_t after,
                                              const WatchFilter& filter) const {
  NextEventResult result;
  result.cursor = after;
  absl::ReaderMutexLock lock(&mutex_);
  if (events_.empty()) {
    // Nothing retained; what was numbered since `after` is gone.
    const uint64_t last = next_event_sequence_ - 1;
    if (last > after) {
      result.missed = last - after;
      result.cursor = last;
    }
    return result;
  }
  const uint64_t first = events_.front().sequence();
  if (after + 1 < first) {
    result.missed = first - (after + 1);
    result.cursor = first - 1;
  }
  for (size_t i = result.cursor + 1 - first; i < events_.size(); ++i) {
    const Event& event = events_[i];
    result.cursor = event.sequence();
    if (filter.Matches(event)) {
      result.event = event;
      return result;
    }
  }
  return result;
}

uint64_t Registry::last_event_sequence() const {
  absl::ReaderMutexLock lock(&mutex_);
  return next_event_sequence_ - 1;
}

namespace {
// The watcher whose wake this thread is running, if any.
thread_local const void* running_wake = nullptr;
}  // namespace

uint64_t Registry::AddWatcher(std::function<void()> wake) {
  absl::MutexLock lock(&watch_mu_);
  const uint64_t token = next_watcher_++;
  watchers_.emplace(token, std::make_shared<Watcher>(std::move(wake)));
  return token;
}

void Registry::RemoveWatcher(uint64_t token) {
  std::shared_ptr<Watcher> watcher;
  {
    absl::MutexLock lock(&watch_mu_);
    auto it = watchers_.find(token);
    if (it == watchers_.end()) return;
    watcher = std::move(it->second);
    watchers_.erase(it);
  }
  if (running_wake == watcher.get()) {
    // Called from inside its own wake (say a stream finished inline): this
    // thread holds mu already, and nothing else can be running it.
    watcher->mu.AssertHeld();
    watcher->removed = true;
    return;
  }
  // Waits for a wake another thread copied out before the erase.
  absl::MutexLock lock(&watcher->mu);
  watcher->removed = true;
}

void Registry::WakeWatchers() {
  std::vector<std::shared_ptr<Watcher>> watchers;
  {
    absl::MutexLock lock(&watch_mu_);
    for (const auto& [token, watcher] : watchers_) watchers.push_back(watcher);
  }
  for (const auto& watcher : watchers) {
    if (running_wake == watcher.get()) {
      // Its own wake changed the registry: this thread holds mu up the
      // stack; the wake runs again once it returns.
      watcher->mu.AssertHeld();
      watcher->again = true;
      continue;
    }
    absl::MutexLock lock(&watcher->mu);
    const void* outer = running_wake;
    running_wake = watcher.get();
    while (!watcher->removed) {
      watcher->again = false;
      watcher->wake();
      if (!watcher->again) break;
    }
    running_wake = outer;
  }
}

}  // namespace pm::registry
