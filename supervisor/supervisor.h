// Supervisor: spawns, signals and reaps the managed processes.
//
//   SupervisorOptions options;
//   options.registry_socket = pm::SocketPath(dir, pm::Service::kRegistry);
//   options.shim = {shim_binary, state_dir, dir};
//   PM_ASSIGN_OR_RETURN(auto supervisor, Supervisor::Create(options));
//   supervisor->Start(request, Owner(), [](absl::StatusOr<pm::v1::StartResponse> r) {});
//   supervisor->Stop(stop_request, [](absl::StatusOr<pm::v1::StopResponse> r) {});
//   supervisor->Shutdown();   // stops every process, flushes, joins
//
// Each process is started through a pm-shim of its own (the containerd-shim
// and conmon model, shim/shim.h): the shim is its parent and subreaper,
// drains its output into <state_dir>/procs/<id>/output (where the log_store
// reads it), reaps it, writes its exit file and tells the supervisor over a
// control socket (Exited, then Closed). So a managed process depends on no
// pm service: the supervisor may die and a new one re-adopts the shims. To
// keep Start fast, idle shims are started ahead of need (Spares), so a
// Start costs one message and one spawn.
//
// All process state lives on one event-loop thread: the shims' control
// sockets, cgroup events and the SIGCHLD signalfd are watched with epoll,
// so exits are events and nothing polls. The supervisor is a child
// subreaper: a shim that dies leaves its process to the supervisor, which
// reaps it through its pidfd, so no zombie is ever left. It tells the
// registry about every state change; output never passes through it.
//
// Each process and all its descendants live in a cgroup of their own (see
// cgroup.h), made before the process runs and removed once it has ended,
// been reaped and the cgroup is empty. A stop sends SIGTERM to the process
// group (and to members that left it, e.g. setsid() daemons), waits the
// grace period, then kills every member of the cgroup and waits, on
// cgroup.events, until it is empty: nothing of the tree survives a stop.
// Without cgroups it stops the process group as before. Two helper threads
// keep slow cgroupfs work off the loop: one makes spare cgroups ahead of
// need, the janitor reads a reaped leader's final usage and removes its empty
// cgroup (the cgroup is handed over and back whole, never shared).
//
// Inside, each process's life is three named phases (the leader, its
// registry record, a stop in progress) moved only through one transition
// table (lifecycle.h); the implementation is split by responsibility into
// start.cc, stop.cc, reap.cc, tree.cc, output_pump.cc and record_sync.cc
// around the Process of process.h.
//
// SIGCHLD must be blocked in every thread before Create (the loop reads it
// from a signalfd): call pm::BlockTerminationSignals({SIGCHLD}) first in
// main.
#ifndef PM_SUPERVISOR_SUPERVISOR_H_
#define PM_SUPERVISOR_SUPERVISOR_H_

#include <sys/resource.h>
#include <sys/types.h>

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include <grpcpp/grpcpp.h>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "common/fd.h"
#include "pm/internal/v1/internal.grpc.pb.h"
#include "pm/v1/process_manager.pb.h"
#include "supervisor/cgroup.h"
#include "supervisor/event_loop.h"
#include "supervisor/idle_shim.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "shim/launch.h"
#include "shim/protocol.h"
#include "supervisor/record_stream.h"
#include "supervisor/shim_listener.h"
#include "supervisor/spares.h"
#include "supervisor/spawn.h"
#include "common/exit_status.h"

namespace pm::supervisor {

struct SupervisorOptions {
  std::string registry_socket;
  // The pm-shim each process runs under (its binary, the state dir where
  // it keeps the process's output and exit file, the runtime dir where
  // shims.sock is, the output caps). Required.
  shim::ShimLaunch shim;
  // Stop's grace period when the request says 0 (at most
  // kMaxGracePeriodMs).
  absl::Duration default_grace = absl::Seconds(10);
  // How long Stop waits for the group to vanish after SIGKILL before it
  // answers stopped=false.
  absl::Duration kill_timeout = absl::Seconds(5);
  // Deadline of each registry call and of reaching a backend at Start.
  absl::Duration backend_timeout = absl::Seconds(5);
  // Cap on processes that have not ended; Start beyond it is
  // RESOURCE_EXHAUSTED.
  size_t max_processes = 4096;
  // The largest command a Start may give (--max_args, --max_command_bytes).
  CommandCaps command_caps;
  // This host's name in its cluster (--node; common/names.h's node rules),
  // or empty when it is in none. Start runs only a request for this node
  // (or none): another host's Start goes to that host's gateway.
  std::string node;
  // The RLIMIT_NOFILE every managed process gets: the supervisor's own
  // before main raised it (common/file_limit.h). Unset: the supervisor's.
  std::optional<rlimit> child_file_limit;
  // Which cgroups to use and where (--cgroups, --cgroup_parent).
  CgroupOptions cgroup;
  // At start, how long records of processes that had not ended wait for
  // their shims' Hello (counted from when shims.sock appears) before they
  // are settled without one (adopted if alive, else ended or LOST).
  absl::Duration adopt_wait = absl::Seconds(1);
  // Idle shims kept ready (--spare_shims); 0 makes each at its Start.
  size_t spare_shims = 2;
  // Tests only: runs on the janitor thread before each leader's cgroup work,
  // so a test can hold the cgroup there and act meanwhile.
  std::function<void()> janitor_gate;
};

// Who asked for a start, recorded with the process.
struct Owner {
  // "user (client certificate subject)"; empty for local callers.
  std::string display;
  // The gateway user alone (what the gateway authorizes by).
  std::string user;
};

struct Process;  // process.h: one managed process, as held on the loop

// What a shim answered a Spawn with: the process runs.
struct ShimStarted {
  std::string id;  // the process's, the shim's --process_id
  pid_t pid = -1;
  Fd pidfd;
  uint64_t start_ticks = 0;
  std::string executable;  // the path exec'd, after the PATH lookup
  CommandLine command;     // what was run
  pid_t shim_pid = -1;
  Fd shim_pidfd;  // the shim's own pidfd (it is this supervisor's child)
  Fd control;     // the shim's control socket, non-blocking
};

class Supervisor {
 public:
  // Becomes a child subreaper, starts the event loop thread, the idle
  // shims and connects (lazily) to the registry. INVALID_ARGUMENT without a
  // shim binary or state dir.
  static absl::StatusOr<std::unique_ptr<Supervisor>> Create(
      SupervisorOptions options);
  ~Supervisor();

  // Starts a process through a shim; `done` is called exactly once (on the
  // loop or a gRPC thread), when it has exec'd and is on record. No thread
  // waits for the registry: the loop spawns, asks the registry, and its
  // answer finishes the call. Errors: INVALID_ARGUMENT (bad request), FAILED_PRECONDITION (exec
  // failed; names the call, the path and the OS error; no id handed out;
  // or a limit or namespace this host cannot give, naming what is missing;
  // or a request.node that is not options.node, naming both),
  // RESOURCE_EXHAUSTED (max_processes; or out of fds, EMFILE or ENFILE,
  // naming the call and the supervisor's RLIMIT_NOFILE), UNAVAILABLE
  // (registry unreachable; names it and its socket), DEADLINE_EXCEEDED (the
  // shim did not answer the Spawn within backend_timeout).
  // `owner` is recorded with the process (the gateway's authenticated
  // user); empty for local callers.
  using StartDone = std::function<void(absl::StatusOr<pm::v1::StartResponse>)>;
  void Start(const pm::v1::StartRequest& request, Owner owner, StartDone done);

  // Stops a process and its whole tree: SIGTERM to its group (and to
  // members of its cgroup that left the group), the grace period, then
  // SIGKILL to the group and every member of the cgroup; then waits up to
  // kill_timeout for the group and the cgroup to be empty. A forced stop
  // (request.force) skips SIGTERM and the grace period. `done` is called
  // exactly once. Concurrent stops of one id share one stop and get the
  // same answer; one with a sooner deadline than the stop in progress
  // brings its SIGKILL forward. Errors: INVALID_ARGUMENT (a malformed id, a
  // grace period above kMaxGracePeriodMs), NOT_FOUND, UNAVAILABLE (the
  // registry, for an id this supervisor no longer holds; or shutting down).
  using StopCallback = std::function<void(absl::StatusOr<pm::v1::StopResponse>)>;
  void Stop(const pm::v1::StopRequest& request, StopCallback done);

  // Sends one signal (request.signal, or request.signal_name parsed as
  // kill(1) does) to the process's group, or with leader_only to its leader
  // alone, through the pidfd. Errors: INVALID_ARGUMENT (no signal, or not
  // one; a malformed id), NOT_FOUND, FAILED_PRECONDITION (ended: nothing
  // sent), UNAVAILABLE (being re-adopted after a restart; the registry).
  using SignalCallback =
      std::function<void(absl::StatusOr<pm::v1::SignalResponse>)>;
  void Signal(const pm::v1::SignalRequest& request, SignalCallback done);

  // Removes an ended process: its record (the registry's RemoveRecord) and
  // its directory in the state dir. One that has ended but still drains
  // (its output, its final update) is waited for; a live one, or one whose
  // tree still runs, is FAILED_PRECONDITION unless request.force, which
  // stops it at once (SIGKILL) first. Other errors as Stop's.
  using RemoveCallback =
      std::function<void(absl::StatusOr<pm::v1::RemoveResponse>)>;
  void Remove(const pm::v1::RemoveRequest& request, RemoveCallback done);

  // Stops every live process and every tree still in a cgroup (grace
  // `grace`; a stop in progress with a longer one is brought forward to
  // it), flushes output and registry updates (bounded), answers every stop
  // still waiting, removes the empty cgroups and joins the loop. Returns
  // within grace + kill_timeout + backend_timeout + 2 s. Idempotent.
  void Shutdown(absl::Duration grace = absl::Seconds(3));

  // Ends this supervisor leaving every process running under its shim (an
  // upgrade, SIGUSR2): no new starts, the registry's updates in flight
  // flushed (bounded by backend_timeout), every shim's control socket
  // closed (each shim carries on and waits for shims.sock to appear again),
  // shims.sock removed, the idle shims ended, the loop joined. A stop in
  // progress is not answered (its caller sees the supervisor go) and the
  // next supervisor carries it on. Populated cgroups are left for the next
  // supervisor to adopt. Shutdown afterwards does nothing.
  void HandOff();

 private:
  using ProcessPtr = std::shared_ptr<Process>;

  explicit Supervisor(SupervisorOptions options);
  absl::Status Init();

  // Calls `then` with OK once the registry is connected, or with
  // UNAVAILABLE naming it and its socket if it cannot be reached within
  // 2 s. At once (on this thread) when it already is; otherwise from a gRPC
  // thread, after a health check that waits for the connection, so no
  // thread blocks meanwhile.
  void WhenRegistryReady(std::function<void(absl::Status)> then);

  // Loop-thread steps.
  // Spawns the process through a shim into a cgroup of its own and
  // watches it; its id is the one the shim was started for.
  absl::StatusOr<ProcessPtr> SpawnOnLoop(const pm::v1::StartRequest& request);
  // Takes a cgroup (into `cgroup`; none without cgroups) and has a shim
  // spawn the child into it; on failure the cgroup is removed again.
  absl::StatusOr<ShimStarted> SpawnInCgroup(
      const pm::v1::StartRequest& request,
      std::unique_ptr<ProcessCgroup>& cgroup);
  // Watches a spawned process: its cgroup and its shim's control socket. If
  // it cannot be watched, it is killed, and the error returned.
  absl::Status WatchProcess(const ProcessPtr& p);
  // What a Start in flight holds of the spares (Spares::Hold).
  struct SpareHolds {
    Spares<shim::LaunchedShim>::Hold shims;
    Spares<std::unique_ptr<ProcessCgroup>>::Hold cgroups;
  };
  class PendingStart;
  // A Start with a name: asks the registry whether it is free, then
  // StartOnLoop; ALREADY_EXISTS when it is not, or another Start has it.
  void ClaimName(const pm::v1::StartRequest& request, const Owner& owner,
                 std::shared_ptr<PendingStart> start);
  // The loop's part of Start: spawn, then the record.
  void StartOnLoop(const pm::v1::StartRequest& request, const Owner& owner,
                   std::shared_ptr<PendingStart> start);
  // A cgroup for a new process: a spare one when there are no limits.
  absl::StatusOr<std::unique_ptr<ProcessCgroup>> TakeCgroup(
      const pm::v1::Limits& limits);
  // The shim link (shim_link.cc).
  // An idle shim (a spare, or one launched now) spawns `request` with
  // `spawn_options` (its cgroup) and answers Spawned or SpawnFailed. The
  // process's id is the shim's (LaunchIdleShim): its directory was made
  // while the shim waited.
  absl::StatusOr<ShimStarted> SpawnThroughShim(
      const pm::v1::StartRequest& request, const SpawnOptions& spawn_options);
  // Messages on a shim's control socket: Exited, Closed; its EOF.
  void OnShimReadable(const ProcessPtr& p);
  // The shim is gone before it said Closed (it died, or was killed): the
  // leader, reparented to this subreaper, is reaped through its pidfd, and
  // its output is closed on disk here.
  void OnShimLost(const ProcessPtr& p);
  // With a restart policy: a run ended and the next will start (the
  // process is between runs, STATE_BACKOFF), or the next run started (its
  // pid and pidfd replace the last run's).
  void OnRunRestarting(const ProcessPtr& p, const shim::Restarting& restarting);
  void OnRunStarted(const ProcessPtr& p, const shim::RunStarted& started, Fd pidfd);
  // Tells its shim (if it has a restart policy) that the run that ends
  // next is the last: before a stop's first signal, and before killing a
  // process that will not be on record.
  void ForbidRestarts(const ProcessPtr& p);
  // The end of a record no shim came back for (SettleUnclaimed), sent to
  // the registry until it takes it (again every second while it is
  // unavailable, logged once); the stops held for it are answered after the
  // first answer, whatever it was.
  void SendSettledEnd(pm::internal::v1::UpdateRecordRequest update, int attempt = 0);
  // The output is complete (Closed, or closed after the shim's loss).
  void OnOutputClosed(const ProcessPtr& p, uint64_t output_end);
  void UnwatchShim(const ProcessPtr& p);
  // Reaps a shim this supervisor started through its own pidfd once it
  // exits: an event of its own, so no shim is left a zombie even if a
  // SIGCHLD went astray (OnSigchld reaps it too; whichever comes first).
  void WatchShimExit(pid_t shim_pid, Fd shim_pidfd);
  void UnwatchShimExits();

  // Re-adoption of an earlier supervisor's processes (adopt.cc).
  absl::Status BeginAdoption();
  void RequestLiveRecords();
  void OnLiveRecords(std::vector<pm::internal::v1::StoredRecord> records);
  void OnShimHello(ShimListener::Adoption adoption);
  // A Hello that matches no record waiting for its shim: refused. If the
  // registry has no record of it at all (its supervisor died between the
  // spawn and the record), its process is killed, as an unrecorded start
  // is; otherwise it is left to its shim, which waits for the next
  // supervisor.
  void RefuseStrayShim(ShimListener::Adoption adoption);
  void AdoptThroughShim(const pm::internal::v1::StoredRecord& record,
                        ShimListener::Adoption adoption);
  // The Process of a record (its cgroup taken over), not watched yet.
  ProcessPtr AdoptedProcess(const pm::internal::v1::StoredRecord& record);
  // Holds and watches `p`; false (logged) if it cannot be watched.
  bool AdoptOnLoop(const ProcessPtr& p);
  // Once adopted (and its end applied, if it ended meanwhile): a stop in
  // progress is carried on, stops held for it are taken up.
  void ResumeAdopted(const ProcessPtr& p);
  void SettleUnclaimed();
  // A Stop of an id that may be an earlier supervisor's process not
  // adopted yet (the live records are not known yet, or its record waits
  // for its shim): held (true) until it is adopted or settled.
  bool HoldStopUntilAdopted(const std::string& id, absl::Duration grace,
                            StopCallback& done);
  // The held stops of `id`, now that it is adopted (a stop of it) or
  // settled (answered from the registry).
  void ReleaseHeldStops(const std::string& id);
  // At shutdown or hand-off: every held stop answered UNAVAILABLE.
  void FailHeldStops();

  void OnSigchld();
  // The leader's pidfd is readable once its shim is gone: reaps it, if it
  // is this supervisor's child now.
  void ReapLeader(const ProcessPtr& p);
  // The leader ended (its shim's Exited, or ReapLeader): `exit` (nullopt:
  // unknown) at `ended`, with `output_end` bytes of output by then.
  void OnLeaderEnd(const ProcessPtr& p, std::optional<ExitStatus> exit,
                   absl::Time ended, uint64_t output_end);
  // Hands the reaped leader's cgroup to the janitor thread (final usage,
  // rmdir if empty), which hands it back to FinishReap on the loop.
  void ReapCgroupOnJanitor(const ProcessPtr& p);
  // The rest of a leader's end, on the loop: the status (with the cgroup's
  // final usage, read by the janitor), the cgroup removed or watched again,
  // the final update. `cgroup` is what the janitor held (null without one).
  void FinishReap(const ProcessPtr& p, std::unique_ptr<ProcessCgroup>& cgroup,
                  const pm::v1::ResourceUsage& final_usage, bool removed);
  void AbandonUnrecorded(const ProcessPtr& p);
  void OnRecorded(const ProcessPtr& p, const pm::v1::ProcessStatus& record);
  // A stop asked for (by a caller or the shutdown) with grace `grace`
  // (zero: forced): begins one, or brings the one in progress forward.
  void RequestStop(const ProcessPtr& p, absl::Duration grace);
  void BeginStop(const ProcessPtr& p, absl::Duration grace);
  // SIGTERM to the group and to the members of the cgroup that left it.
  void SignalTerm(const ProcessPtr& p);
  void OnGraceExpired(const ProcessPtr& p);
  void CheckStopDone(const ProcessPtr& p);
  void FinishStop(const ProcessPtr& p, bool stopped);
  void StopUnknown(const std::string& id, StopCallback done);
  // signal_remove.cc. The registry's record of `id`, to `then` on the loop.
  using RecordCallback =
      std::function<void(absl::StatusOr<pm::v1::ProcessStatus>)>;
  void RecordOf(const std::string& id, RecordCallback then);
  // UNAVAILABLE from the registry, naming it and its socket.
  absl::Status RegistryError(const absl::Status& status) const;
  // Whether `id` may be an earlier supervisor's process not adopted yet.
  bool AwaitingAdoption(const std::string& id) const;
  void RemoveWhenDrained(const std::string& id,
                         std::shared_ptr<RemoveCallback> done);
  void RemoveRecordAndDir(const std::string& id,
                          std::shared_ptr<RemoveCallback> done);
  // At shutdown, before the loop ends: every stop still waiting is
  // answered (stopped=false if its tree is not gone yet), so no caller, and
  // no gRPC call the server waits for, is left without an answer. A net:
  // the shutdown's own bound covers the stops it began; this catches one a
  // caller began after them (say, of a process whose record came late).
  void AnswerEveryStop();
  // Shutdown's steps on the loop. First: refuses new starts, abandons the
  // processes not on record yet and stops every tree still alive (grace
  // `grace`), notifying `all_stopped` once every stop is answered.
  void StopEveryProcess(absl::Duration grace,
                        std::shared_ptr<absl::Notification> all_stopped);
  // HandOff's step on the loop: lets go of every shim and of shims.sock.
  void LetGoForHandOff();
  // Last, once the wait for the registry is over: every stop answered,
  // every empty cgroup removed.
  void LetGoOfEverything();
  void SendUpdate(const ProcessPtr& p);
  void PushUpdate(const ProcessPtr& p);
  void MaybeForget(const ProcessPtr& p);
  // At shutdown: notifies drained_ once no process is left on record.
  void NotifyIfDrained();
  bool GroupGone(Process& p) const;
  void SignalGroup(Process& p, int sig);
  // The cgroup: its populated events, its emptiness, its removal.
  void WatchCgroup(const ProcessPtr& p);
  void OnCgroupEvent(const ProcessPtr& p);
  bool CgroupGone(const Process& p) const;
  void KillCgroup(const ProcessPtr& p);
  void MaybeRemoveCgroup(const ProcessPtr& p);
  // The cgroup the janitor held, back at FinishReap: gone if it `removed`
  // it, else watched again, with the signals deferred meanwhile sent now.
  void TakeBackCgroup(const ProcessPtr& p,
                      std::unique_ptr<ProcessCgroup>& cgroup, bool removed);
  // Removes it if empty (true), leaving the record to the caller.
  bool RemoveCgroupIfEmpty(const ProcessPtr& p);

  SupervisorOptions options_;
  std::shared_ptr<grpc::Channel> registry_channel_;
  std::unique_ptr<grpc::health::v1::Health::Stub> registry_health_;
  std::unique_ptr<pm::internal::v1::Registry::Stub> registry_;

  std::unique_ptr<Cgroups> cgroups_;
  // Empty cgroups without limits made ahead of need by their own thread:
  // creating one (a mkdir per hierarchy) costs about as much as the clone
  // and exec, so Start takes a ready one and the loop never waits for it.
  // Null without cgroups. Idle pm-shims are made ahead of need the same
  // way, by idle_shims_ (through a pm-shim zygote), declared first as
  // spare_shims_ uses it. All three are declared before the loop and the
  // record stream, so they outlive every Start in flight (its Hold).
  std::unique_ptr<Spares<std::unique_ptr<ProcessCgroup>>> spare_cgroups_;
  std::unique_ptr<IdleShimMaker> idle_shims_;
  std::unique_ptr<Spares<shim::LaunchedShim>> spare_shims_;
  EventLoop loop_;
  std::thread loop_thread_;
  // Creates and updates of records, on one stream to the registry.
  std::unique_ptr<RecordStream> records_;
  // Cgroup work at a leader's end (final usage, rmdir), off the loop.
  EventLoop janitor_;
  std::thread janitor_thread_;
  Fd sigchld_fd_;
  bool shut_down_ = false;

  // Loop-thread state.
  absl::flat_hash_map<pid_t, ProcessPtr> by_pid_;        // leaders not reaped
  absl::flat_hash_map<std::string, ProcessPtr> by_id_;   // recorded, not forgotten
  // Every process whose cgroup is not removed yet (it may outlive by_pid_
  // and by_id_: an abandoned start whose tree is still dying).
  absl::flat_hash_map<Process*, ProcessPtr> with_cgroup_;
  size_t live_ = 0;
  std::shared_ptr<absl::Notification> drained_;  // set by Shutdown
  // Names of the Starts between ClaimName and their answer.
  absl::flat_hash_set<std::string> names_starting_;

  // Re-adoption (loop thread): shims.sock, and the live records until each
  // is adopted or settled.
  std::unique_ptr<ShimListener> shim_listener_;
  // The pidfds of the shims this supervisor started that have not exited,
  // watched until they do (WatchShimExit).
  absl::flat_hash_map<int, Fd> shim_pidfds_;
  absl::Time listening_since_;
  bool live_records_known_ = false;
  // Hellos that came before the registry's list of live records.
  absl::flat_hash_map<std::string, ShimListener::Adoption> early_hellos_;
  // Set (once) when every live record is adopted or settled: Shutdown
  // waits for it (bounded), so the processes an earlier supervisor left are
  // stopped with the others.
  absl::Notification adoption_settled_;
  // Live records whose shim has not said Hello yet.
  absl::flat_hash_map<std::string, pm::internal::v1::StoredRecord> unclaimed_;
  struct HeldStop {
    absl::Duration grace;
    StopCallback done;
  };
  absl::flat_hash_map<std::string, std::vector<HeldStop>> held_stops_;
};

}  // namespace pm::supervisor

#endif  // PM_SUPERVISOR_SUPERVISOR_H_
