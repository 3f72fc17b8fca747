// Stack: the local pm stack (registry, log_store, supervisor, and the
// gateway when asked for) as child processes of one launcher. `make up` runs it in the foreground
// (//:stack); the integration tests in testing/ bring the same stack up
// with this same code on a temporary runtime dir.
//
//   pm::stack::StackOptions options;
//   options.runtime_dir = "/tmp/pm-test.XXXX";
//   options.state_dir = "/tmp/pm-test.XXXX/state";
//   options.extra_args["supervisor"] = {"--kill_timeout_ms=500"};
//   PM_ASSIGN_OR_RETURN(std::unique_ptr<pm::stack::Stack> stack,
//                       pm::stack::Stack::Start(options));
//   ...                        // every service answers grpc.health.v1
//   PM_RETURN_IF_ERROR(stack->StopAll());   // supervisor, log_store, registry
//
// Each service runs in its own process group, so a terminal's Ctrl+C
// reaches only the launcher, which then stops the services in order: the
// gateway first (no new external calls), then the supervisor (it stops the managed processes and flushes their last
// output and state), then the log_store, then the registry. Children are
// held by pidfd, never by bare pid.
//
// The launcher supervises what it started (Run): a service that exits
// without being asked to is restarted in place, with the same flags and
// socket, after a growing delay (restart_backoff.h), and waited on until it
// answers grpc.health.v1 again, while the others stay watched. SIGHUP (or
// RequestUpgrade) restarts every service, one at a time in start order, on
// the binaries on disk: see "The upgrade contract" below.
//
//   options.on_death = pm::stack::OnServiceDeath::kRestart;
//   options.subreaper = true;     // orphans reparented to us are reaped
//   PM_ASSIGN_OR_RETURN(auto stack, pm::stack::Stack::Start(options));
//   PM_ASSIGN_OR_RETURN(pm::stack::Stack::Event why, stack->Run());
//   PM_RETURN_IF_ERROR(stack->StopAll());
//
// The upgrade contract. Each service is sent its handoff signal, must exit
// by itself within stop_timeout (else SIGKILL), and is started again from
// its binary on disk; the next one is only touched once this one answers
// its health check. The registry, the log_store and the gateway get
// SIGTERM (their ordinary clean exit). The supervisor is sent SIGUSR2 and
// must exit leaving its processes to their shims (the per-process pm-shim
// keeps each process, its pipes and its exit status), and re-adopts them
// when it starts again: an upgrade never stops a managed process.
#ifndef PM_STACK_STACK_H_
#define PM_STACK_STACK_H_

#include <signal.h>
#include <sys/resource.h>
#include <sys/types.h>

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "absl/types/optional.h"
#include "common/exit_status.h"
#include "common/fd.h"
#include "stack/cluster.h"
#include "stack/restart_backoff.h"
#include "stack/stack_metrics.h"

namespace pm::stack {

// The gateway's flags, when the stack runs it (make up does; the engine
// tests do not).
struct GatewayOptions {
  std::string listen = "0.0.0.0:8080";
  std::string ca_file;
  std::string cert_file;
  std::string key_file;
  std::string users_file;
  // In a cluster: the client certificate and key the gateway presents to
  // the other hosts' gateways, and the CA it comes from: the gateways'
  // alone, never the users' ca_file (the gateway's --peer_ca_file).
  std::string peer_cert_file;
  std::string peer_key_file;
  std::string peer_ca_file;
  // Where the gateway writes its bound port; empty: a file in the runtime
  // dir. Read after the gateway is healthy (see gateway_port()).
  std::string port_file;
};

// What Run does when a service exits without being asked to.
enum class OnServiceDeath {
  kStopAll,  // Run returns naming it; the caller stops the rest (the old way)
  kRestart,  // restarted in place after a backoff delay (make up's way)
};

// One thing the launcher saw or did while supervising; each is logged as
// one line (ToString) and handed to StackOptions::observer.
struct StackEvent {
  enum class Kind {
    kDied,              // a service exited unasked: `exit`
    kRestartScheduled,  // it will be started again after `delay`
    kRestarted,         // started again as `pid`; waiting for its health
    kHealthy,           // `pid` answers its health check again
    kUnhealthy,         // not healthy within health_timeout: killed
    kLaunchFailed,      // could not even be spawned: `error`
    kOrphanReaped,      // a process reparented to the launcher, reaped
    kUpgradeStep,       // sent its handoff signal for an upgrade
    kUpgradeDone,       // every service runs the binaries on disk
    kUpgradeAborted,    // a service did not come back: `error`
  };
  Kind kind;
  std::string service;  // empty for orphans and upgrade summaries
  pid_t pid = -1;
  absl::optional<ExitStatus> exit;
  int signal = 0;  // kUpgradeStep: the handoff signal sent
  absl::Duration delay = absl::ZeroDuration();
  std::string error;
  // "log_store (pid 12) killed by signal 9 (SIGKILL)", "restarting log_store
  // in 100ms", ...
  std::string ToString() const;
};

struct StackOptions {
  std::string runtime_dir;
  // What outlives the services (common/state_dir.h): created 0700 and
  // passed as --state_dir to every service (each keeps state there).
  // Required: a test must not share the user's.
  std::string state_dir;
  // Where "registry/registry", "log_store/log_store" and
  // "supervisor/supervisor" are; empty: found in the runfiles.
  std::string binary_root;
  // Extra command-line flags per service name.
  std::map<std::string, std::vector<std::string>> extra_args;
  // Start only these services (by name); empty: all three, and the gateway
  // when `gateway` is set.
  std::vector<std::string> only;
  absl::optional<GatewayOptions> gateway;
  absl::Duration health_timeout = absl::Seconds(30);
  absl::Duration stop_timeout = absl::Seconds(20);
  // The RLIMIT_NOFILE the services start with: the launcher's own before
  // it raised it (common/file_limit.h), so each service starts as from a
  // shell and the supervisor hands that limit to its processes. Unset: the
  // launcher's own.
  absl::optional<rlimit> service_file_limit;
  // Run's policy for a service that dies, and the delays of kRestart.
  OnServiceDeath on_death = OnServiceDeath::kStopAll;
  BackoffOptions backoff;
  // Become a child subreaper (PR_SET_CHILD_SUBREAPER) at Start, and have
  // Run reap every child that is not a service: processes orphaned below
  // the launcher (a dead supervisor's, later its shims) are reparented to
  // it, and nothing else would reap them. Only for a process whose children
  // are all the stack's (the launcher), never a test that has others.
  bool subreaper = false;
  // What an upgrade sends the supervisor (see the contract above).
  int supervisor_handoff_signal = SIGUSR2;
  // Called on Run's thread for every StackEvent, after it is logged.
  std::function<void(const StackEvent&)> observer;
  // Where to serve the whole stack's Prometheus metrics (stack_metrics.h),
  // host:port (port 0: a free one, see metrics_port()); empty: nowhere.
  std::string metrics_listen;
  // This host's cluster (stack/cluster.h), passed on to the registry
  // (--etcd, --etcd_prefix, --node, --gateway_address,
  // --etcd_lease_seconds, and --etcd_ca_file, --etcd_cert_file,
  // --etcd_key_file, --etcd_server_name when given) and the supervisor
  // (--node); unset: a single host.
  absl::optional<ClusterOptions> cluster;
};

// The command line of service `name` (one of Stack::ServiceNames()) as the
// stack runs it: its binary under options.binary_root, the runtime and
// state dirs, what that service needs of `options` (the supervisor its
// pm-shim, the gateway its listen address, files and port file, the
// registry and supervisor the cluster's flags), then
// options.extra_args[name]. The gateway's port_file must be set.
std::vector<std::string> ServiceArgs(const StackOptions& options,
                                     const std::string& name);

struct ServiceProcess {
  std::string name;
  std::string binary;
  std::vector<std::string> args;
  std::string socket;
  pid_t pid = -1;
  Fd pidfd;  // invalid once reaped
  absl::optional<ExitStatus> exit;
};

class Stack {
 public:
  // The service names in start order; "gateway" (last) only runs when
  // StackOptions::gateway is set.
  static const std::vector<std::string>& ServiceNames();

  // Starts the services in order, each waited on until it answers
  // grpc.health.v1 Check with SERVING. On failure the ones started are
  // stopped again and the error names the service (and its exit status if
  // it died, e.g. because a live stack already owns the runtime dir).
  static absl::StatusOr<std::unique_ptr<Stack>> Start(StackOptions options);
  ~Stack();  // StopAll()

  // Stops every running service in reverse start order: SIGTERM, then
  // SIGKILL after stop_timeout. Error if one had to be killed or exited
  // non-zero.
  absl::Status StopAll();

  // Stops one service (SIGTERM, wait) or kills it with `sig` and reaps it.
  // FAILED_PRECONDITION while Run supervises (it owns the services then:
  // use PostSignal).
  absl::Status StopService(const std::string& name);
  absl::Status KillService(const std::string& name, int sig);
  // Starts a stopped service again and waits until it is healthy. The same
  // FAILED_PRECONDITION while Run supervises.
  absl::Status RestartService(const std::string& name);

  // What ended Run.
  struct Event {
    int signal = 0;              // SIGINT / SIGTERM, or 0
    std::string service;         // the service that exited, if any
    absl::optional<ExitStatus> exit;
  };
  // Supervises the services until SIGINT or SIGTERM, Quit(), or (with
  // OnServiceDeath::kStopAll) the exit of a service. SIGHUP starts an
  // upgrade; with kRestart a service that dies is restarted. The caller
  // blocks SIGINT, SIGTERM, SIGHUP and SIGCHLD in every thread beforehand
  // (pm::BlockTerminationSignals({SIGHUP, SIGCHLD})), so they reach the
  // signalfd; one that is not blocked is simply not seen. No polling: one
  // epoll over the signalfd, each service's pidfd and timerfd, and an
  // eventfd for health answers and posted requests. Errors name the failing
  // call (epoll, signalfd, timerfd); the services are left as they are.
  absl::StatusOr<Event> Run();
  // Any thread: Run returns soon with an empty Event.
  void Quit();
  // Any thread: as SIGHUP, restart every service in start order on the
  // binaries on disk.
  void RequestUpgrade();
  // Any thread, while Run runs: sends `sig` to the service through its
  // pidfd (a test's way to kill one; the loop then sees it die).
  void PostSignal(const std::string& name, int sig);

  const std::string& runtime_dir() const { return options_.runtime_dir; }
  const std::string& state_dir() const { return options_.state_dir; }
  const std::vector<ServiceProcess>& services() const { return services_; }
  // The gateway's TCP port once it is healthy (0 when it is not run).
  int gateway_port() const { return gateway_port_; }
  // The metrics endpoint's port (StackOptions::metrics_listen); 0 if none.
  int metrics_port() const;

 private:
  class Loop;
  struct Request {
    enum class Kind { kQuit, kUpgrade, kSignal } kind;
    std::string service;
    int signal = 0;
  };

  explicit Stack(StackOptions options) : options_(std::move(options)) {}
  ServiceProcess* Find(const std::string& name);
  absl::Status Launch(ServiceProcess& service);
  absl::Status WaitHealthy(ServiceProcess& service);
  absl::Status Terminate(ServiceProcess& service);
  void Reap(ServiceProcess& service);
  void Post(Request request);
  std::vector<Request> TakeRequests();

  StackOptions options_;
  std::vector<ServiceProcess> services_;
  int gateway_port_ = 0;
  std::unique_ptr<StackMetrics> metrics_;
  absl::Status NotSupervising(const std::string& what) const;

  Fd wakeup_;  // eventfd: Run's loop wakes for requests and health answers
  std::atomic<bool> supervising_{false};  // Run is running
  absl::Mutex mu_;
  std::vector<Request> requests_ ABSL_GUARDED_BY(mu_);
};

// The directory under which the service binaries are found: the runfiles
// of the running binary or test, or the workspace's bazel-bin.
absl::StatusOr<std::string> FindBinaryRoot();

}  // namespace pm::stack

#endif  // PM_STACK_STACK_H_
