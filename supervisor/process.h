// A managed process as the supervisor holds it, and what its files share:
// the supervisor's implementation is split by responsibility (see
// supervisor.cc), and each part reads and moves the same Process.
//
//   ProcessPtr p = ...;                  // on the loop thread
//   p->On(Event::kLeaderReaped);         // its phases move through the table
//   records_->Update(UpdateRequestOf(*p), ...);
//
// Internal to the supervisor library.
#ifndef PM_SUPERVISOR_PROCESS_H_
#define PM_SUPERVISOR_PROCESS_H_

#include <sys/types.h>

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "common/exit_status.h"
#include "common/fd.h"
#include "common/process_end.h"
#include "pm/internal/v1/internal.grpc.pb.h"
#include "pm/v1/process_manager.pb.h"
#include "shim/exit_file.h"
#include "supervisor/cgroup.h"
#include "supervisor/event_loop.h"
#include "supervisor/lifecycle.h"
#include "supervisor/supervisor.h"

namespace pm::supervisor {

// One managed process as the supervisor holds it, on the loop thread only.
// Its last reference must be dropped on the loop thread too (its fds are
// watched by the loop): a closure that holds a ProcessPtr and runs
// elsewhere hands it back with a posted task.
struct Process {
  std::string id;  // minted by Start
  pid_t pid = -1;
  // The leader's pidfd until its end: its shim has the exit status, so it
  // is only watched (and the leader reaped through it) once the shim is
  // gone (pidfd_watched).
  Fd pidfd;
  bool pidfd_watched = false;
  uint64_t start_ticks = 0;
  pm::v1::ProcessStatus status;  // the record as this supervisor knows it
  pm::v1::Limits limits;  // as started

  // Its cgroup until removed; null without cgroups.
  std::unique_ptr<ProcessCgroup> cgroup;
  bool cgroup_killed = false;
  // While reaping (between the leader's reaping and FinishReap) the janitor
  // thread may hold the cgroup (reads its final usage, removes it if
  // empty), so `cgroup` is null, the cgroup counts as not gone, and signals
  // meant for its members wait (the flags below) until it is back.
  bool members_term_deferred = false;
  bool kill_deferred = false;
  // How the leader ended, from its shim or its reaping (FinishReap writes
  // the status); unset when no one could tell (its shim died and it was
  // not this supervisor's child to reap).
  std::optional<ExitStatus> exit;
  absl::Time ended_at;
  // The last run's end is already in the metrics (Restarting said it; an
  // Exited that repeats it, as after a stop in the backoff, is not counted
  // again).
  bool run_end_counted = false;
  pm::v1::ProcessStatus::Termination termination =
      pm::v1::ProcessStatus::TERMINATION_UNSPECIFIED;

  // Its pm-shim: the control socket (watched on the loop) until the shim
  // said Closed or was lost.
  pid_t shim_pid = -1;
  Fd shim_control;
  // The output's end offset as the shim last told it: at the leader's end
  // (Exited, the record's output_bytes), then at the close (Closed).
  uint64_t output_end = 0;
  bool output_closed = false;

  // Its phases (the leader, the record, a stop): moved only through On,
  // which checks each move against the table in lifecycle.cc.
  Lifecycle life;
  bool On(Event event) { return life.On(event, id); }

  // The group was seen empty after the leader was reaped (GroupGone).
  bool group_gone = false;

  // With a restart policy (StartRequest.restart) its shim starts each next
  // run itself and tells it (Restarting, RunStarted): the leader's pid and
  // pidfd change with each run. Between two runs (in_backoff) no leader
  // lives and its group is gone: nothing is signalled, and a stop only
  // tells the shim (NoRestart), which then ends the process (Exited).
  bool restarts = false;
  bool in_backoff = false;

  // Registry updates (how far the registry's copy lags behind: orthogonal
  // to the phases): each state is sent at once with the next sequence
  // (the registry ignores one overtaken by a newer); `dirty` means the
  // registry was unreachable and the current state waits for a retry.
  uint64_t update_sequence = 0;
  int updates_in_flight = 0;
  bool dirty = false;
  bool retry_pending = false;
  std::vector<std::function<void()>> on_flushed;
  // Run once it is forgotten (drained: everything is with the registry and
  // on disk), with OK; at a shutdown or hand-off first, with UNAVAILABLE.
  std::vector<std::function<void(absl::Status)>> on_forgotten;

  // A stop in progress (life.stop()): its timers and its callers.
  EventLoop::TimerId grace_timer = 0;  // kGrace: sends the SIGKILL
  EventLoop::TimerId kill_timer = 0;   // kKilling: gives up, stopped=false
  std::vector<Supervisor::StopCallback> stop_waiters;
  // Which signals a stop sent the leader before it was reaped: how it
  // ended (termination).
  bool sigterm_sent = false;
  bool sigkill_sent = false;
  // A forced stop (no grace) asked for the SIGKILL.
  bool forced = false;

  bool stopping() const { return life.stopping(); }
  bool flushed() const { return updates_in_flight == 0 && !dirty; }
  // What drains on its own, in any order, once the life is over: the
  // output (its shim says Closed), the registry's updates, and the tree
  // (while its cgroup holds members, a Stop must still find it).
  bool drained() const { return output_closed && flushed() && !cgroup; }
};

// The process group whose members a SIGTERM to the cgroup's members skips
// (they got the group's): the leader's, unless the group is not signalled
// (gone, or not to be trusted after a re-adoption), then none.
inline pid_t MembersSkipped(const Process& p) { return p.group_gone ? 0 : p.pid; }

// Whether a status says the process has ended.
inline bool Ended(const pm::v1::ProcessStatus& status) {
  return IsEndState(status.state());
}

// The mapping of a process to its registry record (record_sync.cc).
//
// The record a Start of `request` by `owner` creates for the spawned `p`.
pm::internal::v1::CreateRecordRequest CreateRequestOf(
    const Process& p, const pm::v1::StartRequest& request, const Owner& owner);
// The update that brings the registry's record to `p`'s status (without
// its sequence, which the sender sets). The one place the status is copied
// into an update.
pm::internal::v1::UpdateRecordRequest UpdateRequestOf(const Process& p);
// Copies how the process ended (state, exit, termination, usage, output)
// from `from` into `to`.
void CopyEnd(const pm::v1::ProcessStatus& from, pm::v1::ProcessStatus& to);
// How run `run` ended, as its shim told it (Restarting, or a Hello between
// two runs), for ProcessStatus.last_run.
pm::v1::RunEnd RunEndOf(uint32_t run, const shim::ProcessEnd& end);

}  // namespace pm::supervisor

#endif  // PM_SUPERVISOR_PROCESS_H_
