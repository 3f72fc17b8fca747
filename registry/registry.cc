#include "registry/registry.h"

#include <algorithm>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "common/command_line.h"
#include "common/fd.h"
#include "common/log.h"
#include "common/names.h"
#include "common/cgroup_paths.h"
#include "common/process_end.h"
#include "common/proto_time.h"
#include "common/restart_policy.h"
#include "common/status.h"
#include "common/utf8.h"
#include "common/uuid.h"
#include "registry/proc_reader.h"

namespace pm::registry {
namespace {

// A well-formed id no process has (version nibble 0: NewUuid never makes
// it); its claim is read where a lookup must cost what another's would.
constexpr char kNobodysId[] = "00000000-0000-0000-0000-000000000000";


using ::pm::internal::v1::CgroupPaths;
using ::pm::internal::v1::CreateRecordRequest;
using ::pm::internal::v1::StoredRecord;
using ::pm::internal::v1::UpdateRecordRequest;
using ::pm::v1::ProcessStatus;

// "EXITED" for STATE_EXITED.
std::string StateName(ProcessStatus::State state) {
  return std::string(
      absl::StripPrefix(ProcessStatus::State_Name(state), "STATE_"));
}

// "EXITED (exit code 3)", "SIGNALED (signal 9, core dumped)", "STOPPING".
std::string DescribeEnd(ProcessStatus::State state, int32_t exit_code,
                        int32_t signal, bool core_dumped) {
  switch (state) {
    case ProcessStatus::STATE_EXITED:
      return absl::StrCat("EXITED (exit code ", exit_code, ")");
    case ProcessStatus::STATE_SIGNALED:
      return absl::StrCat("SIGNALED (signal ", signal,
                          core_dumped ? ", core dumped)" : ")");
    default:
      return StateName(state);
  }
}

absl::Status ValidateUpdate(const UpdateRecordRequest& request) {
  PM_RETURN_IF_ERROR(ValidateProcessId(request.id()));
  if (request.has_run() && request.run().run() == 0) {
    return absl::InvalidArgumentError("run.run must be 1 or more");
  }
  switch (request.state()) {
    case ProcessStatus::STATE_RUNNING:
    case ProcessStatus::STATE_STOPPING:
      return absl::OkStatus();
    case ProcessStatus::STATE_BACKOFF:
      if (!request.has_run() || !request.run().has_next_start()) {
        return absl::InvalidArgumentError(
            "an update to BACKOFF needs run.next_start");
      }
      return absl::OkStatus();
    case ProcessStatus::STATE_EXITED:
      if (request.end().exit_code() < 0 || request.end().exit_code() > 255) {
        return absl::InvalidArgumentError(absl::StrCat(
            "exit code must be in 0..255, got ", request.end().exit_code()));
      }
      return absl::OkStatus();
    case ProcessStatus::STATE_SIGNALED:
      if (request.end().signal() <= 0) {
        return absl::InvalidArgumentError(
            absl::StrCat("signal must be > 0, got ", request.end().signal()));
      }
      return absl::OkStatus();
    case ProcessStatus::STATE_LOST:
      return absl::OkStatus();
    default:
      return absl::InvalidArgumentError(absl::StrCat(
          "update to state ", request.state(), " (",
          ProcessStatus::State_Name(request.state()),
          "): want RUNNING, STOPPING, BACKOFF, EXITED, SIGNALED or LOST"));
  }
}

// Whether `request` reports the very end already on record: a retry.
bool IsSameEnd(const ProcessStatus& status,
               const UpdateRecordRequest& request) {
  const pm::internal::v1::ProcessEnd& end = request.end();
  if (status.state() != request.state() ||
      status.termination() != end.termination() ||
      status.output_bytes() != end.output_bytes()) {
    return false;
  }
  if (end.has_ended_at() && FromProtoTimestamp(end.ended_at()) !=
                                FromProtoTimestamp(status.ended_at())) {
    return false;
  }
  switch (status.state()) {
    case ProcessStatus::STATE_EXITED:
      return status.exit_code() == end.exit_code();
    case ProcessStatus::STATE_SIGNALED:
      return status.signal() == end.signal() &&
             status.core_dumped() == end.core_dumped();
    default:  // LOST: no more to compare
      return true;
  }
}

// The record `status` as ended by `request` (a final state).
// A restart policy's run into `status` (and the record's start_ticks).
void ApplyRun(const pm::internal::v1::RunUpdate& run, ProcessStatus::State to,
              ProcessStatus& status, uint64_t& start_ticks) {
  status.set_run(run.run());
  status.set_restarts(run.restarts());
  // 0 between two runs: no leader lives.
  status.set_pid(run.pid());
  start_ticks = run.start_ticks();
  if (run.has_started_at()) *status.mutable_started_at() = run.started_at();
  if (run.has_last_run()) {
    *status.mutable_last_run() = run.last_run();
  } else {
    status.clear_last_run();
  }
  if (to == ProcessStatus::STATE_BACKOFF) {
    *status.mutable_next_start() = run.next_start();
  } else {
    status.clear_next_start();
  }
  status.set_gave_up(run.gave_up());
}

void ApplyEnd(const UpdateRecordRequest& request, ProcessStatus& status) {
  status.set_state(request.state());
  ApplyProcessEnd(request.end(), status);
  if (!status.has_ended_at()) {
    *status.mutable_ended_at() = ToProtoTimestamp(absl::Now());
  }
  if (request.state() == ProcessStatus::STATE_LOST &&
      status.end_reason().empty()) {
    status.set_end_reason(
        "lost: its supervisor found neither the process nor its exit status");
  }
}

// The current boot's id, one line of `path` (36 characters).
absl::StatusOr<std::string> ReadBootId(const std::string& path) {
  PM_ASSIGN_OR_RETURN(std::string text, ReadFile(path));
  std::string id(absl::StripAsciiWhitespace(text));
  if (id.empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat("boot id file ", path, " is empty"));
  }
  return id;
}

// The 128 bits of a validated id, any case: 16 bytes to remember instead of
// a 36-character string.
absl::uint128 IdBits(absl::string_view id) {
  absl::uint128 bits = 0;
  for (char c : id) {
    if (c == '-') continue;
    const char lower = absl::ascii_tolower(static_cast<unsigned char>(c));
    const int digit = lower <= '9' ? lower - '0' : lower - 'a' + 10;
    bits = (bits << 4) | static_cast<unsigned>(digit);
  }
  return bits;
}

// The stored status plus its run time as of `now`.
ProcessStatus Answer(const ProcessStatus& stored, absl::Time now) {
  ProcessStatus status = stored;
  const absl::Time started = FromProtoTimestamp(stored.started_at());
  // A record lost at a reboot has no known end, so no run time.
  if (IsEndState(stored.state()) && !stored.has_ended_at()) return status;
  const absl::Time until =
      IsEndState(stored.state()) ? FromProtoTimestamp(stored.ended_at()) : now;
  *status.mutable_run_time() =
      ToProtoDuration(std::max(until - started, absl::ZeroDuration()));
  return status;
}

void AddLiveView(absl::string_view proc_root, uint64_t start_ticks,
                 ProcessStatus& status) {
  absl::StatusOr<LiveView> view =
      ReadLiveView(proc_root, status.pid(), start_ticks);
  if (!view.ok()) {
    // NOT_FOUND is the normal race with the process's end: its exit report
    // is on the way. Anything else (say, /proc mounted hidepid) is worth a
    // line, but the record is still the answer.
    if (!absl::IsNotFound(view.status())) {
      PM_LOG(WARNING) << "no live view of process " << status.id() << ": "
                      << view.status();
    }
    return;
  }
  // Text fields: the kernel's Name is the first 15 bytes of the
  // executable's file name, whatever they are (and may cut a UTF-8
  // character in two); a string field that is not UTF-8 would make the
  // whole answer unreadable.
  auto& proc_status = *status.mutable_proc_status();
  for (const auto& [name, value] : view->proc_status) {
    proc_status[EscapeInvalidUtf8(name)] = EscapeInvalidUtf8(value);
  }
  status.set_rss_bytes(view->rss_bytes);
  status.set_threads(view->threads);
}

}  // namespace

Registry::Registry(RegistryOptions options) : options_(std::move(options)) {}

Registry::~Registry() { cluster_.reset(); }

void Registry::AttachCluster(std::unique_ptr<Cluster> cluster) {
  cluster_ = std::move(cluster);
  cluster_->SetChangeListener([this](std::vector<Cluster::RemoteChange> changes) {
    TellRemoteChanges(std::move(changes));
  });
}

Cluster::ToldBefore Registry::ToldOfOtherHosts() const {
  absl::ReaderMutexLock lock(&mutex_);
  Cluster::ToldBefore told;
  for (const pm::v1::Event& event : events_) {
    told.until = std::max(told.until, FromProtoTimestamp(event.time()));
    const ProcessStatus& status = event.status();
    if (status.node().empty() || status.node() == options_.node) continue;
    if (event.kind() == pm::v1::Event::KIND_REMOVED) {
      told.records.erase(status.id());
      continue;
    }
    told.records[status.id()] = {status.state(), status.run(), status.node()};
  }
  return told;
}

void Registry::TellRemoteChanges(std::vector<Cluster::RemoteChange> changes) {
  {
    absl::MutexLock lock(&mutex_);
    RecordWrite write;
    for (const Cluster::RemoteChange& change : changes) {
      AddEvents(change.before, change.status, change.removed, write, change.run_before);
    }
    if (write.events.empty()) return;
    // Stored like this host's own, so that their sequences are never
    // numbered again after a restart.
    if (absl::Status stored = Persist(write); !stored.ok()) {
      PM_LOG(WARNING) << write.events.size()
                      << " event(s) of other hosts' processes not told: " << stored;
      return;
    }
    KeepEvents(write);
  }
  WakeWatchers();
}

std::vector<ProcessStatus> Registry::Snapshot() const {
  absl::ReaderMutexLock lock(&mutex_);
  std::vector<ProcessStatus> all;
  all.reserve(records_.size());
  for (const auto& [id, record] : records_) all.push_back(record.status);
  return all;
}

absl::StatusOr<std::unique_ptr<Registry>> Registry::Open(
    RegistryOptions options, std::unique_ptr<RecordStore> store) {
  PM_ASSIGN_OR_RETURN(std::string boot_id, ReadBootId(options.boot_id_path));
  std::unique_ptr<Registry> registry(new Registry(std::move(options)));
  registry->boot_id_ = std::move(boot_id);
  registry->store_ = std::move(store);
  absl::MutexLock lock(&registry->mutex_);
  PM_RETURN_IF_ERROR(registry->Load());
  return registry;
}

absl::Status Registry::Load() {
  PM_ASSIGN_OR_RETURN(std::vector<StoredRecord> stored, store_->LoadAll());
  PM_ASSIGN_OR_RETURN(std::vector<pm::v1::Event> events, store_->LoadEvents());
  for (pm::v1::Event& event : events) {
    // Consecutive, as stored; a hole (a store edited by hand) starts the
    // memory over from there, the numbering going on.
    if (!events_.empty() && event.sequence() != events_.back().sequence() + 1) {
      events_.clear();
    }
    next_event_sequence_ = std::max(next_event_sequence_, event.sequence() + 1);
    events_.push_back(std::move(event));
  }
  while (events_.size() > options_.max_events) events_.pop_front();
  std::vector<std::pair<uint64_t, std::string>> ended;
  std::vector<std::string> lost;
  for (StoredRecord& one : stored) {
    Record record;
    record.status = std::move(*one.mutable_status());
    record.start_ticks = one.start_ticks();
    record.cgroup = CgroupDirsOf(one.cgroup());
    record.boot_id = one.boot_id();
    record.sequence = one.sequence();
    record.ended_order = one.ended_order();
    record.age = {FromProtoTimestamp(record.status.started_at()),
                  one.created_order()};
    next_sequence_ = std::max(next_sequence_, one.created_order() + 1);
    next_ended_order_ = std::max(next_ended_order_, one.ended_order() + 1);
    const std::string id = record.status.id();
    if (IsEndState(record.status.state())) {
      ended.emplace_back(record.ended_order, id);
    } else if (record.boot_id != boot_id_) {
      lost.push_back(id);
    }
    by_age_.emplace(record.age, id);
    Index(id, record.status);
    records_.emplace(id, std::move(record));
  }
  std::sort(ended.begin(), ended.end());
  for (auto& [order, id] : ended) ended_order_.push_back(std::move(id));
  // Running when the host went down: how they ended is unknown. Stored so,
  // with the evictions past the cap (a smaller cap than last time, or the
  // LOST ones), in one write.
  RecordWrite write;
  for (const std::string& id : lost) {
    Record& record = records_.at(id);
    record.status.set_state(ProcessStatus::STATE_LOST);
    record.status.set_end_reason(absl::StrCat(
        "lost: the host restarted while it ran (started in boot ",
        record.boot_id.empty() ? "(unknown)" : record.boot_id,
        ", now boot ", boot_id_, "); how it ended is unknown"));
    record.ended_order = next_ended_order_++;
    write.put.push_back(ToStored(record, record.status, record.ended_order));
    ended_order_.push_back(id);
  }
  write.remove = EvictedBy(0, "");
  PM_RETURN_IF_ERROR(Persist(write));
  if (!lost.empty()) {
    PM_LOG(WARNING) << lost.size() << " record(s) of processes that ran in "
                    << "an earlier boot are now LOST";
  }
  EvictPastCap();
  return absl::OkStatus();
}

absl::Status Registry::Persist(const RecordWrite& write) const {
  if (store_ == nullptr ||
      (write.put.empty() && write.remove.empty() && write.events.empty())) {
    return absl::OkStatus();
  }
  absl::Status written = store_->Write(write);
  if (written.ok()) return written;
  // UNAVAILABLE whatever the store's reason (a full disk, say): the call
  // changed nothing and may succeed later, and the supervisor retries a
  // state update on UNAVAILABLE until it lands.
  return absl::UnavailableError(
      absl::StrCat("the records could not be stored: ", written.ToString()));
}

std::vector<std::string> Registry::EvictedBy(size_t ended,
                                             const std::string& also) const {
  std::vector<std::string> evicted;
  const size_t kept = ended_order_.size() + ended;
  for (size_t i = 0; i + options_.max_ended_records < kept; ++i) {
    evicted.push_back(i < ended_order_.size() ? ended_order_[i] : also);
  }
  return evicted;
}

StoredRecord Registry::ToStored(const Record& record,
                                const ProcessStatus& status,
                                uint64_t ended_order) const {
  StoredRecord stored;
  *stored.mutable_status() = status;
  stored.set_start_ticks(record.start_ticks);
  *stored.mutable_cgroup() = CgroupPathsOf(record.cgroup);
  stored.set_boot_id(record.boot_id);
  stored.set_created_order(record.age.second);
  stored.set_ended_order(ended_order);
  stored.set_sequence(record.sequence);
  return stored;
}

absl::StatusOr<ProcessStatus> Registry::CreateRecord(
    const CreateRecordRequest& request) {
  absl::StatusOr<ProcessStatus> created = CreateRecordImpl(request);
  if (created.ok()) WakeWatchers();
  return created;
}

absl::StatusOr<ProcessStatus> Registry::CreateRecordImpl(
    const CreateRecordRequest& request) {
  if (request.pid() <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("pid must be > 0, got ", request.pid()));
  }
  absl::StatusOr<CommandLine> command = CommandLineOf(request.spec());
  if (!command.ok()) return Annotate(command.status(), "spec");
  if (!request.resolved_executable().empty() &&
      !request.resolved_executable_bytes().empty()) {
    return absl::InvalidArgumentError(
        "resolved_executable and resolved_executable_bytes are both set; "
        "send one of them");
  }
  if (!request.spec().name().empty()) {
    PM_RETURN_IF_ERROR(ValidateName(request.spec().name()));
  }
  PM_RETURN_IF_ERROR(ValidateLabels(request.spec().labels()));
  const absl::Time now = absl::Now();
  Record record;
  record.start_ticks = request.start_ticks();
  ProcessStatus& status = record.status;
  status.set_state(ProcessStatus::STATE_RUNNING);
  status.set_pid(request.pid());
  // Each in its string field when UTF-8, else in its bytes field.
  EchoCommandLine(*command, status);
  EchoResolvedExecutable(request.resolved_executable_bytes().empty()
                             ? request.resolved_executable()
                             : request.resolved_executable_bytes(),
                         status);
  status.set_owner(request.owner());
  status.set_owner_user(request.owner_user());
  status.set_node(options_.node);
  status.set_name(request.spec().name());
  *status.mutable_labels() = request.spec().labels();
  *status.mutable_limits() = request.spec().limits();
  if (RestartsOf(request.spec())) {
    *status.mutable_restart() = request.spec().restart();
    status.set_run(1);
  }
  for (int isolation : request.spec().isolate()) {
    status.add_isolation(static_cast<pm::v1::Isolation>(isolation));
  }
  record.cgroup.unified = request.cgroup().unified();
  record.cgroup.v1.insert(request.cgroup().v1().begin(),
                          request.cgroup().v1().end());
  // The directory that tracks the tree: cgroup2, else the v1 freezer.
  status.set_cgroup(!record.cgroup.unified.empty() ? record.cgroup.unified
                                                   : record.cgroup.V1("freezer"));
  *status.mutable_started_at() =
      request.has_started_at() ? request.started_at() : ToProtoTimestamp(now);
  // The env is deliberately not copied: it may hold secrets, and nothing
  // read from the registry needs it.

  const bool given = !request.id().empty();
  if (given) PM_RETURN_IF_ERROR(ValidateProcessId(request.id()));
  // Minted outside the lock (it is a syscall); a collision of 122 random bits
  // will not happen, but costs only a retry if it does.
  while (true) {
    std::string id = absl::AsciiStrToLower(request.id());
    if (!given) {
      PM_ASSIGN_OR_RETURN(id, NewUuidV4());
    }
    if (cluster_ != nullptr) {
      // Unique across the cluster: taken in etcd before it is recorded.
      absl::Status claimed = cluster_->Claim(id, status.name(), status.owner_user());
      if (absl::IsAlreadyExists(claimed)) {
        if (given || !status.name().empty()) return claimed;
        continue;
      }
      if (!claimed.ok() && !status.name().empty()) {
        return ClusterUnavailableError(absl::StrCat(
            "a named process needs etcd, to know its name is free in the "
            "cluster: ", claimed.message()));
      }
      // etcd out of reach: an unnamed process is recorded anyway (122
      // random bits), and the mirror claims its id once etcd is back.
    }
    absl::MutexLock lock(&mutex_);
    if (records_.contains(id)) {
      if (given) {
        return absl::AlreadyExistsError(
            absl::StrCat("a process with id ", id, " is already on record"));
      }
      continue;
    }
    // An id is never reused, not even one whose record was evicted.
    if (evicted_.contains(IdBits(id))) {
      if (given) {
        return absl::AlreadyExistsError(absl::StrCat(
            "a process with id ", id, " was on record (ended, evicted)"));
      }
      continue;
    }
    // The supervisor checked the name before the spawn (Resolve); this
    // catches only a start that raced another one past that check.
    if (!status.name().empty()) {
      if (auto held = names_.find(status.name()); held != names_.end()) {
        const std::string& holder_user = records_.at(held->second).status.owner_user();
        return NameTakenError(status.name(), held->second,
                              status.owner_user().empty() ||
                                  holder_user == status.owner_user());
      }
    }
    status.set_id(id);
    record.boot_id = boot_id_;
    record.age = {FromProtoTimestamp(status.started_at()), next_sequence_++};
    // In the store before it is in memory: a failed write records nothing.
    RecordWrite write;
    write.put.push_back(ToStored(record, status, 0));
    AddEvents(ProcessStatus::STATE_UNSPECIFIED, status, /*removed=*/false, write);
    PM_RETURN_IF_ERROR(Persist(write));
    KeepEvents(write);
    by_age_.emplace(record.age, id);
    Index(id, status);
    ProcessStatus answer = Answer(status, now);
    if (cluster_ != nullptr) cluster_->Publish(status);
    records_.emplace(std::move(id), std::move(record));
    return answer;
  }
}

absl::StatusOr<ProcessStatus> Registry::UpdateRecord(
    const UpdateRecordRequest& request) {
  std::map<uint64_t, WaitCallback> waiters;
  absl::StatusOr<ProcessStatus> answer;
  bool appended = false;
  {
    absl::MutexLock lock(&mutex_);
    const uint64_t before = next_event_sequence_;
    answer = UpdateLocked(request, waiters);
    appended = next_event_sequence_ != before;
  }
  if (appended) WakeWatchers();
  // Waits end outside the lock: they finish RPCs.
  for (auto& [token, done] : waiters) done(answer);
  return answer;
}

absl::StatusOr<ProcessStatus> Registry::UpdateLocked(
    const UpdateRecordRequest& request,
    std::map<uint64_t, WaitCallback>& ended_waiters) {
  PM_RETURN_IF_ERROR(ValidateUpdate(request));
  const absl::Time now = absl::Now();
  PM_ASSIGN_OR_RETURN(Record * record, Find(request.id()));
  const ProcessStatus& status = record->status;
  const uint64_t sequence_before = record->sequence;
  if (request.sequence() != 0) {
    // Overtaken by a newer state already applied: nothing to do.
    if (request.sequence() <= record->sequence) return Answer(status, now);
    record->sequence = request.sequence();
  }
  const ProcessStatus::State from = status.state();
  const ProcessStatus::State to = request.state();

  if (IsEndState(from)) {
    if (IsSameEnd(status, request)) return Answer(status, now);
    return absl::FailedPreconditionError(absl::StrCat(
        "process ", status.id(), " has already ended as ",
        DescribeEnd(from, status.exit_code(), status.signal(),
                    status.core_dumped()),
        "; an ended record is final, so it cannot become ",
        DescribeEnd(to, request.end().exit_code(), request.end().signal(),
                    request.end().core_dumped())));
  }
  if (request.has_run()) {
    // Runs come only from a restart policy, and only forwards (the
    // sequence already put the updates in order).
    if (status.restart().policy() != pm::v1::RestartPolicy::POLICY_ON_FAILURE &&
        status.restart().policy() != pm::v1::RestartPolicy::POLICY_ALWAYS) {
      return absl::FailedPreconditionError(absl::StrCat(
          "process ", status.id(), " has no restart policy, so no run ",
          request.run().run()));
    }
    if (request.run().run() < status.run()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "process ", status.id(), " is at run ", status.run(), ", not back at run ",
          request.run().run()));
    }
  }
  // From here `from` is RUNNING, STOPPING or BACKOFF, and every validated
  // `to` is allowed from each: a stop begins (-> STOPPING), gives up (->
  // RUNNING), a run ends and another follows (-> BACKOFF -> RUNNING), or
  // the process ends. The same state of the same run again is a retried
  // report.
  if (to == from && (!request.has_run() || request.run().run() == status.run())) {
    return Answer(status, now);
  }
  // The change is made on a copy, stored, and only then kept: a failed
  // write leaves the record as it was.
  ProcessStatus next = status;
  uint64_t start_ticks = record->start_ticks;
  if (request.has_run()) ApplyRun(request.run(), to, next, start_ticks);
  uint64_t ended_order = 0;
  RecordWrite write;
  if (IsEndState(to)) {
    ApplyEnd(request, next);
    ended_order = next_ended_order_;
    // The records its end evicts go in the same write.
    write.remove = EvictedBy(1, status.id());
  } else {
    next.set_state(to);
  }
  Record stored = *record;
  stored.start_ticks = start_ticks;
  write.put.insert(write.put.begin(), ToStored(stored, next, ended_order));
  AddEvents(from, next, /*removed=*/false, write, status.run());
  if (absl::Status persisted = Persist(write); !persisted.ok()) {
    // Not applied: a retry of this very update (same sequence) must be.
    record->sequence = sequence_before;
    return persisted;
  }
  KeepEvents(write);
  record->status = std::move(next);
  record->start_ticks = start_ticks;
  if (cluster_ != nullptr) cluster_->Publish(record->status);
  if (!IsEndState(to)) return Answer(record->status, now);
  record->ended_order = ended_order;
  ++next_ended_order_;
  // Answered before NoteEnded, which may evict this very record (with a cap
  // of 0).
  ProcessStatus answer = Answer(record->status, now);
  ended_waiters = std::move(record->waiters);
  record->waiters.clear();
  NoteEnded(answer.id());
  return answer;
}

uint64_t Registry::Wait(absl::string_view id, WaitCallback done) {
  absl::StatusOr<ProcessStatus> now_answer;
  {
    absl::MutexLock lock(&mutex_);
    absl::StatusOr<Record*> record = Find(id);
    std::optional<ProcessStatus> there;
    if (!record.ok() && absl::IsNotFound(record.status()) && cluster_ != nullptr) {
      there = cluster_->Find(id);
    }
    if (there.has_value() && IsEndState(there->state())) {
      now_answer = Answer(*there, absl::Now());
    } else if (there.has_value()) {
      now_answer = absl::FailedPreconditionError(absl::StrCat(
          "process ", there->id(), " runs on host ", there->node(),
          ", not this one: wait for it through that host's gateway"));
    } else if (!record.ok()) {
      now_answer = record.status();
    } else if (IsEndState((*record)->status.state())) {
      now_answer = Answer((*record)->status, absl::Now());
    } else {
      const uint64_t token = next_wait_token_++;
      (*record)->waiters.emplace(token, std::move(done));
      return token;
    }
  }
  done(std::move(now_answer));
  return 0;
}

void Registry::CancelWait(absl::string_view id, uint64_t token) {
  absl::MutexLock lock(&mutex_);
  absl::StatusOr<Record*> record = Find(id);
  if (record.ok()) (*record)->waiters.erase(token);
}

absl::StatusOr<ProcessStatus> Registry::GetStatus(absl::string_view id) const {
  ProcessStatus stored;
  uint64_t start_ticks = 0;
  CgroupDirs cgroup;
  {
    absl::ReaderMutexLock lock(&mutex_);
    absl::StatusOr<const Record*> found = Find(id);
    if (!found.ok() && absl::IsNotFound(found.status()) && cluster_ != nullptr) {
      // Another host's, as that host last published it.
      std::optional<ProcessStatus> there = cluster_->Find(id);
      if (there.has_value()) return Answer(*there, absl::Now());
    }
    PM_RETURN_IF_ERROR(found.status());
    const Record* record = *found;
    stored = record->status;
    start_ticks = record->start_ticks;
    cgroup = record->cgroup;
  }
  // /proc is read outside the lock: a slow read must not hold up the
  // supervisor's updates. The state may change meanwhile; the start-ticks
  // checks keep the view from being someone else's.
  ProcessStatus status = Answer(stored, absl::Now());
  if (!IsEndState(status.state())) {
    AddLiveView(options_.proc_root, start_ticks, status);
    if (!cgroup.empty()) *status.mutable_usage() = ReadCgroupUsage(cgroup);
  }
  return status;
}

pm::v1::ListResponse Registry::List(absl::string_view owner_user) const {
  pm::v1::ListRequest request;
  request.set_owner_user(std::string(owner_user));
  return *List(request);
}

absl::StatusOr<pm::v1::ListResponse> Registry::List(
    const pm::v1::ListRequest& request) const {
  if (request.label_selector_size() > static_cast<int>(kMaxLabelSelectors)) {
    return absl::InvalidArgumentError(absl::StrCat(
        request.label_selector_size(), " label selectors: at most ",
        kMaxLabelSelectors, " are allowed"));
  }
  std::vector<LabelSelector> selectors;
  for (const std::string& text : request.label_selector()) {
    PM_ASSIGN_OR_RETURN(LabelSelector selector, ParseLabelSelector(text));
    selectors.push_back(std::move(selector));
  }
  for (int state : request.states()) {
    if (state == ProcessStatus::STATE_UNSPECIFIED ||
        !ProcessStatus::State_IsValid(state)) {
      return absl::InvalidArgumentError(
          absl::StrCat("no such state to list: ", state));
    }
  }
  const absl::string_view owner_user = request.owner_user();
  if (!request.node().empty()) {
    PM_RETURN_IF_ERROR(pm::ValidateNodeName(request.node()));
  }
  const bool all = owner_user.empty() && selectors.empty() &&
                   request.states().empty() && request.name().empty() &&
                   request.node().empty();
  const size_t limit = request.limit() == 0 ? SIZE_MAX : request.limit();
  const absl::Time now = absl::Now();
  pm::v1::ListResponse response;
  absl::ReaderMutexLock lock(&mutex_);
  if (all) {
    response.mutable_processes()->Reserve(
        static_cast<int>(std::min(by_age_.size(), limit)));
  }
  auto wanted = [&](const ProcessStatus& status) {
    if (!owner_user.empty() && status.owner_user() != owner_user) return false;
    if (!request.name().empty() && status.name() != request.name()) return false;
    if (!request.node().empty() && status.node() != request.node()) return false;
    // A record of an unreachable host (UNKNOWN) is listed among the
    // states it was last known in too: `pm list` (running and stopping)
    // still shows what ran there.
    auto asked = [&](int state) {
      return std::find(request.states().begin(), request.states().end(), state) !=
             request.states().end();
    };
    if (!request.states().empty() && !asked(status.state()) &&
        !(status.state() == ProcessStatus::STATE_UNKNOWN &&
          asked(status.last_known_state()))) {
      return false;
    }
    for (const LabelSelector& selector : selectors) {
      if (!selector.Matches(status.labels())) return false;
    }
    return true;
  };
  // The other hosts' records (a cluster), newest first, filtered alike
  // (their states as answered now: UNKNOWN where the host is out of reach).
  std::vector<ProcessStatus> others;
  if (cluster_ != nullptr) {
    for (ProcessStatus& status : cluster_->Others()) {
      if (wanted(status)) others.push_back(std::move(status));
    }
    std::sort(others.begin(), others.end(),
              [](const ProcessStatus& a, const ProcessStatus& b) {
                return FromProtoTimestamp(a.started_at()) >
                       FromProtoTimestamp(b.started_at());
              });
  }
  auto other = others.begin();
  for (auto it = by_age_.rbegin();
       it != by_age_.rend() && static_cast<size_t>(response.processes_size()) < limit;
       ++it) {
    const pm::v1::ProcessStatus& status = records_.at(it->second).status;
    if (!all && !wanted(status)) continue;
    // Merged by start time, this host's first among equals.
    while (other != others.end() &&
           static_cast<size_t>(response.processes_size()) < limit &&
           FromProtoTimestamp(other->started_at()) > it->first.first) {
      *response.add_processes() = Answer(*other++, now);
    }
    if (static_cast<size_t>(response.processes_size()) >= limit) break;
    *response.add_processes() = Answer(status, now);
  }
  while (other != others.end() &&
         static_cast<size_t>(response.processes_size()) < limit) {
    *response.add_processes() = Answer(*other++, now);
  }
  return response;
}

pm::internal::v1::ListNodesResponse Registry::ListNodes() const {
  pm::internal::v1::ListNodesResponse response;
  if (cluster_ == nullptr) return response;
  response.set_self(options_.node);
  // With etcd out of reach the others' states are not known: Starts stay
  // here, and the gateway says why another host cannot be named.
  std::map<std::string, pm::internal::v1::ClusterNode> nodes;
  response.set_etcd_unreachable(cluster_->EtcdUnreachable());
  if (response.etcd_unreachable().empty()) nodes = cluster_->Nodes();
  // This host counts as up even while its lease is being (re)taken: it is
  // the one answering.
  nodes[options_.node].set_node(options_.node);
  for (const ProcessStatus& status : cluster_->Others()) {
    if (status.state() == ProcessStatus::STATE_RUNNING ||
        status.state() == ProcessStatus::STATE_STOPPING) {
      if (auto it = nodes.find(status.node()); it != nodes.end()) {
        it->second.set_live(it->second.live() + 1);
      }
    }
  }
  {
    absl::ReaderMutexLock lock(&mutex_);
    uint32_t live = 0;
    for (const auto& [id, record] : records_) {
      if (!IsEndState(record.status.state())) ++live;
    }
    nodes[options_.node].set_live(live);
  }
  *response.add_nodes() = nodes[options_.node];
  for (auto& [node, info] : nodes) {
    if (node != options_.node) *response.add_nodes() = std::move(info);
  }
  return response;
}

absl::StatusOr<pm::internal::v1::ResolveResponse> Registry::Resolve(
    const pm::internal::v1::ResolveRequest& request) const {
  absl::StatusOr<pm::internal::v1::ResolveResponse> known = ResolveKnown(request);
  if (known.ok() || !absl::IsNotFound(known.status()) || cluster_ == nullptr) {
    return known;
  }
  // Made a moment ago on another host, and not seen here yet: its claims
  // in etcd say which id a name has, and which host an id is on (asked
  // without any lock held). That host's gateway authorizes the caller.
  std::string id;
  if (IsFullId(request.ref()) && !request.name_only()) {
    id = absl::AsciiStrToLower(request.ref());
  } else if (pm::ValidateName(request.ref()).ok()) {
    std::optional<std::string> named = cluster_->ClaimedIdOfName(request.ref());
    if (!named.has_value()) {
      // As many reads as a name another user holds costs (its id's claim
      // is read next): how long the NOT_FOUND takes does not tell a
      // caller that someone else has the name.
      cluster_->OwnerOf(kNobodysId);
      return known;
    }
    id = *std::move(named);
  } else {
    return known;
  }
  std::optional<Cluster::IdClaim> claim = cluster_->OwnerOf(id);
  if (!claim.has_value() || claim->node == options_.node) return known;
  // Another user's process is no more there for the caller than one that
  // does not exist (not even which host it is on).
  if (!request.owner_user().empty() && claim->owner_user != request.owner_user()) {
    return known;
  }
  pm::internal::v1::ResolveResponse response;
  response.set_id(id);
  response.set_owner_user(claim->owner_user);
  response.set_node(claim->node);
  response.set_gateway(cluster_->GatewayOf(claim->node).value_or(""));
  return response;
}

absl::StatusOr<pm::internal::v1::ResolveResponse> Registry::ResolveKnown(
    const pm::internal::v1::ResolveRequest& request) const {
  const std::string& ref = request.ref();
  PM_RETURN_IF_ERROR(ValidateRef(ref));
  const std::string& owner_user = request.owner_user();
  auto visible = [&](const ProcessStatus& status) {
    return owner_user.empty() || status.owner_user() == owner_user;
  };
  auto answer = [this](const ProcessStatus& status) {
    pm::internal::v1::ResolveResponse response;
    response.set_id(status.id());
    response.set_owner_user(status.owner_user());
    response.set_state(status.state());
    response.set_node(status.node().empty() ? options_.node : status.node());
    if (cluster_ != nullptr && response.node() != options_.node) {
      // Where a call on it is forwarded (none while its host is down).
      response.set_gateway(cluster_->GatewayOf(response.node()).value_or(""));
    }
    return response;
  };
  absl::ReaderMutexLock lock(&mutex_);
  // Another host's process (a cluster), by its full id or its name.
  auto elsewhere = [&](absl::string_view id) -> std::optional<ProcessStatus> {
    if (cluster_ == nullptr) return std::nullopt;
    std::optional<ProcessStatus> there = cluster_->Find(id);
    if (there.has_value() && !visible(*there)) return std::nullopt;
    return there;
  };
  if (IsFullId(ref) && !request.name_only()) {
    absl::StatusOr<const Record*> found = Find(ref);
    if (!found.ok() && absl::IsNotFound(found.status())) {
      if (std::optional<ProcessStatus> there = elsewhere(ref)) return answer(*there);
    }
    if (found.ok() && !visible((*found)->status)) {
      return absl::NotFoundError(absl::StrCat("no process with id ", ref));
    }
    if (!found.ok()) return found.status();
    return answer((*found)->status);
  }
  if (auto named = names_.find(ref); named != names_.end()) {
    const ProcessStatus& status = records_.at(named->second).status;
    if (visible(status)) return answer(status);
  } else if (cluster_ != nullptr) {
    if (std::optional<std::string> id = cluster_->IdOfName(ref)) {
      if (std::optional<ProcessStatus> there = elsewhere(*id)) return answer(*there);
    }
  }
  if (request.name_only()) {
    return absl::NotFoundError(absl::StrCat("no process is named \"", ref, "\""));
  }
  if (CouldBeIdPrefix(ref)) {
    const std::string prefix = absl::AsciiStrToLower(ref);
    std::vector<const ProcessStatus*> matches;
    size_t more = 0;
    for (auto it = ids_.lower_bound(prefix);
         it != ids_.end() && absl::StartsWith(*it, prefix); ++it) {
      const ProcessStatus& status = records_.at(*it).status;
      if (!visible(status)) continue;
      if (matches.size() < kMaxCandidatesShown) {
        matches.push_back(&status);
      } else {
        ++more;
      }
    }
    std::vector<ProcessStatus> others;
    if (cluster_ != nullptr) {
      for (ProcessStatus& status : cluster_->Others()) {
        if (absl::StartsWith(status.id(), prefix) && visible(status)) {
          others.push_back(std::move(status));
        }
      }
    }
    for (const ProcessStatus& status : others) {
      if (matches.size() < kMaxCandidatesShown) {
        matches.push_back(&status);
      } else {
        ++more;
      }
    }
    if (matches.size() == 1) return answer(*matches[0]);
    if (matches.size() > 1) {
      std::string listed;
      for (const ProcessStatus* status : matches) {
        absl::StrAppend(&listed, listed.empty() ? "" : ", ", status->id());
        if (!status->name().empty()) absl::StrAppend(&listed, " (", status->name(), ")");
      }
      if (more > 0) absl::StrAppend(&listed, " and ", more, " more");
      return absl::FailedPreconditionError(absl::StrCat(
          "the id prefix \"", ref, "\" is ambiguous: ", matches.size() + more,
          " processes have it: ", listed, "; give more of the id"));
    }
  }
  return absl::NotFoundError(
      absl::StrCat("no process has the id, name or id prefix \"", ref, "\""));
}

void Registry::Index(const std::string& id, const ProcessStatus& status) {
  ids_.insert(id);
  if (!status.name().empty()) names_.emplace(status.name(), id);
}

void Registry::Unindex(const std::string& id, const ProcessStatus& status) {
  ids_.erase(id);
  if (!status.name().empty()) {
    auto it = names_.find(status.name());
    if (it != names_.end() && it->second == id) names_.erase(it);
  }
}

std::vector<StoredRecord> Registry::ListLive() const {
  std::vector<StoredRecord> live;
  absl::ReaderMutexLock lock(&mutex_);
  for (const auto& [age, id] : by_age_) {
    const Record& record = records_.at(id);
    if (IsEndState(record.status.state())) continue;
    live.push_back(ToStored(record, record.status, record.ended_order));
  }
  return live;
}

size_t Registry::size() const {
  absl::ReaderMutexLock lock(&mutex_);
  return records_.size();
}

std::map<ProcessStatus::State, size_t> Registry::CountByState() const {
  std::map<ProcessStatus::State, size_t> counts;
  for (int s = ProcessStatus::State_MIN; s <= ProcessStatus::State_MAX; ++s) {
    if (ProcessStatus::State_IsValid(s) && s != ProcessStatus::STATE_UNSPECIFIED) {
      counts[static_cast<ProcessStatus::State>(s)] = 0;
    }
  }
  absl::ReaderMutexLock lock(&mutex_);
  for (const auto& [id, record] : records_) ++counts[record.status.state()];
  return counts;
}

absl::StatusOr<Registry::Record*> Registry::Find(absl::string_view id) {
  PM_ASSIGN_OR_RETURN(const Record* record,
                      static_cast<const Registry*>(this)->Find(id));
  return const_cast<Record*>(record);
}

absl::StatusOr<const Registry::Record*> Registry::Find(
    absl::string_view id) const {
  PM_RETURN_IF_ERROR(ValidateProcessId(id));
  // Ids are minted lower-case; the validator accepts either case.
  auto it = records_.find(absl::AsciiStrToLower(id));
  if (it != records_.end()) return &it->second;
  if (removed_.contains(IdBits(id))) {
    return absl::NotFoundError(absl::StrCat("process ", id, " was removed"));
  }
  if (evicted_.contains(IdBits(id))) {
    return absl::NotFoundError(absl::StrCat(
        "process ", id, " ended and its record was evicted (cap "
        "--max_ended_records=", options_.max_ended_records, ")"));
  }
  return absl::NotFoundError(absl::StrCat("no process with id ", id));
}

void Registry::NoteEnded(std::string id) {
  ended_order_.push_back(std::move(id));
  EvictPastCap();
}

void Registry::EvictPastCap() {
  while (ended_order_.size() > options_.max_ended_records) {
    auto it = records_.find(ended_order_.front());
    by_age_.erase(it->second.age);
    Unindex(it->first, it->second.status);
    if (cluster_ != nullptr) cluster_->Unpublish(it->first, it->second.status.name());
    RememberEvicted(IdBits(it->first));
    records_.erase(it);
    ended_order_.pop_front();
  }
}

void Registry::RememberEvicted(absl::uint128 id, bool removed) {
  if (options_.evicted_ids_kept == 0) return;
  if (evicted_order_.size() == options_.evicted_ids_kept) {
    evicted_.erase(evicted_order_.front());
    removed_.erase(evicted_order_.front());
    evicted_order_.pop_front();
  }
  evicted_order_.push_back(id);
  evicted_.insert(id);
  if (removed) removed_.insert(id);
}

absl::StatusOr<ProcessStatus> Registry::RemoveRecord(
    absl::string_view id, absl::string_view owner_user) {
  absl::StatusOr<ProcessStatus> removed = RemoveRecordImpl(id, owner_user);
  if (removed.ok()) WakeWatchers();
  return removed;
}

absl::StatusOr<ProcessStatus> Registry::RemoveRecordImpl(
    absl::string_view id, absl::string_view owner_user) {
  absl::MutexLock lock(&mutex_);
  PM_ASSIGN_OR_RETURN(Record * record, Find(id));
  if (!owner_user.empty() && record->status.owner_user() != owner_user) {
    return absl::NotFoundError(absl::StrCat("no process with id ", id));
  }
  if (!IsEndState(record->status.state())) {
    return absl::FailedPreconditionError(absl::StrCat(
        "process ", record->status.id(), " has not ended (",
        ProcessStatus::State_Name(record->status.state()),
        "): stop it first, or remove it with force"));
  }
  const std::string key = record->status.id();
  RecordWrite write;
  write.remove.push_back(key);
  AddEvents(record->status.state(), record->status, /*removed=*/true, write);
  PM_RETURN_IF_ERROR(Persist(write));
  KeepEvents(write);
  ProcessStatus removed = std::move(record->status);
  by_age_.erase(record->age);
  Unindex(key, removed);
  if (cluster_ != nullptr) cluster_->Unpublish(key, removed.name());
  auto queued = std::find(ended_order_.begin(), ended_order_.end(), key);
  if (queued != ended_order_.end()) ended_order_.erase(queued);
  RememberEvicted(IdBits(key), /*removed=*/true);
  records_.erase(key);
  return removed;
}

}  // namespace pm::registry
