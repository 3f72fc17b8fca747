// The link to each process's pm-shim, step by step.
//   SpawnThroughShim  an idle shim (a spare, or one launched now) gets the
//                     Spawn and answers Spawned (with the leader's pidfd) or
//                     SpawnFailed; it is bounded by backend_timeout.
//   OnShimReadable    the shim's messages: Exited (the leader's end, with
//                     its status: OnLeaderEnd), then Closed (the output is
//                     complete on disk: OnOutputClosed).
//   OnShimLost        the control socket's EOF before Closed: the shim
//                     died. The leader, reparented to this subreaper, is
//                     reaped through its pidfd (ReapLeader), and the output
//                     is closed on disk on the janitor thread, so readers
//                     see its end.
#include <algorithm>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <memory>
#include <optional>
#include <utility>
#include <variant>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/command_line.h"
#include "common/log.h"
#include "common/proto_time.h"
#include "common/state_layout.h"
#include "common/status.h"
#include "shim/protocol.h"
#include "supervisor/idle_shim.h"
#include "supervisor/metrics.h"
#include "supervisor/process.h"
#include "supervisor/settle.h"
#include "supervisor/shim_spawn.h"
#include "supervisor/supervisor.h"

namespace pm::supervisor {

using pm::v1::ProcessStatus;

namespace {

// Messages taken per readiness event of one control socket.
constexpr int kMessagesPerEvent = 8;

}  // namespace

absl::StatusOr<ShimStarted> Supervisor::SpawnThroughShim(
    const pm::v1::StartRequest& request, const SpawnOptions& spawn_options) {
  // An fd kept free for the process's pidfd, given up just before it comes:
  // out of fds, the Start fails here, before anything runs, and not after
  // the spawn with a pidfd the kernel had to drop.
  Fd pidfd_slot(open("/dev/null", O_RDONLY | O_CLOEXEC));
  if (!pidfd_slot) {
    return ErrnoError("open", "/dev/null, an fd kept free for the pidfd");
  }
  // A spare shim, ready; else one launched now (the spares' thread is
  // behind, or cannot make them). One that died while idle refuses the
  // message (EPIPE): the next one gets it.
  std::optional<shim::LaunchedShim> shim;
  ShimSpawnMessage message;
  absl::Status sent;
  for (int attempt = 0; attempt < 2; ++attempt) {
    shim = spare_shims_->Take();
    if (!shim) {
      PM_ASSIGN_OR_RETURN(shim::LaunchedShim launched, idle_shims_->Make());
      shim = std::move(launched);
    }
    // Named by the shim's id: the directory it made while idle.
    PM_ASSIGN_OR_RETURN(message, ShimSpawnOf(request, shim->process_id, spawn_options));
    sent = shim::SendMessage(shim->control.get(), message.spawn, message.fds);
    if (sent.ok()) break;
    PM_LOG(WARNING) << "pm-shim " << shim->pid << " refused a Spawn: " << sent;
  }
  if (!sent.ok()) {
    return absl::UnavailableError(
        absl::StrCat("cannot hand the process to a pm-shim: ", sent.message()));
  }
  pidfd_slot.reset();
  // It answers once the process has exec'd (or failed to), as fast as a
  // spawn of our own would have.
  pollfd answer = {shim->control.get(), POLLIN, 0};
  int ready;
  do {
    ready = poll(&answer, 1,
                 static_cast<int>(absl::ToInt64Milliseconds(options_.backend_timeout)));
  } while (ready < 0 && errno == EINTR);
  if (ready <= 0) {
    const absl::Status why =
        ready < 0 ? ErrnoError("poll", "the control socket of pm-shim " +
                                           absl::StrCat(shim->pid))
                  : absl::DeadlineExceededError(absl::StrCat(
                        "pm-shim ", shim->pid, " did not answer the Spawn of ",
                        request.executable(), " within ",
                        absl::FormatDuration(options_.backend_timeout)));
    // Killed with whatever it started (the caller kills the cgroup).
    syscall(SYS_pidfd_send_signal, shim->pidfd.get(), SIGKILL, nullptr, 0);
    return why;
  }
  absl::StatusOr<shim::Received> got = shim::ReceiveMessage(shim->control.get());
  if (!got.ok()) {
    // Killed with whatever it started (the caller kills the cgroup).
    syscall(SYS_pidfd_send_signal, shim->pidfd.get(), SIGKILL, nullptr, 0);
    if (got.status().code() == absl::StatusCode::kResourceExhausted) {
      // Another thread took the fd kept free: the pidfd was dropped.
      return ErrnoError("recvmsg", absl::StrCat("the pidfd from pm-shim ", shim->pid),
                        EMFILE);
    }
    return absl::UnavailableError(absl::StrCat(
        "pm-shim ", shim->pid, " did not answer the Spawn: ", got.status().message()));
  }
  if (auto* failed = std::get_if<shim::SpawnFailed>(&got->message)) {
    // It exits after saying so; the SIGCHLD handler reaps it.
    return absl::Status(failed->code, failed->message);
  }
  auto* spawned = std::get_if<shim::Spawned>(&got->message);
  if (spawned == nullptr || got->fds.size() != 1) {
    syscall(SYS_pidfd_send_signal, shim->pidfd.get(), SIGKILL, nullptr, 0);
    return absl::InternalError(absl::StrCat(
        "pm-shim ", shim->pid, " answered a Spawn with ",
        shim::MessageName(got->message), " and ", got->fds.size(), " fds"));
  }
  ShimStarted started;
  started.id = shim->process_id;
  started.pid = spawned->pid;
  started.pidfd = std::move(got->fds[0]);
  started.start_ticks = spawned->start_ticks;
  started.executable = std::move(spawned->executable);
  if (message.spawn.command_memfd.has_value()) {
    // Spilled into the memfd: the command as run, for the status's echo.
    PM_ASSIGN_OR_RETURN(started.command, CommandLineOf(request));
  } else {
    started.command = std::move(message.spawn.command);
  }
  started.shim_pid = shim->pid;
  started.shim_pidfd = std::move(shim->pidfd);
  started.control = std::move(shim->control);
  // From now on the loop reads it as messages come.
  const int flags = fcntl(started.control.get(), F_GETFL);
  if (flags < 0 ||
      fcntl(started.control.get(), F_SETFL, flags | O_NONBLOCK) != 0) {
    PM_LOG(WARNING) << ErrnoError("fcntl", "O_NONBLOCK on a shim's control socket");
  }
  return started;
}

void Supervisor::OnShimReadable(const ProcessPtr& p) {
  for (int i = 0; i < kMessagesPerEvent && p->shim_control.valid(); ++i) {
    absl::StatusOr<shim::Received> got = shim::ReceiveMessage(p->shim_control.get());
    if (!got.ok()) {
      if (got.status().code() == absl::StatusCode::kUnavailable) return;  // EAGAIN
      if (got.status().code() != absl::StatusCode::kNotFound) {
        PM_LOG(ERROR) << "pm-shim " << p->shim_pid << " of process " << p->id
                      << ": " << got.status() << "; it is let go";
      }
      OnShimLost(p);
      return;
    }
    if (auto* exited = std::get_if<shim::Exited>(&got->message)) {
      if (p->restarts) {
        p->in_backoff = false;
        if (exited->run) p->status.set_run(*exited->run);
        p->status.set_gave_up(exited->gave_up);
        p->status.clear_next_start();
      }
      OnLeaderEnd(p, exited->end.status, exited->end.ended,
                  exited->end.output_end);
    } else if (auto* restarting = std::get_if<shim::Restarting>(&got->message)) {
      OnRunRestarting(p, *restarting);
    } else if (auto* started = std::get_if<shim::RunStarted>(&got->message)) {
      if (got->fds.size() == 1) OnRunStarted(p, *started, std::move(got->fds[0]));
    } else if (auto* closed = std::get_if<shim::Closed>(&got->message)) {
      if (!p->life.reaped()) {
        // A shim closes only after the leader's end: this one is broken.
        PM_LOG(ERROR) << "pm-shim " << p->shim_pid << " of process " << p->id
                      << " said Closed before Exited; it is let go";
        OnShimLost(p);
        return;
      }
      UnwatchShim(p);
      CountOutputDropped(closed->capped, closed->lost);
      OnOutputClosed(p, closed->output_end);
      return;
    } else {
      PM_LOG(ERROR) << "pm-shim " << p->shim_pid << " of process " << p->id
                    << " sent an unexpected " << shim::MessageName(got->message);
    }
  }
}

void Supervisor::OnRunRestarting(const ProcessPtr& p, const shim::Restarting& r) {
  if (!p->restarts || p->life.reaped()) {
    PM_LOG(ERROR) << "pm-shim " << p->shim_pid << " of process " << p->id
                  << " said Restarting, which it was not asked to";
    return;
  }
  // The run's leader is reaped (by its shim) and its group killed: its
  // numbers may be reused from now on, so nothing of it is signalled.
  auto held = by_pid_.find(p->pid);
  if (held != by_pid_.end() && held->second == p) by_pid_.erase(held);
  p->pidfd.reset();
  p->group_gone = true;
  p->in_backoff = true;
  p->output_end = r.end.output_end;
  Metrics().exits.With({ExitReason(r.end.status, /*oom_killed=*/false)}).Increment();
  p->run_end_counted = true;
  ProcessStatus& s = p->status;
  *s.mutable_last_run() = RunEndOf(r.run, r.end);
  // A run the shim could not start is a run that ended, with no RunStarted.
  s.set_run(r.run);
  s.set_restarts(r.run - 1);
  *s.mutable_next_start() = ToProtoTimestamp(r.next_start);
  s.set_pid(0);
  // A stop under way keeps STOPPING: its NoRestart ends the process next.
  if (!p->stopping()) s.set_state(ProcessStatus::STATE_BACKOFF);
  SendUpdate(p);
}

void Supervisor::OnRunStarted(const ProcessPtr& p, const shim::RunStarted& r,
                              Fd pidfd) {
  if (!p->restarts || p->life.reaped()) {
    PM_LOG(ERROR) << "pm-shim " << p->shim_pid << " of process " << p->id
                  << " said RunStarted, which it was not asked to";
    return;
  }
  Metrics().restarts.Increment();
  p->run_end_counted = false;
  p->in_backoff = false;
  p->pid = r.pid;
  p->start_ticks = r.start_ticks;
  p->pidfd = std::move(pidfd);
  p->group_gone = false;
  by_pid_[p->pid] = p;
  ProcessStatus& s = p->status;
  s.set_pid(r.pid);
  s.set_run(r.run);
  s.set_restarts(r.run - 1);
  *s.mutable_started_at() = ToProtoTimestamp(absl::Now());
  s.clear_next_start();
  if (p->stopping()) {
    // Started before the shim heard the stop's NoRestart: it is the last,
    // and it gets what the stop has sent so far.
    if (p->life.stop() == StopPhase::kKilling || p->forced) {
      SignalGroup(*p, SIGKILL);
      KillCgroup(p);
    } else {
      SignalTerm(p);
    }
  } else {
    s.set_state(ProcessStatus::STATE_RUNNING);
  }
  SendUpdate(p);
}

void Supervisor::WatchShimExit(pid_t shim_pid, Fd shim_pidfd) {
  const int fd = shim_pidfd.get();
  absl::Status watched = loop_.Watch(fd, EPOLLIN, [this, fd](uint32_t) {
    auto it = shim_pidfds_.find(fd);
    if (it == shim_pidfds_.end()) return;
    siginfo_t info = {};
    if (waitid(static_cast<idtype_t>(P_PIDFD), fd, &info, WEXITED | WNOHANG | __WALL) == 0 &&
        info.si_pid == 0) {
      return;  // not exited yet
    }
    // Reaped now, or already by OnSigchld (ECHILD).
    loop_.Unwatch(fd);
    shim_pidfds_.erase(it);
  });
  if (!watched.ok()) {
    // OnSigchld still reaps it.
    PM_LOG(WARNING) << "cannot watch pm-shim " << shim_pid << ": " << watched;
    return;
  }
  shim_pidfds_.emplace(fd, std::move(shim_pidfd));
}

void Supervisor::UnwatchShimExits() {
  for (auto& [fd, pidfd] : shim_pidfds_) loop_.Unwatch(fd);
  shim_pidfds_.clear();
}

void Supervisor::UnwatchShim(const ProcessPtr& p) {
  if (!p->shim_control.valid()) return;
  loop_.Unwatch(p->shim_control.get());
  p->shim_control.reset();
}

void Supervisor::OnShimLost(const ProcessPtr& p) {
  UnwatchShim(p);
  if (p->in_backoff && !p->life.reaped()) {
    // Between two runs with no shim to start the next: it ends as its
    // last run ended.
    PM_LOG(WARNING) << "pm-shim " << p->shim_pid << " of process " << p->id
                    << " is gone between two runs; the process ends as run "
                    << p->status.last_run().run() << " ended";
    p->in_backoff = false;
    p->status.clear_next_start();
    const pm::v1::RunEnd& last = p->status.last_run();
    OnLeaderEnd(p,
                last.signal() != 0 ? ExitStatus::Signaled(last.signal(), last.core_dumped())
                                   : ExitStatus::Exited(last.exit_code()),
                FromProtoTimestamp(last.ended_at()), p->output_end);
  }
  PM_LOG(WARNING) << "pm-shim " << p->shim_pid << " of process " << p->id
                  << " (pid " << p->pid << ") is gone before its output closed";
  if (!p->life.reaped() && p->pidfd.valid()) {
    // The leader, if it still runs, lost its output pipes with the shim;
    // its end comes through its pidfd from now on.
    std::weak_ptr<Process> weak = p;
    absl::Status watched =
        loop_.Watch(p->pidfd.get(), EPOLLIN, [this, weak](uint32_t) {
          if (auto locked = weak.lock()) ReapLeader(locked);
        });
    if (watched.ok()) {
      p->pidfd_watched = true;
    } else {
      PM_LOG(ERROR) << "cannot watch the pidfd of " << p->pid << ": " << watched;
    }
    ReapLeader(p);  // it may have ended already
  }
  // The end record the shim did not write, written off the loop (an fsync).
  janitor_.Post([this, p = ProcessPtr(p),
                 dir = ProcessOutputDir(options_.shim.state_dir, p->id)]() mutable {
    const uint64_t end = CloseOutputOfDeadShim(dir);
    loop_.Post([this, p = std::move(p), end] { OnOutputClosed(p, end); });
  });
}

void Supervisor::OnOutputClosed(const ProcessPtr& p, uint64_t output_end) {
  if (p->output_closed) return;
  p->output_closed = true;
  if (!p->life.reaped()) p->output_end = output_end;
  // What the tree wrote until the end, also after the leader's.
  Metrics().output_bytes.Increment(std::max(output_end, p->output_end));
  // The shim says Closed once no child of the tree is left (it is their
  // subreaper): the cgroup is looked at again, in case its "empty" event
  // was lost (a cgroup removed by another supervisor's sweep of leftovers
  // never sends it).
  if (p->life.end_written()) {
    CheckStopDone(p);
    MaybeRemoveCgroup(p);
  }
  MaybeForget(p);
}

}  // namespace pm::supervisor
