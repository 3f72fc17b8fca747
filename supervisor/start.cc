// The start path: a Start, step by step.
//   1. Validate the request and the limits this host can enforce (Start).
//   2. Wait, without blocking a thread, until both backends are connected
//      (WhenBackendsReady), then mint the id.
//   3. On the loop: take a cgroup, spawn into it, watch the pidfd and the
//      pipes (SpawnOnLoop).
//   4. At once: ask the registry for the record and the log_store for the
//      log (StartOnLoop); PendingStart answers when the slower is done.
#include "supervisor/supervisor.h"

#include <signal.h>
#include <sys/epoll.h>
#include <sys/wait.h>

#include <memory>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "common/command_line.h"
#include "common/file_limit.h"
#include "common/log.h"
#include "common/proc.h"
#include "common/proto_time.h"
#include "common/status.h"
#include "common/uuid.h"
#include "supervisor/async_ops.h"
#include "supervisor/process.h"
#include "supervisor/spawn.h"

namespace pm::supervisor {

using pm::v1::ProcessStatus;

void Supervisor::WhenBackendsReady(std::function<void(absl::Status)> then) {
  struct Backend {
    grpc::Channel* channel;
    grpc::health::v1::Health::Stub* health;
    const char* name;
    const std::string* socket;
  };
  std::vector<Backend> waiting;
  for (const Backend& b :
       {Backend{log_store_channel_.get(), log_store_health_.get(), "log_store",
                &options_.log_store_socket},
        Backend{registry_channel_.get(), registry_health_.get(), "registry",
                &options_.registry_socket}}) {
    if (b.channel->GetState(/*try_to_connect=*/true) != GRPC_CHANNEL_READY) {
      waiting.push_back(b);
    }
  }
  if (waiting.empty()) return then(absl::OkStatus());
  // Not connected (yet): a health check that waits for the connection says
  // whether the service is there, without holding a thread meanwhile.
  struct Join {
    absl::Mutex mu;
    int left ABSL_GUARDED_BY(mu) = 0;
    absl::Status status ABSL_GUARDED_BY(mu);
    std::function<void(absl::Status)> then;
  };
  auto join = std::make_shared<Join>();
  join->then = std::move(then);
  {
    absl::MutexLock lock(&join->mu);
    join->left = static_cast<int>(waiting.size());
  }
  for (const Backend& b : waiting) {
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
    b.health->async()->Check(
        &call->context, &call->request, &call->response,
        [call, join, name = b.name, socket = *b.socket](grpc::Status rpc) {
          bool last = false;
          absl::Status status;
          {
            absl::MutexLock lock(&join->mu);
            if (!rpc.ok() && join->status.ok()) {
              join->status = absl::UnavailableError(
                  absl::StrCat(name, " is unavailable at ", socket));
            }
            last = --join->left == 0;
            status = join->status;
          }
          if (last) join->then(std::move(status));
          PendingAsyncOps().End();
        });
  }
}

// One Start in flight: finished once, by an error, or when the process is
// on record and its log is open (or the wait for the log timed out).
class Supervisor::PendingStart {
 public:
  explicit PendingStart(StartDone done) : done_(std::move(done)) {}
  // Whoever still held it (the log's Open, its timer) is gone without
  // answering: the loop stopped. Recorded is enough to answer with the id.
  ~PendingStart() {
    bool recorded;
    {
      absl::MutexLock lock(&mu_);
      recorded = recorded_;
    }
    if (recorded) {
      Finish(OkResponse());
    } else {
      Finish(absl::UnavailableError("supervisor is shutting down"));
    }
  }

  void Fail(absl::Status status) { Finish(std::move(status)); }
  void Recorded(pm::v1::StartResponse response) {
    {
      absl::MutexLock lock(&mu_);
      response_ = std::move(response);
      recorded_ = true;
      if (!log_open_) return;
    }
    Finish(OkResponse());
  }
  void LogOpen() {
    {
      absl::MutexLock lock(&mu_);
      log_open_ = true;
      if (!recorded_) return;
    }
    Finish(OkResponse());
  }

 private:
  absl::StatusOr<pm::v1::StartResponse> OkResponse() {
    absl::MutexLock lock(&mu_);
    return response_;
  }
  void Finish(absl::StatusOr<pm::v1::StartResponse> result) {
    StartDone done;
    {
      absl::MutexLock lock(&mu_);
      done = std::move(done_);
      done_ = nullptr;
    }
    if (done) done(std::move(result));
  }

  absl::Mutex mu_;
  StartDone done_ ABSL_GUARDED_BY(mu_);
  pm::v1::StartResponse response_ ABSL_GUARDED_BY(mu_);
  bool recorded_ ABSL_GUARDED_BY(mu_) = false;
  bool log_open_ ABSL_GUARDED_BY(mu_) = false;
};

void Supervisor::Start(const pm::v1::StartRequest& request, Owner owner,
                       StartDone done) {
  auto start = std::make_shared<PendingStart>(std::move(done));
  absl::Status checked = [&]() -> absl::Status {
    PM_RETURN_IF_ERROR(ValidateStartRequest(request, options_.command_caps));
    // A limit this host cannot enforce is refused, never ignored.
    return cgroups_->CheckLimits(request.limits());
  }();
  if (!checked.ok()) return start->Fail(std::move(checked));
  // Refuse before spawning when a backend is down: a process whose output
  // or record has nowhere to go would have to be killed again.
  WhenBackendsReady([this, request, owner = std::move(owner),
                     start](absl::Status ready) {
    if (!ready.ok()) return start->Fail(std::move(ready));
    // The id is minted here, so the process's log is opened in the
    // log_store while the registry creates its record: Start waits for the
    // slower of the two, not for both in turn.
    absl::StatusOr<std::string> id = NewUuidV4();
    if (!id.ok()) return start->Fail(id.status());
    if (!loop_.Post([this, request, id = *std::move(id), owner, start] {
          StartOnLoop(request, id, owner, start);
        })) {
      start->Fail(absl::UnavailableError("supervisor is shutting down"));
    }
  });
}

void Supervisor::StartOnLoop(const pm::v1::StartRequest& request,
                             const std::string& id, const Owner& owner,
                             std::shared_ptr<PendingStart> start) {
  absl::StatusOr<ProcessPtr> spawned = SpawnOnLoop(request);
  if (!spawned.ok()) {
    // Out of fds (a pipe, the pidfd, a cgroup file): say which limit.
    return start->Fail(ExplainFileExhaustion(spawned.status(), "the supervisor"));
  }
  ProcessPtr p = *std::move(spawned);
  p->id = id;

  records_->Create(
      CreateRequestOf(*p, request, owner),
      [this, p, start](absl::StatusOr<ProcessStatus> record) mutable {
        if (!record.ok()) {
          absl::Status status = record.status();
          if (status.code() == absl::StatusCode::kUnavailable ||
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
  // Start answers once the log exists in the store, so a follower that uses
  // the id right away finds it. Bounded: output is spooled meanwhile.
  auto timer = std::make_shared<EventLoop::TimerId>(0);
  p->sender->Connect(id, [this, start, timer] {
    start->LogOpen();  // a gRPC thread: the answer goes out from here
    loop_.Post([this, timer] { loop_.Cancel(*timer); });
  });
  *timer = loop_.RunAfter(options_.backend_timeout, [start] { start->LogOpen(); });
}

namespace {

// The Process a spawned child becomes, its cgroup (if any) with it.
std::shared_ptr<Process> ProcessOf(const pm::v1::StartRequest& request,
                                   SpawnedChild child,
                                   std::unique_ptr<ProcessCgroup> cgroup) {
  auto p = std::make_shared<Process>();
  p->pid = child.pid;
  p->limits = request.limits();
  p->pidfd = std::move(child.pidfd);
  p->out[0] = std::move(child.stdout_read);
  p->out[1] = std::move(child.stderr_read);
  // The child has exec'd; even if it already exited it is a zombie until we
  // reap it, so its /proc entry is there.
  absl::StatusOr<ProcStat> stat = ReadProcStat(p->pid);
  if (stat.ok()) p->start_ticks = stat->start_ticks;

  ProcessStatus& s = p->status;
  s.set_state(ProcessStatus::STATE_RUNNING);
  s.set_pid(p->pid);
  // Bytes that are not UTF-8 go in the bytes fields: a string field holding
  // them would make the whole answer unreadable to every client.
  EchoCommandLine(child.command, s);
  EchoResolvedExecutable(child.executable, s);
  *s.mutable_started_at() = ToProtoTimestamp(absl::Now());
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
  PM_ASSIGN_OR_RETURN(SpawnedChild child, SpawnInCgroup(request, cgroup));
  ProcessPtr p = ProcessOf(request, std::move(child), std::move(cgroup));
  PM_RETURN_IF_ERROR(WatchProcess(p));
  return p;
}

absl::StatusOr<SpawnedChild> Supervisor::SpawnInCgroup(
    const pm::v1::StartRequest& request,
    std::unique_ptr<ProcessCgroup>& cgroup) {
  // The cgroup exists, limits set, before the child does: it is born in it.
  SpawnOptions spawn_options;
  if (cgroups_->enabled()) {
    PM_ASSIGN_OR_RETURN(cgroup, TakeCgroup(request.limits()));
    spawn_options = cgroup->spawn_options();
  }
  spawn_options.file_limit = options_.child_file_limit;
  absl::StatusOr<SpawnedChild> spawned = Spawn(request, spawn_options);
  if (cgroup) cgroup->CloseSpawnFds();
  if (!spawned.ok() && cgroup) {
    // The child, if any, is reaped: the cgroup is empty again.
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
  p->sender = std::make_shared<OutputSender>(&loop_, log_store_.get(),
                                             options_.output);
  std::weak_ptr<Process> weak = p;
  p->sender->set_on_change([this, weak] {
    if (auto locked = weak.lock()) OnOutputChange(locked);
  });
  absl::Status watched = loop_.Watch(p->pidfd.get(), EPOLLIN,
                                     [this, weak](uint32_t) {
                                       if (auto locked = weak.lock()) {
                                         ReapLeader(locked);
                                       }
                                     });
  if (!watched.ok()) {
    // Cannot learn of its exit: do not leave it running unsupervised.
    SignalGroup(*p, SIGKILL);
    siginfo_t info;
    waitid(static_cast<idtype_t>(P_PIDFD), p->pidfd.get(), &info, WEXITED);
    // Its end is told to no one: it never had an id.
    p->On(Event::kLeaderReaped);
    p->On(Event::kEndWritten);
    if (p->cgroup) {
      KillCgroup(p);
      MaybeRemoveCgroup(p);
    }
    return watched;
  }
  by_pid_[p->pid] = p;
  ++live_;
  WatchOutput(p, 0);
  WatchOutput(p, 1);
  return absl::OkStatus();
}

}  // namespace pm::supervisor
