// Serving a pm service on its unix socket until SIGTERM or SIGINT.
//
//   int main(int argc, char** argv) {
//     pm::BlockTerminationSignals();        // before any thread exists
//     gflags::ParseCommandLineFlags(&argc, &argv, true);
//     RegistryService service(...);
//     return pm::ServeUntilSignal(pm::Service::kRegistry, FLAGS_runtime_dir,
//                                 {&service});
//   }
//
// Every server of the project serves grpc.health.v1 and has SO_REUSEPORT
// off, so a second instance fails loudly instead of sharing the socket.
#ifndef PM_COMMON_SERVER_H_
#define PM_COMMON_SERVER_H_

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "absl/status/statusor.h"
#include "common/runtime_dir.h"
#include "common/systemd_notify.h"

namespace pm {

// Blocks SIGTERM, SIGINT and SIGPIPE (and `extra` signals) in the calling
// thread; threads created afterwards inherit the mask, so the signals are
// only ever taken by WaitForTerminationSignal (or a signalfd).
void BlockTerminationSignals(std::vector<int> extra = {});

// Waits for SIGTERM, SIGINT or one of `extra` (all blocked beforehand) and
// returns its number.
int WaitForTerminationSignal(const std::vector<int>& extra = {});

// The server options every pm server uses: health service, no SO_REUSEPORT,
// unlimited message size for output chunks.
void ConfigureServerBuilder(grpc::ServerBuilder& builder);

// Builds and starts a server on the unix socket `socket_path` (claimed with
// ClaimSocketPath first). UNAVAILABLE naming the path if binding fails.
absl::StatusOr<std::unique_ptr<grpc::Server>> StartUnixServer(
    const std::string& socket_path, const std::vector<grpc::Service*>& services);

// Keeps gRPC's library initialised until the process exits, so the last
// channel or server going away never blocks in gRPC's shutdown (which can
// take ten seconds). ServeUntilSignal calls it; a service with its own main
// loop calls it first.
void KeepGrpcInitialized();

// With a systemd watchdog asked for (WatchdogSec=), one that pings while
// the service at `socket_path` answers a grpc.health.v1 check; else null.
std::unique_ptr<Watchdog> WatchdogOfHealthCheck(const std::string& socket_path);

// The whole life of a service process: ensure the runtime dir, claim and bind
// the socket, log where it listens (and tell systemd READY=1, with its
// watchdog if asked: WatchdogOfHealthCheck), wait for SIGTERM/SIGINT (then
// STOPPING=1), then call
// `before_shutdown` (may be empty), shut the server down (in-flight calls get
// `grace`), remove the socket file. Returns the process exit code.
int ServeUntilSignal(Service service, const std::string& runtime_dir,
                     const std::vector<grpc::Service*>& services,
                     std::function<void()> before_shutdown = nullptr);
// The same, also ending on each of `also_on` (blocked beforehand, e.g. the
// supervisor's SIGUSR2); `before_shutdown` is told which signal came.
int ServeUntilSignal(Service service, const std::string& runtime_dir,
                     const std::vector<grpc::Service*>& services,
                     std::function<void(int sig)> before_shutdown,
                     const std::vector<int>& also_on);

}  // namespace pm

#endif  // PM_COMMON_SERVER_H_
