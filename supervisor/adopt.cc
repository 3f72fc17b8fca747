// Re-adoption: a supervisor that starts finds the processes an earlier one
// left running, step by step.
//   1. BeginAdoption (at Create, on the loop): listen on
//      <runtime_dir>/shims.sock, where every live shim whose supervisor died
//      reconnects and says Hello, and ask the registry for the records that
//      have not ended (RequestLiveRecords, retried until it answers).
//   2. OnShimHello / OnLiveRecords, in either order: a Hello whose uuid,
//      pid and start time match a live record is adopted (AdoptThroughShim):
//      a Process like a started one, its cgroup taken over, its state moved
//      by Adopted. A Hello that matches no live record is refused (closed;
//      its shim carries on and waits for the next supervisor).
//   3. SettleUnclaimed, once every live record is claimed or adopt_wait
//      has passed since the listening began: a record whose shim never
//      said Hello is adopted without it if its process still runs (same
//      pid and start time, AdoptWithoutShim: its output ended with the
//      shim); otherwise its end is read from its exit file, or it is LOST
//      (settle.h).
// A process is never named by its pid alone: a pid whose start time
// differs from the record's is another process.
#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "common/proto_time.h"
#include "common/cgroup_paths.h"
#include "common/log.h"
#include "common/proc.h"
#include "common/process_end.h"
#include "common/state_layout.h"
#include "common/status.h"
#include "supervisor/async_ops.h"
#include "supervisor/metrics.h"
#include "supervisor/process.h"
#include "supervisor/settle.h"
#include "supervisor/supervisor.h"

namespace pm::supervisor {

using pm::internal::v1::StoredRecord;
using pm::v1::ProcessStatus;

namespace {

constexpr absl::Duration kRegistryRetry = absl::Seconds(1);

// The first line of /proc/`path` that starts with `key`, after the key
// (empty if none), read through an fd that is close-on-exec (a shim may be
// spawned by another thread meanwhile).
std::string ProcField(const std::string& path, absl::string_view key) {
  Fd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return "";
  std::string text(4096, '\0');
  const ssize_t n = read(fd.get(), text.data(), text.size());
  if (n <= 0) return "";
  text.resize(static_cast<size_t>(n));
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    if (absl::ConsumePrefix(&line, key)) {
      return std::string(absl::StripAsciiWhitespace(line));
    }
  }
  return "";
}

// The pid a pidfd refers to, from /proc/self/fdinfo (-1 if it cannot be
// read: not a pidfd, or the process is gone).
pid_t PidOfPidfd(int pidfd) {
  int pid = -1;
  if (!absl::SimpleAtoi(ProcField(absl::StrCat("/proc/self/fdinfo/", pidfd), "Pid:"),
                        &pid)) {
    return -1;
  }
  return pid;
}

// Whether the parent of `pid` is a pm-shim that runs.
bool ParentIsAShim(pid_t pid) {
  absl::StatusOr<ProcStat> stat = ReadProcStat(pid);
  if (!stat.ok()) return false;
  absl::StatusOr<ProcStat> parent = ReadProcStat(static_cast<pid_t>(stat->ppid));
  return parent.ok() && parent->comm == "pm-shim" && parent->state != 'Z';
}

// The pid of the peer of a unix socket (SO_PEERCRED), or -1.
pid_t PeerPid(int socket) {
  ucred cred = {};
  socklen_t size = sizeof(cred);
  if (getsockopt(socket, SOL_SOCKET, SO_PEERCRED, &cred, &size) != 0) return -1;
  return cred.pid;
}

// A pidfd of `pid` if it is still the process that started at
// `start_ticks` (opened first, then checked: the pidfd cannot come to name
// another process, the pid could).
absl::StatusOr<Fd> OpenIfSameProcess(pid_t pid, uint64_t start_ticks) {
  Fd pidfd(static_cast<int>(syscall(SYS_pidfd_open, pid, 0)));
  if (!pidfd) return ErrnoError("pidfd_open", absl::StrCat(pid));
  PM_ASSIGN_OR_RETURN(ProcStat stat, ReadProcStat(pid));
  if (stat.start_ticks != start_ticks || stat.state == 'Z') {
    return absl::NotFoundError(absl::StrCat(
        "pid ", pid, " is another process now (or a zombie): started at tick ",
        stat.start_ticks, ", the record's at ", start_ticks));
  }
  return pidfd;
}

}  // namespace

absl::Status Supervisor::BeginAdoption() {
  listening_since_ = absl::Now();
  PM_ASSIGN_OR_RETURN(
      shim_listener_,
      ShimListener::Listen(&loop_, options_.shim.runtime_dir,
                           [this](ShimListener::Adoption adoption) {
                             OnShimHello(std::move(adoption));
                           }));
  RequestLiveRecords();
  return absl::OkStatus();
}

void Supervisor::RequestLiveRecords() {
  struct Call {
    grpc::ClientContext context;
    pm::internal::v1::ListLiveRequest request;
    pm::internal::v1::ListLiveResponse response;
  };
  auto call = std::make_shared<Call>();
  // The registry may be starting too: wait for it, bounded, then retry.
  call->context.set_wait_for_ready(true);
  call->context.set_deadline(
      absl::ToChronoTime(absl::Now() + options_.backend_timeout));
  PendingAsyncOps().Begin();
  registry_->async()->ListLive(
      &call->context, &call->request, &call->response,
      [this, call](grpc::Status rpc) {
        loop_.Post([this, call, rpc] {
          if (!rpc.ok()) {
            PM_LOG(WARNING) << "cannot list the records to re-adopt from the "
                               "registry at "
                            << options_.registry_socket << ": "
                            << rpc.error_message() << "; trying again";
            loop_.RunAfter(kRegistryRetry, [this] { RequestLiveRecords(); });
            return;
          }
          std::vector<StoredRecord> records(call->response.records().begin(),
                                            call->response.records().end());
          OnLiveRecords(std::move(records));
        });
        PendingAsyncOps().End();
      });
}

void Supervisor::OnLiveRecords(std::vector<StoredRecord> records) {
  live_records_known_ = true;
  // An earlier supervisor's empty cgroups go, but not a live record's (a
  // process between two runs has an empty one its shim starts the next
  // run in).
  absl::flat_hash_set<std::string> keep;
  for (const StoredRecord& record : records) {
    const CgroupDirs dirs = CgroupDirsOf(record.cgroup());
    if (!dirs.unified.empty()) keep.insert(dirs.unified);
    for (const auto& [controller, dir] : dirs.v1) keep.insert(dir);
  }
  cgroups_->RemoveLeftovers(keep);
  // Processes this supervisor started since it began (their records may
  // be in the list) are its own already.
  absl::flat_hash_set<std::string> ours;
  for (const auto& [pid, p] : by_pid_) ours.insert(p->id);
  for (const auto& [id, p] : by_id_) ours.insert(id);
  for (StoredRecord& record : records) {
    const std::string id = record.status().id();
    if (ours.contains(id)) continue;
    auto hello = early_hellos_.find(id);
    if (hello != early_hellos_.end()) {
      ShimListener::Adoption adoption = std::move(hello->second);
      early_hellos_.erase(hello);
      AdoptThroughShim(record, std::move(adoption));
    } else {
      unclaimed_.emplace(id, std::move(record));
    }
  }
  for (auto& [id, adoption] : early_hellos_) RefuseStrayShim(std::move(adoption));
  early_hellos_.clear();
  // Stops held for ids that turn out not to be live: answered as any stop
  // of an id this supervisor does not hold.
  std::vector<std::string> not_live;
  for (const auto& [id, stops] : held_stops_) {
    if (!unclaimed_.contains(id)) not_live.push_back(id);
  }
  for (const std::string& id : not_live) ReleaseHeldStops(id);
  PM_LOG(INFO) << "re-adoption: " << records.size()
               << " records had not ended; " << unclaimed_.size()
               << " wait for their shims";
  if (unclaimed_.empty()) {
    if (!adoption_settled_.HasBeenNotified()) adoption_settled_.Notify();
    return;
  }
  // Shims reconnect the instant shims.sock appears; the wait only covers
  // a busy host.
  const absl::Duration left =
      std::max(listening_since_ + options_.adopt_wait - absl::Now(),
               absl::ZeroDuration());
  loop_.RunAfter(left, [this] { SettleUnclaimed(); });
}

void Supervisor::OnShimHello(ShimListener::Adoption adoption) {
  const std::string id = adoption.hello.uuid;
  if (!live_records_known_) {
    // Bounded like the processes themselves (each holds two fds).
    if (early_hellos_.size() >= options_.max_processes &&
        !early_hellos_.contains(id)) {
      PM_LOG(WARNING) << "more Hellos than --max_processes before the "
                         "registry's list; one for "
                      << id << " is refused (its shim tries again)";
      return;
    }
    early_hellos_.insert_or_assign(id, std::move(adoption));
    return;
  }
  auto it = unclaimed_.find(id);
  if (it == unclaimed_.end()) {
    RefuseStrayShim(std::move(adoption));
    return;
  }
  StoredRecord record = std::move(it->second);
  unclaimed_.erase(it);
  AdoptThroughShim(record, std::move(adoption));
  if (unclaimed_.empty() && !adoption_settled_.HasBeenNotified()) {
    adoption_settled_.Notify();
  }
}

void Supervisor::RefuseStrayShim(ShimListener::Adoption adoption) {
  struct Call {
    grpc::ClientContext context;
    pm::v1::GetStatusRequest request;
    ProcessStatus response;
  };
  auto call = std::make_shared<Call>();
  call->request.set_id(adoption.hello.uuid);
  call->context.set_deadline(
      absl::ToChronoTime(absl::Now() + options_.backend_timeout));
  auto held = std::make_shared<ShimListener::Adoption>(std::move(adoption));
  PendingAsyncOps().Begin();
  registry_->async()->GetStatus(
      &call->context, &call->request, &call->response,
      [this, call, held](grpc::Status rpc) {
        loop_.Post([call, held, rpc] {
          const shim::Hello& hello = held->hello;
          const pid_t shim_pid = PeerPid(held->control.get());
          absl::StatusOr<ProcStat> stat = ReadProcStat(hello.pid);
          if (rpc.error_code() == grpc::StatusCode::NOT_FOUND &&
              held->pidfd.valid() && PidOfPidfd(held->pidfd.get()) == hello.pid &&
              stat.ok() && stat->start_ticks == hello.start_ticks &&
              stat->ppid == shim_pid) {
            // Never on record: an earlier supervisor died between its spawn
            // and its record, so no caller ever got its id. Ended as that
            // supervisor would have ended it (AbandonUnrecorded).
            PM_LOG(WARNING) << "pm-shim " << shim_pid << " runs process "
                            << hello.uuid << " (pid " << hello.pid
                            << "), which was never on record; it is killed";
            // Not started again by its shim, if it has a restart policy.
            shim::SendMessage(held->control.get(), shim::NoRestart{}, {}).IgnoreError();
            syscall(SYS_pidfd_send_signal, held->pidfd.get(), SIGKILL, nullptr, 0);
            // Its group: the number is its leader's pid, just checked to be
            // this process (a pidfd of it, its start time, its parent the
            // shim), and stays reserved while the shim has not reaped it.
            if (kill(-hello.pid, SIGKILL) != 0 && errno != ESRCH) {
              PM_LOG(WARNING) << ErrnoError("kill", absl::StrCat(-hello.pid));
            }
            return;
          }
          PM_LOG(WARNING) << "pm-shim " << shim_pid << " said Hello for process "
                          << hello.uuid << ", which is not waiting for its shim ("
                          << (rpc.ok() ? ProcessStatus::State_Name(call->response.state())
                                       : rpc.error_message())
                          << "); it is refused and waits for the next supervisor";
        });
        PendingAsyncOps().End();
      });
}

Supervisor::ProcessPtr Supervisor::AdoptedProcess(const StoredRecord& record) {
  auto p = std::make_shared<Process>();
  const ProcessStatus& status = record.status();
  p->id = status.id();
  p->pid = status.pid();
  p->start_ticks = record.start_ticks();
  p->status = status;
  p->limits = status.limits();
  // The registry applies only updates newer than the last it took.
  p->update_sequence = record.sequence();
  if (cgroups_->enabled() && record.has_cgroup()) {
    absl::StatusOr<std::unique_ptr<ProcessCgroup>> cgroup =
        cgroups_->Adopt(CgroupDirsOf(record.cgroup()));
    if (cgroup.ok()) {
      p->cgroup = *std::move(cgroup);
    } else if (cgroup.status().code() != absl::StatusCode::kNotFound) {
      PM_LOG(WARNING) << "the cgroup of process " << p->id
                      << " is not taken over: " << cgroup.status();
    }
  }
  return p;
}

void Supervisor::AdoptThroughShim(const StoredRecord& record,
                                  ShimListener::Adoption adoption) {
  const shim::Hello& hello = adoption.hello;
  const ProcessStatus& status = record.status();
  const pid_t shim_pid = PeerPid(adoption.control.get());
  // A Hello names its process by pid and start time; while it runs, the
  // pidfd it sent must be of that pid, the pid must still have that start
  // time, and its parent must be the shim that speaks (anyone of this uid
  // can connect to shims.sock).
  // With a restart policy its shim starts runs on its own: while no
  // supervisor listened, a later run than the record's may have started
  // (its pid is then the Hello's), or it may be between two runs.
  const bool between_runs = hello.next_start.has_value();
  const bool same_run = !hello.run || *hello.run == status.run();
  auto names_it = [&]() -> bool {
    if (between_runs) return status.run() > 0;
    if (same_run &&
        (hello.pid != status.pid() || hello.start_ticks != record.start_ticks())) {
      return false;
    }
    if (hello.end) return true;
    if (!adoption.pidfd.valid() || PidOfPidfd(adoption.pidfd.get()) != hello.pid) {
      return false;
    }
    absl::StatusOr<ProcStat> stat = ReadProcStat(hello.pid);
    return stat.ok() && stat->start_ticks == hello.start_ticks &&
           stat->ppid == shim_pid;
  };
  if (!names_it()) {
    PM_LOG(ERROR) << "a pm-shim (pid " << shim_pid << ") said Hello for process "
                  << status.id() << " as pid " << hello.pid << " started at tick "
                  << hello.start_ticks << ", but the record says pid "
                  << status.pid() << " at tick " << record.start_ticks()
                  << " (or the pid is not its child); it is refused";
    unclaimed_.emplace(status.id(), record);
    return;
  }
  ProcessPtr p = AdoptedProcess(record);
  p->shim_pid = shim_pid;
  p->shim_control = std::move(adoption.control);
  p->pidfd = std::move(adoption.pidfd);
  if (hello.run) {
    p->restarts = true;
    p->status.set_run(*hello.run);
    p->status.set_restarts(*hello.run - 1);
    if (!same_run && !between_runs) {
      p->pid = hello.pid;
      p->start_ticks = hello.start_ticks;
      p->status.set_pid(hello.pid);
      p->status.clear_next_start();
      // The run before this one ended while no supervisor listened: its end
      // is the shim's word (or, from a shim that does not say it, unknown:
      // an older last_run would be another run's).
      if (hello.previous_end && *hello.run >= 2) {
        *p->status.mutable_last_run() = RunEndOf(*hello.run - 1, *hello.previous_end);
      } else {
        p->status.clear_last_run();
      }
      if (!hello.end && p->status.state() == ProcessStatus::STATE_BACKOFF) {
        p->status.set_state(ProcessStatus::STATE_RUNNING);
      }
    }
  }
  if (between_runs) {
    // As Restarting would have said it.
    p->in_backoff = true;
    p->group_gone = true;
    p->pid = 0;
    *p->status.mutable_last_run() = RunEndOf(*hello.run, *hello.end);
    *p->status.mutable_next_start() = ToProtoTimestamp(*hello.next_start);
    p->status.set_pid(0);
    p->output_end = hello.end->output_end;
    if (p->status.state() != ProcessStatus::STATE_STOPPING) {
      p->status.set_state(ProcessStatus::STATE_BACKOFF);
    }
  } else if (hello.end) {
    // Its leader was reaped while no supervisor listened: its process
    // group may be empty and its number taken by another group since, so
    // the group is never signalled (the cgroup still reaches what is left).
    p->group_gone = true;
    // As Exited would have said it.
    if (hello.run) p->status.set_gave_up(hello.gave_up);
  }
  if (!AdoptOnLoop(p)) return;
  PM_LOG(INFO) << "re-adopted process " << p->id << " (pid " << p->pid
               << ") through its pm-shim " << shim_pid
               << (between_runs  ? ", between two runs"
                   : hello.end   ? ", which reaped it meanwhile"
                                 : "");
  // What changed while away (a run, or the wait for the next), on record.
  if (hello.run && (!same_run || between_runs)) SendUpdate(p);
  if (hello.end && !between_runs) {
    // Its end, as its shim saw it, before anything else (a stop to carry
    // on must find it ended).
    OnLeaderEnd(p, hello.end->status, hello.end->ended, hello.end->output_end);
  }
  ResumeAdopted(p);
}

bool Supervisor::AdoptOnLoop(const ProcessPtr& p) {
  p->On(Event::kAdopted);
  by_id_[p->id] = p;
  if (p->shim_control.valid()) {
    if (absl::Status watched = WatchProcess(p); !watched.ok()) {
      PM_LOG(ERROR) << "cannot watch re-adopted process " << p->id << ": "
                    << watched;
      return false;
    }
  } else {
    if (p->cgroup) {
      with_cgroup_[p.get()] = p;
      WatchCgroup(p);
    }
    by_pid_[p->pid] = p;
    ++live_;
  }
  return true;
}

void Supervisor::ResumeAdopted(const ProcessPtr& p) {
  // A stop was in progress when the earlier supervisor died: it is carried
  // on (its callers are gone, the process must still go).
  if (p->status.state() == ProcessStatus::STATE_STOPPING) {
    RequestStop(p, options_.default_grace);
  }
  ReleaseHeldStops(p->id);
}

bool Supervisor::HoldStopUntilAdopted(const std::string& id,
                                      absl::Duration grace, StopCallback& done) {
  if (live_records_known_ && !unclaimed_.contains(id)) return false;
  held_stops_[id].push_back(HeldStop{grace, std::move(done)});
  return true;
}

void Supervisor::ReleaseHeldStops(const std::string& id) {
  auto it = held_stops_.find(id);
  if (it == held_stops_.end()) return;
  std::vector<HeldStop> stops = std::move(it->second);
  held_stops_.erase(it);
  auto held = by_id_.find(id);
  for (HeldStop& stop : stops) {
    if (held != by_id_.end()) {
      ProcessPtr p = held->second;
      p->stop_waiters.push_back(std::move(stop.done));
      RequestStop(p, stop.grace);
    } else {
      StopUnknown(id, std::move(stop.done));
    }
  }
}

void Supervisor::FailHeldStops() {
  auto held = std::move(held_stops_);
  held_stops_.clear();
  for (auto& [id, stops] : held) {
    for (HeldStop& stop : stops) {
      stop.done(absl::UnavailableError("supervisor is shutting down"));
    }
  }
}

void Supervisor::SettleUnclaimed() {
  std::vector<StoredRecord> left;
  for (auto& [id, record] : unclaimed_) left.push_back(std::move(record));
  unclaimed_.clear();
  bool waiting = false;
  for (StoredRecord& record : left) {
    const ProcessStatus& status = record.status();
    if (by_id_.contains(status.id())) continue;  // adopted meanwhile
    absl::StatusOr<Fd> alive = OpenIfSameProcess(status.pid(), record.start_ticks());
    if (alive.ok() && ParentIsAShim(status.pid())) {
      // Its shim lives but has not said Hello (a busy or stopped shim):
      // wait for it, rather than take the process from it and close its
      // output under it.
      PM_LOG(WARNING) << "process " << status.id() << " (pid " << status.pid()
                      << "): its pm-shim is alive but has not said Hello; "
                         "still waiting for it";
      unclaimed_.emplace(status.id(), std::move(record));
      waiting = true;
      continue;
    }
    if (alive.ok()) {
      // Its shim is gone, the process is not: supervised without output
      // (its pipes went with the shim), stopped and reaped through its
      // pidfd; its end is unknown unless it comes back to this subreaper.
      ProcessPtr p = AdoptedProcess(record);
      p->pidfd = *std::move(alive);
      if (!AdoptOnLoop(p)) continue;
      PM_LOG(WARNING) << "re-adopted process " << p->id << " (pid " << p->pid
                      << ") without its pm-shim, which is gone";
      OnShimLost(p);
      ResumeAdopted(p);
      continue;
    }
    // Ended (its shim's exit file says how) or lost.
    pm::internal::v1::UpdateRecordRequest update =
        SettleUnadopted(status, options_.shim.state_dir);
    PM_LOG(INFO) << "process " << status.id() << " ended while no supervisor "
                 << "ran: " << ProcessStatus::State_Name(update.state()) << ", "
                 << update.end().end_reason();
    const char* reason = "lost";
    if (update.state() == ProcessStatus::STATE_EXITED) {
      reason = update.end().exit_code() == 0 ? "exit_zero" : "exit_nonzero";
    } else if (update.state() == ProcessStatus::STATE_SIGNALED) {
      reason = "signal";
    }
    Metrics().exits.With({reason}).Increment();
    // Its shim may have died before closing the output: closed here, off
    // the loop (an fsync), so readers see its end.
    janitor_.Post([dir = ProcessOutputDir(options_.shim.state_dir, status.id())] {
      CloseOutputOfDeadShim(dir);
    });
    SendSettledEnd(std::move(update));
  }
  if (waiting) {
    loop_.RunAfter(options_.adopt_wait, [this] { SettleUnclaimed(); });
  } else if (!adoption_settled_.HasBeenNotified()) {
    adoption_settled_.Notify();
  }
}

}  // namespace pm::supervisor
