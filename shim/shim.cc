#include "shim/shim.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/inotify.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/strip.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/log.h"
#include "common/proc.h"
#include "common/state_layout.h"
#include "common/status_core.h"
#include "common/uuid.h"
#include "segment_log/format.h"
#include "supervisor/spawn_command.h"

#ifndef P_PIDFD
#define P_PIDFD 3
#endif

namespace pm::shim {
namespace {

// How much one read takes, and one readiness of a pipe may read before the
// loop moves on.
constexpr size_t kReadBytes = 64 << 10;
constexpr size_t kReadBytesPerTurn = 16 * kReadBytes;
constexpr absl::Duration kFailureLogInterval = absl::Minutes(1);
// How often an fd epoll would not take is polled and offered to it again.
constexpr absl::Duration kRetryInterval = absl::Milliseconds(100);
// The backoff between connects to a listener whose backlog is full.
constexpr absl::Duration kMaxReconnectBackoff = absl::Seconds(5);
// A reconnected link the supervisor closes within this is a refusal.
constexpr absl::Duration kRefusalWindow = absl::Seconds(1);

const char* PipeName(bool is_stdout) { return is_stdout ? "stdout pipe" : "stderr pipe"; }

const char* SourceName(int source) {
  static const char* const kNames[] = {"control socket", "stdout pipe", "stderr pipe",
                                       "pidfd", "signalfd", "inotify", "reconnect timer",
                                       "restart timer"};
  return kNames[source];
}

const char* PhaseName(int phase) {
  static const char* const kNames[] = {"idle", "running", "backoff", "draining", "done"};
  return kNames[phase];
}

// The shim's stdout and stderr: /dev/null and its log, so it holds nothing
// of whoever started it (a terminal, a launcher's pipe that would then never
// reach EOF).
absl::Status RedirectStdio(const std::string& log_path) {
  PM_ASSIGN_OR_RETURN(Fd null, Fd::Open("/dev/null", O_RDWR));
  PM_ASSIGN_OR_RETURN(Fd log, Fd::Open(log_path, O_WRONLY | O_CREAT | O_APPEND, 0600));
  if (dup2(null.get(), 0) < 0) return ErrnoError("dup2", "/dev/null");
  if (dup2(null.get(), 1) < 0) return ErrnoError("dup2", "/dev/null");
  if (dup2(log.get(), 2) < 0) return ErrnoError("dup2", log_path);
  return absl::OkStatus();
}

absl::Status MakeDir(const std::string& path) {
  if (mkdir(path.c_str(), 0700) != 0 && errno != EEXIST) {
    return ErrnoError("mkdir", path);
  }
  return absl::OkStatus();
}

supervisor::SpawnIsolation IsolationOf(uint32_t bits) {
  supervisor::SpawnIsolation isolation;
  isolation.pid = (bits & kIsolatePid) != 0;
  isolation.net = (bits & kIsolateNet) != 0;
  isolation.mount = (bits & kIsolateMount) != 0;
  return isolation;
}

// The value of a byte-count flag: a decimal count of at least 1.
absl::Status ParseBytes(absl::string_view flag, absl::string_view value, uint64_t* out) {
  if (!absl::SimpleAtoi(value, out) || *out == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag, ": not a positive byte count: \"", value, "\""));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<ShimFlags> ParseShimFlags(int argc, const char* const* argv) {
  ShimFlags flags;
  bool segment_given = false;
  for (int i = 1; i < argc; ++i) {
    absl::string_view arg = argv[i];
    if (absl::ConsumePrefix(&arg, "--control_fd=")) {
      if (!absl::SimpleAtoi(arg, &flags.control_fd) || flags.control_fd < 0) {
        return absl::InvalidArgumentError(
            absl::StrCat("--control_fd: not an fd number: \"", arg, "\""));
      }
    } else if (absl::ConsumePrefix(&arg, "--state_dir=")) {
      flags.state_dir = std::string(arg);
    } else if (absl::ConsumePrefix(&arg, "--runtime_dir=")) {
      flags.runtime_dir = std::string(arg);
    } else if (absl::ConsumePrefix(&arg, "--max_output_bytes=")) {
      PM_RETURN_IF_ERROR(ParseBytes("--max_output_bytes", arg, &flags.max_output_bytes));
    } else if (absl::ConsumePrefix(&arg, "--segment_bytes=")) {
      PM_RETURN_IF_ERROR(ParseBytes("--segment_bytes", arg, &flags.segment_bytes));
      segment_given = true;
    } else if (arg == "--zygote") {
      flags.zygote = true;
    } else if (absl::ConsumePrefix(&arg, "--process_id=")) {
      PM_RETURN_IF_ERROR(Annotate(ValidateProcessId(arg), "--process_id"));
      // As a Spawn names it (lower case): otherwise no Spawn could match.
      if (arg.find_first_of("ABCDEF") != absl::string_view::npos) {
        return absl::InvalidArgumentError(
            absl::StrCat("--process_id=", arg, ": lower-case hex, as pm writes ids"));
      }
      flags.process_id = std::string(arg);
    } else {
      return absl::InvalidArgumentError(absl::StrCat(
          "unknown argument \"", arg,
          "\"; usage: pm-shim --control_fd=N --state_dir=DIR --runtime_dir=DIR "
          "[--max_output_bytes=N] [--segment_bytes=N] [--process_id=UUID | --zygote]"));
    }
  }
  if (flags.control_fd < 0) return absl::InvalidArgumentError("--control_fd is required");
  if (flags.zygote && !flags.process_id.empty()) {
    return absl::InvalidArgumentError(
        "--zygote and --process_id: a zygote forks shims, each with its own id");
  }
  if (flags.state_dir.empty()) return absl::InvalidArgumentError("--state_dir is required");
  if (flags.runtime_dir.empty()) {
    return absl::InvalidArgumentError("--runtime_dir is required");
  }
  PM_ASSIGN_OR_RETURN(OutputCaps caps,
                      ResolveOutputCaps(flags.max_output_bytes,
                                        segment_given ? flags.segment_bytes : 0));
  flags.max_output_bytes = caps.max_output_bytes;
  flags.segment_bytes = caps.segment_bytes;
  return flags;
}

Shim::Shim(const ShimFlags& flags)
    : flags_(flags),
      output_options_{flags.segment_bytes, flags.max_output_bytes},
      control_(flags.control_fd) {}

absl::StatusOr<std::unique_ptr<Shim>> Shim::Create(const ShimFlags& flags) {
  std::unique_ptr<Shim> shim(new Shim(flags));
  PM_RETURN_IF_ERROR(shim->CloseInheritedFds());
  PM_RETURN_IF_ERROR(shim->TakeOverProcess());
  PM_RETURN_IF_ERROR(shim->SetUpEvents());
  return shim;
}

absl::Status Shim::CloseInheritedFds() {
  int type = 0;
  socklen_t len = sizeof(type);
  if (getsockopt(control_.get(), SOL_SOCKET, SO_TYPE, &type, &len) != 0) {
    return Annotate(ErrnoError("getsockopt", absl::StrCat("--control_fd=", control_.get())),
                    "the control fd must be a SOCK_SEQPACKET socket");
  }
  if (type != SOCK_SEQPACKET) {
    return absl::FailedPreconditionError(absl::StrCat(
        "--control_fd=", control_.get(), " is a socket of type ", type,
        ", not SOCK_SEQPACKET"));
  }
  if (fcntl(control_.get(), F_SETFD, FD_CLOEXEC) != 0) {
    return ErrnoError("fcntl(F_SETFD, FD_CLOEXEC)", absl::StrCat(control_.get()));
  }
  // Whatever else the starter leaked in (its sockets, other processes'
  // pipes) is not ours to hold: around fd 3 (the usual control fd).
  const unsigned control = static_cast<unsigned>(control_.get());
  if (control > 3 && syscall(SYS_close_range, 3, control - 1, 0) != 0) {
    return ErrnoStatus(absl::StrCat("close_range(3, ", control - 1, ")"), errno);
  }
  if (syscall(SYS_close_range, control + 1, ~0U, 0) != 0) {
    return ErrnoStatus(absl::StrCat("close_range(", control + 1, ", ~0)"), errno);
  }
  return absl::OkStatus();
}

absl::Status Shim::TakeOverProcess() {
  // Orphans of the managed tree are reparented here, and reaped.
  if (prctl(PR_SET_CHILD_SUBREAPER, 1) != 0) {
    return ErrnoError("prctl", "PR_SET_CHILD_SUBREAPER");
  }
  // A session of its own: a terminal's Ctrl+C or hangup never reaches it.
  // EPERM means it already leads a process group (its starter made it so),
  // which keeps it out of the starter's group as well.
  if (setsid() < 0 && errno != EPERM) return ErrnoError("setsid");
  // Only the end of its process ends the shim. SIGXFSZ too: a file size
  // limit must make an output write fail (a gap), not kill the shim. The
  // child gets default dispositions back between clone and exec
  // (spawn_command.h).
  for (int sig : {SIGINT, SIGHUP, SIGPIPE, SIGTERM, SIGXFSZ}) {
    if (signal(sig, SIG_IGN) == SIG_ERR) {
      return ErrnoError("signal", SignalName(sig));
    }
  }
  return absl::OkStatus();
}

absl::Status Shim::SetUpEvents() {
  sigset_t chld;
  sigemptyset(&chld);
  sigaddset(&chld, SIGCHLD);
  if (sigprocmask(SIG_BLOCK, &chld, nullptr) != 0) return ErrnoError("sigprocmask", "SIGCHLD");
  signals_ = Fd(signalfd(-1, &chld, SFD_CLOEXEC | SFD_NONBLOCK));
  if (!signals_) return ErrnoError("signalfd", "SIGCHLD");
  epoll_ = Fd(epoll_create1(EPOLL_CLOEXEC));
  if (!epoll_) return ErrnoError("epoll_create1");
  return absl::OkStatus();
}

void Shim::Transition(Phase to) {
  const bool legal = (phase_ == Phase::kIdle && to == Phase::kRunning) ||
                     (phase_ == Phase::kIdle && to == Phase::kDone) ||
                     (phase_ == Phase::kRunning && to == Phase::kDraining) ||
                     (phase_ == Phase::kRunning && to == Phase::kBackoff) ||
                     (phase_ == Phase::kBackoff && to == Phase::kRunning) ||
                     (phase_ == Phase::kBackoff && to == Phase::kDraining) ||
                     (phase_ == Phase::kDraining && to == Phase::kDone);
  if (!legal) {
    // A bug, but aborting would orphan the process and lose its output:
    // refuse the change and carry on in the phase we are in.
    PM_LOG(ERROR) << "illegal phase change " << PhaseName(static_cast<int>(phase_))
                  << " -> " << PhaseName(static_cast<int>(to)) << " refused";
    return;
  }
  phase_ = to;
}

int Shim::Run() {
  PrepareProcessDirAhead();
  if (!AwaitSpawn()) {
    // Let go unused: the directory made ahead goes. (After a SpawnFailed it
    // stays, with the reason in its shim.log.)
    if (exit_code_ == kExitDone) RemoveUnusedProcessDir();
    Transition(Phase::kDone);
    return exit_code_;
  }
  Transition(Phase::kRunning);
  WatchProcess();
  while (phase_ != Phase::kDone) {
    WaitAndHandleEvents();
    if (Finished()) Finish();
  }
  return exit_code_;
}

void Shim::WaitAndHandleEvents() {
  if (!epoll_) RecreateEpoll();
  if (epoll_) {
    // Unwatched fds are polled every kRetryInterval until epoll takes them.
    const int timeout =
        unwatched_.empty() ? -1 : static_cast<int>(absl::ToInt64Milliseconds(kRetryInterval));
    epoll_event events[8];
    const int n = epoll_wait(epoll_.get(), events, 8, timeout);
    if (n < 0 && errno != EINTR) {
      LogRateLimited(kFailEvents, ErrnoError("epoll_wait"));
      RecreateEpoll();
    }
    for (int i = 0; i < n; ++i) HandleEvent(static_cast<Source>(events[i].data.u32));
  } else {
    PollUnwatched(static_cast<int>(absl::ToInt64Milliseconds(kRetryInterval)));
  }
  if (!unwatched_.empty()) {
    RetryUnwatched();
    PollUnwatched(0);
  }
}

void Shim::RecreateEpoll() {
  Fd fresh(epoll_create1(EPOLL_CLOEXEC));
  if (!fresh) LogRateLimited(kFailEvents, ErrnoError("epoll_create1"));
  epoll_ = std::move(fresh);
  unwatched_.clear();
  for (const auto& [fd, source] : LiveSources()) Watch(fd->get(), source);
}

std::vector<std::pair<const Fd*, Shim::Source>> Shim::LiveSources() const {
  std::vector<std::pair<const Fd*, Source>> live;
  for (const auto& [fd, source] :
       {std::pair<const Fd*, Source>{&control_, kControl}, {&stdout_, kStdout},
        {&stderr_, kStderr}, {&pidfd_, kPidfd}, {&signals_, kSignals},
        {&inotify_, kInotify}, {&reconnect_timer_, kReconnectTimer},
        {&restart_timer_, kRestartTimer}}) {
    if (*fd) live.emplace_back(fd, source);
  }
  return live;
}

void Shim::RetryUnwatched() {
  std::vector<std::pair<int, Source>> retry;
  retry.swap(unwatched_);
  for (const auto& [fd, source] : retry) Watch(fd, source);
}

void Shim::PollUnwatched(int timeout_ms) {
  std::vector<pollfd> fds;
  for (const auto& [fd, source] : unwatched_) fds.push_back({fd, POLLIN, 0});
  if (poll(fds.data(), fds.size(), timeout_ms) <= 0) return;
  // Copied first: a handler may close fds and change the list.
  std::vector<std::pair<int, Source>> ready;
  for (size_t i = 0; i < fds.size(); ++i) {
    if (fds[i].revents != 0) ready.push_back(unwatched_[i]);
  }
  for (const std::pair<int, Source>& r : ready) {
    const int fd = r.first;
    const bool still = std::any_of(unwatched_.begin(), unwatched_.end(),
                                   [fd](const auto& u) { return u.first == fd; });
    if (still) HandleEvent(r.second);
  }
}

bool Shim::AwaitSpawn() {
  for (;;) {
    absl::StatusOr<Received> got = ReceiveMessage(control_.get());
    if (!got.ok() && (got.status().code() == absl::StatusCode::kNotFound ||
                      ErrnoOf(got.status()) == ECONNRESET)) {
      // Let go before being used (EOF; ECONNRESET: the supervisor died
      // before reading what was sent to it): nothing to do.
      return false;
    }
    if (!got.ok()) {
      PM_LOG(ERROR) << "control: " << got.status();
      if (ErrnoOf(got.status())) {
        exit_code_ = kExitBroken;
        return false;
      }
      continue;  // a malformed message: refused, the next may be fine
    }
    Spawn* spawn = std::get_if<Spawn>(&got->message);
    if (spawn == nullptr) {
      PM_LOG(ERROR) << "control: " << MessageName(got->message)
                    << " while idle; only Spawn is expected";
      continue;
    }
    absl::Status status = TakeProcessId(*spawn);
    // Made ahead (--process_id), unless that failed: then now.
    if (status.ok() && !output_) status = PrepareProcessDir();
    if (status.ok()) status = LoadSpawnCommand(*spawn, got->fds);
    if (status.ok()) status = SpawnProcess(std::move(*spawn), got->fds);
    if (!status.ok()) {
      PM_LOG(ERROR) << "spawn " << uuid_ << ": " << status;
      Send(SpawnFailed{status.code(), std::string(status.message())});
      exit_code_ = kExitSpawnFailed;
      return false;
    }
    return true;
  }
}

void Shim::PrepareProcessDirAhead() {
  if (flags_.process_id.empty()) return;
  uuid_ = flags_.process_id;
  absl::Status prepared = PrepareProcessDir();
  if (prepared.ok()) return;
  PM_LOG(WARNING) << "the directory of process " << uuid_
                  << ", made ahead: " << prepared << "; trying again at the Spawn";
  output_.reset();
}

void Shim::RemoveUnusedProcessDir() {
  if (flags_.process_id.empty() || proc_dir_.empty()) return;
  output_.reset();
  const std::string output_dir = ProcessOutputDir(flags_.state_dir, uuid_);
  absl::StatusOr<std::vector<segment_log::SegmentFile>> segments =
      segment_log::ListSegments(output_dir);
  std::vector<std::string> files;
  if (segments.ok()) {
    for (const segment_log::SegmentFile& segment : *segments) files.push_back(segment.path);
  }
  files.push_back(absl::StrCat(proc_dir_, "/", kShimLogName));
  for (const std::string& file : files) {
    if (unlink(file.c_str()) != 0 && errno != ENOENT) {
      PM_LOG(WARNING) << ErrnoError("unlink", file);
    }
  }
  for (const std::string& dir : {output_dir, proc_dir_}) {
    if (rmdir(dir.c_str()) != 0 && errno != ENOENT) {
      PM_LOG(WARNING) << ErrnoError("rmdir", dir);
    }
  }
}

absl::Status Shim::TakeProcessId(const Spawn& spawn) {
  if (!flags_.process_id.empty() && spawn.uuid != flags_.process_id) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the Spawn names process ", spawn.uuid, ", but this shim was started for ",
        flags_.process_id, " (--process_id)"));
  }
  uuid_ = spawn.uuid;
  return absl::OkStatus();
}

absl::Status Shim::PrepareProcessDir() {
  const std::string procs = ProcsDir(flags_.state_dir);
  proc_dir_ = ProcessDir(flags_.state_dir, uuid_);
  PM_RETURN_IF_ERROR(MakeDir(flags_.state_dir));
  PM_RETURN_IF_ERROR(MakeDir(procs));
  PM_RETURN_IF_ERROR(MakeDir(proc_dir_));
  PM_RETURN_IF_ERROR(RedirectStdio(absl::StrCat(proc_dir_, "/", kShimLogName)));
  PM_ASSIGN_OR_RETURN(output_, segment_log::Writer::Open(
                                   ProcessOutputDir(flags_.state_dir, uuid_), output_options_));
  return absl::OkStatus();
}

absl::Status Shim::SpawnProcess(Spawn spawn, std::vector<Fd>& fds) {
  spawn_ = std::move(spawn);
  spawn_fds_ = std::move(fds);
  if (spawn_.restart && spawn_.restart->when != RestartPolicy::When::kNever) {
    restarts_.emplace(*spawn_.restart);
    random_.seed(static_cast<uint32_t>(absl::ToUnixNanos(absl::Now()) ^ getpid()));
  }
  run_started_ = absl::Now();
  PM_ASSIGN_OR_RETURN(std::string executable, SpawnRun());
  // Without restarts the cgroup fds are needed no more.
  if (!restarts_) spawn_fds_.clear();
  const int pidfd = pidfd_.get();
  Send(Spawned{pid_, start_ticks_, executable}, {&pidfd, 1});
  return absl::OkStatus();
}

absl::StatusOr<std::string> Shim::SpawnRun() {
  supervisor::SpawnOptions options;
  if (spawn_.cgroup2_dir) options.cgroup2_dir_fd = spawn_fds_[*spawn_.cgroup2_dir].get();
  if (spawn_.cgroup2_join) {
    options.cgroup2_join = {spawn_fds_[spawn_.cgroup2_join->fd_index].get(),
                            spawn_.cgroup2_join->path};
  }
  for (const CgroupJoinRef& join : spawn_.cgroup_joins) {
    options.joins.push_back({spawn_fds_[join.fd_index].get(), join.path});
  }
  options.file_limit = spawn_.file_limit;
  PM_ASSIGN_OR_RETURN(
      supervisor::SpawnedChild child,
      supervisor::SpawnCommand(spawn_.command, IsolationOf(spawn_.isolation), options));
  pid_ = child.pid;
  group_ = child.pid;
  pidfd_ = std::move(child.pidfd);
  stdout_ = std::move(child.stdout_read);
  stderr_ = std::move(child.stderr_read);
  children_left_ = true;
  // Not reaped before we read it, so /proc/PID is this process even if it
  // has already exited.
  absl::StatusOr<ProcStat> stat = ReadProcStat(pid_);
  if (!stat.ok()) PM_LOG(ERROR) << "process " << pid_ << ": " << stat.status();
  start_ticks_ = stat.ok() ? stat->start_ticks : 0;
  PM_LOG(INFO) << "process " << uuid_ << (restarts_ ? absl::StrCat(" run ", run_) : "")
               << " runs as pid " << pid_ << ": " << child.executable;
  return child.executable;
}

void Shim::WatchProcess() {
  for (const auto& [fd, source] : LiveSources()) Watch(fd->get(), source);
}

void Shim::HandleEvent(Source source) {
  switch (source) {
    case kControl:
      ReadControl();
      break;
    case kStdout:
    case kStderr:
      Drain(source, kReadBytesPerTurn);
      break;
    case kPidfd:
    case kSignals:
      ReadSignals();
      ReapChildren();
      break;
    case kInotify:
      OnInotify();
      break;
    case kReconnectTimer:
      OnReconnectTimer();
      break;
    case kRestartTimer:
      OnRestartTimer();
      break;
  }
}

void Shim::ReadControl() {
  if (!control_) return;
  absl::StatusOr<Received> got = ReceiveMessage(control_.get());
  if (got.ok() && std::holds_alternative<NoRestart>(got->message)) {
    OnNoRestart();
    return;
  }
  if (got.ok()) {
    PM_LOG(WARNING) << "control: unexpected " << MessageName(got->message) << ", ignored";
    return;
  }
  if (got.status().code() == absl::StatusCode::kUnavailable) return;
  if (got.status().code() != absl::StatusCode::kNotFound) {
    PM_LOG(ERROR) << "control: " << got.status();
    if (!ErrnoOf(got.status())) return;  // a bad message; the link still works
  }
  Disconnect();
}

void Shim::Drain(Source source, size_t max_bytes) {
  Fd& pipe = source == kStdout ? stdout_ : stderr_;
  const segment_log::Stream stream =
      source == kStdout ? segment_log::Stream::kStdout : segment_log::Stream::kStderr;
  static char buffer[kReadBytes];
  size_t left = max_bytes;
  while (left > 0 && pipe) {
    const ssize_t n = read(pipe.get(), buffer, std::min(sizeof(buffer), left));
    if (n > 0) {
      Append(stream, absl::string_view(buffer, static_cast<size_t>(n)));
      left -= static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) return;
    if (n < 0) LogRateLimited(kFailOutput, ErrnoError("read", PipeName(source == kStdout)));
    // EOF: every holder of the write end is gone.
    RemoveFromEpoll(pipe.get());
    pipe.reset();
  }
}

void Shim::DrainWhatIsThere() {
  // What the pipes hold now, and no more: a child that outlives the leader
  // may keep writing, and a loop until EAGAIN would follow it for as long
  // as it writes, holding Exited back. The rest comes through the loop.
  for (Source source : {kStdout, kStderr}) {
    Fd& pipe = source == kStdout ? stdout_ : stderr_;
    if (!pipe) continue;
    int available = 0;
    if (ioctl(pipe.get(), FIONREAD, &available) != 0) {
      LogRateLimited(kFailOutput, ErrnoError("ioctl(FIONREAD)", PipeName(source == kStdout)));
      available = 0;
    }
    // One read even when empty: it sees an EOF that is already there.
    Drain(source, std::max<size_t>(static_cast<size_t>(available), 1));
  }
}

void Shim::Append(segment_log::Stream stream, absl::string_view data) {
  absl::Status status = output_->Append(stream, data, absl::Now());
  // The bytes are a gap now; the process must never notice (a full disk
  // neither blocks nor kills it), so keep reading.
  if (!status.ok()) LogRateLimited(kFailOutput, status);
}

void Shim::ReadSignals() {
  signalfd_siginfo info;
  while (read(signals_.get(), &info, sizeof(info)) == sizeof(info)) {
  }
}

void Shim::ReapChildren() {
  for (;;) {
    siginfo_t info = {};
    if (waitid(P_ALL, 0, &info, WEXITED | WNOHANG | WNOWAIT) != 0) {
      if (errno == EINTR) continue;
      if (errno == ECHILD) {
        children_left_ = false;
      } else {
        LogRateLimited(kFailReap, ErrnoError("waitid", "P_ALL"));
      }
      return;
    }
    if (info.si_pid == 0) return;  // children, none of them ended
    if (pidfd_ && info.si_pid == pid_) {
      // Not reaped yet, so pid_ is still the leader's: take its status
      // through the pidfd.
      siginfo_t leader = {};
      if (waitid(static_cast<idtype_t>(P_PIDFD), pidfd_.get(), &leader, WEXITED) != 0) {
        // The status is what the peek saw (the pid cannot be reused before
        // it is reaped): reap it by pid.
        LogRateLimited(kFailReap, ErrnoError("waitid", "P_PIDFD"));
        leader = info;
        const bool reaped = ReapByPid(pid_);
        OnLeaderExit(leader);
        // Not reaped, the peek would show it again: the next SIGCHLD
        // tries, instead of this loop spinning.
        if (!reaped) return;
        continue;
      }
      OnLeaderExit(leader);
      continue;
    }
    if (!ReapByPid(info.si_pid)) return;
  }
}

bool Shim::ReapByPid(pid_t pid) {
  siginfo_t ignored = {};
  if (waitid(P_PID, pid, &ignored, WEXITED) == 0 || errno == ECHILD) return true;
  LogRateLimited(kFailReap, ErrnoError("waitid", absl::StrCat("P_PID ", pid)));
  return false;
}

void Shim::OnLeaderExit(const siginfo_t& info) {
  // What the leader wrote is in the pipes now: count it before the offset.
  DrainWhatIsThere();
  const ProcessEnd end{ExitStatus::FromSiginfo(info), absl::Now(), output_->end_offset()};
  RemoveFromEpoll(pidfd_.get());
  pidfd_.reset();
  PM_LOG(INFO) << "process " << uuid_ << " (pid " << pid_ << ") " << end.status.ToString();
  OnRunEnd(end);
}

void Shim::OnRunEnd(const ProcessEnd& end) {
  if (restarts_ && restarts_->Wanted(end.status)) {
    std::uniform_real_distribution<double> jitter(-1.0, 1.0);
    std::optional<absl::Duration> delay =
        restarts_->Next(end.ended, end.ended - run_started_, jitter(random_));
    if (delay) return EnterBackoff(end, *delay);
    PM_LOG(INFO) << "given up: " << restarts_->policy().max_restarts
                 << " restarts within "
                 << (restarts_->policy().window > absl::ZeroDuration()
                         ? absl::FormatDuration(restarts_->policy().window)
                         : "its life");
    return EndForGood(end, /*gave_up=*/true);
  }
  EndForGood(end, /*gave_up=*/false);
}

void Shim::EndForGood(const ProcessEnd& end, bool gave_up) {
  end_ = end;
  gave_up_ = gave_up;
  last_end_.reset();
  Transition(Phase::kDraining);
  // Told first, written durably after (two fsyncs, about 2 ms here): a
  // Stop waits for the exit, not for the disk. Nothing is lost by the
  // order: the shim exits only after the file is written, so a supervisor
  // that missed Exited (it died) finds the shim still there to say Hello,
  // or the file.
  Exited exited{end, std::nullopt, gave_up};
  if (restarts_) exited.run = run_;
  Send(exited);
  ExitRecord record{end, std::nullopt, false};
  if (restarts_) {
    record.run = run_;
    record.gave_up = gave_up;
  }
  absl::Status written = WriteExitFile(proc_dir_, record);
  if (!written.ok()) PM_LOG(ERROR) << "exit file: " << written;
}

void Shim::EnterBackoff(const ProcessEnd& end, absl::Duration delay) {
  last_end_ = end;
  previous_end_ = end;
  next_start_ = end.ended + delay;
  if (phase_ != Phase::kBackoff) Transition(Phase::kBackoff);
  KillLeftovers();
  PM_LOG(INFO) << "run " << run_ << " ended; run " << run_ + 1 << " in "
               << absl::FormatDuration(delay);
  Send(Restarting{run_, end, next_start_});
  ArmRestartTimer(delay);
}

void Shim::KillLeftovers() {
  // The run's group (the leader was its leader: setsid), once: its number
  // may be reused once the group is gone. None for a run that could not
  // start. With a cgroup, every member of it, also those that left the
  // group.
  if (group_ > 0 && kill(-group_, SIGKILL) != 0 && errno != ESRCH) {
    PM_LOG(WARNING) << ErrnoError("kill", absl::StrCat("-", group_, ", SIGKILL"));
  }
  group_ = 0;
  // Each member as cgroup.procs lists it, not cgroup.kill: after a write
  // to cgroup.kill the kernel killed the next run cloned into the cgroup
  // too (seen on Linux 6.x, the next run SIGKILLed before its exec).
  // A member may fork between the read and its kill: read again, until a
  // read lists no member not killed yet (a fork bomb: at most
  // kKillRounds reads; the next run's start kills what is left). Opened
  // anew each time: a v1 cgroup.procs keeps the list it made at open.
  constexpr int kKillRounds = 64;
  std::set<pid_t> killed;
  for (int round = 0; round < kKillRounds; ++round) {
    Fd procs = OpenCgroupProcs();
    if (!procs) return;
    std::string text;
    char buffer[4096];
    ssize_t n;
    for (off_t at = 0; (n = pread(procs.get(), buffer, sizeof(buffer), at)) > 0; at += n) {
      text.append(buffer, static_cast<size_t>(n));
    }
    bool new_member = false;
    for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
      pid_t member = 0;
      if (!absl::SimpleAtoi(line, &member) || member <= 0) continue;
      kill(member, SIGKILL);  // again, if listed again: harmless
      new_member |= killed.insert(member).second;
    }
    if (!new_member) return;
  }
  PM_LOG(WARNING) << "run " << run_ << "'s cgroup still had new members after "
                  << kKillRounds << " rounds of SIGKILL";
}

Fd Shim::OpenCgroupProcs() const {
  if (spawn_.cgroup2_dir) {
    return Fd(openat(spawn_fds_[*spawn_.cgroup2_dir].get(), "cgroup.procs",
                     O_RDONLY | O_CLOEXEC));
  }
  // Without a cgroup2 dir (a host whose tracking cgroup is v1): by the path
  // of the join's cgroup.procs, which lists the same members.
  const CgroupJoinRef* join = spawn_.cgroup2_join        ? &*spawn_.cgroup2_join
                              : !spawn_.cgroup_joins.empty() ? &spawn_.cgroup_joins.front()
                                                             : nullptr;
  if (join == nullptr) return Fd();
  return Fd(open(join->path.c_str(), O_RDONLY | O_CLOEXEC));
}

void Shim::ArmRestartTimer(absl::Duration delay) {
  if (!restart_timer_) {
    restart_timer_ = Fd(timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK));
    if (!restart_timer_) {
      // No way to wait: the process ends as this run ended, rather than
      // restarting at once, again and again.
      PM_LOG(ERROR) << ErrnoError("timerfd_create", "CLOCK_MONOTONIC")
                    << "; no run follows run " << run_;
      return EndForGood(*last_end_, /*gave_up=*/false);
    }
    Watch(restart_timer_.get(), kRestartTimer);
  }
  itimerspec when = {};
  // A zero it_value disarms: the shortest wait instead.
  when.it_value = absl::ToTimespec(std::max(delay, absl::Nanoseconds(1)));
  if (timerfd_settime(restart_timer_.get(), 0, &when, nullptr) != 0) {
    PM_LOG(ERROR) << ErrnoError("timerfd_settime", "restart timer") << "; no run follows run "
                  << run_;
    StopRestartTimer();
    EndForGood(*last_end_, /*gave_up=*/false);
  }
}

void Shim::StopRestartTimer() {
  if (!restart_timer_) return;
  RemoveFromEpoll(restart_timer_.get());
  restart_timer_.reset();
}

void Shim::OnRestartTimer() {
  uint64_t expirations;
  if (read(restart_timer_.get(), &expirations, sizeof(expirations)) < 0 && errno == EAGAIN) {
    return;  // not expired
  }
  StartNextRun();
}

void Shim::StartNextRun() {
  StopRestartTimer();
  if (phase_ != Phase::kBackoff) return;
  // The ended run's output: what its pipes still hold is its. A process
  // that escaped the kill (outside its group, no cgroup) and holds them
  // loses what it writes from now on.
  if (stdout_ || stderr_) {
    DrainWhatIsThere();
    for (Fd* pipe : {&stdout_, &stderr_}) {
      if (!*pipe) continue;
      PM_LOG(WARNING) << "run " << run_ << ": a process outside its group still "
                      << "holds its output; closed";
      RemoveFromEpoll(pipe->get());
      pipe->reset();
    }
  }
  ++run_;
  run_started_ = absl::Now();
  // Before the run exists, so its first byte follows the mark. A mark that
  // cannot be written (a full disk) loses no output: the run's bytes then
  // read as the last run's.
  absl::Status marked = output_->AppendRunStart(run_, run_started_);
  if (!marked.ok()) LogRateLimited(kFailOutput, marked);
  absl::StatusOr<std::string> executable = SpawnRun();
  if (!executable.ok()) {
    // As a run that could not exec: 127, as a shell says it.
    PM_LOG(ERROR) << "run " << run_ << ": " << executable.status();
    return OnRunEnd(ProcessEnd{ExitStatus::Exited(127), absl::Now(), output_->end_offset()});
  }
  last_end_.reset();
  Transition(Phase::kRunning);
  for (const auto& [fd, source] : {std::pair<const Fd*, Source>{&stdout_, kStdout},
                                   {&stderr_, kStderr}, {&pidfd_, kPidfd}}) {
    Watch(fd->get(), source);
  }
  const int pidfd = pidfd_.get();
  Send(RunStarted{run_, pid_, start_ticks_, *executable}, {&pidfd, 1});
}

void Shim::OnNoRestart() {
  if (!restarts_ || restarts_->forbidden()) return;
  restarts_->Forbid();
  PM_LOG(INFO) << "a stop is under way: run " << run_ << " is the last";
  if (phase_ != Phase::kBackoff) return;
  StopRestartTimer();
  EndForGood(*last_end_, /*gave_up=*/false);
}

bool Shim::Finished() const {
  return phase_ == Phase::kDraining && !stdout_ && !stderr_ && !children_left_;
}

void Shim::Finish() {
  absl::Status closed = output_->Close(absl::Now());
  if (!closed.ok()) PM_LOG(ERROR) << "closing the output: " << closed;
  Send(Closed{output_->end_offset(), output_->capped_bytes(), output_->lost_bytes()});
  PM_LOG(INFO) << "done: " << output_->end_offset() << " bytes of output";
  Transition(Phase::kDone);
}

void Shim::Send(const Message& message, absl::Span<const int> fds) {
  if (!control_) return;  // disconnected: the exit file and the output keep it
  absl::Status sent = SendMessage(control_.get(), message, fds);
  if (sent.ok()) return;
  PM_LOG(WARNING) << "control: " << sent;
  if (phase_ != Phase::kIdle) Disconnect();
}

void Shim::Disconnect() {
  if (!control_) return;
  RemoveFromEpoll(control_.get());
  control_.reset();
  if (phase_ == Phase::kIdle || phase_ == Phase::kDone) return;
  const bool refused = absl::Now() - reconnected_at_ < kRefusalWindow;
  reconnected_at_ = absl::InfinitePast();
  if (refused) {
    // The supervisor closed the link it just took: it refused this shim
    // (it has no live record waiting for it). Tried again after the
    // backoff, or when a new shims.sock appears.
    LogRateLimited(kFailControl,
                   absl::UnavailableError(absl::StrCat(
                       "control: the supervisor refused this shim's Hello; "
                       "trying again in ", absl::FormatDuration(reconnect_backoff_))));
    WatchForSupervisor(/*try_now=*/false);
    ArmReconnectTimer();
    return;
  }
  reconnect_backoff_ = kMinReconnectBackoff;
  PM_LOG(INFO) << "control: the supervisor is gone; carrying on, waiting for "
               << flags_.runtime_dir << "/" << kShimsSocketName;
  WatchForSupervisor();
}

void Shim::WatchForSupervisor(bool try_now) {
  if (!inotify_) {
    inotify_ = Fd(inotify_init1(IN_CLOEXEC | IN_NONBLOCK));
    if (!inotify_) {
      // Out of inotify instances (fs.inotify.max_user_instances, 128 by
      // default, is per user: a thousand shims of one user exceed it): the
      // reconnect timer alone finds the socket (50 ms doubling to 5 s).
      LogRateLimited(kFailControl,
                     Annotate(ErrnoError("inotify_init1"),
                              "watching for shims.sock with a timer instead"));
      if (try_now) TryReconnect();
      if (!control_) ArmReconnectTimer();
      return;
    }
    // The supervisor makes its socket appear listening, by rename (see the
    // README): IN_MOVED_TO; IN_CREATE too for one that binds in place.
    if (inotify_add_watch(inotify_.get(), flags_.runtime_dir.c_str(),
                          IN_CREATE | IN_MOVED_TO) < 0) {
      LogRateLimited(kFailControl,
                     Annotate(ErrnoError("inotify_add_watch", flags_.runtime_dir),
                              "watching for shims.sock with a timer instead"));
      inotify_.reset();
      if (try_now) TryReconnect();
      if (!control_) ArmReconnectTimer();
      return;
    }
    Watch(inotify_.get(), kInotify);
  }
  // It may be there already: try once the watch is set, so no appearance
  // between the two is missed.
  if (try_now) TryReconnect();
}

void Shim::OnInotify() {
  alignas(inotify_event) char buffer[4096];
  bool ours = false;
  for (;;) {
    const ssize_t n = read(inotify_.get(), buffer, sizeof(buffer));
    if (n <= 0) break;
    for (ssize_t at = 0; at < n;) {
      const auto* event = reinterpret_cast<const inotify_event*>(buffer + at);
      if (event->len > 0 && strcmp(event->name, kShimsSocketName) == 0) ours = true;
      if (event->mask & IN_Q_OVERFLOW) ours = true;
      at += sizeof(inotify_event) + event->len;
    }
  }
  if (ours) TryReconnect();
}

void Shim::TryReconnect() {
  if (control_ || phase_ == Phase::kDone) return;
  const std::string path = absl::StrCat(flags_.runtime_dir, "/", kShimsSocketName);
  sockaddr_un addr = {};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof(addr.sun_path)) {
    PM_LOG(ERROR) << "socket path too long: " << path;
    return;
  }
  memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  // Non-blocking: a listener whose backlog is full (a supervisor that is
  // stuck, or not accepting yet) would hold a blocking connect, and with it
  // the loop that drains the process's pipes, for as long as it stays so.
  Fd sock(socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!sock) {
    LogRateLimited(kFailControl, ErrnoError("socket", "AF_UNIX, SOCK_SEQPACKET"));
    ArmReconnectTimer();
    return;
  }
  if (connect(sock.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    const int err = errno;
    if (err == EAGAIN || err == EINTR) {
      // The backlog is full. Nothing will say when it has room: try again
      // after a while, backing off.
      LogRateLimited(kFailControl,
                     Annotate(ErrnoError("connect", path, err),
                              absl::StrCat("backlog full, retrying in ",
                                           absl::FormatDuration(reconnect_backoff_))));
      ArmReconnectTimer();
      return;
    }
    if (err == ECONNREFUSED) {
      // A stale socket (its replacement will raise an event), or one bound
      // in place that is not listening yet (its listen raises none): wait
      // for both.
      if (reconnect_backoff_ == kMinReconnectBackoff) {
        PM_LOG(INFO) << ErrnoError("connect", path, err)
                     << "; waiting for it to appear, trying again from time to time";
      }
      ArmReconnectTimer();
      return;
    }
    // ENOENT: its appearance will do (or, without inotify, the timer).
    if (reconnect_backoff_ == kMinReconnectBackoff) {
      PM_LOG(INFO) << ErrnoError("connect", path, err) << "; waiting for it to appear";
    }
    if (!inotify_) ArmReconnectTimer();
    return;
  }
  PM_LOG(INFO) << "control: reconnected to " << path;
  control_ = std::move(sock);
  reconnected_at_ = absl::Now();
  Watch(control_.get(), kControl);
  RemoveFromEpoll(inotify_.get());
  inotify_.reset();
  // The backoff is kept until the link proves lasting (see Disconnect).
  const absl::Duration backoff = reconnect_backoff_;
  StopReconnectTimer();
  reconnect_backoff_ = backoff;
  SendHello();
}

void Shim::ArmReconnectTimer() {
  if (!reconnect_timer_) {
    reconnect_timer_ = Fd(timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK));
    if (!reconnect_timer_) {
      LogRateLimited(kFailControl, ErrnoError("timerfd_create", "CLOCK_MONOTONIC"));
      return;  // only the socket's next appearance will make it try again
    }
    Watch(reconnect_timer_.get(), kReconnectTimer);
  }
  itimerspec when = {};
  when.it_value = absl::ToTimespec(reconnect_backoff_);
  if (timerfd_settime(reconnect_timer_.get(), 0, &when, nullptr) != 0) {
    LogRateLimited(kFailControl, ErrnoError("timerfd_settime", "reconnect timer"));
  }
  reconnect_backoff_ = std::min(reconnect_backoff_ * 2, kMaxReconnectBackoff);
}

void Shim::StopReconnectTimer() {
  reconnect_backoff_ = kMinReconnectBackoff;
  if (!reconnect_timer_) return;
  RemoveFromEpoll(reconnect_timer_.get());
  reconnect_timer_.reset();
}

void Shim::OnReconnectTimer() {
  uint64_t expirations;
  if (read(reconnect_timer_.get(), &expirations, sizeof(expirations)) < 0 && errno == EAGAIN) {
    return;  // not expired (re-armed since)
  }
  TryReconnect();
}

void Shim::SendHello() {
  // Waiting for the next run: the ended run's end, and when the next starts.
  Hello hello{uuid_,
              pid_,
              start_ticks_,
              end_ ? end_ : last_end_,
              output_->end_offset(),
              restarts_ ? std::optional<uint32_t>(run_) : std::nullopt,
              phase_ == Phase::kBackoff ? std::optional<absl::Time>(next_start_)
                                        : std::nullopt,
              std::nullopt,
              false};
  // A later run, running or ended for good: how the one before it ended,
  // for the status's last run (it ended while no supervisor listened, or
  // one did).
  if (phase_ != Phase::kBackoff && run_ >= 2 && previous_end_) {
    hello.previous_end = ProcessEnd{previous_end_->status, previous_end_->ended, 0};
  }
  hello.gave_up = end_.has_value() && gave_up_;
  if (pidfd_) {
    const int pidfd = pidfd_.get();
    Send(hello, {&pidfd, 1});
  } else {
    Send(hello);
  }
}

void Shim::Watch(int fd, Source source) {
  epoll_event event = {};
  event.events = EPOLLIN;
  event.data.u32 = source;
  if (epoll_ && epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &event) == 0) return;
  if (epoll_) {
    LogRateLimited(kFailEvents,
                   ErrnoError("epoll_ctl(EPOLL_CTL_ADD)", absl::StrCat(SourceName(source))));
  }
  // Not watched: polled each turn, and added again, until epoll takes it
  // (ENOMEM, or max_user_watches reached, may pass).
  unwatched_.emplace_back(fd, source);
}

void Shim::RemoveFromEpoll(int fd) {
  if (fd < 0) return;
  if (epoll_) epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, fd, nullptr);
  unwatched_.erase(std::remove_if(unwatched_.begin(), unwatched_.end(),
                                  [fd](const auto& u) { return u.first == fd; }),
                   unwatched_.end());
}

void Shim::LogRateLimited(Failure kind, const absl::Status& status) {
  static constexpr const char* kKinds[kFailureKinds] = {"output", "events", "reaping",
                                                        "control"};
  const absl::Time now = absl::Now();
  RateLimit& limit = rate_limits_[kind];
  if (now - limit.last_logged < kFailureLogInterval) {
    ++limit.not_logged;
    return;
  }
  PM_LOG(ERROR) << kKinds[kind] << ": " << status
                << (limit.not_logged > 0
                        ? absl::StrCat(" (and ", limit.not_logged,
                                       " failures not logged in the last minute)")
                        : "");
  limit.last_logged = now;
  limit.not_logged = 0;
}

}  // namespace pm::shim
