#include "stack/stack.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <map>
#include <thread>

#include <grpcpp/grpcpp.h>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/log.h"
#include "common/runtime_dir.h"
#include "common/state_dir.h"
#include "common/status.h"
#include "grpc/health/v1/health.grpc.pb.h"

extern char** environ;

namespace pm::stack {
namespace {

bool IsExecutable(const std::string& path) {
  return access(path.c_str(), X_OK) == 0;
}

int PidfdOpen(pid_t pid) {
  return static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
}

// True once the pidfd is readable: the process has exited.
bool Exited(const Fd& pidfd, int timeout_ms) {
  struct pollfd p = {pidfd.get(), POLLIN, 0};
  return poll(&p, 1, timeout_ms) == 1;
}

Service ServiceOf(const std::string& name) {
  if (name == "registry") return Service::kRegistry;
  if (name == "log_store") return Service::kLogStore;
  if (name == "gateway") return Service::kGateway;
  return Service::kSupervisor;
}

absl::StatusOr<int> ReadPortFile(const std::string& path) {
  PM_ASSIGN_OR_RETURN(Fd fd, Fd::Open(path, O_RDONLY));
  char buffer[32] = {};
  ssize_t n = read(fd.get(), buffer, sizeof(buffer) - 1);
  if (n < 0) return ErrnoError("read", path);
  int port = 0;
  if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(buffer), &port) || port <= 0) {
    return absl::InternalError(absl::StrCat("no port number in ", path));
  }
  return port;
}

// posix_spawn cannot set a limit in the child, so the launcher's own soft
// RLIMIT_NOFILE is set to `limit` around it (the child inherits it) and put
// back after. Harmless meanwhile: lowering a limit closes nothing, and the
// launcher holds a few dozen fds, far below any soft limit.
class ChildFileLimit {
 public:
  explicit ChildFileLimit(const absl::optional<rlimit>& limit) {
    if (!limit || getrlimit(RLIMIT_NOFILE, &saved_) != 0) return;
    rlimit child = saved_;
    child.rlim_cur = std::min(limit->rlim_cur, saved_.rlim_max);
    set_ = setrlimit(RLIMIT_NOFILE, &child) == 0;
  }
  ~ChildFileLimit() {
    if (set_) setrlimit(RLIMIT_NOFILE, &saved_);
  }
  ChildFileLimit(const ChildFileLimit&) = delete;
  ChildFileLimit& operator=(const ChildFileLimit&) = delete;

 private:
  rlimit saved_ = {};
  bool set_ = false;
};

// A health stub on `socket`: the socket appears when the service binds, so
// connecting is retried quickly.
std::unique_ptr<grpc::health::v1::Health::Stub> HealthStub(
    const std::string& socket) {
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 10);
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 10);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 100);
  return grpc::health::v1::Health::NewStub(grpc::CreateCustomChannel(
      UnixAddress(socket), grpc::InsecureChannelCredentials(), args));
}

// One health Check: wait_for_ready makes it wait for the connection instead
// of failing; the short deadline lets the caller notice a service that died.
void SetUpProbe(grpc::ClientContext& context) {
  context.set_wait_for_ready(true);
  context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Milliseconds(250)));
}

int SendSignal(const Fd& pidfd, int sig) {
  return static_cast<int>(
      syscall(SYS_pidfd_send_signal, pidfd.get(), sig, nullptr, 0));
}

}  // namespace

std::string StackEvent::ToString() const {
  using K = Kind;
  const std::string who =
      pid > 0 ? absl::StrCat(service, " (pid ", pid, ")") : service;
  switch (kind) {
    case K::kDied:
      return absl::StrCat(who, " ", exit->ToString(), " unexpectedly");
    case K::kRestartScheduled:
      return absl::StrCat("restarting ", service, " in ",
                          absl::FormatDuration(delay));
    case K::kRestarted:
      return absl::StrCat(who, " restarted; waiting for it to be healthy");
    case K::kHealthy:
      return absl::StrCat(who, " is healthy again, ",
                          absl::FormatDuration(absl::Trunc(delay, absl::Milliseconds(1))),
                          " after its start");
    case K::kUnhealthy:
      return absl::StrCat(who, " was not healthy within ",
                          absl::FormatDuration(delay), " (", error,
                          "); killing it");
    case K::kLaunchFailed:
      return absl::StrCat("cannot restart ", service, ": ", error);
    case K::kOrphanReaped:
      return absl::StrCat("reaped orphan pid ", pid, ": ", exit->ToString());
    case K::kUpgradeStep:
      return absl::StrCat("upgrade: sent ", SignalName(signal), " to ",
                          who, "; restarting it on the binary on disk");
    case K::kUpgradeDone:
      return "upgrade: every service restarted and healthy";
    case K::kUpgradeAborted:
      return absl::StrCat("upgrade stopped at ", service, ": ", error);
  }
  return "?";
}

const std::vector<std::string>& Stack::ServiceNames() {
  static const auto* names =
      new std::vector<std::string>{"registry", "log_store", "supervisor",
                                   "gateway"};
  return *names;
}

absl::StatusOr<std::string> FindBinaryRoot() {
  std::vector<std::string> candidates;
  for (const char* var : {"RUNFILES_DIR", "TEST_SRCDIR"}) {
    if (const char* dir = getenv(var); dir != nullptr && *dir) {
      candidates.push_back(absl::StrCat(dir, "/pm"));
    }
  }
  char self[4096];
  ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
  if (n > 0) {
    candidates.push_back(absl::StrCat(std::string(self, n), ".runfiles/pm"));
  }
  candidates.push_back(".");
  candidates.push_back("bazel-bin");
  for (const std::string& root : candidates) {
    if (IsExecutable(root + "/supervisor/supervisor")) return root;
  }
  return absl::NotFoundError(
      "cannot find the service binaries (supervisor/supervisor) in the "
      "runfiles; run through bazel (bazel run //:stack)");
}

std::vector<std::string> ServiceArgs(const StackOptions& options,
                                     const std::string& name) {
  std::vector<std::string> args = {
      absl::StrCat(options.binary_root, "/", name, "/", name),
      absl::StrCat("--runtime_dir=", options.runtime_dir),
      // Every service keeps state there (records, output, the processes'
      // directories, the audit log).
      absl::StrCat("--state_dir=", options.state_dir)};
  if (name == "supervisor") {
    args.push_back(absl::StrCat("--shim_binary=", options.binary_root, "/shim/pm-shim"));
  }
  if (name == "gateway" && options.gateway.has_value()) {
    const GatewayOptions& gateway = *options.gateway;
    for (std::string arg : {"--listen=" + gateway.listen,
                            "--ca_file=" + gateway.ca_file,
                            "--cert_file=" + gateway.cert_file,
                            "--key_file=" + gateway.key_file,
                            "--users_file=" + gateway.users_file,
                            "--port_file=" + gateway.port_file}) {
      args.push_back(std::move(arg));
    }
  }
  if (options.cluster.has_value()) {
    // The registry mirrors this host's records into the cluster's etcd
    // under its node; the supervisor runs only this node's Starts.
    const ClusterOptions& cluster = *options.cluster;
    if (name == "registry") {
      args.push_back(absl::StrCat("--etcd=", cluster.etcd));
      if (!cluster.etcd_prefix.empty()) {
        args.push_back(absl::StrCat("--etcd_prefix=", cluster.etcd_prefix));
      }
      if (!cluster.gateway_address.empty()) {
        args.push_back(absl::StrCat("--gateway_address=", cluster.gateway_address));
      }
      if (cluster.etcd_lease_seconds != 0) {
        args.push_back(absl::StrCat("--etcd_lease_seconds=", cluster.etcd_lease_seconds));
      }
      if (!cluster.etcd_ca_file.empty()) {
        args.push_back("--etcd_ca_file=" + cluster.etcd_ca_file);
        args.push_back("--etcd_cert_file=" + cluster.etcd_cert_file);
        args.push_back("--etcd_key_file=" + cluster.etcd_key_file);
      }
      if (!cluster.etcd_server_name.empty()) {
        args.push_back("--etcd_server_name=" + cluster.etcd_server_name);
      }
    }
    if (name == "registry" || name == "supervisor") {
      args.push_back(absl::StrCat("--node=", cluster.node));
    }
    // The gateway forwards calls on the other hosts' processes to theirs.
    if (name == "gateway" && options.gateway.has_value()) {
      args.push_back(absl::StrCat("--node=", cluster.node));
      if (!options.gateway->peer_cert_file.empty()) {
        args.push_back("--peer_cert_file=" + options.gateway->peer_cert_file);
        args.push_back("--peer_key_file=" + options.gateway->peer_key_file);
      }
      if (!options.gateway->peer_ca_file.empty()) {
        args.push_back("--peer_ca_file=" + options.gateway->peer_ca_file);
      }
    }
  }
  if (auto extra = options.extra_args.find(name); extra != options.extra_args.end()) {
    args.insert(args.end(), extra->second.begin(), extra->second.end());
  }
  return args;
}

absl::StatusOr<std::unique_ptr<Stack>> Stack::Start(StackOptions options) {
  if (options.binary_root.empty()) {
    PM_ASSIGN_OR_RETURN(options.binary_root, FindBinaryRoot());
  }
  PM_RETURN_IF_ERROR(EnsureRuntimeDir(options.runtime_dir));
  if (options.state_dir.empty()) {
    return absl::InvalidArgumentError("StackOptions.state_dir is empty");
  }
  PM_RETURN_IF_ERROR(EnsureStateDir(options.state_dir));
  if (options.subreaper && prctl(PR_SET_CHILD_SUBREAPER, 1) != 0) {
    return ErrnoError("prctl", "PR_SET_CHILD_SUBREAPER");
  }
  if (options.gateway.has_value() && options.gateway->port_file.empty()) {
    options.gateway->port_file = absl::StrCat(options.runtime_dir, "/gateway.port");
  }
  std::unique_ptr<Stack> stack(new Stack(std::move(options)));
  stack->wakeup_ = Fd(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!stack->wakeup_) return ErrnoError("eventfd");
  for (const std::string& name : ServiceNames()) {
    const auto& only = stack->options_.only;
    if (!only.empty() && std::find(only.begin(), only.end(), name) == only.end()) {
      continue;
    }
    if (name == "gateway" && !stack->options_.gateway.has_value()) continue;
    ServiceProcess service;
    service.name = name;
    service.args = ServiceArgs(stack->options_, name);
    service.binary = service.args[0];
    service.socket = SocketPath(stack->options_.runtime_dir, ServiceOf(name));
    stack->services_.push_back(std::move(service));
  }
  if (!stack->options_.metrics_listen.empty()) {
    // Before any service: an address in use fails the start at once.
    std::vector<StackMetrics::Service> scraped;
    for (const ServiceProcess& service : stack->services_) {
      scraped.push_back({service.name, service.socket});
    }
    absl::StatusOr<std::unique_ptr<StackMetrics>> metrics =
        StackMetrics::Start(stack->options_.metrics_listen, scraped);
    if (!metrics.ok()) return Annotate(metrics.status(), "the metrics endpoint");
    stack->metrics_ = *std::move(metrics);
  }
  for (ServiceProcess& service : stack->services_) {
    absl::Status status = stack->Launch(service);
    if (status.ok()) status = stack->WaitHealthy(service);
    if (status.ok() && service.name == "gateway") {
      // Written before the gateway's socket serves, so it is there now.
      absl::StatusOr<int> port = ReadPortFile(stack->options_.gateway->port_file);
      if (port.ok()) stack->gateway_port_ = *port;
      status = port.status();
    }
    if (!status.ok()) {
      stack->StopAll().IgnoreError();
      return status;
    }
  }
  return stack;
}

Stack::~Stack() {
  StopAll().IgnoreError();
  metrics_.reset();
}

int Stack::metrics_port() const { return metrics_ ? metrics_->port() : 0; }

ServiceProcess* Stack::Find(const std::string& name) {
  for (ServiceProcess& service : services_) {
    if (service.name == name) return &service;
  }
  return nullptr;
}

absl::Status Stack::Launch(ServiceProcess& service) {
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  // Own process group: a terminal's Ctrl+C goes to the launcher only, which
  // stops the services in order. Signals back to default and unblocked
  // (the launcher blocks SIGINT/SIGTERM for its signalfd).
  sigset_t empty, defaults;
  sigemptyset(&empty);
  sigemptyset(&defaults);
  for (int sig : {SIGINT, SIGTERM, SIGCHLD, SIGPIPE, SIGHUP}) {
    sigaddset(&defaults, sig);
  }
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK |
                                      POSIX_SPAWN_SETSIGDEF);
  posix_spawnattr_setpgroup(&attr, 0);
  posix_spawnattr_setsigmask(&attr, &empty);
  posix_spawnattr_setsigdefault(&attr, &defaults);
  std::vector<char*> argv;
  for (std::string& arg : service.args) argv.push_back(arg.data());
  argv.push_back(nullptr);
  pid_t pid = -1;
  int err = 0;
  {
    ChildFileLimit limit(options_.service_file_limit);
    err = posix_spawn(&pid, service.binary.c_str(), nullptr, &attr,
                      argv.data(), environ);
  }
  posix_spawnattr_destroy(&attr);
  if (err != 0) return ErrnoError("posix_spawn", service.binary, err);
  // Nobody else reaps our children, so the pid cannot be reused before the
  // pidfd holds it.
  int pidfd = PidfdOpen(pid);
  if (pidfd < 0) {
    absl::Status status = ErrnoError("pidfd_open", service.name);
    kill(pid, SIGKILL);
    waitpid(pid, nullptr, 0);
    return status;
  }
  service.pid = pid;
  service.pidfd = Fd(pidfd);
  service.exit.reset();
  return absl::OkStatus();
}

absl::Status Stack::WaitHealthy(ServiceProcess& service) {
  auto stub = HealthStub(service.socket);
  const absl::Time deadline = absl::Now() + options_.health_timeout;
  std::string last_error = "no answer";
  while (absl::Now() < deadline) {
    if (Exited(service.pidfd, 0)) {
      Reap(service);
      return absl::UnavailableError(absl::StrCat(
          service.name, " ", service.exit->ToString(),
          " during startup (see its log above)"));
    }
    grpc::ClientContext context;
    SetUpProbe(context);
    grpc::health::v1::HealthCheckResponse response;
    grpc::Status rpc = stub->Check(&context, grpc::health::v1::HealthCheckRequest(),
                                   &response);
    if (rpc.ok() &&
        response.status() == grpc::health::v1::HealthCheckResponse::SERVING) {
      return absl::OkStatus();
    }
    last_error = rpc.ok() ? "not serving" : rpc.error_message();
  }
  return absl::DeadlineExceededError(
      absl::StrCat(service.name, " did not become healthy at ", service.socket,
                   " within ", absl::FormatDuration(options_.health_timeout),
                   ": ", last_error));
}

void Stack::Reap(ServiceProcess& service) {
  if (!service.pidfd.valid()) return;
  siginfo_t info = {};
  while (waitid(static_cast<idtype_t>(P_PIDFD), service.pidfd.get(), &info,
                WEXITED) != 0 &&
         errno == EINTR) {
  }
  service.exit = ExitStatus::FromSiginfo(info);
  service.pidfd.reset();
}

absl::Status Stack::Terminate(ServiceProcess& service) {
  if (!service.pidfd.valid()) return absl::OkStatus();
  SendSignal(service.pidfd, SIGTERM);
  bool killed = false;
  if (!Exited(service.pidfd,
              static_cast<int>(absl::ToInt64Milliseconds(options_.stop_timeout)))) {
    SendSignal(service.pidfd, SIGKILL);
    killed = true;
  }
  Reap(service);
  if (killed) {
    return absl::DeadlineExceededError(absl::StrCat(
        service.name, " did not stop within ",
        absl::FormatDuration(options_.stop_timeout), " of SIGTERM; killed"));
  }
  if (!(*service.exit == ExitStatus::Exited(0))) {
    return absl::InternalError(
        absl::StrCat(service.name, " ", service.exit->ToString(), " on stop"));
  }
  return absl::OkStatus();
}

absl::Status Stack::StopAll() {
  absl::Status first;
  for (auto it = services_.rbegin(); it != services_.rend(); ++it) {
    absl::Status status = Terminate(*it);
    if (first.ok()) first = status;
  }
  if (options_.subreaper) {
    // Every service is reaped: what is left exited is an orphan.
    siginfo_t info = {};
    while (waitid(P_ALL, 0, &info, WEXITED | WNOHANG) == 0 && info.si_pid != 0) {
      PM_LOG(INFO) << "reaped orphan pid " << info.si_pid << ": "
                   << ExitStatus::FromSiginfo(info).ToString();
      info = {};
    }
  }
  return first;
}

absl::Status Stack::NotSupervising(const std::string& what) const {
  if (supervising_) {
    return absl::FailedPreconditionError(absl::StrCat(
        what, ": the stack's Run supervises the services; use PostSignal"));
  }
  return absl::OkStatus();
}

absl::Status Stack::StopService(const std::string& name) {
  PM_RETURN_IF_ERROR(NotSupervising("StopService " + name));
  ServiceProcess* service = Find(name);
  if (service == nullptr) return absl::NotFoundError(absl::StrCat("no service ", name));
  return Terminate(*service);
}

absl::Status Stack::KillService(const std::string& name, int sig) {
  PM_RETURN_IF_ERROR(NotSupervising("KillService " + name));
  ServiceProcess* service = Find(name);
  if (service == nullptr) return absl::NotFoundError(absl::StrCat("no service ", name));
  if (!service->pidfd.valid()) return absl::FailedPreconditionError(name + " is not running");
  if (SendSignal(service->pidfd, sig) != 0) {
    return ErrnoError("pidfd_send_signal", name);
  }
  Reap(*service);
  return absl::OkStatus();
}

absl::Status Stack::RestartService(const std::string& name) {
  PM_RETURN_IF_ERROR(NotSupervising("RestartService " + name));
  ServiceProcess* service = Find(name);
  if (service == nullptr) return absl::NotFoundError(absl::StrCat("no service ", name));
  if (service->pidfd.valid()) return absl::FailedPreconditionError(name + " is running");
  PM_RETURN_IF_ERROR(Launch(*service));
  return WaitHealthy(*service);
}

namespace {

// Where a supervised service is in its life. Every move goes through
// Stack::Loop::SetPhase, which refuses the ones not listed there.
enum class Phase {
  kRunning,     // healthy; its pidfd is watched
  kStarting,    // launched; a health probe in flight; the health deadline armed
  kBackingOff,  // dead; its restart delay armed
  kHandingOff,  // sent its handoff signal for an upgrade; the stop deadline armed
};

const char* PhaseName(Phase phase) {
  switch (phase) {
    case Phase::kRunning: return "running";
    case Phase::kStarting: return "starting";
    case Phase::kBackingOff: return "backing off";
    case Phase::kHandingOff: return "handing off";
  }
  return "?";
}

bool Allowed(Phase from, Phase to) {
  switch (from) {
    case Phase::kRunning:
      return to == Phase::kBackingOff || to == Phase::kHandingOff;
    case Phase::kStarting:
      return to == Phase::kRunning || to == Phase::kBackingOff;
    case Phase::kBackingOff:
      return to == Phase::kStarting || to == Phase::kBackingOff;
    case Phase::kHandingOff:
      return to == Phase::kStarting || to == Phase::kBackingOff;
  }
  return false;
}

// epoll's data: what became ready, and for which service.
enum class Source : uint32_t { kSignal, kWakeup, kPidfd, kTimer };
uint64_t Tag(Source source, size_t index = 0) {
  return (static_cast<uint64_t>(source) << 32) | index;
}

// Arms `timer` to fire once after `delay` (disarms it for zero).
void Arm(const Fd& timer, absl::Duration delay) {
  struct itimerspec spec = {};
  if (delay > absl::ZeroDuration()) {
    spec.it_value = absl::ToTimespec(delay);
  }
  timerfd_settime(timer.get(), 0, &spec, nullptr);
}

// Reads an eventfd, timerfd or signalfd so it is not ready again; the
// count or signal itself is not needed.
template <typename T>
bool Drain(const Fd& fd, T* value) {
  return read(fd.get(), value, sizeof(T)) == static_cast<ssize_t>(sizeof(T));
}

}  // namespace

// Run's state: everything here lives on Run's thread, except `finished_`,
// which the health probes' completion-queue thread fills.
class Stack::Loop {
 public:
  explicit Loop(Stack& stack) : stack_(stack) {}
  ~Loop() { StopProbes(); }

  absl::StatusOr<Event> Run() {
    PM_RETURN_IF_ERROR(Init());
    if (stack_.options_.subreaper) ReapOrphans();
    struct epoll_event events[16];
    while (!result_) {
      int n = epoll_wait(epoll_.get(), events, 16, -1);
      if (n < 0) {
        if (errno == EINTR) continue;
        return ErrnoError("epoll_wait");
      }
      for (int i = 0; i < n && !result_; ++i) Dispatch(events[i].data.u64);
    }
    return *result_;
  }

 private:
  // One service under supervision.
  struct Supervised {
    ServiceProcess* service;
    Phase phase = Phase::kRunning;
    Fd timer;
    RestartBackoff backoff;
    absl::Time started;
    // Launches so far: a probe's answer for an earlier launch is ignored.
    uint64_t launch = 0;
    std::unique_ptr<grpc::health::v1::Health::Stub> health;
    std::string last_error;  // of the last probe that was not SERVING
  };
  // One health Check in flight on the completion queue; owned by the loop
  // (probes_) until its answer is handled, which is after the queue gave
  // it back: gRPC is done with it then.
  struct Probe {
    size_t index;
    uint64_t launch;
    grpc::ClientContext context;
    grpc::health::v1::HealthCheckRequest request;
    grpc::health::v1::HealthCheckResponse response;
    grpc::Status status;
    std::unique_ptr<
        grpc::ClientAsyncResponseReader<grpc::health::v1::HealthCheckResponse>>
        reader;
  };

  absl::Status Init() {
    epoll_ = Fd(epoll_create1(EPOLL_CLOEXEC));
    if (!epoll_) return ErrnoError("epoll_create1");
    sigset_t set;
    sigemptyset(&set);
    for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGCHLD}) sigaddset(&set, sig);
    signals_ = Fd(signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK));
    if (!signals_) return ErrnoError("signalfd", "SIGINT|SIGTERM|SIGHUP|SIGCHLD");
    PM_RETURN_IF_ERROR(Add(signals_.get(), Tag(Source::kSignal)));
    PM_RETURN_IF_ERROR(Add(stack_.wakeup_.get(), Tag(Source::kWakeup)));
    // The probes' answers come back on this thread, which hands them to the
    // loop through the eventfd.
    probe_thread_ = std::thread([this] { DeliverProbes(); });
    for (ServiceProcess& service : stack_.services_) {
      Supervised s;
      s.service = &service;
      s.backoff = RestartBackoff(stack_.options_.backoff);
      s.timer = Fd(timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK));
      if (!s.timer) return ErrnoError("timerfd_create", service.name);
      s.started = absl::Now();
      s.backoff.Healthy(s.started);  // Start waited for its health
      supervised_.push_back(std::move(s));
    }
    for (size_t i = 0; i < supervised_.size(); ++i) {
      Supervised& s = supervised_[i];
      PM_RETURN_IF_ERROR(Add(s.timer.get(), Tag(Source::kTimer, i)));
      if (s.service->pidfd.valid()) {
        PM_RETURN_IF_ERROR(Add(s.service->pidfd.get(), Tag(Source::kPidfd, i)));
      } else {
        // Stopped before Run (StopService): started again as after a death.
        ScheduleRestart(i);
      }
    }
    return absl::OkStatus();
  }

  absl::Status Add(int fd, uint64_t tag) {
    struct epoll_event event = {};
    event.events = EPOLLIN;
    event.data.u64 = tag;
    if (epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &event) != 0) {
      return ErrnoError("epoll_ctl", "EPOLL_CTL_ADD");
    }
    return absl::OkStatus();
  }

  void Dispatch(uint64_t tag) {
    const auto source = static_cast<Source>(tag >> 32);
    const size_t index = tag & 0xffffffffu;
    switch (source) {
      case Source::kSignal: return OnSignal();
      case Source::kWakeup: return OnWakeup();
      case Source::kPidfd: return OnExit(index);
      case Source::kTimer: return OnTimer(index);
    }
  }

  void Emit(StackEvent event) {
    PM_LOG(INFO) << event.ToString();
    if (stack_.metrics_) stack_.metrics_->OnEvent(event);
    if (stack_.options_.observer) stack_.options_.observer(event);
  }
  StackEvent EventFor(StackEvent::Kind kind, const Supervised& s) {
    StackEvent event;
    event.kind = kind;
    event.service = s.service->name;
    event.pid = s.service->pid;
    return event;
  }

  void SetPhase(Supervised& s, Phase to) {
    if (!Allowed(s.phase, to)) {
      PM_LOG(FATAL) << s.service->name << ": no move from "
                    << PhaseName(s.phase) << " to " << PhaseName(to);
    }
    s.phase = to;
  }

  // --- Signals and requests ---

  void OnSignal() {
    struct signalfd_siginfo info;
    while (Drain(signals_, &info)) {
      switch (info.ssi_signo) {
        case SIGINT:
        case SIGTERM:
          result_ = Event{static_cast<int>(info.ssi_signo), "", absl::nullopt};
          return;
        case SIGHUP:
          StartUpgrade();
          break;
        case SIGCHLD:
          // The services' exits come through their pidfds; this is for
          // the orphans (and a service's exit seen first here).
          if (stack_.options_.subreaper) ReapOrphans();
          break;
      }
    }
  }

  void OnWakeup() {
    uint64_t count;
    Drain(stack_.wakeup_, &count);
    for (Request& request : stack_.TakeRequests()) {
      switch (request.kind) {
        case Request::Kind::kQuit:
          result_ = Event{};
          return;
        case Request::Kind::kUpgrade:
          StartUpgrade();
          break;
        case Request::Kind::kSignal:
          if (ServiceProcess* service = stack_.Find(request.service);
              service != nullptr && service->pidfd.valid()) {
            SendSignal(service->pidfd, request.signal);
          }
          break;
      }
    }
    std::vector<Probe*> finished;
    {
      absl::MutexLock lock(&mu_);
      finished.swap(finished_);
    }
    for (Probe* raw : finished) {
      auto it = probes_.find(raw);
      if (it == probes_.end()) continue;
      std::unique_ptr<Probe> probe = std::move(it->second);
      probes_.erase(it);
      OnAnswer(*probe);
    }
  }

  // --- A service's exit ---

  void OnExit(size_t index) {
    Supervised& s = supervised_[index];
    if (!s.service->pidfd.valid()) return;
    epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, s.service->pidfd.get(), nullptr);
    stack_.Reap(*s.service);
    ++s.launch;  // probes of this launch are moot
    if (s.phase == Phase::kHandingOff) {
      PM_LOG(INFO) << s.service->name << " (pid " << s.service->pid << ") "
                   << s.service->exit->ToString() << " for the upgrade";
      Relaunch(index);
      return;
    }
    StackEvent died = EventFor(StackEvent::Kind::kDied, s);
    died.exit = s.service->exit;
    if (stack_.options_.on_death == OnServiceDeath::kStopAll) {
      result_ = Event{0, s.service->name, s.service->exit};
      return;
    }
    Emit(died);
    if (upgrading_ == index) AbortUpgrade(s, "it died while starting");
    ScheduleRestart(index);
  }

  void ScheduleRestart(size_t index) {
    Supervised& s = supervised_[index];
    SetPhase(s, Phase::kBackingOff);
    StackEvent event = EventFor(StackEvent::Kind::kRestartScheduled, s);
    event.pid = -1;
    event.delay = s.backoff.Died(absl::Now());
    Arm(s.timer, std::max(event.delay, absl::Nanoseconds(1)));
    Emit(event);
  }

  // Starts the service again from its binary on disk, with the same flags.
  void Relaunch(size_t index) {
    Supervised& s = supervised_[index];
    absl::Status launched = stack_.Launch(*s.service);
    if (launched.ok()) {
      launched = Add(s.service->pidfd.get(), Tag(Source::kPidfd, index));
      if (!launched.ok()) SendSignal(s.service->pidfd, SIGKILL);
    }
    if (!launched.ok()) {
      StackEvent failed = EventFor(StackEvent::Kind::kLaunchFailed, s);
      failed.error = std::string(launched.message());
      Emit(failed);
      if (s.service->pidfd.valid()) {
        stack_.Reap(*s.service);
      }
      if (upgrading_ == index) AbortUpgrade(s, failed.error);
      ScheduleRestart(index);
      return;
    }
    SetPhase(s, Phase::kStarting);
    s.started = absl::Now();
    ++s.launch;
    s.health = HealthStub(s.service->socket);
    Arm(s.timer, stack_.options_.health_timeout);
    Emit(EventFor(StackEvent::Kind::kRestarted, s));
    SendProbe(index);
  }

  // --- Timers ---

  void OnTimer(size_t index) {
    Supervised& s = supervised_[index];
    uint64_t expirations;
    if (!Drain(s.timer, &expirations)) return;  // disarmed meanwhile
    switch (s.phase) {
      case Phase::kBackingOff:
        Relaunch(index);
        break;
      case Phase::kStarting: {
        StackEvent event = EventFor(StackEvent::Kind::kUnhealthy, s);
        event.delay = stack_.options_.health_timeout;
        event.error = s.last_error.empty() ? "no answer" : s.last_error;
        Emit(event);
        // Its exit, through the pidfd, restarts it after a delay.
        SendSignal(s.service->pidfd, SIGKILL);
        break;
      }
      case Phase::kHandingOff:
        PM_LOG(WARNING) << s.service->name << " did not exit within "
                        << absl::FormatDuration(stack_.options_.stop_timeout)
                        << " of its handoff signal; killing it";
        SendSignal(s.service->pidfd, SIGKILL);
        break;
      case Phase::kRunning:
        break;
    }
  }

  // --- Health ---

  void SendProbe(size_t index) {
    Supervised& s = supervised_[index];
    auto probe = std::make_unique<Probe>();
    probe->index = index;
    probe->launch = s.launch;
    SetUpProbe(probe->context);
    probe->reader = s.health->AsyncCheck(&probe->context, probe->request, &probes_cq_);
    probe->reader->Finish(&probe->response, &probe->status, probe.get());
    probes_[probe.get()] = std::move(probe);
  }

  // The completion queue's thread: hands each finished probe to the loop.
  void DeliverProbes() {
    void* tag;
    bool ok;
    while (probes_cq_.Next(&tag, &ok)) {
      {
        absl::MutexLock lock(&mu_);
        finished_.push_back(static_cast<Probe*>(tag));
      }
      const uint64_t one = 1;
      (void)!write(stack_.wakeup_.get(), &one, sizeof(one));
    }
  }

  void OnAnswer(const Probe& answer) {
    Supervised& s = supervised_[answer.index];
    if (answer.launch != s.launch || s.phase != Phase::kStarting) return;
    if (!answer.status.ok() ||
        answer.response.status() !=
            grpc::health::v1::HealthCheckResponse::SERVING) {
      s.last_error =
          answer.status.ok() ? "not serving" : answer.status.error_message();
      SendProbe(answer.index);
      return;
    }
    SetPhase(s, Phase::kRunning);
    Arm(s.timer, absl::ZeroDuration());
    const absl::Time now = absl::Now();
    s.backoff.Healthy(now);
    StackEvent healthy = EventFor(StackEvent::Kind::kHealthy, s);
    healthy.delay = now - s.started;
    Emit(healthy);
    if (upgrading_ == answer.index) {
      ++upgrading_;
      UpgradeNext();
    }
  }

  // Cancels the probes in flight and waits until the queue has given every
  // one back: only then may they, and the stubs, go.
  void StopProbes() {
    for (const auto& [raw, probe] : probes_) probe->context.TryCancel();
    probes_cq_.Shutdown();
    if (probe_thread_.joinable()) {
      probe_thread_.join();
    } else {
      // Init failed before the thread: drain here.
      void* tag;
      bool ok;
      while (probes_cq_.Next(&tag, &ok)) {
      }
    }
  }

  // --- Upgrade ---

  void StartUpgrade() {
    if (upgrading_ != kNoUpgrade) {
      PM_LOG(INFO) << "upgrade: already in progress; another pass follows";
      upgrade_again_ = true;
      return;
    }
    PM_LOG(INFO) << "upgrade: restarting every service on the binaries on disk";
    upgrading_ = 0;
    UpgradeNext();
  }

  // Hands off the service at `upgrading_`, or finishes.
  void UpgradeNext() {
    for (; upgrading_ < supervised_.size(); ++upgrading_) {
      Supervised& s = supervised_[upgrading_];
      if (s.phase != Phase::kRunning) {
        // Already on its way back from a death: it will start from the
        // binary on disk anyway.
        PM_LOG(INFO) << "upgrade: " << s.service->name << " is "
                     << PhaseName(s.phase) << "; it restarts on its own";
        continue;
      }
      const int sig = s.service->name == "supervisor"
                          ? stack_.options_.supervisor_handoff_signal
                          : SIGTERM;
      StackEvent step = EventFor(StackEvent::Kind::kUpgradeStep, s);
      step.signal = sig;
      Emit(step);
      SetPhase(s, Phase::kHandingOff);
      Arm(s.timer, stack_.options_.stop_timeout);
      SendSignal(s.service->pidfd, sig);
      return;
    }
    upgrading_ = kNoUpgrade;
    StackEvent done;
    done.kind = StackEvent::Kind::kUpgradeDone;
    Emit(done);
    if (upgrade_again_) {
      upgrade_again_ = false;
      StartUpgrade();
    }
  }

  void AbortUpgrade(const Supervised& s, const std::string& why) {
    StackEvent aborted;
    aborted.kind = StackEvent::Kind::kUpgradeAborted;
    aborted.service = s.service->name;
    aborted.error = why;
    Emit(aborted);
    upgrading_ = kNoUpgrade;
    upgrade_again_ = false;
  }

  // --- Orphans ---

  // Reaps every exited child that is not a service. A service found exited
  // here is handled as through its pidfd; anything else is an orphan
  // reparented to the launcher (it is a subreaper). WNOWAIT first, so that
  // a service's status is read through its own pidfd.
  void ReapOrphans() {
    for (;;) {
      siginfo_t info = {};
      if (waitid(P_ALL, 0, &info, WEXITED | WNOHANG | WNOWAIT) != 0 ||
          info.si_pid == 0) {
        return;
      }
      const pid_t pid = info.si_pid;
      bool service = false;
      for (size_t i = 0; i < supervised_.size() && !result_; ++i) {
        if (supervised_[i].service->pid == pid &&
            supervised_[i].service->pidfd.valid()) {
          service = true;
          OnExit(i);
        }
      }
      if (result_) return;
      if (service) continue;
      // A zombie's pid is not reused before it is reaped: P_PID is safe.
      if (waitid(P_PID, pid, &info, WEXITED) != 0) return;
      StackEvent reaped;
      reaped.kind = StackEvent::Kind::kOrphanReaped;
      reaped.pid = pid;
      reaped.exit = ExitStatus::FromSiginfo(info);
      Emit(reaped);
    }
  }

  static constexpr size_t kNoUpgrade = static_cast<size_t>(-1);

  Stack& stack_;
  Fd epoll_;
  Fd signals_;
  std::vector<Supervised> supervised_;
  absl::optional<Event> result_;
  size_t upgrading_ = kNoUpgrade;
  bool upgrade_again_ = false;

  // Declared before what uses it, so it is destroyed after them.
  grpc::CompletionQueue probes_cq_;
  std::map<Probe*, std::unique_ptr<Probe>> probes_;
  std::thread probe_thread_;

  absl::Mutex mu_;
  std::vector<Probe*> finished_ ABSL_GUARDED_BY(mu_);
};

absl::StatusOr<Stack::Event> Stack::Run() {
  supervising_ = true;
  absl::StatusOr<Event> ended;
  {
    Loop loop(*this);
    ended = loop.Run();
  }
  supervising_ = false;
  return ended;
}

void Stack::Post(Request request) {
  {
    absl::MutexLock lock(&mu_);
    requests_.push_back(std::move(request));
  }
  const uint64_t one = 1;
  (void)!write(wakeup_.get(), &one, sizeof(one));
}

std::vector<Stack::Request> Stack::TakeRequests() {
  absl::MutexLock lock(&mu_);
  return std::exchange(requests_, {});
}

void Stack::Quit() { Post({Request::Kind::kQuit, "", 0}); }
void Stack::RequestUpgrade() { Post({Request::Kind::kUpgrade, "", 0}); }
void Stack::PostSignal(const std::string& name, int sig) {
  Post({Request::Kind::kSignal, name, sig});
}

}  // namespace pm::stack
