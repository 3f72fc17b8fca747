#include "registry/registry.h"

#include <algorithm>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "common/command_line.h"
#include "common/log.h"
#include "common/proto_time.h"
#include "common/status.h"
#include "common/utf8.h"
#include "common/uuid.h"
#include "registry/proc_reader.h"

namespace pm::registry {
namespace {

using ::pm::internal::v1::CreateRecordRequest;
using ::pm::internal::v1::UpdateRecordRequest;
using ::pm::v1::ProcessStatus;

bool IsEnded(ProcessStatus::State state) {
  return state == ProcessStatus::STATE_EXITED ||
         state == ProcessStatus::STATE_SIGNALED;
}

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
  switch (request.state()) {
    case ProcessStatus::STATE_RUNNING:
    case ProcessStatus::STATE_STOPPING:
      return absl::OkStatus();
    case ProcessStatus::STATE_EXITED:
      if (request.exit_code() < 0 || request.exit_code() > 255) {
        return absl::InvalidArgumentError(absl::StrCat(
            "exit code must be in 0..255, got ", request.exit_code()));
      }
      return absl::OkStatus();
    case ProcessStatus::STATE_SIGNALED:
      if (request.signal() <= 0) {
        return absl::InvalidArgumentError(
            absl::StrCat("signal must be > 0, got ", request.signal()));
      }
      return absl::OkStatus();
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("update to state ", request.state(),
                       " (", ProcessStatus::State_Name(request.state()),
                       "): want RUNNING, STOPPING, EXITED or SIGNALED"));
  }
}

// Whether `request` reports the very end already on record: a retry.
bool IsSameEnd(const ProcessStatus& status,
               const UpdateRecordRequest& request) {
  if (status.state() != request.state() ||
      status.termination() != request.termination() ||
      status.output_bytes() != request.output_bytes()) {
    return false;
  }
  if (request.has_ended_at() &&
      FromProtoTimestamp(request.ended_at()) !=
          FromProtoTimestamp(status.ended_at())) {
    return false;
  }
  if (status.state() == ProcessStatus::STATE_EXITED) {
    return status.exit_code() == request.exit_code();
  }
  return status.signal() == request.signal() &&
         status.core_dumped() == request.core_dumped();
}

void ApplyEnd(const UpdateRecordRequest& request, ProcessStatus& status) {
  status.set_state(request.state());
  if (request.state() == ProcessStatus::STATE_EXITED) {
    status.set_exit_code(request.exit_code());
  } else {
    status.set_signal(request.signal());
    status.set_core_dumped(request.core_dumped());
  }
  *status.mutable_ended_at() = request.has_ended_at()
                                   ? request.ended_at()
                                   : ToProtoTimestamp(absl::Now());
  status.set_termination(request.termination());
  status.set_output_bytes(request.output_bytes());
  if (request.has_usage()) *status.mutable_usage() = request.usage();
  status.set_oom_killed(request.oom_killed());
  status.set_end_reason(request.end_reason());
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
  const absl::Time until =
      IsEnded(stored.state()) ? FromProtoTimestamp(stored.ended_at()) : now;
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

absl::StatusOr<ProcessStatus> Registry::CreateRecord(
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
  *status.mutable_limits() = request.spec().limits();
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
    status.set_id(id);
    record.age = {FromProtoTimestamp(status.started_at()), next_sequence_++};
    by_age_.emplace(record.age, id);
    ProcessStatus answer = Answer(status, now);
    records_.emplace(std::move(id), std::move(record));
    return answer;
  }
}

absl::StatusOr<ProcessStatus> Registry::UpdateRecord(
    const UpdateRecordRequest& request) {
  std::map<uint64_t, WaitCallback> waiters;
  absl::StatusOr<ProcessStatus> answer;
  {
    absl::MutexLock lock(&mutex_);
    answer = UpdateLocked(request, waiters);
  }
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
  ProcessStatus& status = record->status;
  if (request.sequence() != 0) {
    // Overtaken by a newer state already applied: nothing to do.
    if (request.sequence() <= record->sequence) return Answer(status, now);
    record->sequence = request.sequence();
  }
  const ProcessStatus::State from = status.state();
  const ProcessStatus::State to = request.state();

  if (IsEnded(from)) {
    if (IsSameEnd(status, request)) return Answer(status, now);
    return absl::FailedPreconditionError(absl::StrCat(
        "process ", status.id(), " has already ended as ",
        DescribeEnd(from, status.exit_code(), status.signal(),
                    status.core_dumped()),
        "; an ended record is final, so it cannot become ",
        DescribeEnd(to, request.exit_code(), request.signal(),
                    request.core_dumped())));
  }
  // From here `from` is RUNNING or STOPPING, and every validated `to` is
  // allowed from either: a stop begins (-> STOPPING), gives up (-> RUNNING),
  // or the process ends. The same state again is a retried report.
  if (!IsEnded(to)) {
    status.set_state(to);
    return Answer(status, now);
  }
  ApplyEnd(request, status);
  // Answered before NoteEnded, which may evict this very record (with a cap
  // of 0).
  ProcessStatus answer = Answer(status, now);
  ended_waiters = std::move(record->waiters);
  record->waiters.clear();
  NoteEnded(status.id());
  return answer;
}

uint64_t Registry::Wait(absl::string_view id, WaitCallback done) {
  absl::StatusOr<ProcessStatus> now_answer;
  {
    absl::MutexLock lock(&mutex_);
    absl::StatusOr<Record*> record = Find(id);
    if (!record.ok()) {
      now_answer = record.status();
    } else if (IsEnded((*record)->status.state())) {
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
    PM_ASSIGN_OR_RETURN(const Record* record, Find(id));
    stored = record->status;
    start_ticks = record->start_ticks;
    cgroup = record->cgroup;
  }
  // /proc is read outside the lock: a slow read must not hold up the
  // supervisor's updates. The state may change meanwhile; the start-ticks
  // checks keep the view from being someone else's.
  ProcessStatus status = Answer(stored, absl::Now());
  if (!IsEnded(status.state())) {
    AddLiveView(options_.proc_root, start_ticks, status);
    if (!cgroup.empty()) *status.mutable_usage() = ReadCgroupUsage(cgroup);
  }
  return status;
}

pm::v1::ListResponse Registry::List(absl::string_view owner_user) const {
  const absl::Time now = absl::Now();
  pm::v1::ListResponse response;
  absl::ReaderMutexLock lock(&mutex_);
  if (owner_user.empty()) {
    response.mutable_processes()->Reserve(static_cast<int>(by_age_.size()));
  }
  for (auto it = by_age_.rbegin(); it != by_age_.rend(); ++it) {
    const pm::v1::ProcessStatus& status = records_.at(it->second).status;
    if (!owner_user.empty() && status.owner_user() != owner_user) continue;
    *response.add_processes() = Answer(status, now);
  }
  return response;
}

size_t Registry::size() const {
  absl::ReaderMutexLock lock(&mutex_);
  return records_.size();
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
  if (evicted_.contains(IdBits(id))) {
    return absl::NotFoundError(absl::StrCat(
        "process ", id, " ended and its record was evicted (cap "
        "--max_ended_records=", options_.max_ended_records, ")"));
  }
  return absl::NotFoundError(absl::StrCat("no process with id ", id));
}

void Registry::NoteEnded(std::string id) {
  ended_order_.push_back(std::move(id));
  while (ended_order_.size() > options_.max_ended_records) {
    auto it = records_.find(ended_order_.front());
    by_age_.erase(it->second.age);
    RememberEvicted(IdBits(it->first));
    records_.erase(it);
    ended_order_.pop_front();
  }
}

void Registry::RememberEvicted(absl::uint128 id) {
  if (options_.evicted_ids_kept == 0) return;
  if (evicted_order_.size() == options_.evicted_ids_kept) {
    evicted_.erase(evicted_order_.front());
    evicted_order_.pop_front();
  }
  evicted_order_.push_back(id);
  evicted_.insert(id);
}

}  // namespace pm::registry
