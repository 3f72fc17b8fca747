// Stop and its escalation, as the stop's phases move (lifecycle.h):
//   Stop            finds the process by id (or asks the registry about one
//                   it does not hold: StopUnknown) and joins its callers.
//   RequestStop     None -> Grace: BeginStop (SIGTERM to the tree unless
//                   forced, the SIGKILL timer armed); Grace -> Grace: the
//                   SIGKILL brought forward to the sooner deadline.
//   OnGraceExpired  Grace -> Killing: SIGKILL to the group and the cgroup,
//                   the kill timeout armed.
//   CheckStopDone   after every exit and cgroup event: is the tree gone?
//   FinishStop      -> None: every caller answered (once the registry
//                   holds the final state, bounded).
// So a stop can always be escalated, and every caller of one stop gets its
// final answer.
#include "supervisor/supervisor.h"

#include <signal.h>

#include <memory>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/status.h"
#include "common/stop_request.h"
#include "supervisor/async_ops.h"
#include "shim/protocol.h"
#include "supervisor/metrics.h"
#include "supervisor/process.h"

namespace pm::supervisor {

using pm::v1::ProcessStatus;

void Supervisor::Stop(const pm::v1::StopRequest& request, StopCallback done) {
  if (absl::Status valid = ValidateStopRequest(request); !valid.ok()) {
    done(valid);
    return;
  }
  Metrics().stops.Increment();
  const absl::Duration grace = StopGrace(request, options_.default_grace);
  auto shared_done = std::make_shared<StopCallback>(std::move(done));
  if (!loop_.Post([this, id = request.id(), grace, shared_done] {
        auto it = by_id_.find(id);
        if (it == by_id_.end()) {
          if (!HoldStopUntilAdopted(id, grace, *shared_done)) {
            StopUnknown(id, std::move(*shared_done));
          }
          return;
        }
        ProcessPtr p = it->second;
        p->stop_waiters.push_back(std::move(*shared_done));
        RequestStop(p, grace);
      })) {
    (*shared_done)(absl::UnavailableError("supervisor is shutting down"));
  }
}

void Supervisor::RequestStop(const ProcessPtr& p, absl::Duration grace) {
  const StopPhase before = p->life.stop();
  if (grace <= absl::ZeroDuration() && before != StopPhase::kKilling) {
    p->forced = true;
  }
  if (!p->On(Event::kStopRequested)) return;
  switch (before) {
    case StopPhase::kNone:
      BeginStop(p, grace);
      return;
    case StopPhase::kGrace:
      // Joins the stop in progress; its SIGKILL comes at the earlier of
      // the two deadlines (a forced stop: now).
      loop_.Hasten(p->grace_timer, grace);
      return;
    case StopPhase::kKilling:
      return;  // SIGKILL is out; the answer comes when the tree is gone
  }
}

void Supervisor::BeginStop(const ProcessPtr& p, absl::Duration grace) {
  if (!p->life.reaped()) {
    p->status.set_state(ProcessStatus::STATE_STOPPING);
    SendUpdate(p);
  }
  // Before any signal: the run that ends now is the last (between two
  // runs, the shim ends the process at once).
  if (!p->life.reaped()) ForbidRestarts(p);
  // A forced stop (no grace) gives no warning: SIGTERM just before SIGKILL
  // would only race it for which ends the process.
  if (grace > absl::ZeroDuration()) SignalTerm(p);
  // Even a forced stop's SIGKILL goes through the timer, so it is sent
  // from one place (OnGraceExpired), after the current event.
  p->grace_timer = loop_.RunAfter(grace, [this, weak = std::weak_ptr<Process>(p)] {
    if (auto locked = weak.lock()) OnGraceExpired(locked);
  });
  CheckStopDone(p);
}

void Supervisor::SignalTerm(const ProcessPtr& p) {
  // Between two runs no leader lives: no warning is sent (and none is
  // recorded as sent).
  if (p->in_backoff) return;
  if (!GroupGone(*p) || !p->life.reaped()) {
    SignalGroup(*p, SIGTERM);
    p->sigterm_sent = !p->life.reaped() || p->sigterm_sent;
  }
  // Members that left the group (daemons that called setsid()) get the
  // same warning before the kill; the group's own members got it once.
  if (p->cgroup) p->cgroup->SignalMembers(SIGTERM, MembersSkipped(*p));
  if (p->life.reaping()) p->members_term_deferred = true;
}

void Supervisor::OnGraceExpired(const ProcessPtr& p) {
  p->grace_timer = 0;
  if (p->life.stop() != StopPhase::kGrace) return;
  p->On(Event::kGraceExpired);
  if (p->life.reaped() && GroupGone(*p) && CgroupGone(*p)) {
    CheckStopDone(p);
    return;
  }
  // Every member still there, leader or not, in the group or only in the
  // cgroup, gets SIGKILL.
  SignalGroup(*p, SIGKILL);
  KillCgroup(p);
  if (!p->life.reaped()) p->sigkill_sent = true;
  p->kill_timer = loop_.RunAfter(
      options_.kill_timeout, [this, weak = std::weak_ptr<Process>(p)] {
        auto locked = weak.lock();
        if (!locked) return;
        locked->kill_timer = 0;
        if (locked->life.stop() == StopPhase::kKilling) {
          FinishStop(locked, /*stopped=*/false);
        }
      });
}

void Supervisor::CheckStopDone(const ProcessPtr& p) {
  // While the janitor holds the cgroup, FinishReap looks again.
  if (!p->stopping() || !p->life.end_written() || !GroupGone(*p)) return;
  if (!CgroupGone(*p)) {
    // A kill that is not atomic may have missed a fork: again.
    if (p->cgroup_killed && !p->cgroup->kill_is_atomic()) p->cgroup->Kill();
    return;
  }
  FinishStop(p, /*stopped=*/true);
}

void Supervisor::FinishStop(const ProcessPtr& p, bool stopped) {
  // Before anyone hears that the stop is done.
  if (p->life.reaped()) RemoveCgroupIfEmpty(p);
  loop_.Cancel(p->grace_timer);
  loop_.Cancel(p->kill_timer);
  p->grace_timer = p->kill_timer = 0;
  p->On(Event::kStopFinished);
  auto waiters =
      std::make_shared<std::vector<StopCallback>>(std::move(p->stop_waiters));
  p->stop_waiters.clear();
  auto answered = std::make_shared<bool>(false);
  auto answer = [p, stopped, waiters, answered] {
    if (*answered) return;
    *answered = true;
    pm::v1::StopResponse response;
    response.set_stopped(stopped);
    *response.mutable_status() = p->status;
    for (auto& waiter : *waiters) waiter(response);
  };
  if (!stopped || p->flushed()) {
    answer();
  } else {
    // Answer once the registry holds the final state, so a GetStatus right
    // after Stop agrees; bounded, in case the registry is down.
    p->on_flushed.push_back(answer);
    loop_.RunAfter(options_.backend_timeout, answer);
  }
  MaybeForget(p);
}

void Supervisor::StopUnknown(const std::string& id, StopCallback done) {
  struct Call {
    grpc::ClientContext context;
    pm::v1::GetStatusRequest request;
    ProcessStatus response;
  };
  auto call = std::make_shared<Call>();
  call->request.set_id(id);
  call->context.set_deadline(
      absl::ToChronoTime(absl::Now() + options_.backend_timeout));
  auto shared_done = std::make_shared<StopCallback>(std::move(done));
  PendingAsyncOps().Begin();
  registry_->async()->GetStatus(
      &call->context, &call->request, &call->response,
      [this, call, shared_done](grpc::Status rpc) {
        const bool posted = loop_.Post([this, call, rpc, shared_done] {
          StopCallback& done = *shared_done;
          if (!rpc.ok()) {
            absl::Status status = FromGrpcStatus(rpc);
            if (status.code() == absl::StatusCode::kUnavailable) {
              status = absl::UnavailableError(absl::StrCat(
                  "registry is unavailable at ", options_.registry_socket, ": ",
                  status.message()));
            }
            done(status);
            return;
          }
          if (Ended(call->response)) {
            pm::v1::StopResponse response;
            response.set_stopped(true);
            *response.mutable_status() = call->response;
            done(response);
            return;
          }
          done(absl::FailedPreconditionError(absl::StrCat(
              "process ", call->request.id(),
              " is on record as running but this supervisor does not hold "
              "it (it outlived an earlier supervisor)")));
        });
        // The loop has stopped: the caller still gets an answer.
        if (!posted) {
          (*shared_done)(absl::UnavailableError("supervisor is shutting down"));
        }
        PendingAsyncOps().End();
      });
}

}  // namespace pm::supervisor
