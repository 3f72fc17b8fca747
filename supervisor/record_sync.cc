// The mapping of a process to its registry record.
//   CreateRequestOf   the record a Start creates.
//   OnRecorded        the registry has it: what happened meanwhile (an
//                     exit) goes at once.
//   AbandonUnrecorded the registry never took it: killed, as if the Start
//                     had not happened.
//   UpdateRequestOf   the one place the process's state is copied into an
//                     update.
//   SendUpdate        each state sent at once, in sequence; kept and
//                     retried while the registry is unreachable.
#include "supervisor/supervisor.h"

#include <signal.h>

#include <memory>
#include <utility>
#include <vector>

#include "common/cgroup_paths.h"
#include "common/log.h"
#include "common/process_end.h"
#include "common/proto_time.h"
#include "shim/protocol.h"
#include "supervisor/async_ops.h"
#include "supervisor/process.h"

namespace pm::supervisor {

using pm::v1::ProcessStatus;

namespace {

constexpr absl::Duration kRegistryRetry = absl::Seconds(1);

}  // namespace

pm::internal::v1::CreateRecordRequest CreateRequestOf(
    const Process& p, const pm::v1::StartRequest& request, const Owner& owner) {
  pm::internal::v1::CreateRecordRequest create;
  create.set_id(p.id);
  *create.mutable_spec() = request;
  create.set_resolved_executable(p.status.resolved_executable());
  create.set_resolved_executable_bytes(p.status.resolved_executable_bytes());
  create.set_pid(p.status.pid());
  create.set_owner(owner.display);
  create.set_owner_user(owner.user);
  create.set_start_ticks(p.start_ticks);
  *create.mutable_started_at() = p.status.started_at();
  if (p.cgroup) *create.mutable_cgroup() = CgroupPathsOf(p.cgroup->dirs());
  return create;
}

pm::v1::RunEnd RunEndOf(uint32_t run, const shim::ProcessEnd& end) {
  pm::v1::RunEnd last;
  last.set_run(run);
  const bool exited = end.status.kind == ExitStatus::Kind::kExited;
  last.set_exit_code(exited ? end.status.code : 0);
  last.set_signal(exited ? 0 : end.status.signal);
  last.set_core_dumped(end.status.core_dumped);
  *last.mutable_ended_at() = ToProtoTimestamp(end.ended);
  return last;
}

pm::internal::v1::UpdateRecordRequest UpdateRequestOf(const Process& p) {
  const ProcessStatus& s = p.status;
  pm::internal::v1::UpdateRecordRequest r;
  r.set_id(p.id);
  r.set_state(s.state());
  *r.mutable_end() = ProcessEndOf(s);
  if (p.restarts) {
    pm::internal::v1::RunUpdate& run = *r.mutable_run();
    run.set_run(s.run());
    run.set_restarts(s.restarts());
    run.set_pid(p.in_backoff ? 0 : p.pid);
    run.set_start_ticks(p.in_backoff ? 0 : p.start_ticks);
    *run.mutable_started_at() = s.started_at();
    if (s.has_last_run()) *run.mutable_last_run() = s.last_run();
    if (s.has_next_start()) *run.mutable_next_start() = s.next_start();
    run.set_gave_up(s.gave_up());
  }
  return r;
}

void CopyEnd(const ProcessStatus& from, ProcessStatus& to) {
  to.set_state(from.state());
  ApplyProcessEnd(ProcessEndOf(from), to);
  *to.mutable_run_time() = from.run_time();
}

namespace {

// The runs of a restarted process: which one is (or was last) running, how
// the one before it ended, and whether its cap gave it up.
void CopyRuns(const ProcessStatus& from, ProcessStatus& to) {
  to.set_pid(from.pid());
  to.set_run(from.run());
  to.set_restarts(from.restarts());
  *to.mutable_started_at() = from.started_at();
  if (from.has_last_run()) *to.mutable_last_run() = from.last_run();
  if (from.has_next_start()) *to.mutable_next_start() = from.next_start();
  to.set_gave_up(from.gave_up());
}

}  // namespace

void Supervisor::ForbidRestarts(const ProcessPtr& p) {
  if (!p->restarts || !p->shim_control.valid()) return;
  absl::Status told = shim::SendMessage(p->shim_control.get(), shim::NoRestart{}, {});
  if (!told.ok()) {
    PM_LOG(WARNING) << "pm-shim " << p->shim_pid << " of process " << p->id
                    << " was not told to stop restarting: " << told;
  }
}

void Supervisor::AbandonUnrecorded(const ProcessPtr& p) {
  // The registry never learned of it: kill it and forget it, as if the
  // Start had not happened. Its shim must not start it again.
  p->On(Event::kAbandoned);
  ForbidRestarts(p);
  SignalGroup(*p, SIGKILL);
  KillCgroup(p);
}

void Supervisor::OnRecorded(const ProcessPtr& p, const ProcessStatus& record) {
  // The record is the registry's; what happened since (an exit) is ours.
  ProcessStatus local = p->status;
  p->status = record;
  // Also when shutdown abandoned it meanwhile (killed it before it was on
  // record): the registry is told how it ended.
  p->On(Event::kRecorded);
  by_id_[p->id] = p;
  if (Ended(local)) {
    CopyEnd(local, p->status);
    // Its runs too, if it was restarted (and gave up) before the record
    // was made.
    if (p->restarts) CopyRuns(local, p->status);
    SendUpdate(p);
  } else if (p->restarts && (p->in_backoff || local.run() != record.run())) {
    // Runs ended (and started) before the record was made.
    p->status.set_state(local.state());
    CopyRuns(local, p->status);
    SendUpdate(p);
  }
}

void Supervisor::SendUpdate(const ProcessPtr& p) {
  if (!p->life.recorded()) return;  // OnRecorded sends it
  pm::internal::v1::UpdateRecordRequest r = UpdateRequestOf(*p);
  r.set_sequence(++p->update_sequence);
  ++p->updates_in_flight;
  p->dirty = false;
  const uint64_t sequence = p->update_sequence;
  records_->Update(std::move(r), [this, p = ProcessPtr(p), sequence](
                                     absl::StatusOr<ProcessStatus> answer) mutable {
    // The posted task takes this closure's reference: the last one to a
    // Process must be dropped on the loop thread. (An init-capture: a plain
    // copy of the const reference would be const, and std::move would copy.)
    loop_.Post([this, status = answer.status(), p = std::move(p), sequence] {
      --p->updates_in_flight;
      if (!status.ok()) {
        if (status.code() == absl::StatusCode::kUnavailable ||
            status.code() == absl::StatusCode::kDeadlineExceeded) {
          // Keep the state: the registry gets it when it is back (the
          // latest state, under a new sequence).
          p->dirty = true;
          if (!p->retry_pending) {
            p->retry_pending = true;
            loop_.RunAfter(kRegistryRetry, [this, p] {
              p->retry_pending = false;
              if (p->dirty) PushUpdate(p);
            });
          }
          return;
        }
        // One overtaken by a newer state may find the record ended or
        // gone; only the latest state's refusal is news.
        if (sequence == p->update_sequence) {
          PM_LOG(ERROR) << "registry refused update of " << p->id << ": "
                        << status.message();
        }
      }
      if (!p->flushed()) return;  // a newer state is on its way
      auto waiters = std::move(p->on_flushed);
      p->on_flushed.clear();
      for (auto& fn : waiters) fn();
      MaybeForget(p);
    });
  });
}

void Supervisor::SendSettledEnd(pm::internal::v1::UpdateRecordRequest update, int attempt) {
  const std::string id = update.id();
  records_->Update(update, [this, id, update, attempt](
                               absl::StatusOr<ProcessStatus> answer) mutable {
    loop_.Post([this, id, update = std::move(update), attempt,
                status = answer.status()]() mutable {
      const bool away = status.code() == absl::StatusCode::kUnavailable ||
                        status.code() == absl::StatusCode::kDeadlineExceeded;
      if (away && attempt == 0) {
        PM_LOG(WARNING) << "registry did not take the end of " << id << ": " << status
                        << "; sent again every " << absl::FormatDuration(kRegistryRetry)
                        << " until it does";
      } else if (!status.ok() && !away) {
        PM_LOG(ERROR) << "registry refused the end of " << id << ": " << status;
      } else if (status.ok() && attempt > 0) {
        PM_LOG(INFO) << "registry took the end of " << id << " after " << attempt
                     << " retries";
      }
      // A stop held for it is answered (once) from the record as it is now:
      // it does not wait for the registry.
      if (attempt == 0) ReleaseHeldStops(id);
      // The registry is away: it gets the end when it is back, never a
      // record left RUNNING. (Not after shutdown: the next supervisor
      // settles it again.)
      if (away && !shut_down_) {
        loop_.RunAfter(kRegistryRetry, [this, update = std::move(update), attempt]() mutable {
          if (!shut_down_) SendSettledEnd(std::move(update), attempt + 1);
        });
      }
    });
  });
}

void Supervisor::PushUpdate(const ProcessPtr& p) {
  p->dirty = false;
  SendUpdate(p);
}

}  // namespace pm::supervisor
