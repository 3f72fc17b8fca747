#include "stack/stack.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>

#include <grpcpp/grpcpp.h>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
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

}  // namespace

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

absl::StatusOr<std::unique_ptr<Stack>> Stack::Start(StackOptions options) {
  if (options.binary_root.empty()) {
    PM_ASSIGN_OR_RETURN(options.binary_root, FindBinaryRoot());
  }
  PM_RETURN_IF_ERROR(EnsureRuntimeDir(options.runtime_dir));
  if (options.state_dir.empty()) {
    return absl::InvalidArgumentError("StackOptions.state_dir is empty");
  }
  PM_RETURN_IF_ERROR(EnsureStateDir(options.state_dir));
  std::unique_ptr<Stack> stack(new Stack(std::move(options)));
  for (const std::string& name : ServiceNames()) {
    const auto& only = stack->options_.only;
    if (!only.empty() && std::find(only.begin(), only.end(), name) == only.end()) {
      continue;
    }
    if (name == "gateway" && !stack->options_.gateway.has_value()) continue;
    ServiceProcess service;
    service.name = name;
    service.binary = absl::StrCat(stack->options_.binary_root, "/", name, "/", name);
    service.args = {service.binary,
                    absl::StrCat("--runtime_dir=", stack->options_.runtime_dir)};
    // The services that keep state on disk so far.
    if (name == "registry" || name == "gateway") {
      service.args.push_back(
          absl::StrCat("--state_dir=", stack->options_.state_dir));
    }
    if (name == "gateway") {
      GatewayOptions& gateway = *stack->options_.gateway;
      if (gateway.port_file.empty()) {
        gateway.port_file =
            absl::StrCat(stack->options_.runtime_dir, "/gateway.port");
      }
      for (std::string arg : {"--listen=" + gateway.listen,
                              "--ca_file=" + gateway.ca_file,
                              "--cert_file=" + gateway.cert_file,
                              "--key_file=" + gateway.key_file,
                              "--users_file=" + gateway.users_file,
                              "--port_file=" + gateway.port_file}) {
        service.args.push_back(std::move(arg));
      }
    }
    for (const std::string& arg : stack->options_.extra_args[name]) {
      service.args.push_back(arg);
    }
    service.socket = SocketPath(stack->options_.runtime_dir, ServiceOf(name));
    stack->services_.push_back(std::move(service));
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

Stack::~Stack() { StopAll().IgnoreError(); }

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
  grpc::ChannelArguments args;
  // The socket appears when the service binds; retry connecting quickly.
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 10);
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 10);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 100);
  auto stub = grpc::health::v1::Health::NewStub(grpc::CreateCustomChannel(
      UnixAddress(service.socket), grpc::InsecureChannelCredentials(), args));
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
    // wait_for_ready: the call waits for the connection instead of failing;
    // the short deadline lets the loop notice a service that died.
    context.set_wait_for_ready(true);
    context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Milliseconds(250)));
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
  syscall(SYS_pidfd_send_signal, service.pidfd.get(), SIGTERM, nullptr, 0);
  bool killed = false;
  if (!Exited(service.pidfd,
              static_cast<int>(absl::ToInt64Milliseconds(options_.stop_timeout)))) {
    syscall(SYS_pidfd_send_signal, service.pidfd.get(), SIGKILL, nullptr, 0);
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
  return first;
}

absl::Status Stack::StopService(const std::string& name) {
  ServiceProcess* service = Find(name);
  if (service == nullptr) return absl::NotFoundError(absl::StrCat("no service ", name));
  return Terminate(*service);
}

absl::Status Stack::KillService(const std::string& name, int sig) {
  ServiceProcess* service = Find(name);
  if (service == nullptr) return absl::NotFoundError(absl::StrCat("no service ", name));
  if (!service->pidfd.valid()) return absl::FailedPreconditionError(name + " is not running");
  if (syscall(SYS_pidfd_send_signal, service->pidfd.get(), sig, nullptr, 0) != 0) {
    return ErrnoError("pidfd_send_signal", name);
  }
  Reap(*service);
  return absl::OkStatus();
}

absl::Status Stack::RestartService(const std::string& name) {
  ServiceProcess* service = Find(name);
  if (service == nullptr) return absl::NotFoundError(absl::StrCat("no service ", name));
  if (service->pidfd.valid()) return absl::FailedPreconditionError(name + " is running");
  PM_RETURN_IF_ERROR(Launch(*service));
  return WaitHealthy(*service);
}

absl::StatusOr<Stack::Event> Stack::WaitForSignalOrExit() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  Fd sigfd(signalfd(-1, &set, SFD_CLOEXEC));
  if (!sigfd) return ErrnoError("signalfd", "SIGINT|SIGTERM");
  std::vector<struct pollfd> fds;
  fds.push_back({sigfd.get(), POLLIN, 0});
  std::vector<ServiceProcess*> watched;
  for (ServiceProcess& service : services_) {
    if (!service.pidfd.valid()) continue;
    fds.push_back({service.pidfd.get(), POLLIN, 0});
    watched.push_back(&service);
  }
  for (;;) {
    if (poll(fds.data(), fds.size(), -1) < 0) {
      if (errno == EINTR) continue;
      return ErrnoError("poll");
    }
    if (fds[0].revents & POLLIN) {
      struct signalfd_siginfo info;
      if (read(sigfd.get(), &info, sizeof(info)) != sizeof(info)) {
        return ErrnoError("read", "signalfd");
      }
      Event event;
      event.signal = static_cast<int>(info.ssi_signo);
      return event;
    }
    for (size_t i = 1; i < fds.size(); ++i) {
      if (fds[i].revents & POLLIN) {
        ServiceProcess* service = watched[i - 1];
        Reap(*service);
        Event event;
        event.service = service->name;
        event.exit = service->exit;
        return event;
      }
    }
  }
}

}  // namespace pm::stack
