// A leader's end, step by step.
//   1. Its shim reaped it and says Exited, with the exit status and the
//      output's end by then (shim_link.cc). Only if the shim died first is
//      the leader reparented here and reaped through its pidfd (ReapLeader,
//      from its pidfd or a SIGCHLD; OnSigchld also reaps the shims, and any
//      other child that ends).
//   2. OnLeaderEnd: the leader is no longer live.
//   3. The janitor thread reads its cgroup's final usage and removes the
//      cgroup if empty, off the loop.
//   4. Back on the loop, the end is written into the status and sent to
//      the registry; a stop waiting for it looks again (FinishReap).
#include "supervisor/supervisor.h"

#include <poll.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include <memory>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/log.h"
#include "common/proto_time.h"
#include "common/status.h"
#include "supervisor/end_reason.h"
#include "supervisor/metrics.h"
#include "supervisor/process.h"

namespace pm::supervisor {

using pm::v1::ProcessStatus;

namespace {

// How the leader came to end: by the signals a stop sent it before it was
// reaped.
ProcessStatus::Termination TerminationOf(const Process& p) {
  if (p.sigkill_sent) {
    return p.forced ? ProcessStatus::TERMINATION_FORCED
                    : ProcessStatus::TERMINATION_KILLED;
  }
  return p.sigterm_sent ? ProcessStatus::TERMINATION_AFTER_SIGTERM
                        : ProcessStatus::TERMINATION_BY_ITSELF;
}

// Writes the leader's end into its status. `final_usage`: its cgroup's
// usage as the janitor read it at the end (null: none read).
void WriteEnd(Process& p, const pm::v1::ResourceUsage* final_usage) {
  ProcessStatus& s = p.status;
  const absl::Time now = p.ended_at;
  if (!p.exit.has_value()) {
    // Its shim died before it, and it was not this supervisor's to reap.
    s.set_state(ProcessStatus::STATE_LOST);
    *s.mutable_ended_at() = ToProtoTimestamp(now);
    *s.mutable_run_time() =
        ToProtoDuration(now - FromProtoTimestamp(s.started_at()));
    s.set_termination(p.termination);
    if (final_usage) *s.mutable_usage() = *final_usage;
    s.set_end_reason(
        "its pm-shim died before it, so how it ended is unknown");
    s.set_output_bytes(p.output_end);
    s.clear_proc_status();
    s.clear_rss_bytes();
    s.clear_threads();
    return;
  }
  const ExitStatus& exit = *p.exit;
  if (exit.kind == ExitStatus::Kind::kExited) {
    s.set_state(ProcessStatus::STATE_EXITED);
    s.set_exit_code(exit.code);
  } else {
    s.set_state(ProcessStatus::STATE_SIGNALED);
    s.set_signal(exit.signal);
    s.set_core_dumped(exit.core_dumped);
  }
  *s.mutable_ended_at() = ToProtoTimestamp(now);
  *s.mutable_run_time() =
      ToProtoDuration(now - FromProtoTimestamp(s.started_at()));
  s.set_termination(p.termination);
  // Usage as of the leader's end, read while the cgroup was surely there. A
  // SIGKILL we did not send, with an OOM kill on the cgroup's books, is the
  // OOM killer's.
  if (final_usage) *s.mutable_usage() = *final_usage;
  if (p.life.abandoned() && p.cgroup) *s.mutable_usage() = p.cgroup->ReadUsage();
  s.set_oom_killed(exit.kind == ExitStatus::Kind::kSignaled &&
                   exit.signal == SIGKILL && !p.sigkill_sent &&
                   s.usage().oom_kills() > 0);
  s.set_end_reason(DescribeEnd(exit, s.termination(), s.oom_killed(),
                               s.usage(), p.limits));
  if (s.gave_up()) {
    s.set_end_reason(absl::StrCat(s.end_reason(), GivenUpSuffix(s.restarts(), s.restart())));
  }
  s.set_output_bytes(p.output_end);
  s.clear_proc_status();
  s.clear_rss_bytes();
  s.clear_threads();
}

// The metrics of an end WriteEnd wrote (no exit status: lost).
void CountEnd(const Process& p) {
  SupervisorMetrics& m = Metrics();
  if (!p.run_end_counted) {
    m.exits.With({p.exit ? ExitReason(*p.exit, p.status.oom_killed()) : std::string("lost")})
        .Increment();
  }
  m.oom_kills.Increment(p.status.usage().oom_kills());
}

}  // namespace

void Supervisor::OnSigchld() {
  struct signalfd_siginfo ssi;
  while (read(sigchld_fd_.get(), &ssi, sizeof(ssi)) == sizeof(ssi)) {
  }
  // SIGCHLDs coalesce, so reap until nothing is left. The shims are our
  // children; a leader is only once its shim died (ReapLeader takes its
  // status through its pidfd); anything else is an orphan reparented to us
  // as subreaper.
  for (;;) {
    siginfo_t info = {};
    // __WALL: a child whose exit signal is not SIGCHLD is reaped too (a
    // zombie skipped here would stay until the supervisor exits).
    if (waitid(P_ALL, 0, &info, WEXITED | WNOHANG | WNOWAIT | __WALL) != 0) break;
    if (info.si_pid == 0) break;
    auto it = by_pid_.find(info.si_pid);
    if (it != by_pid_.end()) {
      ProcessPtr p = it->second;
      ReapLeader(p);
      if (p->life.reaped()) continue;
      // Its pidfd did not take this zombie, so the zombie is not that
      // process (a stale entry): reaped anyway, or it would stand first in
      // line at every SIGCHLD and no child after it would ever be reaped.
      PM_LOG(ERROR) << "child " << info.si_pid << " ended but is not process "
                    << p->id << " of that pid; reaped as a stray";
    }
    siginfo_t reaped = {};
    if (waitid(P_PID, static_cast<id_t>(info.si_pid), &reaped,
               WEXITED | WNOHANG | __WALL) != 0) {
      // ECHILD: another thread reaped it since the peek (EndIdleShim, on
      // the spares' thread, waits for the idle shims it ends); it is gone,
      // so going on cannot spin, and stopping here would leave every zombie
      // after it for the next SIGCHLD, which may never come.
      if (errno == ECHILD) continue;
      PM_LOG(ERROR) << ErrnoError("waitid", absl::StrCat("P_PID ", info.si_pid));
      break;  // never spin
    }
  }
  std::vector<ProcessPtr> stopping;
  for (auto& [id, p] : by_id_) {
    if (p->stopping()) stopping.push_back(p);
  }
  for (auto& p : stopping) CheckStopDone(p);
  // A v1 cgroup says nothing when it empties; the last member's end is a
  // SIGCHLD here (orphans are reparented to us), so look now.
  std::vector<ProcessPtr> unannounced;
  for (auto& [raw, p] : with_cgroup_) {
    if (p->life.reaped() && p->cgroup && p->cgroup->events_fd() < 0) {
      unannounced.push_back(p);
    }
  }
  for (auto& p : unannounced) MaybeRemoveCgroup(p);
}

void Supervisor::ReapLeader(const ProcessPtr& p) {
  if (p->life.reaped()) return;
  // The leader is this supervisor's child only once its shim died (it was
  // reparented to this subreaper): then waitid takes its status.
  siginfo_t info = {};
  if (waitid(static_cast<idtype_t>(P_PIDFD), p->pidfd.get(), &info,
             WEXITED | WNOHANG | __WALL) != 0) {
    if (errno != ECHILD) {
      PM_LOG(ERROR) << "waitid on pidfd of " << p->pid << ": "
                    << ErrnoError("waitid", "P_PIDFD");
    } else if (!p->shim_control.valid()) {
      // Its shim is gone and it was reparented elsewhere (the shim was not
      // this supervisor's child): someone else reaps it, and how it ended
      // is lost with the shim.
      pollfd ended = {p->pidfd.get(), POLLIN, 0};
      if (poll(&ended, 1, 0) == 1) {
        OnLeaderEnd(p, std::nullopt, absl::Now(), p->output_end);
      }
    }
    return;
  }
  if (info.si_pid == 0) return;  // spurious wakeup: still running
  OnLeaderEnd(p, ExitStatus::FromSiginfo(info), absl::Now(), p->output_end);
}

void Supervisor::OnLeaderEnd(const ProcessPtr& p, std::optional<ExitStatus> exit,
                             absl::Time ended, uint64_t output_end) {
  if (p->life.reaped()) return;
  p->exit = exit;
  p->ended_at = ended;
  p->output_end = output_end;
  p->termination = TerminationOf(*p);
  // Reaping until FinishReap has written the end (the janitor may hold the
  // cgroup meanwhile).
  p->On(Event::kLeaderReaped);
  if (p->pidfd_watched) {
    loop_.Unwatch(p->pidfd.get());
    p->pidfd_watched = false;
  }
  p->pidfd.reset();
  by_pid_.erase(p->pid);
  --live_;
  if (!p->cgroup || p->life.abandoned()) {
    std::unique_ptr<ProcessCgroup> none;
    FinishReap(p, none, pm::v1::ResourceUsage(), /*removed=*/false);
    return;
  }
  ReapCgroupOnJanitor(p);
}

void Supervisor::ReapCgroupOnJanitor(const ProcessPtr& p) {
  // The cgroup's final usage and its removal (a dozen cgroupfs reads and an
  // rmdir per hierarchy) go to the janitor thread, so the loop is free for
  // the next start meanwhile. FinishReap takes it from there, on the loop.
  if (p->cgroup->events_fd() >= 0) loop_.Unwatch(p->cgroup->events_fd());
  auto held = std::make_shared<std::unique_ptr<ProcessCgroup>>(std::move(p->cgroup));
  // The janitor's task hands its reference on to the loop: the last one to
  // a Process must be dropped on the loop thread (the loop watches its
  // fds), never here.
  // (An init-capture: a plain copy of the const reference would be const,
  // and std::move of it would copy.)
  janitor_.Post([this, p = ProcessPtr(p), held]() mutable {
    if (options_.janitor_gate) options_.janitor_gate();
    const pm::v1::ResourceUsage usage = (*held)->ReadUsage();
    bool removed = false;
    if (!(*held)->Populated()) {
      if (absl::Status status = (*held)->Remove(); !status.ok()) {
        PM_LOG(WARNING) << "cgroup of pid " << p->pid << ": " << status;
      }
      removed = true;
    }
    loop_.Post([this, p = std::move(p), held, usage, removed] {
      FinishReap(p, *held, usage, removed);
    });
  });
}

void Supervisor::FinishReap(const ProcessPtr& p,
                            std::unique_ptr<ProcessCgroup>& cgroup,
                            const pm::v1::ResourceUsage& final_usage,
                            bool removed) {
  p->On(Event::kEndWritten);
  WriteEnd(*p, cgroup ? &final_usage : nullptr);
  // An abandoned Start never ran as far as anyone knows.
  if (!p->life.abandoned()) CountEnd(*p);
  if (p->life.abandoned()) {
    MaybeRemoveCgroup(p);
    return;
  }
  if (cgroup) TakeBackCgroup(p, cgroup, removed);
  p->members_term_deferred = p->kill_deferred = false;
  SendUpdate(p);
  CheckStopDone(p);
  MaybeForget(p);
}

}  // namespace pm::supervisor
