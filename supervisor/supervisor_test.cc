// The Supervisor in-process, against in-process registry and log_store
// servers on unix sockets: behaviour that needs a hand on its threads (the
// janitor), which the end-to-end tests in testing/ cannot reach.
#include "supervisor/supervisor.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <memory>
#include <string>

#include <grpc/grpc.h>
#include <grpcpp/grpcpp.h>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/notification.h"
#include "common/runtime_dir.h"
#include "common/server.h"
#include "gtest/gtest.h"
#include "log_store/log_store.h"
#include "log_store/log_store_service.h"
#include "registry/registry.h"
#include "registry/registry_service.h"

namespace pm::supervisor {
namespace {

// The supervisor reads SIGCHLD from a signalfd: it must be blocked in every
// thread, so before any exists (gtest's and gRPC's come later).
const bool sigchld_blocked = [] {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGCHLD);
  return pthread_sigmask(SIG_BLOCK, &set, nullptr) == 0;
}();

constexpr char kNobody[] = "00000000-0000-4000-8000-000000000000";

class SupervisorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(sigchld_blocked);
    grpc_init();
    char dir_template[] = "/tmp/pm_sv.XXXXXX";
    ASSERT_NE(mkdtemp(dir_template), nullptr);
    dir_ = dir_template;
    store_ = std::make_unique<log_store::LogStore>(log_store::LogStore::Options{});
    log_store_service_ = std::make_unique<log_store::LogStoreService>(store_.get());
    registry_ = std::make_unique<registry::Registry>();
    registry_service_ = std::make_unique<registry::RegistryService>(registry_.get());
    grpc::ServerBuilder builder;
    ConfigureServerBuilder(builder);
    builder.AddListeningPort(UnixAddress(SocketPath(dir_, Service::kLogStore)),
                             grpc::InsecureServerCredentials());
    builder.AddListeningPort(UnixAddress(SocketPath(dir_, Service::kRegistry)),
                             grpc::InsecureServerCredentials());
    builder.RegisterService(log_store_service_.get());
    builder.RegisterService(registry_service_.get());
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
  }

  void TearDown() override {
    supervisor_.reset();  // stops what is left
    log_store_service_->Shutdown();
    server_->Shutdown();
    server_->Wait();
    std::string rm = "rm -rf " + dir_;
    EXPECT_EQ(system(rm.c_str()), 0);
    grpc_shutdown();
  }

  void CreateSupervisor(std::function<void()> janitor_gate) {
    SupervisorOptions options;
    options.registry_socket = SocketPath(dir_, Service::kRegistry);
    options.log_store_socket = SocketPath(dir_, Service::kLogStore);
    options.cgroup.name_prefix = absl::StrCat("svtest", getpid(), ".");
    options.janitor_gate = std::move(janitor_gate);
    absl::StatusOr<std::unique_ptr<Supervisor>> created = Supervisor::Create(options);
    ASSERT_TRUE(created.ok()) << created.status();
    supervisor_ = *std::move(created);
  }

  absl::StatusOr<pm::v1::StartResponse> Start(const pm::v1::StartRequest& request) {
    absl::Notification done;
    absl::StatusOr<pm::v1::StartResponse> result;
    supervisor_->Start(request, "", [&](absl::StatusOr<pm::v1::StartResponse> r) {
      result = std::move(r);
      done.Notify();
    });
    done.WaitForNotification();
    return result;
  }

  std::string dir_;
  std::unique_ptr<log_store::LogStore> store_;
  std::unique_ptr<log_store::LogStoreService> log_store_service_;
  std::unique_ptr<registry::Registry> registry_;
  std::unique_ptr<registry::RegistryService> registry_service_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<Supervisor> supervisor_;
};

// A Stop that arrives while the janitor holds a reaped leader's cgroup
// still reaches a daemon the leader left in it: its SIGTERM waits for the
// cgroup to come back, and the stop ends long before the grace period would
// have sent SIGKILL.
TEST_F(SupervisorTest, StopWhileTheJanitorHoldsTheCgroupStillReachesItsMembers) {
  absl::Notification janitor_entered, release_janitor;
  CreateSupervisor([&] {
    if (!janitor_entered.HasBeenNotified()) janitor_entered.Notify();
    release_janitor.WaitForNotification();
  });
  const std::string out = dir_ + "/out", in = dir_ + "/in";
  ASSERT_EQ(mkfifo(out.c_str(), 0600), 0);
  ASSERT_EQ(mkfifo(in.c_str(), 0600), 0);
  // The leader starts a daemon in a session of its own, says its pid, and
  // exits when told.
  pm::v1::StartRequest request;
  request.set_executable("/bin/sh");
  request.add_args("-c");
  request.add_args(absl::StrCat("setsid sleep 1000 & echo $! > ", out,
                                "; read line < ", in, "; exit 0"));
  absl::StatusOr<pm::v1::StartResponse> started = Start(request);
  ASSERT_TRUE(started.ok()) << started.status();
  if (started->status().cgroup().empty()) {
    release_janitor.Notify();
    GTEST_SKIP() << "no cgroups here";
  }
  std::string pid_text(32, '\0');
  const int out_fd = open(out.c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(out_fd, 0);
  const ssize_t n = read(out_fd, pid_text.data(), pid_text.size());
  close(out_fd);
  ASSERT_GT(n, 0);
  pid_t daemon = 0;
  ASSERT_TRUE(absl::SimpleAtoi(
      absl::StripAsciiWhitespace(absl::string_view(pid_text.data(), n)), &daemon));
  const int daemon_fd = static_cast<int>(syscall(SYS_pidfd_open, daemon, 0));
  ASSERT_GE(daemon_fd, 0);

  const int in_fd = open(in.c_str(), O_WRONLY | O_CLOEXEC);
  ASSERT_GE(in_fd, 0);
  ASSERT_EQ(write(in_fd, "go\n", 3), 3);
  close(in_fd);
  janitor_entered.WaitForNotification();  // the leader is reaped; its cgroup is away

  absl::Notification stopped;
  absl::StatusOr<pm::v1::StopResponse> stop_result;
  pm::v1::StopRequest stop;
  stop.set_id(started->id());
  stop.set_grace_period_ms(60000);
  supervisor_->Stop(stop, [&](absl::StatusOr<pm::v1::StopResponse> r) {
    stop_result = std::move(r);
    stopped.Notify();
  });
  // Stops are taken in order on the loop: once a later one is answered, the
  // first has begun (and deferred its SIGTERM to the daemon).
  absl::Notification later;
  pm::v1::StopRequest unknown;
  unknown.set_id(kNobody);
  supervisor_->Stop(unknown, [&](absl::StatusOr<pm::v1::StopResponse>) { later.Notify(); });
  later.WaitForNotification();
  EXPECT_FALSE(stopped.HasBeenNotified());

  release_janitor.Notify();
  // SIGTERM reaches the daemon: the stop ends well inside the 60 s grace.
  ASSERT_TRUE(stopped.WaitForNotificationWithTimeout(absl::Seconds(30)))
      << "the daemon did not get SIGTERM";
  ASSERT_TRUE(stop_result.ok()) << stop_result.status();
  EXPECT_TRUE(stop_result->stopped());
  struct pollfd gone = {daemon_fd, POLLIN, 0};
  EXPECT_EQ(poll(&gone, 1, 0), 1);  // the daemon has exited
  close(daemon_fd);
  EXPECT_EQ(stop_result->status().termination(),
            pm::v1::ProcessStatus::TERMINATION_BY_ITSELF);  // the leader's own end
}

}  // namespace
}  // namespace pm::supervisor
