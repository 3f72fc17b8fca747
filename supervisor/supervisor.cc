// The supervisor's frame: its threads and connections (Create), the
// registry of the processes it holds (MaybeForget) and its end (Shutdown).
// The rest is split by responsibility: start.cc (the start path), stop.cc
// (stop and its escalation), reap.cc (a leader's end), tree.cc (the group
// and the cgroup), shim_link.cc (each process's pm-shim), record_sync.cc
// (the registry's records), lifecycle.cc (the phases and their table).
#include "supervisor/supervisor.h"

#include <pthread.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>

#include <memory>
#include <utility>
#include <vector>

#include "absl/strings/str_split.h"
#include "absl/synchronization/notification.h"
#include "common/channel.h"
#include "common/log.h"
#include "common/status.h"
#include "supervisor/async_ops.h"
#include "supervisor/idle_shim.h"
#include "supervisor/process.h"

namespace pm::supervisor {

namespace {
// How long a Start in flight may hold back the remaking of the spare it
// took (Spares::Hold): longer than a Start, short enough that a stream of
// overlapping Starts still gets its spares remade.
constexpr absl::Duration kMaxSpareHold = absl::Milliseconds(20);
}  // namespace

namespace {
// Runs `fn` on the loop and waits for it. False if the loop has stopped and
// will run nothing more (shutdown): the caller answers UNAVAILABLE. Every
// task the loop accepted runs, so there is no timeout to race with.
bool RunAndWait(EventLoop& loop, std::function<void()> fn) {
  auto done = std::make_shared<absl::Notification>();
  if (!loop.Post([fn = std::move(fn), done] {
        fn();
        done->Notify();
      })) {
    return false;
  }
  done->WaitForNotification();
  return true;
}
}  // namespace

Supervisor::Supervisor(SupervisorOptions options)
    : options_(std::move(options)) {}

absl::StatusOr<std::unique_ptr<Supervisor>> Supervisor::Create(
    SupervisorOptions options) {
  std::unique_ptr<Supervisor> supervisor(new Supervisor(std::move(options)));
  PM_RETURN_IF_ERROR(supervisor->Init());
  return supervisor;
}

absl::Status Supervisor::Init() {
  if (options_.shim.binary.empty() || options_.shim.state_dir.empty() ||
      options_.shim.runtime_dir.empty()) {
    return absl::InvalidArgumentError(
        "the supervisor needs a pm-shim binary, a state dir and a runtime dir "
        "(--shim_binary, --state_dir, --runtime_dir)");
  }
  // Orphaned descendants are reparented to us, not to init, so we reap
  // them: no zombie is left behind by a double-forking child.
  if (prctl(PR_SET_CHILD_SUBREAPER, 1) != 0) {
    return ErrnoError("prctl", "PR_SET_CHILD_SUBREAPER");
  }
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGCHLD);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  sigchld_fd_.reset(signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK));
  if (!sigchld_fd_) return ErrnoError("signalfd", "SIGCHLD");

  // Leftovers are swept once the live records are known (OnLiveRecords):
  // the cgroup of a process between two runs is empty, and must stay.
  cgroups_ = Cgroups::Init(options_.cgroup, /*remove_leftovers=*/false);
  for (absl::string_view line : absl::StrSplit(cgroups_->summary(), '\n')) {
    PM_LOG(INFO) << line;
  }

  registry_channel_ = UnixChannel(options_.registry_socket);
  registry_ = pm::internal::v1::Registry::NewStub(registry_channel_);
  records_ = std::make_unique<RecordStream>(&loop_, registry_.get(),
                                            options_.backend_timeout);
  registry_health_ = grpc::health::v1::Health::NewStub(registry_channel_);

  PM_RETURN_IF_ERROR(loop_.Init());
  PM_RETURN_IF_ERROR(loop_.Watch(sigchld_fd_.get(), EPOLLIN,
                                 [this](uint32_t) { OnSigchld(); }));
  // Named "pm-...", so `top -H` and the bench tell pm's threads from
  // gRPC's.
  loop_thread_ = std::thread([this] {
    pthread_setname_np(pthread_self(), "pm-loop");
    loop_.Run();
  });
  PM_RETURN_IF_ERROR(janitor_.Init());
  janitor_thread_ = std::thread([this] {
    pthread_setname_np(pthread_self(), "pm-janitor");
    janitor_.Run();
  });
  if (cgroups_->enabled()) {
    spare_cgroups_ = std::make_unique<Spares<std::unique_ptr<ProcessCgroup>>>(
        Spares<std::unique_ptr<ProcessCgroup>>::Options{
            .thread_name = "pm-cgroups",
            .what = "cgroup",
            .make = [this] { return cgroups_->Create(pm::v1::Limits()); },
            .discard =
                [](std::unique_ptr<ProcessCgroup> spare) {
                  if (absl::Status removed = spare->Remove(); !removed.ok()) {
                    PM_LOG(WARNING) << "spare cgroup: " << removed;
                  }
                },
            .max_hold = kMaxSpareHold});
    spare_cgroups_->Start();
  }
  idle_shims_ = std::make_unique<IdleShimMaker>(options_.shim);
  spare_shims_ = std::make_unique<Spares<shim::LaunchedShim>>(
      Spares<shim::LaunchedShim>::Options{
          .thread_name = "pm-shims",
          .what = "shim",
          .count = options_.spare_shims,
          .make = [this] { return idle_shims_->Make(); },
          .discard =
              [](shim::LaunchedShim idle) {
                if (absl::Status ended = EndIdleShim(std::move(idle));
                    !ended.ok()) {
                  PM_LOG(WARNING) << "spare shim: " << ended;
                }
              },
          .max_hold = kMaxSpareHold});
  spare_shims_->Start();
  // Before the first Start: the processes an earlier supervisor left.
  absl::Status adopting = absl::UnavailableError("the loop stopped");
  RunAndWait(loop_, [&] { adopting = BeginAdoption(); });
  return adopting;
}

Supervisor::~Supervisor() {
  Shutdown();
  // Late gRPC callbacks post to the loop; let them finish before it goes.
  if (!PendingAsyncOps().WaitForNone(absl::Seconds(5))) {
    PM_LOG(WARNING) << "gRPC operations still pending after 5 s at exit";
  }
}


void Supervisor::MaybeForget(const ProcessPtr& p) {
  if (!p->life.may_forget() || !p->drained()) return;
  // Everything about it is with the registry and on disk now.
  by_id_.erase(p->id);
  p->On(Event::kForgotten);
  auto hooks = std::move(p->on_forgotten);
  p->on_forgotten.clear();
  for (auto& hook : hooks) hook(absl::OkStatus());
  NotifyIfDrained();
}

void Supervisor::NotifyIfDrained() {
  if (drained_ && by_id_.empty() && !drained_->HasBeenNotified()) {
    drained_->Notify();
  }
}

void Supervisor::AnswerEveryStop() {
  std::vector<ProcessPtr> held;
  for (auto& [id, p] : by_id_) held.push_back(p);
  for (auto& p : held) {
    // A tree that outlived SIGKILL and the kill timeout: stopped=false.
    if (p->stopping()) FinishStop(p, /*stopped=*/false);
    // Answers that waited for the registry to take the final state.
    auto waiting = std::move(p->on_flushed);
    p->on_flushed.clear();
    for (auto& answer : waiting) answer();
    auto hooks = std::move(p->on_forgotten);
    p->on_forgotten.clear();
    for (auto& hook : hooks) {
      hook(absl::UnavailableError(absl::StrCat(
          "the supervisor is shutting down before process ", p->id,
          " was drained; nothing was removed")));
    }
  }
}

void Supervisor::StopEveryProcess(
    absl::Duration grace, std::shared_ptr<absl::Notification> all_stopped) {
  shut_down_ = true;
  std::vector<ProcessPtr> live;
  for (auto& [id, p] : by_id_) {
    if (!p->life.reaped() || !GroupGone(*p) || !CgroupGone(*p)) {
      live.push_back(p);
    }
  }
  for (auto& [pid, p] : by_pid_) {
    if (!p->life.recorded()) AbandonUnrecorded(p);
  }
  auto remaining = std::make_shared<size_t>(live.size());
  if (live.empty()) all_stopped->Notify();
  for (auto& p : live) {
    p->stop_waiters.push_back(
        [remaining, all_stopped](absl::StatusOr<pm::v1::StopResponse>) {
          if (--*remaining == 0) all_stopped->Notify();
        });
    // A stop already in its grace period is brought forward to this one's:
    // the shutdown never waits past its own bound, and no tree is left
    // running outside pm.
    RequestStop(p, grace);
  }
}

void Supervisor::LetGoOfEverything() {
  AnswerEveryStop();
  FailHeldStops();
  UnwatchShimExits();
  // shims.sock goes: a shim left running (see Shutdown) waits for it to
  // appear again.
  shim_listener_.reset();
  // Empty cgroups go; one still populated (a tree that would not die) is
  // left for the operator to see.
  std::vector<ProcessPtr> left;
  for (auto& [raw, p] : with_cgroup_) left.push_back(p);
  for (auto& p : left) {
    RemoveCgroupIfEmpty(p);
    if (p->cgroup) {
      PM_LOG(WARNING) << "cgroup " << p->cgroup->path()
                      << " still has processes; left in place";
    }
  }
}

void Supervisor::LetGoForHandOff() {
  shut_down_ = true;
  // shims.sock goes first: a shim that sees its control socket close must
  // not reconnect to this supervisor's listener on its way out.
  shim_listener_.reset();
  FailHeldStops();
  UnwatchShimExits();
  std::vector<ProcessPtr> held;
  for (auto& [id, p] : by_id_) held.push_back(p);
  for (auto& [pid, p] : by_pid_) held.push_back(p);
  for (auto& p : held) {
    // A stop's callers hear that this supervisor is gone; the next one
    // carries the stop on (the record says STOPPING).
    auto waiters = std::move(p->stop_waiters);
    p->stop_waiters.clear();
    for (auto& waiter : waiters) {
      waiter(absl::UnavailableError(
          "the supervisor is being upgraded; the next one carries the stop on"));
    }
    auto flushed = std::move(p->on_flushed);
    p->on_flushed.clear();
    for (auto& fn : flushed) fn();
    UnwatchShim(p);
    if (p->pidfd_watched) {
      loop_.Unwatch(p->pidfd.get());
      p->pidfd_watched = false;
    }
    loop_.Cancel(p->grace_timer);
    loop_.Cancel(p->kill_timer);
  }
  for (auto& [raw, p] : with_cgroup_) {
    if (p->cgroup && p->cgroup->events_fd() >= 0) {
      loop_.Unwatch(p->cgroup->events_fd());
    }
  }
  // The cgroups stay (the next supervisor adopts the populated ones and
  // removes the empty ones it finds).
  with_cgroup_.clear();
  by_pid_.clear();
  by_id_.clear();
}

void Supervisor::HandOff() {
  if (!loop_thread_.joinable()) return;
  if (spare_cgroups_) spare_cgroups_->Stop();
  if (spare_shims_) spare_shims_->Stop();
  if (idle_shims_) idle_shims_->Stop();
  // What the registry has not taken yet goes out first, bounded: each
  // process's answer says when it is flushed.
  auto flushed = std::make_shared<absl::Notification>();
  if (RunAndWait(loop_, [this, flushed] {
        shut_down_ = true;
        auto left = std::make_shared<size_t>(0);
        for (auto& [id, p] : by_id_) {
          if (p->flushed()) continue;
          ++*left;
          p->on_flushed.push_back([left, flushed] {
            if (--*left == 0) flushed->Notify();
          });
        }
        if (*left == 0) flushed->Notify();
      })) {
    flushed->WaitForNotificationWithTimeout(options_.backend_timeout);
  }
  records_->Close();
  loop_.Post([this] { LetGoForHandOff(); });
  loop_.Quit();
  loop_thread_.join();
  records_->Cancel();
  janitor_.Quit();
  janitor_thread_.join();
  PM_LOG(INFO) << "handed off: every process runs on under its pm-shim";
}

void Supervisor::Shutdown(absl::Duration grace) {
  if (!loop_thread_.joinable()) return;
  // Before the loop ends: it reaps, through SIGCHLD, a spare shim that
  // exits while being ended.
  if (spare_cgroups_) spare_cgroups_->Stop();
  if (spare_shims_) spare_shims_->Stop();
  if (idle_shims_) idle_shims_->Stop();
  // The processes an earlier supervisor left are stopped too: once adopted
  // (bounded: a shim that never speaks is left to the next supervisor).
  adoption_settled_.WaitForNotificationWithTimeout(options_.adopt_wait +
                                                   options_.backend_timeout);
  auto all_stopped = std::make_shared<absl::Notification>();
  loop_.Post([this, grace, all_stopped] { StopEveryProcess(grace, all_stopped); });
  all_stopped->WaitForNotificationWithTimeout(grace + options_.kill_timeout +
                                              options_.backend_timeout);
  // Give the last output and registry updates a moment to land: the loop
  // says when the last process is forgotten (MaybeForget), bounded.
  auto drained = std::make_shared<absl::Notification>();
  if (RunAndWait(loop_, [this, drained] {
        drained_ = drained;
        NotifyIfDrained();
      })) {
    drained->WaitForNotificationWithTimeout(absl::Seconds(2));
  }
  // Nothing more goes to the registry: the stream ends once it has
  // answered what was sent (or, if it is stuck, when cancelled below).
  records_->Close();
  loop_.Post([this] { LetGoOfEverything(); });
  loop_.Quit();
  loop_thread_.join();
  // An answer now would find the loop gone: end the stream, so the wait for
  // pending gRPC operations does not outlast a stuck registry.
  records_->Cancel();
  // Its last tasks find the loop gone and drop what they hold.
  janitor_.Quit();
  janitor_thread_.join();
}

}  // namespace pm::supervisor
