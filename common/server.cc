#include "common/server.h"

#include <signal.h>
#include <unistd.h>

#include <grpc/grpc.h>
#include <grpcpp/health_check_service_interface.h>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/channel.h"
#include "common/log.h"
#include "common/metrics.h"
#include "common/status.h"
#include "common/systemd_notify.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "pm/internal/v1/metrics.grpc.pb.h"

namespace pm {

void BlockTerminationSignals(std::vector<int> extra) {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGPIPE);
  for (int sig : extra) sigaddset(&set, sig);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
}

int WaitForTerminationSignal(const std::vector<int>& extra) {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  for (int sig : extra) sigaddset(&set, sig);
  int sig = 0;
  while (sigwait(&set, &sig) != 0) {
  }
  return sig;
}

void ConfigureServerBuilder(grpc::ServerBuilder& builder) {
  grpc::EnableDefaultHealthCheckService(true);
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  builder.SetMaxReceiveMessageSize(kMaxMessageBytes);
  builder.SetMaxSendMessageSize(kMaxMessageBytes);
  for (const auto& [key, value] : BulkTransferArguments()) {
    builder.AddChannelArgument(key, value);
  }
}

namespace {

// pm.internal.v1.Metrics: the process's metrics::Global() as text.
class ScrapeService final : public pm::internal::v1::Metrics::Service {
  grpc::Status Scrape(grpc::ServerContext*, const pm::internal::v1::ScrapeRequest*,
                      pm::internal::v1::ScrapeResponse* response) override {
    response->set_text(metrics::Global().Render());
    return grpc::Status::OK;
  }
};

// A service may be registered with one server only, and must outlive it:
// one per server started, kept for the process's life (a service starts
// one server; a test a few).
grpc::Service* NewScrapeService() {
  static absl::Mutex mu;
  static auto* kept = new std::vector<std::unique_ptr<ScrapeService>>();
  absl::MutexLock lock(&mu);
  kept->push_back(std::make_unique<ScrapeService>());
  return kept->back().get();
}

}  // namespace

absl::StatusOr<std::unique_ptr<grpc::Server>> StartUnixServer(
    const std::string& socket_path,
    const std::vector<grpc::Service*>& services) {
  PM_RETURN_IF_ERROR(ClaimSocketPath(socket_path));
  grpc::ServerBuilder builder;
  ConfigureServerBuilder(builder);
  int bound_port = 0;
  builder.AddListeningPort(UnixAddress(socket_path),
                           grpc::InsecureServerCredentials(), &bound_port);
  for (grpc::Service* service : services) builder.RegisterService(service);
  builder.RegisterService(NewScrapeService());
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || bound_port == 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot listen on unix socket ", socket_path));
  }
  return server;
}

void KeepGrpcInitialized() {
  // gRPC shuts its library down when the last channel or server goes, and
  // that joins an executor thread that may sleep in a ten-second timer: a
  // service would hang that long on its way out after a clean stop. One
  // reference held until exit means the shutdown never runs (the OS frees
  // everything at exit anyway).
  static const bool kept = [] {
    grpc_init();
    return true;
  }();
  (void)kept;
}

int ServeUntilSignal(Service service, const std::string& runtime_dir,
                     const std::vector<grpc::Service*>& services,
                     std::function<void()> before_shutdown) {
  return ServeUntilSignal(
      service, runtime_dir, services,
      [&before_shutdown](int) {
        if (before_shutdown) before_shutdown();
      },
      {});
}

std::unique_ptr<Watchdog> WatchdogOfHealthCheck(const std::string& socket_path) {
  std::shared_ptr<grpc::health::v1::Health::Stub> health =
      grpc::health::v1::Health::NewStub(
          grpc::CreateChannel(UnixAddress(socket_path), grpc::InsecureChannelCredentials()));
  return Watchdog::StartIfAsked([health](absl::Duration within) {
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + within));
    grpc::health::v1::HealthCheckResponse response;
    return health->Check(&context, grpc::health::v1::HealthCheckRequest(), &response).ok() &&
           response.status() == grpc::health::v1::HealthCheckResponse::SERVING;
  });
}

int ServeUntilSignal(Service service, const std::string& runtime_dir,
                     const std::vector<grpc::Service*>& services,
                     std::function<void(int sig)> before_shutdown,
                     const std::vector<int>& also_on) {
  KeepGrpcInitialized();
  SetLogTag(ServiceName(service));
  if (absl::Status status = EnsureRuntimeDir(runtime_dir); !status.ok()) {
    PM_LOG(ERROR) << "cannot use runtime dir: " << status;
    return 1;
  }
  const std::string socket_path = SocketPath(runtime_dir, service);
  absl::StatusOr<std::unique_ptr<grpc::Server>> server =
      StartUnixServer(socket_path, services);
  if (!server.ok()) {
    PM_LOG(ERROR) << "cannot start: " << server.status();
    return 1;
  }
  PM_LOG(INFO) << "serving on " << socket_path << " (pid " << getpid() << ")";
  NotifyReady(absl::StrCat("serving on ", socket_path));
  std::unique_ptr<Watchdog> watchdog = WatchdogOfHealthCheck(socket_path);
  int sig = WaitForTerminationSignal(also_on);
  PM_LOG(INFO) << "got " << strsignal(sig) << ", shutting down";
  watchdog.reset();
  NotifyStopping(absl::StrCat("got ", strsignal(sig), ", shutting down"));
  if (before_shutdown) before_shutdown(sig);
  (*server)->Shutdown(std::chrono::system_clock::now() +
                      std::chrono::seconds(2));
  (*server)->Wait();
  unlink(socket_path.c_str());
  PM_LOG(INFO) << "stopped";
  return 0;
}

}  // namespace pm
