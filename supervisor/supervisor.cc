#include "supervisor/supervisor.h"

#include <pthread.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <utility>
#include <vector>

#include "absl/strings/internal/resize_uninitialized.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "common/channel.h"
#include "common/command_line.h"
#include "common/log.h"
#include "common/proc.h"
#include "common/process_end.h"
#include "common/proto_time.h"
#include "common/runtime_dir.h"
#include "common/status.h"
#include "common/stop_request.h"
#include "common/uuid.h"
#include "common/exit_status.h"
#include "common/file_limit.h"
#include "absl/strings/str_split.h"
#include "supervisor/end_reason.h"
#include "supervisor/spawn.h"

namespace pm::supervisor {

using pm::v1::OutputChunk;
using pm::v1::ProcessStatus;

namespace {

// The most one read takes: the pipe's whole capacity (F_SETPIPE_SZ 1 MiB).
constexpr size_t kMaxRead = 1 << 20;
// What a read asks for when FIONREAD says nothing is there (to see EOF, or
// bytes that arrived since).
constexpr size_t kProbeRead = 4096;
// Pieces at least this large go through the shared output arena (smaller
// ones are coalesced into messages: a slot per line would waste the arena).
constexpr size_t kMinSharedRead = 64 << 10;
// Reads per readiness event and pipe, so one chatty process cannot starve
// the loop.
constexpr int kReadsPerEvent = 8;
constexpr absl::Duration kRegistryRetry = absl::Seconds(1);

int PidfdSendSignal(int pidfd, int sig) {
  return static_cast<int>(syscall(SYS_pidfd_send_signal, pidfd, sig, nullptr, 0));
}

bool Ended(const ProcessStatus& status) {
  return IsEndState(status.state());
}

// The phases of a stop. Every move is made in one of three places:
//   kNone    -RequestStop->    kGrace    SIGTERM to the tree (none when
//                                        forced), the SIGKILL timer armed
//   kGrace   -RequestStop->    kGrace    the SIGKILL timer brought forward
//                                        to the new deadline if that is
//                                        sooner (EventLoop::Hasten)
//   kGrace   -OnGraceExpired-> kKilling  SIGKILL to the tree, the kill
//                                        timeout armed
//   kKilling -RequestStop->    kKilling  nothing sooner can be done
//   any      -FinishStop->     kNone     every caller answered
// So a stop can always be escalated, and every caller of one stop gets its
// final answer.
enum class StopPhase { kNone, kGrace, kKilling };


}  // namespace

struct Supervisor::Process {
  std::string id;  // empty until the registry has minted it
  pid_t pid = -1;
  Fd pidfd;
  uint64_t start_ticks = 0;
  ProcessStatus status;  // the record as this supervisor knows it
  pm::v1::Limits limits;  // as started

  // Its cgroup until removed; null without cgroups.
  std::unique_ptr<ProcessCgroup> cgroup;
  bool cgroup_killed = false;
  // Between the leader's reaping and FinishReap: the janitor thread holds
  // the cgroup (reads its final usage, removes it if empty), so `cgroup` is
  // null, the cgroup counts as not gone, and signals meant for its members
  // wait (the flags below) until it is back.
  bool exit_pending = false;
  bool members_term_deferred = false;
  bool kill_deferred = false;
  // How the leader ended, from its reaping (FinishReap writes the status).
  ExitStatus exit;
  absl::Time ended_at;
  ProcessStatus::Termination termination = ProcessStatus::TERMINATION_UNSPECIFIED;

  Fd out[2];  // stdout, stderr read ends
  bool out_watched[2] = {false, false};
  std::shared_ptr<OutputSender> sender;

  bool reaped = false;
  // The registry has its record (state changes may be sent).
  bool recorded = false;
  // The group was seen empty after the leader was reaped (GroupGone).
  bool group_gone = false;
  bool abandoned = false;  // never made it into the registry

  // Registry updates: each state is sent at once with the next sequence
  // (the registry ignores one overtaken by a newer); `dirty` means the
  // registry was unreachable and the current state waits for a retry.
  uint64_t update_sequence = 0;
  int updates_in_flight = 0;
  bool dirty = false;
  bool retry_pending = false;
  std::vector<std::function<void()>> on_flushed;

  // A stop in progress (see StopPhase): its timers and its callers.
  StopPhase stop_phase = StopPhase::kNone;
  EventLoop::TimerId grace_timer = 0;  // kGrace: sends the SIGKILL
  EventLoop::TimerId kill_timer = 0;   // kKilling: gives up, stopped=false
  std::vector<StopCallback> stop_waiters;
  // Which signals a stop sent the leader before it was reaped: how it
  // ended (termination).
  bool sigterm_sent = false;
  bool sigkill_sent = false;
  // A forced stop (no grace) asked for the SIGKILL.
  bool forced = false;

  bool stopping() const { return stop_phase != StopPhase::kNone; }
  bool flushed() const { return updates_in_flight == 0 && !dirty; }
  bool output_open() const { return out[0].valid() || out[1].valid(); }
};

Supervisor::Supervisor(SupervisorOptions options)
    : options_(std::move(options)) {}

absl::StatusOr<std::unique_ptr<Supervisor>> Supervisor::Create(
    SupervisorOptions options) {
  std::unique_ptr<Supervisor> supervisor(new Supervisor(std::move(options)));
  PM_RETURN_IF_ERROR(supervisor->Init());
  return supervisor;
}

absl::Status Supervisor::Init() {
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

  cgroups_ = Cgroups::Init(options_.cgroup);
  for (absl::string_view line : absl::StrSplit(cgroups_->summary(), '\n')) {
    PM_LOG(INFO) << line;
  }

  registry_channel_ = UnixChannel(options_.registry_socket);
  log_store_channel_ = UnixChannel(options_.log_store_socket);
  registry_ = pm::internal::v1::Registry::NewStub(registry_channel_);
  records_ = std::make_unique<RecordStream>(&loop_, registry_.get(),
                                            options_.backend_timeout);
  log_store_ = pm::internal::v1::LogStore::NewStub(log_store_channel_);
  registry_health_ = grpc::health::v1::Health::NewStub(registry_channel_);
  log_store_health_ = grpc::health::v1::Health::NewStub(log_store_channel_);
  if (options_.output_arena_bytes >= kMaxRead) {
    absl::StatusOr<std::shared_ptr<OutputArena>> arena = OutputArena::Create(
        kMaxRead, options_.output_arena_bytes / kMaxRead);
    if (arena.ok()) {
      options_.output.arena = *std::move(arena);
      PM_LOG(INFO) << "output arena: " << options_.output.arena->size()
                   << " bytes shared with the log_store, in pieces of "
                   << kMaxRead;
    } else {
      PM_LOG(WARNING) << "no output arena, output goes inline: " << arena.status();
    }
  }

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
    spare_thread_ = std::thread([this] {
      pthread_setname_np(pthread_self(), "pm-cgroups");
      MakeSpareCgroups();
    });
  }
  return absl::OkStatus();
}

Supervisor::~Supervisor() {
  Shutdown();
  // Late gRPC callbacks post to the loop; let them finish before it goes.
  if (!PendingAsyncOps().WaitForNone(absl::Seconds(5))) {
    PM_LOG(WARNING) << "gRPC operations still pending after 5 s at exit";
  }
}

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

  pm::internal::v1::CreateRecordRequest create;
  create.set_id(id);
  *create.mutable_spec() = request;
  create.set_resolved_executable(p->status.resolved_executable());
  create.set_resolved_executable_bytes(p->status.resolved_executable_bytes());
  create.set_pid(p->status.pid());
  create.set_owner(owner.display);
  create.set_owner_user(owner.user);
  create.set_start_ticks(p->start_ticks);
  *create.mutable_started_at() = p->status.started_at();
  if (p->cgroup) {
    const CgroupDirs& dirs = p->cgroup->dirs();
    create.mutable_cgroup()->set_unified(dirs.unified);
    create.mutable_cgroup()->mutable_v1()->insert(dirs.v1.begin(), dirs.v1.end());
  }
  records_->Create(
      std::move(create),
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

absl::StatusOr<std::unique_ptr<ProcessCgroup>> Supervisor::TakeCgroup(
    const pm::v1::Limits& limits) {
  if (limits.ByteSizeLong() == 0) {
    absl::MutexLock lock(&spare_mu_);
    if (!spare_cgroups_.empty()) {
      std::unique_ptr<ProcessCgroup> cgroup = std::move(spare_cgroups_.back());
      spare_cgroups_.pop_back();
      return cgroup;  // the maker thread sees the pool low and refills it
    }
  }
  return cgroups_->Create(limits);
}

void Supervisor::MakeSpareCgroups() {
  for (;;) {
    spare_mu_.LockWhen(absl::Condition(
        +[](Supervisor* self) ABSL_EXCLUSIVE_LOCKS_REQUIRED(self->spare_mu_) {
          return self->spare_stop_ ||
                 self->spare_cgroups_.size() < kSpareCgroups;
        },
        this));
    const bool stop = spare_stop_;
    spare_mu_.Unlock();
    if (stop) return;
    // mkdir in every hierarchy, off the loop thread.
    absl::StatusOr<std::unique_ptr<ProcessCgroup>> cgroup =
        cgroups_->Create(pm::v1::Limits());
    if (!cgroup.ok()) {
      PM_LOG(WARNING) << "cannot make a spare cgroup: " << cgroup.status()
                      << "; Start makes its own";
      return;
    }
    absl::MutexLock lock(&spare_mu_);
    spare_cgroups_.push_back(*std::move(cgroup));
  }
}

void Supervisor::StopSpareCgroups() {
  {
    absl::MutexLock lock(&spare_mu_);
    spare_stop_ = true;
  }
  if (spare_thread_.joinable()) spare_thread_.join();
  absl::MutexLock lock(&spare_mu_);
  for (auto& spare : spare_cgroups_) {
    if (absl::Status removed = spare->Remove(); !removed.ok()) {
      PM_LOG(WARNING) << "spare cgroup: " << removed;
    }
  }
  spare_cgroups_.clear();
}

absl::StatusOr<Supervisor::ProcessPtr> Supervisor::SpawnOnLoop(
    const pm::v1::StartRequest& request) {
  if (shut_down_) return absl::UnavailableError("supervisor is shutting down");
  if (live_ >= options_.max_processes) {
    return absl::ResourceExhaustedError(
        absl::StrCat("too many processes: ", live_, " are running (the cap, "
                     "--max_processes, is ", options_.max_processes, ")"));
  }
  // The cgroup exists, limits set, before the child does: it is born in it.
  std::unique_ptr<ProcessCgroup> cgroup;
  SpawnOptions spawn_options;
  if (cgroups_->enabled()) {
    PM_ASSIGN_OR_RETURN(cgroup, TakeCgroup(request.limits()));
    spawn_options = cgroup->spawn_options();
  }
  spawn_options.file_limit = options_.child_file_limit;
  absl::StatusOr<SpawnedChild> spawned = Spawn(request, spawn_options);
  if (cgroup) cgroup->CloseSpawnFds();
  if (!spawned.ok()) {
    // The child, if any, is reaped: the cgroup is empty again.
    if (cgroup) {
      if (absl::Status removed = cgroup->Remove(); !removed.ok()) {
        PM_LOG(WARNING) << "cgroup of a failed start: " << removed;
      }
    }
    return spawned.status();
  }
  SpawnedChild child = *std::move(spawned);
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
    p->reaped = true;
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
  return p;
}

void Supervisor::WatchOutput(const ProcessPtr& p, int index) {
  if (!p->out[index].valid() || p->out_watched[index]) return;
  std::weak_ptr<Process> weak = p;
  absl::Status status = loop_.Watch(
      p->out[index].get(), EPOLLIN, [this, weak, index](uint32_t) {
        if (auto locked = weak.lock()) OnOutputReadable(locked, index);
      });
  if (!status.ok()) {
    PM_LOG(ERROR) << "cannot watch output of pid " << p->pid << ": " << status;
    return;
  }
  p->out_watched[index] = true;
}

void Supervisor::UnwatchOutput(const ProcessPtr& p, int index) {
  if (!p->out_watched[index]) return;
  loop_.Unwatch(p->out[index].get());
  p->out_watched[index] = false;
}

void Supervisor::OnOutputReadable(const ProcessPtr& p, int index) {
  ReadOutput(p, index, kReadsPerEvent, /*respect_backpressure=*/true);
}

void Supervisor::DrainOutput(const ProcessPtr& p, int index) {
  // Bounded: a child that outlives the leader may keep writing.
  constexpr int kMaxDrainReads = 4;
  ReadOutput(p, index, kMaxDrainReads, /*respect_backpressure=*/false);
}

void Supervisor::ReadOutput(const ProcessPtr& p, int index, int max_reads,
                            bool respect_backpressure) {
  const OutputChunk::Stream stream =
      index == 0 ? OutputChunk::STREAM_STDOUT : OutputChunk::STREAM_STDERR;
  for (int i = 0; i < max_reads && p->out[index].valid(); ++i) {
    // Exactly what the pipe holds, in a buffer that becomes the message to
    // the log_store as it is: not zero-filled, not copied, never oversized.
    int available = 0;
    if (ioctl(p->out[index].get(), FIONREAD, &available) != 0) available = 0;
    // A large piece goes into the shared arena, if a slot is free: the
    // log_store copies it from there (common/output_arena.h).
    std::optional<OutputArena::Slot> slot;
    if (static_cast<size_t>(available) >= kMinSharedRead) {
      slot = p->sender->TakeSlot();
    }
    std::string buf;
    size_t want = 0;
    char* into = nullptr;
    if (slot) {
      want = std::min<size_t>(available, slot->capacity());
      into = slot->data();
    } else {
      want = available > 0 ? std::min<size_t>(available, kMaxRead) : kProbeRead;
      absl::strings_internal::STLStringResizeUninitialized(&buf, want);
      into = buf.data();
    }
    ssize_t n = read(p->out[index].get(), into, want);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) break;
    if (n <= 0) {
      if (n < 0) {
        PM_LOG(WARNING) << "read of pid " << p->pid << " output: "
                        << ErrnoError("read");
      }
      UnwatchOutput(p, index);
      p->out[index].reset();
      if (!p->output_open()) p->sender->Close();
      MaybeForget(p);
      return;
    }
    if (slot) {
      p->sender->AppendShared(stream, *std::move(slot), static_cast<size_t>(n));
    } else {
      buf.resize(static_cast<size_t>(n));
      p->sender->Append(stream, std::move(buf));
    }
    if (respect_backpressure && p->sender->ShouldPauseReading()) {
      // Backpressure: the process waits on its pipe until the store
      // catches up (or the stall bound lets the sender spool).
      UnwatchOutput(p, 0);
      UnwatchOutput(p, 1);
      return;
    }
    if (respect_backpressure && static_cast<size_t>(n) < want) {
      break;  // drained for now
    }
  }
}

void Supervisor::OnOutputChange(const ProcessPtr& p) {
  if (!p->sender->ShouldPauseReading()) {
    WatchOutput(p, 0);
    WatchOutput(p, 1);
  }
  MaybeForget(p);
}

void Supervisor::OnSigchld() {
  struct signalfd_siginfo ssi;
  while (read(sigchld_fd_.get(), &ssi, sizeof(ssi)) == sizeof(ssi)) {
  }
  // SIGCHLDs coalesce, so reap until nothing is left. Our own leaders are
  // reaped through their pidfd (ReapLeader); anything else is an orphan
  // reparented to us as subreaper.
  for (;;) {
    siginfo_t info = {};
    if (waitid(P_ALL, 0, &info, WEXITED | WNOHANG | WNOWAIT) != 0) break;
    if (info.si_pid == 0) break;
    auto it = by_pid_.find(info.si_pid);
    if (it != by_pid_.end()) {
      ProcessPtr p = it->second;
      ReapLeader(p);
      if (!p->reaped) break;  // cannot happen; never spin
    } else {
      waitpid(info.si_pid, nullptr, WNOHANG);
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
    if (p->reaped && p->cgroup && p->cgroup->events_fd() < 0) {
      unannounced.push_back(p);
    }
  }
  for (auto& p : unannounced) MaybeRemoveCgroup(p);
}

void Supervisor::ReapLeader(const ProcessPtr& p) {
  if (p->reaped) return;
  siginfo_t info = {};
  if (waitid(static_cast<idtype_t>(P_PIDFD), p->pidfd.get(), &info,
             WEXITED | WNOHANG) != 0) {
    PM_LOG(ERROR) << "waitid on pidfd of " << p->pid << ": "
                  << ErrnoError("waitid", "P_PIDFD");
    return;
  }
  if (info.si_pid == 0) return;  // spurious wakeup: still running
  p->exit = ExitStatus::FromSiginfo(info);
  p->ended_at = absl::Now();
  p->termination = p->sigkill_sent && p->forced ? ProcessStatus::TERMINATION_FORCED
                   : p->sigkill_sent           ? ProcessStatus::TERMINATION_KILLED
                   : p->sigterm_sent ? ProcessStatus::TERMINATION_AFTER_SIGTERM
                                     : ProcessStatus::TERMINATION_BY_ITSELF;
  p->reaped = true;
  loop_.Unwatch(p->pidfd.get());
  p->pidfd.reset();
  by_pid_.erase(p->pid);
  --live_;
  // What the process wrote before it ended is in its pipes now: take it, so
  // output_bytes counts all of it (backpressure may overshoot its window by
  // at most the pipes' capacity here).
  DrainOutput(p, 0);
  DrainOutput(p, 1);
  if (!p->cgroup || p->abandoned) {
    std::unique_ptr<ProcessCgroup> none;
    FinishReap(p, none, pm::v1::ResourceUsage(), /*removed=*/false);
    return;
  }
  // The cgroup's final usage and its removal (a dozen cgroupfs reads and an
  // rmdir per hierarchy) go to the janitor thread, so the loop is free for
  // the next start meanwhile. FinishReap takes it from there, on the loop.
  if (p->cgroup->events_fd() >= 0) loop_.Unwatch(p->cgroup->events_fd());
  p->exit_pending = true;
  auto held = std::make_shared<std::unique_ptr<ProcessCgroup>>(std::move(p->cgroup));
  // The janitor's task hands its reference on to the loop: the last one to
  // a Process must be dropped on the loop thread (its OutputSender cancels
  // loop timers), never here.
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
  p->exit_pending = false;
  const ExitStatus& exit = p->exit;
  ProcessStatus& s = p->status;
  const absl::Time now = p->ended_at;
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
  s.set_termination(p->termination);
  // Usage as of the leader's end, read while the cgroup was surely there. A
  // SIGKILL we did not send, with an OOM kill on the cgroup's books, is the
  // OOM killer's.
  if (cgroup) *s.mutable_usage() = final_usage;
  if (p->abandoned && p->cgroup) *s.mutable_usage() = p->cgroup->ReadUsage();
  s.set_oom_killed(exit.kind == ExitStatus::Kind::kSignaled &&
                   exit.signal == SIGKILL && !p->sigkill_sent &&
                   s.usage().oom_kills() > 0);
  s.set_end_reason(DescribeEnd(exit, s.termination(), s.oom_killed(),
                               s.usage(), p->limits));
  s.set_output_bytes(p->sender->end_offset());
  s.clear_proc_status();
  s.clear_rss_bytes();
  s.clear_threads();
  if (p->abandoned) {
    p->sender->Cancel();
    MaybeRemoveCgroup(p);
    return;
  }
  if (cgroup) {
    if (removed) {
      // Removed before the final update goes out, so whoever learns of the
      // end finds the cgroup gone.
      cgroup.reset();
      with_cgroup_.erase(p.get());
    } else {
      // Descendants still live in it: back to the loop's watch, and what
      // was asked of its members meanwhile is done now.
      p->cgroup = std::move(cgroup);
      WatchCgroup(p);
      if (p->members_term_deferred) p->cgroup->SignalMembers(SIGTERM, p->pid);
      if (p->kill_deferred) KillCgroup(p);
    }
  }
  p->members_term_deferred = p->kill_deferred = false;
  SendUpdate(p);
  CheckStopDone(p);
  MaybeForget(p);
}

void Supervisor::AbandonUnrecorded(const ProcessPtr& p) {
  // The registry never learned of it: kill it and forget it, as if the
  // Start had not happened.
  p->abandoned = true;
  SignalGroup(*p, SIGKILL);
  KillCgroup(p);
  for (int i = 0; i < 2; ++i) {
    UnwatchOutput(p, i);
    p->out[i].reset();
  }
  p->sender->Cancel();
}

void Supervisor::OnRecorded(const ProcessPtr& p, const ProcessStatus& record) {
  // The record is the registry's; what happened since (an exit) is ours.
  ProcessStatus local = p->status;
  p->status = record;
  p->recorded = true;
  by_id_[p->id] = p;
  if (p->abandoned) {
    // Shutdown killed it before it was on record: say how it ended.
    p->abandoned = false;
  }
  if (Ended(local)) {
    p->status.set_state(local.state());
    p->status.set_exit_code(local.exit_code());
    p->status.set_signal(local.signal());
    p->status.set_core_dumped(local.core_dumped());
    *p->status.mutable_ended_at() = local.ended_at();
    *p->status.mutable_run_time() = local.run_time();
    p->status.set_termination(local.termination());
    p->status.set_output_bytes(local.output_bytes());
    *p->status.mutable_usage() = local.usage();
    p->status.set_oom_killed(local.oom_killed());
    p->status.set_end_reason(local.end_reason());
    SendUpdate(p);
  }
}

void Supervisor::Stop(const pm::v1::StopRequest& request, StopCallback done) {
  if (absl::Status valid = ValidateStopRequest(request); !valid.ok()) {
    done(valid);
    return;
  }
  const absl::Duration grace = StopGrace(request, options_.default_grace);
  auto shared_done = std::make_shared<StopCallback>(std::move(done));
  if (!loop_.Post([this, id = request.id(), grace, shared_done] {
        auto it = by_id_.find(id);
        if (it == by_id_.end()) {
          StopUnknown(id, std::move(*shared_done));
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
  if (grace <= absl::ZeroDuration() && p->stop_phase != StopPhase::kKilling) {
    p->forced = true;
  }
  switch (p->stop_phase) {
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
  p->stop_phase = StopPhase::kGrace;
  if (!p->reaped) {
    p->status.set_state(ProcessStatus::STATE_STOPPING);
    SendUpdate(p);
  }
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
  if (!GroupGone(*p) || !p->reaped) {
    SignalGroup(*p, SIGTERM);
    p->sigterm_sent = !p->reaped || p->sigterm_sent;
  }
  // Members that left the group (daemons that called setsid()) get the
  // same warning before the kill; the group's own members got it once.
  if (p->cgroup) p->cgroup->SignalMembers(SIGTERM, p->pid);
  if (p->exit_pending) p->members_term_deferred = true;
}

void Supervisor::OnGraceExpired(const ProcessPtr& p) {
  p->grace_timer = 0;
  if (p->stop_phase != StopPhase::kGrace) return;
  p->stop_phase = StopPhase::kKilling;
  if (p->reaped && GroupGone(*p) && CgroupGone(*p)) {
    CheckStopDone(p);
    return;
  }
  // Every member still there, leader or not, in the group or only in the
  // cgroup, gets SIGKILL.
  SignalGroup(*p, SIGKILL);
  KillCgroup(p);
  if (!p->reaped) p->sigkill_sent = true;
  p->kill_timer = loop_.RunAfter(
      options_.kill_timeout, [this, weak = std::weak_ptr<Process>(p)] {
        auto locked = weak.lock();
        if (!locked) return;
        locked->kill_timer = 0;
        if (locked->stop_phase == StopPhase::kKilling) {
          FinishStop(locked, /*stopped=*/false);
        }
      });
}

void Supervisor::CheckStopDone(const ProcessPtr& p) {
  // While the janitor holds the cgroup, FinishReap looks again.
  if (!p->stopping() || !p->reaped || p->exit_pending || !GroupGone(*p)) return;
  if (!CgroupGone(*p)) {
    // A kill that is not atomic may have missed a fork: again.
    if (p->cgroup_killed && !p->cgroup->kill_is_atomic()) p->cgroup->Kill();
    return;
  }
  FinishStop(p, /*stopped=*/true);
}

void Supervisor::FinishStop(const ProcessPtr& p, bool stopped) {
  // Before anyone hears that the stop is done.
  if (p->reaped) RemoveCgroupIfEmpty(p);
  loop_.Cancel(p->grace_timer);
  loop_.Cancel(p->kill_timer);
  p->grace_timer = p->kill_timer = 0;
  p->stop_phase = StopPhase::kNone;
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

void Supervisor::SendUpdate(const ProcessPtr& p) {
  if (!p->recorded || p->abandoned) return;  // OnRecorded sends it
  const ProcessStatus& s = p->status;
  pm::internal::v1::UpdateRecordRequest r;
  r.set_id(p->id);
  r.set_state(s.state());
  *r.mutable_end() = ProcessEndOf(s);
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

void Supervisor::PushUpdate(const ProcessPtr& p) {
  p->dirty = false;
  SendUpdate(p);
}

void Supervisor::MaybeForget(const ProcessPtr& p) {
  if (!p->reaped || p->exit_pending || p->output_open() || p->stopping() ||
      !p->flushed()) {
    return;
  }
  // While its cgroup holds members, a Stop must still find it.
  if (p->cgroup) return;
  if (!p->abandoned && !p->sender->done()) return;
  // Everything about it is with the registry and the log_store now.
  if (p->recorded) by_id_.erase(p->id);
  NotifyIfDrained();
}

void Supervisor::NotifyIfDrained() {
  if (drained_ && by_id_.empty() && !drained_->HasBeenNotified()) {
    drained_->Notify();
  }
}

bool Supervisor::GroupGone(Process& p) const {
  if (p.group_gone) return true;
  // The group id is the leader's pid (setsid); the kernel keeps that number
  // from being reused while any member of the group lives (and, as
  // subreaper, we reap every member). Once seen empty after the leader was
  // reaped, the number may be recycled by a new group: latched, so the
  // group is never signalled again.
  const bool gone = kill(-p.pid, 0) != 0 && errno == ESRCH;
  if (gone && p.reaped) p.group_gone = true;
  return gone;
}

void Supervisor::SignalGroup(Process& p, int sig) {
  if (!p.reaped && p.pidfd.valid()) PidfdSendSignal(p.pidfd.get(), sig);
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
  if (p.exit_pending) return false;  // the janitor will say
  return !p.cgroup || !p.cgroup->Populated();
}

void Supervisor::KillCgroup(const ProcessPtr& p) {
  if (p->exit_pending) {
    p->kill_deferred = true;
    return;
  }
  if (!p->cgroup) return;
  p->cgroup->Kill();
  p->cgroup_killed = true;
}

void Supervisor::MaybeRemoveCgroup(const ProcessPtr& p) {
  // Removed once the leader is reaped and nothing of the tree is left.
  if (!p->reaped) return;
  ProcessPtr keep = p;  // `p` may be the map's own reference
  if (RemoveCgroupIfEmpty(keep)) MaybeForget(keep);
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
  }
}

void Supervisor::Shutdown(absl::Duration grace) {
  if (!loop_thread_.joinable()) return;
  StopSpareCgroups();
  auto all_stopped = std::make_shared<absl::Notification>();
  loop_.Post([this, grace, all_stopped] {
    shut_down_ = true;
    std::vector<ProcessPtr> live;
    for (auto& [id, p] : by_id_) {
      if (!p->reaped || !GroupGone(*p) || !CgroupGone(*p)) live.push_back(p);
    }
    for (auto& [pid, p] : by_pid_) {
      if (!p->recorded) AbandonUnrecorded(p);
    }
    auto remaining = std::make_shared<size_t>(live.size());
    if (live.empty()) all_stopped->Notify();
    for (auto& p : live) {
      p->stop_waiters.push_back(
          [remaining, all_stopped](absl::StatusOr<pm::v1::StopResponse>) {
            if (--*remaining == 0) all_stopped->Notify();
          });
      // A stop already in its grace period is brought forward to this
      // one's: the shutdown never waits past its own bound, and no tree
      // is left running outside pm.
      RequestStop(p, grace);
    }
  });
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
  loop_.Post([this] {
    AnswerEveryStop();
    for (auto& [id, p] : by_id_) p->sender->Cancel();
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
  });
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
