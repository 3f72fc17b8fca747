// The process's tree: its process group and its cgroup.
//   GroupGone / SignalGroup   the group, signalled through the pidfd while
//                             the leader lives, never after it is gone.
//   WatchCgroup / OnCgroupEvent / CgroupGone / KillCgroup
//                             the cgroup's populated events, its emptiness,
//                             its kill (deferred while the janitor holds it).
//   MaybeRemoveCgroup / RemoveCgroupIfEmpty
//                             its removal once the tree is gone.
//   TakeCgroup                a spare cgroup made ahead of need, or a new
//                             one.
#include "supervisor/supervisor.h"

#include <signal.h>
#include <sys/epoll.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <memory>
#include <utility>
#include <vector>

#include "common/log.h"
#include "supervisor/process.h"

namespace pm::supervisor {

namespace {

int PidfdSendSignal(int pidfd, int sig) {
  return static_cast<int>(syscall(SYS_pidfd_send_signal, pidfd, sig, nullptr, 0));
}

}  // namespace

bool Supervisor::GroupGone(Process& p) const {
  if (p.group_gone) return true;
  // The group id is the leader's pid (setsid); the kernel keeps that number
  // from being reused while any member of the group lives (and, as
  // subreaper, we reap every member). Once seen empty after the leader was
  // reaped, the number may be recycled by a new group: latched, so the
  // group is never signalled again.
  const bool gone = kill(-p.pid, 0) != 0 && errno == ESRCH;
  if (gone && p.life.reaped()) p.group_gone = true;
  return gone;
}

void Supervisor::SignalGroup(Process& p, int sig) {
  if (!p.life.reaped() && p.pidfd.valid()) PidfdSendSignal(p.pidfd.get(), sig);
  if (!GroupGone(p)) kill(-p.pid, sig);
}

void Supervisor::WatchCgroup(const ProcessPtr& p) {
  const int fd = p->cgroup->events_fd();
  if (fd < 0) return;  // v1: checked on SIGCHLD
  // cgroup.events signals EPOLLPRI each time "populated" flips.
  absl::Status watched = loop_.Watch(
      fd, EPOLLPRI, [this, weak = std::weak_ptr<Process>(p)](uint32_t) {
        if (auto locked = weak.lock()) OnCgroupEvent(locked);
      });
  if (!watched.ok()) {
    PM_LOG(ERROR) << "cannot watch the cgroup of pid " << p->pid << ": "
                  << watched;
  }
}

void Supervisor::OnCgroupEvent(const ProcessPtr& p) {
  // Populated() re-reads the file, which also re-arms the event.
  if (!p->cgroup || !CgroupGone(*p)) {
    if (p->cgroup && p->cgroup_killed && !p->cgroup->kill_is_atomic()) {
      p->cgroup->Kill();
    }
    return;
  }
  CheckStopDone(p);
  MaybeRemoveCgroup(p);
}

bool Supervisor::CgroupGone(const Process& p) const {
  if (p.life.reaping()) return false;  // the janitor will say
  return !p.cgroup || !p.cgroup->Populated();
}

void Supervisor::KillCgroup(const ProcessPtr& p) {
  if (p->life.reaping()) {
    p->kill_deferred = true;
    return;
  }
  if (!p->cgroup) return;
  p->cgroup->Kill();
  p->cgroup_killed = true;
}

void Supervisor::MaybeRemoveCgroup(const ProcessPtr& p) {
  // Removed once the leader is reaped and nothing of the tree is left.
  if (!p->life.reaped()) return;
  ProcessPtr keep = p;  // `p` may be the map's own reference
  if (RemoveCgroupIfEmpty(keep)) MaybeForget(keep);
}

void Supervisor::TakeBackCgroup(const ProcessPtr& p,
                                std::unique_ptr<ProcessCgroup>& cgroup,
                                bool removed) {
  if (removed) {
    // Removed before the final update goes out, so whoever learns of the
    // end finds the cgroup gone.
    cgroup.reset();
    with_cgroup_.erase(p.get());
    return;
  }
  // Descendants still live in it: back to the loop's watch, and what was
  // asked of its members meanwhile is done now.
  p->cgroup = std::move(cgroup);
  WatchCgroup(p);
  if (p->members_term_deferred) p->cgroup->SignalMembers(SIGTERM, MembersSkipped(*p));
  if (p->kill_deferred) KillCgroup(p);
}

bool Supervisor::RemoveCgroupIfEmpty(const ProcessPtr& p) {
  if (!p->cgroup || p->cgroup->Populated()) return false;
  ProcessPtr keep = p;
  if (p->cgroup->events_fd() >= 0) loop_.Unwatch(p->cgroup->events_fd());
  if (absl::Status removed = p->cgroup->Remove(); !removed.ok()) {
    PM_LOG(WARNING) << "cgroup of pid " << p->pid << ": " << removed;
  }
  p->cgroup.reset();
  with_cgroup_.erase(p.get());
  return true;
}

absl::StatusOr<std::unique_ptr<ProcessCgroup>> Supervisor::TakeCgroup(
    const pm::v1::Limits& limits) {
  if (limits.ByteSizeLong() == 0 && spare_cgroups_) {
    // The spares' thread sees the pool low and refills it.
    if (auto spare = spare_cgroups_->Take()) return *std::move(spare);
  }
  return cgroups_->Create(limits);
}

}  // namespace pm::supervisor
