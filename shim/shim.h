// pm-shim: the parent of one managed process (the containerd-shim / conmon
// model). It outlives every pm service: it drains the process's output to
// segment files on disk, reaps it and every orphan reparented to it, writes
// its exit status next to its output, and reconnects to a restarted
// supervisor.
//
//   // main.cc
//   PM_ASSIGN_OR_RETURN(ShimFlags flags, ParseShimFlags(argc, argv));
//   PM_ASSIGN_OR_RETURN(std::unique_ptr<Shim> shim, Shim::Create(flags));
//   return shim->Run();
//
// A shim's life is one phase at a time (Phase): idle until a Spawn arrives
// on its control socket, running while the leader lives, draining once the
// leader is reaped until every pipe is at EOF and no child is left, then
// done. With a restart policy (Spawn.restart, applied here so that restarts
// go on while the supervisor is away), a run that ends and is wanted again
// moves to backoff instead: what is left of its tree is killed (its process
// group and its cgroup), a timer waits the delay, and the next run starts
// into the same cgroup, its output appended to the same log; NoRestart (a
// stop) or the restarts' cap ends that, through draining as above. Orthogonal to it, the control link is connected or, after EOF,
// waiting for <runtime_dir>/shims.sock to appear (inotify) and, when the
// socket was there but refused or its backlog was full, for a backoff timer
// (timerfd, 50 ms doubling to 5 s) to try again; the connect never blocks. Everything happens on one thread in one epoll
// loop; signals are read from a signalfd. Once a process runs, no failure
// aborts the shim: it is logged (rate-limited, in the process's shim.log)
// and the shim carries on, or finishes cleanly.
#ifndef PM_SHIM_SHIM_H_
#define PM_SHIM_SHIM_H_

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/fd.h"
#include "segment_log/writer.h"
#include "shim/exit_file.h"
#include "shim/launch.h"
#include "shim/protocol.h"
#include "shim/restarts.h"

namespace pm::shim {

// The shim's own log in the process's directory.
inline constexpr char kShimLogName[] = "shim.log";

// Exit codes of pm-shim.
inline constexpr int kExitDone = 0;         // ended normally, or idle and let go
inline constexpr int kExitSpawnFailed = 1;  // SpawnFailed was sent
inline constexpr int kExitBroken = 2;       // bad flags, unusable control fd

struct ShimFlags {
  int control_fd = -1;
  std::string state_dir;
  std::string runtime_dir;
  // The process's output on disk: the oldest whole segments are deleted
  // past max_output_bytes (segment_log::WriterOptions::max_bytes); a new
  // segment starts every segment_bytes, at most a quarter of the cap, so
  // the cap deletes in quarters or less.
  uint64_t max_output_bytes = kDefaultMaxOutputBytes;
  uint64_t segment_bytes = kDefaultSegmentBytes;
  // The id of the process this shim will run, when given at launch (a
  // spare's): its directory, shim.log and first segment are made while the
  // shim is idle, so a Spawn does not wait for them (each create is a
  // journaled metadata write, about 0.3 ms on the VMs pm is measured on);
  // the Spawn must name this id. An idle shim let go removes them again.
  std::string process_id;
  // --zygote: serve ForkShim instead (zygote.h); the forked children run
  // as idle shims.
  bool zygote = false;
};

// --control_fd=N --state_dir=DIR --runtime_dir=DIR, all required;
// optional --max_output_bytes=N (default kDefaultMaxOutputBytes, at least
// 4) and --segment_bytes=N (default the smaller of kDefaultSegmentBytes and
// a quarter of the cap; given, at least 1 and at most a quarter of the cap)
// and --process_id=UUID (see ShimFlags::process_id), or --zygote (not with
// --process_id; see zygote.h).
// INVALID_ARGUMENT naming the flag otherwise.
absl::StatusOr<ShimFlags> ParseShimFlags(int argc, const char* const* argv);

class Shim {
 public:
  // Becomes a child subreaper and the leader of its own session, ignores
  // SIGINT, SIGHUP, SIGPIPE, SIGTERM and SIGXFSZ, blocks SIGCHLD into a signalfd,
  // closes every inherited fd but 0, 1, 2 and the control fd. The output
  // is written with the caps of `flags`. Errors name the call;
  // FAILED_PRECONDITION when the control fd is not a SOCK_SEQPACKET socket.
  static absl::StatusOr<std::unique_ptr<Shim>> Create(const ShimFlags& flags);

  // Runs until the end (see the file comment); returns the exit code.
  int Run();

 private:
  enum class Phase { kIdle, kRunning, kBackoff, kDraining, kDone };
  // What an epoll event is about.
  enum Source : uint32_t {
    kControl, kStdout, kStderr, kPidfd, kSignals, kInotify, kReconnectTimer,
    kRestartTimer
  };
  static constexpr absl::Duration kMinReconnectBackoff = absl::Milliseconds(50);

  explicit Shim(const ShimFlags& flags);

  // Every phase change goes through here; an illegal one is a bug, logged
  // and refused (aborting would orphan the process).
  void Transition(Phase to);

  // The steps of Create.
  absl::Status TakeOverProcess();
  absl::Status CloseInheritedFds();
  absl::Status SetUpEvents();

  // Idle: waits for the Spawn; false when the shim should exit (EOF or a
  // spawn that failed).
  bool AwaitSpawn();
  // With --process_id: the process's directory, made before any Spawn.
  // A failure is logged and tried again at the Spawn.
  void PrepareProcessDirAhead();
  // Let go while idle: the directory made ahead goes (nothing ran there).
  void RemoveUnusedProcessDir();
  // The steps of a Spawn.
  absl::Status TakeProcessId(const Spawn& spawn);
  absl::Status PrepareProcessDir();
  absl::Status SpawnProcess(Spawn spawn, std::vector<Fd>& fds);
  // A run of spawn_ into its cgroup (spawn_fds_): the leader's pid, pidfd
  // and pipes taken.
  absl::StatusOr<std::string> SpawnRun();
  void WatchProcess();

  // One turn of the loop: waits for events and handles them. Never aborts:
  // an epoll that fails is made again; an fd it will not take is polled
  // every kRetryInterval and offered to it again.
  void WaitAndHandleEvents();
  void RecreateEpoll();
  // The fds the loop watches now, with what each is.
  std::vector<std::pair<const Fd*, Source>> LiveSources() const;
  void RetryUnwatched();
  void PollUnwatched(int timeout_ms);
  void HandleEvent(Source source);
  void ReadControl();
  // Reads at most `max_bytes` of what the pipe of `source` has now (so the
  // other sources get their turn); closes it at EOF.
  void Drain(Source source, size_t max_bytes);
  // Reads what both pipes hold now (FIONREAD), bounded even while a child
  // keeps writing; sees an EOF already there.
  void DrainWhatIsThere();
  void Append(segment_log::Stream stream, absl::string_view data);
  void ReadSignals();
  // Reaps every child that has exited; the leader through its pidfd.
  void ReapChildren();
  // waitid(P_PID); false (logged) if it failed.
  bool ReapByPid(pid_t pid);
  void OnLeaderExit(const siginfo_t& info);
  // A run ended with `end`: the next one after its delay (backoff), or the
  // end for good.
  void OnRunEnd(const ProcessEnd& end);
  void EnterBackoff(const ProcessEnd& end, absl::Duration delay);
  void EndForGood(const ProcessEnd& end, bool gave_up);
  // What is left of the ended run's tree: its process group and the
  // members of its cgroup, SIGKILLed.
  void KillLeftovers();
  // The run's cgroup.procs for reading; invalid without a cgroup.
  Fd OpenCgroupProcs() const;
  void ArmRestartTimer(absl::Duration delay);
  void StopRestartTimer();
  void OnRestartTimer();
  void StartNextRun();
  // NoRestart: a stop is under way.
  void OnNoRestart();
  bool Finished() const;
  void Finish();

  // The control link.
  void Send(const Message& message, absl::Span<const int> fds = {});
  void Disconnect();
  // Watches the runtime dir for shims.sock and, with `try_now`, connects
  // at once if it is there.
  void WatchForSupervisor(bool try_now = true);
  void OnInotify();
  // One non-blocking connect to <runtime_dir>/shims.sock; a full backlog
  // (EAGAIN) or a refusal (ECONNREFUSED) arms the reconnect timer, and
  // every failure waits for inotify.
  void TryReconnect();
  void ArmReconnectTimer();
  void StopReconnectTimer();
  void OnReconnectTimer();
  void SendHello();

  // Adds `fd` to the epoll set, or to unwatched_ if epoll refuses it.
  void Watch(int fd, Source source);
  void RemoveFromEpoll(int fd);
  // What failed, for the shim's log: runtime failures are logged and
  // survived, never fatal (the process's output and exit must outlive them).
  enum Failure { kFailOutput, kFailEvents, kFailReap, kFailControl, kFailureKinds };
  // At most one line per kind of failure per minute, with the count of
  // those not shown.
  void LogRateLimited(Failure kind, const absl::Status& status);

  const ShimFlags flags_;
  const segment_log::WriterOptions output_options_;
  Phase phase_ = Phase::kIdle;
  Fd control_;
  Fd epoll_;
  Fd signals_;
  Fd inotify_;
  Fd reconnect_timer_;  // a timerfd, while a connect waits for room
  absl::Duration reconnect_backoff_ = kMinReconnectBackoff;
  // When the current control link was made by a reconnect (InfinitePast:
  // it was not): a link a supervisor closes soon after the Hello refused
  // the shim, and the next try waits for the backoff (or for a new
  // shims.sock), so a refused shim does not reconnect in a loop.
  absl::Time reconnected_at_ = absl::InfinitePast();

  // The process, once spawned.
  std::string uuid_;
  std::string proc_dir_;
  pid_t pid_ = -1;
  // The current run's process group, until killed at its end (0: none).
  pid_t group_ = 0;
  uint64_t start_ticks_ = 0;
  Fd pidfd_;  // until the leader is reaped
  Fd stdout_;
  Fd stderr_;
  std::unique_ptr<segment_log::Writer> output_;
  // The process's end, once no run follows.
  std::optional<ProcessEnd> end_;

  // With a restart policy: what the next run needs (the Spawn's command and
  // the cgroup fds it names), the run's number and start, and while in
  // backoff the ended run's end and when the next starts.
  std::optional<Restarts> restarts_;
  Spawn spawn_;
  std::vector<Fd> spawn_fds_;
  uint32_t run_ = 1;
  absl::Time run_started_;
  std::optional<ProcessEnd> last_end_;
  // The end of the run before the current one (run 2 on), for Hello.
  std::optional<ProcessEnd> previous_end_;
  // Whether the restarts' cap ended the process (end_ is then its end).
  bool gave_up_ = false;
  absl::Time next_start_;
  Fd restart_timer_;
  std::minstd_rand random_;
  bool children_left_ = true;
  int exit_code_ = kExitDone;

  // Fds epoll did not take (fd, what it is), polled each turn.
  std::vector<std::pair<int, Source>> unwatched_;

  struct RateLimit {
    absl::Time last_logged = absl::InfinitePast();
    uint64_t not_logged = 0;
  };
  RateLimit rate_limits_[kFailureKinds];
};

}  // namespace pm::shim

#endif  // PM_SHIM_SHIM_H_
