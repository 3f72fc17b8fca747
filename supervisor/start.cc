// The start path: a Start, step by step.
//   1. Validate the request and the limits this host can enforce (Start).
//   2. Wait, without blocking a thread, until the registry is connected
//      (WhenRegistryReady).
//   3. On the loop: take a cgroup and an idle shim, which spawns into it;
//      the shim's id is the process's, its directory made while it waited.
//      Watch the shim's control socket (SpawnOnLoop).
//   4. Ask the registry for the record (StartOnLoop); PendingStart answers
//      with it.
// A Start with a name first makes sure the name is free (ClaimName),
// before anything runs: a name taken is ALREADY_EXISTS and nothing is
// spawned.
#include "supervisor/supervisor.h"

#include <signal.h>
#include <sys/epoll.h>
#include <sys/wait.h>

#include <memory>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "common/command_line.h"
#include "common/file_limit.h"
#include "common/log.h"
#include "common/proc.h"
#include "common/proto_time.h"
#include "common/restart_policy.h"
#include "common/status.h"
#include "supervisor/async_ops.h"
#include "supervisor/metrics.h"
#include "supervisor/process.h"
#include "supervisor/spawn.h"

namespace pm::supervisor {

using pm::v1::ProcessStatus;

void Supervisor::WhenRegistryReady(std::function<void(absl::Status)> then) {
  if (registry_channel_->GetState(/*try_to_connect=*/true) == GRPC_CHANNEL_READY) {
    return then(absl::OkStatus());
  }
  // Not connected (yet): a health check that waits for the connection says
  // whether the registry is there, without holding a thread meanwhile.
  struct Call {
    grpc::ClientContext context;
    grpc::health::v1::HealthCheckRequest request;
    grpc::health::v1::HealthCheckResponse response;
  };
  auto call = std::make_shared<Call>();
  call->context.set_wait_for_ready(true);
  call->context.set_deadline(std::chrono::system_clock::now() +
                             std::chrono::seconds(2));
  PendingAsyncOps().Begin();
  registry_health_->async()->Check(
      &call->context, &call->request, &call->response,
      [call, then = std::move(then),
       socket = options_.registry_socket](grpc::Status rpc) {
        if (rpc.ok()) {
          then(absl::OkStatus());
        } else {
          then(absl::UnavailableError(
              absl::StrCat("registry is unavailable at ", socket)));
        }
        PendingAsyncOps().End();
      });
}

// One Start in flight: finished once, by an error, or when the process is
// on record.
class Supervisor::PendingStart {
 public:
  // `holds`: the spares are not remade while the Start is in flight (see
  // Spares::Hold); released once it is answered.
  PendingStart(StartDone done, SpareHolds holds)
      : done_(std::move(done)), holds_(std::move(holds)) {}
  // Whoever still held it is gone without answering: the loop stopped.
  ~PendingStart() { Finish(absl::UnavailableError("supervisor is shutting down")); }

  void Fail(absl::Status status) { Finish(std::move(status)); }
  // Runs `fn` as the Start is answered, just before its caller hears (at
  // once if it already was).
  void AtFinish(std::function<void()> fn) {
    {
      absl::MutexLock lock(&mu_);
      if (done_) {
        at_finish_.push_back(std::move(fn));
        return;
      }
    }
    fn();
  }
  void Recorded(pm::v1::StartResponse response) { Finish(std::move(response)); }

 private:
  void Finish(absl::StatusOr<pm::v1::StartResponse> result) {
    StartDone done;
    {
      absl::MutexLock lock(&mu_);
      done = std::move(done_);
      done_ = nullptr;
    }
    if (!done) return;
    CountStart(result.status(), absl::Now() - began_);
    // Before the caller hears: what the caller does next comes after.
    std::vector<std::function<void()>> at_finish;
    {
      absl::MutexLock lock(&mu_);
      at_finish.swap(at_finish_);
    }
    for (auto& fn : at_finish) fn();
    done(std::move(result));
    SpareHolds holds;
    {
      absl::MutexLock lock(&mu_);
      holds = std::move(holds_);
    }
  }

  const absl::Time began_ = absl::Now();
  absl::Mutex mu_;
  StartDone done_ ABSL_GUARDED_BY(mu_);
  SpareHolds holds_ ABSL_GUARDED_BY(mu_);
  std::vector<std::function<void()>> at_finish_ ABSL_GUARDED_BY(mu_);
};

namespace {

// FAILED_PRECONDITION unless `requested` (a StartRequest's node, validated)
// is empty or `own` (this supervisor's --node): a supervisor runs only its
// own host's processes, and sending a Start on to another host is the
// cluster's gateways' work, which know every host.
absl::Status CheckNodeIsThisHost(absl::string_view requested, absl::string_view own) {
  if (requested.empty() || requested == own) return absl::OkStatus();
  if (own.empty()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "node \"", requested,
        "\" is not this host: this host is not in a cluster (no --node)"));
  }
  return absl::FailedPreconditionError(absl::StrCat(
      "node \"", requested, "\" is not this host (node \"", own,
      "\"): start it through that host's gateway"));
}

}  // namespace

void Supervisor::Start(const pm::v1::StartRequest& request, Owner owner,
                       StartDone done) {
  SpareHolds holds;
  holds.shims = spare_shims_->HoldRefills();
  if (spare_cgroups_) holds.cgroups = spare_cgroups_->HoldRefills();
  auto start = std::make_shared<PendingStart>(std::move(done), std::move(holds));
  absl::Status checked = [&]() -> absl::Status {
    PM_RETURN_IF_ERROR(ValidateStartRequest(request, options_.command_caps));
    PM_RETURN_IF_ERROR(CheckNodeIsThisHost(request.node(), options_.node));
    // A limit this host cannot enforce is refused, never ignored.
    return cgroups_->CheckLimits(request.limits());
  }();
  if (!checked.ok()) return start->Fail(std::move(checked));
  // Refuse before spawning when the registry is down: a process whose
  // record has nowhere to go would have to be killed again. (The log_store
  // is not needed: the shim writes the output to disk.)
  WhenRegistryReady([this, request, owner = std::move(owner),
                     start](absl::Status ready) {
    if (!ready.ok()) return start->Fail(std::move(ready));
    if (!loop_.Post([this, request, owner, start] {
          if (request.name().empty()) return StartOnLoop(request, owner, start);
          ClaimName(request, owner, start);
        })) {
      start->Fail(absl::UnavailableError("supervisor is shutting down"));
    }
  });
}

void Supervisor::ClaimName(const pm::v1::StartRequest& request,
                           const Owner& owner,
                           std::shared_ptr<PendingStart> start) {
  const std::string& name = request.name();
  // Two Starts of one name: the registry knows of neither yet, so the
  // second is refused here.
  if (!names_starting_.insert(name).second) {
    return start->Fail(absl::AlreadyExistsError(absl::StrCat(
        "the name \"", name, "\" is taken by a process being started")));
  }
  // Held until the Start is answered: by then the record has the name, or
  // the Start failed.
  start->AtFinish([this, name] { loop_.Post([this, name] { names_starting_.erase(name); }); });
  struct Call {
    grpc::ClientContext context;
    pm::internal::v1::ResolveRequest request;
    pm::internal::v1::ResolveResponse response;
  };
  auto call = std::make_shared<Call>();
  call->request.set_ref(name);
  call->request.set_name_only(true);
  call->context.set_deadline(
      absl::ToChronoTime(absl::Now() + options_.backend_timeout));
  PendingAsyncOps().Begin();
  registry_->async()->Resolve(
      &call->context, &call->request, &call->response,
      [this, call, request, owner, start](grpc::Status rpc) {
        absl::Status status = FromGrpcStatus(rpc);
        if (status.ok()) {
          // Its id only to whom may see it (the gateway's user, or a local
          // caller).
          const bool visible =
              owner.user.empty() || owner.user == call->response.owner_user();
          start->Fail(absl::AlreadyExistsError(absl::StrCat(
              "the name \"", request.name(), "\" is taken by ",
              visible ? absl::StrCat("process ", call->response.id(), " (",
                                     absl::StripPrefix(pm::v1::ProcessStatus::State_Name(
                                                           call->response.state()),
                                                       "STATE_"),
                                     "); remove it or choose another name")
                      : "another user's process")));
        } else if (absl::IsNotFound(status)) {
          if (!loop_.Post([this, request, owner, start] {
                StartOnLoop(request, owner, start);
              })) {
            start->Fail(absl::UnavailableError("supervisor is shutting down"));
          }
        } else {
          start->Fail(absl::UnavailableError(
              absl::StrCat("registry is unavailable at ", options_.registry_socket,
                           " (checking that the name is free): ", status.message())));
        }
        PendingAsyncOps().End();
      });
}

void Supervisor::StartOnLoop(const pm::v1::StartRequest& request,
                             const Owner& owner,
                             std::shared_ptr<PendingStart> start) {
  absl::StatusOr<ProcessPtr> spawned = SpawnOnLoop(request);
  if (!spawned.ok()) {
    // Out of fds (a socket, the pidfd, a cgroup file): say which limit.
    return start->Fail(ExplainFileExhaustion(spawned.status(), "the supervisor"));
  }
  ProcessPtr p = *std::move(spawned);

  records_->Create(
      CreateRequestOf(*p, request, owner),
      [this, p, start](absl::StatusOr<ProcessStatus> record) mutable {
        if (!record.ok()) {
          absl::Status status = record.status();
          if (IsClusterUnavailableMessage(status.message())) {
            // The registry answered: its cluster (etcd) is what is out of
            // reach, and the caller is told so as it is.
          } else if (status.code() == absl::StatusCode::kUnavailable ||
                     status.code() == absl::StatusCode::kDeadlineExceeded) {
            status = absl::UnavailableError(
                absl::StrCat("registry is unavailable at ",
                             options_.registry_socket, ": ", status.message()));
          } else {
            status = Annotate(status, "registry");
          }
          // The process goes on the loop (its last reference must be
          // dropped there), before the caller hears of it.
          loop_.Post([this, p = std::move(p)] { AbandonUnrecorded(p); });
          start->Fail(std::move(status));
          return;
        }
        pm::v1::StartResponse response;
        response.set_id(record->id());
        *response.mutable_status() = *record;
        // From now on its state changes go to the registry (one that
        // happened meanwhile, an exit, goes at once). Posted before the
        // caller hears of the id, so a Stop sent the instant Start returns
        // finds the process known.
        if (loop_.Post([this, p = std::move(p), record = *std::move(record)] {
              OnRecorded(p, record);
            })) {
          start->Recorded(std::move(response));
        } else {
          start->Fail(absl::UnavailableError("supervisor is shutting down"));
        }
      });
}

namespace {

// The Process a spawned child becomes, its cgroup (if any) with it.
std::shared_ptr<Process> ProcessOf(const pm::v1::StartRequest& request,
                                   ShimStarted child,
                                   std::unique_ptr<ProcessCgroup> cgroup) {
  auto p = std::make_shared<Process>();
  p->id = child.id;
  p->pid = child.pid;
  p->limits = request.limits();
  p->pidfd = std::move(child.pidfd);
  p->start_ticks = child.start_ticks;
  p->shim_pid = child.shim_pid;
  p->shim_control = std::move(child.control);

  ProcessStatus& s = p->status;
  s.set_state(ProcessStatus::STATE_RUNNING);
  s.set_pid(p->pid);
  // Bytes that are not UTF-8 go in the bytes fields: a string field holding
  // them would make the whole answer unreadable to every client.
  EchoCommandLine(child.command, s);
  EchoResolvedExecutable(child.executable, s);
  *s.mutable_started_at() = ToProtoTimestamp(absl::Now());
  if (RestartsOf(request)) {
    p->restarts = true;
    *s.mutable_restart() = request.restart();
    s.set_run(1);
  }
  if (cgroup) {
    s.set_cgroup(cgroup->path());
    p->cgroup = std::move(cgroup);
  }
  return p;
}

}  // namespace

absl::StatusOr<Supervisor::ProcessPtr> Supervisor::SpawnOnLoop(
    const pm::v1::StartRequest& request) {
  if (shut_down_) return absl::UnavailableError("supervisor is shutting down");
  if (live_ >= options_.max_processes) {
    return absl::ResourceExhaustedError(
        absl::StrCat("too many processes: ", live_, " are running (the cap, "
                     "--max_processes, is ", options_.max_processes, ")"));
  }
  std::unique_ptr<ProcessCgroup> cgroup;
  PM_ASSIGN_OR_RETURN(ShimStarted child, SpawnInCgroup(request, cgroup));
  WatchShimExit(child.shim_pid, std::move(child.shim_pidfd));
  ProcessPtr p = ProcessOf(request, std::move(child), std::move(cgroup));
  PM_RETURN_IF_ERROR(WatchProcess(p));
  return p;
}

absl::StatusOr<ShimStarted> Supervisor::SpawnInCgroup(
    const pm::v1::StartRequest& request,
    std::unique_ptr<ProcessCgroup>& cgroup) {
  // The cgroup exists, limits set, before the child does: it is born in it.
  SpawnOptions spawn_options;
  if (cgroups_->enabled()) {
    PM_ASSIGN_OR_RETURN(cgroup, TakeCgroup(request.limits()));
    spawn_options = cgroup->spawn_options();
  }
  spawn_options.file_limit = options_.child_file_limit;
  absl::StatusOr<ShimStarted> spawned =
      SpawnThroughShim(request, spawn_options);
  if (cgroup) cgroup->CloseSpawnFds();
  if (!spawned.ok() && cgroup) {
    // The shim reaped the child, if any: the cgroup is empty again. (One
    // that did not answer was killed with its child: then the cgroup may
    // still hold it for a moment, and is killed and left to empty.)
    if (cgroup->Populated()) cgroup->Kill();
    if (absl::Status removed = cgroup->Remove(); !removed.ok()) {
      PM_LOG(WARNING) << "cgroup of a failed start: " << removed;
    }
    cgroup.reset();
  }
  return spawned;
}

absl::Status Supervisor::WatchProcess(const ProcessPtr& p) {
  if (p->cgroup) {
    with_cgroup_[p.get()] = p;
    WatchCgroup(p);
  }
  std::weak_ptr<Process> weak = p;
  absl::Status watched = loop_.Watch(p->shim_control.get(), EPOLLIN,
                                     [this, weak](uint32_t) {
                                       if (auto locked = weak.lock()) {
                                         OnShimReadable(locked);
                                       }
                                     });
  if (!watched.ok()) {
    // Cannot hear of its end: do not leave it running unsupervised. Its
    // shim reaps it and, its control socket closed, waits for a supervisor
    // at shims.sock; its end is told to no one: it never had an id.
    ForbidRestarts(p);
    SignalGroup(*p, SIGKILL);
    p->On(Event::kLeaderReaped);
    p->On(Event::kEndWritten);
    if (p->cgroup) {
      KillCgroup(p);
      MaybeRemoveCgroup(p);
    }
    return watched;
  }
  if (p->pid > 0) by_pid_[p->pid] = p;  // none between two runs
  ++live_;
  return absl::OkStatus();
}

}  // namespace pm::supervisor
