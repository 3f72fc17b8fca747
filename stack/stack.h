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
#ifndef PM_STACK_STACK_H_
#define PM_STACK_STACK_H_

#include <sys/resource.h>
#include <sys/types.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "absl/types/optional.h"
#include "common/exit_status.h"
#include "common/fd.h"

namespace pm::stack {

// The gateway's flags, when the stack runs it (make up does; the engine
// tests do not).
struct GatewayOptions {
  std::string listen = "0.0.0.0:8080";
  std::string ca_file;
  std::string cert_file;
  std::string key_file;
  std::string users_file;
  // Where the gateway writes its bound port; empty: a file in the runtime
  // dir. Read after the gateway is healthy (see gateway_port()).
  std::string port_file;
};

struct StackOptions {
  std::string runtime_dir;
  // What outlives the services (common/state_dir.h): created 0700 and
  // passed as --state_dir to each service that keeps state there
  // (registry, gateway). Required: a test must not share the user's.
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
};

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
  absl::Status StopService(const std::string& name);
  absl::Status KillService(const std::string& name, int sig);
  // Starts a stopped service again and waits until it is healthy.
  absl::Status RestartService(const std::string& name);

  // What ended WaitForSignalOrExit.
  struct Event {
    int signal = 0;              // SIGINT / SIGTERM, or 0
    std::string service;         // the service that exited, if any
    absl::optional<ExitStatus> exit;
  };
  // Waits for SIGINT/SIGTERM (blocked by the caller) or the exit of any
  // service. No polling: a signalfd and the pidfds in one poll().
  absl::StatusOr<Event> WaitForSignalOrExit();

  const std::string& runtime_dir() const { return options_.runtime_dir; }
  const std::string& state_dir() const { return options_.state_dir; }
  const std::vector<ServiceProcess>& services() const { return services_; }
  // The gateway's TCP port once it is healthy (0 when it is not run).
  int gateway_port() const { return gateway_port_; }

 private:
  explicit Stack(StackOptions options) : options_(std::move(options)) {}
  ServiceProcess* Find(const std::string& name);
  absl::Status Launch(ServiceProcess& service);
  absl::Status WaitHealthy(ServiceProcess& service);
  absl::Status Terminate(ServiceProcess& service);
  void Reap(ServiceProcess& service);

  StackOptions options_;
  std::vector<ServiceProcess> services_;
  int gateway_port_ = 0;
};

// The directory under which the service binaries are found: the runfiles
// of the running binary or test, or the workspace's bazel-bin.
absl::StatusOr<std::string> FindBinaryRoot();

}  // namespace pm::stack

#endif  // PM_STACK_STACK_H_
