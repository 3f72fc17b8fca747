// The registry binary as the stack runs it: serves on
// <runtime_dir>/registry.sock, answers over it, exits 0 on SIGTERM and
// removes its socket; a bad flag (a partial set of the etcd TLS flags too)
// stops it at startup.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "absl/strings/str_cat.h"
#include "common/fd.h"
#include "common/runtime_dir.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "pm/internal/v1/internal.grpc.pb.h"

extern char** environ;

namespace pm::registry {
namespace {

using ::pm::v1::ProcessStatus;

std::string BinaryPath() {
  return std::string(getenv("TEST_SRCDIR")) + "/pm/registry/registry";
}

// Starts the registry with `flags`, its stderr in `stderr_file` if given;
// -1 if it could not be spawned.
pid_t Spawn(const std::vector<std::string>& flags, const std::string& stderr_file = "") {
  std::string binary = BinaryPath();
  std::vector<char*> argv = {binary.data()};
  std::vector<std::string> args = flags;
  for (std::string& arg : args) argv.push_back(arg.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  if (!stderr_file.empty()) {
    posix_spawn_file_actions_addopen(&actions, STDERR_FILENO, stderr_file.c_str(),
                                     O_WRONLY | O_CREAT | O_TRUNC, 0600);
  }
  pid_t pid = -1;
  int err = posix_spawn(&pid, binary.c_str(), &actions, nullptr, argv.data(),
                        environ);
  posix_spawn_file_actions_destroy(&actions);
  EXPECT_EQ(err, 0) << binary << ": " << strerror(err);
  return err == 0 ? pid : -1;
}

int WaitForExit(pid_t pid) {
  int status = 0;
  EXPECT_EQ(waitpid(pid, &status, 0), pid);
  EXPECT_TRUE(WIFEXITED(status)) << "wait status " << status;
  return WEXITSTATUS(status);
}

TEST(RegistryMainTest, ServesOnItsSocketAndStopsCleanlyOnSigterm) {
  // Under /tmp, not $TEST_TMPDIR: a unix socket path must fit in 108 bytes.
  char dir_template[] = "/tmp/pm_regmain.XXXXXX";
  ASSERT_NE(mkdtemp(dir_template), nullptr);
  const std::string runtime_dir = std::string(dir_template) + "/rt";
  const std::string socket_path = SocketPath(runtime_dir, Service::kRegistry);

  pid_t pid = Spawn({"--runtime_dir=" + runtime_dir,
                     "--state_dir=" + std::string(dir_template) + "/state",
                     "--max_ended_records=5"});
  ASSERT_GT(pid, 0);

  auto stub = pm::internal::v1::Registry::NewStub(grpc::CreateChannel(
      UnixAddress(socket_path), grpc::InsecureChannelCredentials()));
  pm::internal::v1::CreateRecordRequest create;
  create.mutable_spec()->set_executable("true");
  create.set_pid(4242);
  ProcessStatus created;
  {
    grpc::ClientContext context;
    // Waits (a generous safety net, not a speed claim) for the server to
    // come up instead of sleeping.
    context.set_wait_for_ready(true);
    context.set_deadline(std::chrono::system_clock::now() +
                         std::chrono::seconds(60));
    grpc::Status rpc = stub->CreateRecord(&context, create, &created);
    ASSERT_TRUE(rpc.ok()) << rpc.error_message();
  }
  {
    grpc::ClientContext context;
    pm::v1::ListResponse list;
    grpc::Status rpc = stub->List(&context, pm::v1::ListRequest(), &list);
    ASSERT_TRUE(rpc.ok()) << rpc.error_message();
    ASSERT_EQ(list.processes_size(), 1);
    EXPECT_EQ(list.processes(0).id(), created.id());
  }
  struct stat st;
  ASSERT_EQ(stat(runtime_dir.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);

  // Hang up first: with a client still connected, the server's shutdown
  // waits out its whole grace period.
  stub.reset();
  ASSERT_EQ(kill(pid, SIGTERM), 0);
  EXPECT_EQ(WaitForExit(pid), 0);
  EXPECT_NE(access(socket_path.c_str(), F_OK), 0) << "socket left behind";

  rmdir(runtime_dir.c_str());
  rmdir(dir_template);
}

// A stub on the registry's socket whose first call waits for it to serve.
std::unique_ptr<pm::internal::v1::Registry::Stub> Connect(
    const std::string& runtime_dir) {
  return pm::internal::v1::Registry::NewStub(grpc::CreateChannel(
      UnixAddress(SocketPath(runtime_dir, Service::kRegistry)),
      grpc::InsecureChannelCredentials()));
}

void WaitForReady(grpc::ClientContext& context) {
  // A generous safety net, not a speed claim: the first call waits for the
  // server to come up instead of sleeping.
  context.set_wait_for_ready(true);
  context.set_deadline(std::chrono::system_clock::now() +
                       std::chrono::seconds(60));
}

// Under systemd (Type=notify, WatchdogSec=): READY=1 comes only once the
// registry serves (a call right after it needs no wait_for_ready), watchdog
// pings follow while it answers its own health check, and STOPPING=1 comes
// with SIGTERM. $NOTIFY_SOCKET is a socket of the test's own.
TEST(RegistryMainTest, TellsSystemdItIsReadyOnceItServesAndPingsItsWatchdog) {
  char dir_template[] = "/tmp/pm_regnotify.XXXXXX";
  ASSERT_NE(mkdtemp(dir_template), nullptr);
  const std::string dir = dir_template;
  const std::string notify_path = dir + "/notify";
  Fd notify(socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  sockaddr_un address = {};
  address.sun_family = AF_UNIX;
  notify_path.copy(address.sun_path, notify_path.size());
  ASSERT_EQ(bind(notify.get(), reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
  auto next = [&]() -> std::string {
    pollfd p = {notify.get(), POLLIN, 0};
    if (poll(&p, 1, 60000) != 1) return "";
    char buffer[4096];
    const ssize_t n = recv(notify.get(), buffer, sizeof(buffer), 0);
    return n > 0 ? std::string(buffer, n) : "";
  };
  setenv("NOTIFY_SOCKET", notify_path.c_str(), 1);
  setenv("WATCHDOG_USEC", "400000", 1);
  const pid_t pid =
      Spawn({"--runtime_dir=" + dir + "/rt", "--state_dir=" + dir + "/state"});
  unsetenv("NOTIFY_SOCKET");
  unsetenv("WATCHDOG_USEC");
  ASSERT_GT(pid, 0);
  const std::string ready = next();
  EXPECT_EQ(ready, absl::StrCat("READY=1\nMAINPID=", pid, "\nSTATUS=serving on ",
                                SocketPath(dir + "/rt", Service::kRegistry)));
  {
    auto stub = Connect(dir + "/rt");
    grpc::ClientContext context;  // no wait_for_ready: it serves already
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
    pm::v1::ListResponse list;
    grpc::Status rpc = stub->List(&context, pm::v1::ListRequest(), &list);
    EXPECT_TRUE(rpc.ok()) << rpc.error_message();
  }
  EXPECT_EQ(next(), "WATCHDOG=1");
  EXPECT_EQ(next(), "WATCHDOG=1");
  ASSERT_EQ(kill(pid, SIGTERM), 0);
  std::string stopping;
  do {
    stopping = next();
  } while (stopping == "WATCHDOG=1");
  EXPECT_EQ(stopping, "STOPPING=1\nSTATUS=got Terminated, shutting down");
  EXPECT_EQ(WaitForExit(pid), 0);
  std::filesystem::remove_all(dir);
}

TEST(RegistryMainTest, AnAnsweredCreateAndUpdateSurviveASigkill) {
  char dir_template[] = "/tmp/pm_regkill.XXXXXX";
  ASSERT_NE(mkdtemp(dir_template), nullptr);
  const std::string dir = dir_template;
  const std::vector<std::string> flags = {"--runtime_dir=" + dir + "/rt",
                                          "--state_dir=" + dir + "/state"};
  pid_t pid = Spawn(flags);
  ASSERT_GT(pid, 0);
  auto stub = Connect(dir + "/rt");
  pm::internal::v1::CreateRecordRequest create;
  create.mutable_spec()->set_executable("true");
  create.set_pid(4242);
  ProcessStatus ended, running;
  {
    grpc::ClientContext context;
    WaitForReady(context);
    grpc::Status rpc = stub->CreateRecord(&context, create, &ended);
    ASSERT_TRUE(rpc.ok()) << rpc.error_message();
  }
  {
    grpc::ClientContext context;
    grpc::Status rpc = stub->CreateRecord(&context, create, &running);
    ASSERT_TRUE(rpc.ok()) << rpc.error_message();
  }
  {
    pm::internal::v1::UpdateRecordRequest update;
    update.set_id(ended.id());
    update.set_state(ProcessStatus::STATE_EXITED);
    update.mutable_end()->set_exit_code(3);
    update.mutable_end()->set_end_reason("exited with code 3");
    grpc::ClientContext context;
    ProcessStatus answer;
    grpc::Status rpc = stub->UpdateRecord(&context, update, &answer);
    ASSERT_TRUE(rpc.ok()) << rpc.error_message();
  }
  // Right after the answer: no shutdown, no flush, no close.
  ASSERT_EQ(kill(pid, SIGKILL), 0);
  int wait_status = 0;
  ASSERT_EQ(waitpid(pid, &wait_status, 0), pid);
  ASSERT_TRUE(WIFSIGNALED(wait_status));
  stub.reset();

  pid = Spawn(flags);  // its stale socket is taken over
  ASSERT_GT(pid, 0);
  stub = Connect(dir + "/rt");
  {
    grpc::ClientContext context;
    WaitForReady(context);
    pm::v1::GetStatusRequest request;
    request.set_id(ended.id());
    ProcessStatus status;
    grpc::Status rpc = stub->GetStatus(&context, request, &status);
    ASSERT_TRUE(rpc.ok()) << rpc.error_message();
    EXPECT_EQ(status.state(), ProcessStatus::STATE_EXITED);
    EXPECT_EQ(status.exit_code(), 3);
    EXPECT_EQ(status.end_reason(), "exited with code 3");
  }
  {
    grpc::ClientContext context;
    pm::v1::GetStatusRequest request;
    request.set_id(running.id());
    ProcessStatus status;
    grpc::Status rpc = stub->GetStatus(&context, request, &status);
    ASSERT_TRUE(rpc.ok()) << rpc.error_message();
    EXPECT_EQ(status.state(), ProcessStatus::STATE_RUNNING);  // same boot
  }
  struct stat st;
  ASSERT_EQ(stat((dir + "/state/registry.sqlite").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  stub.reset();
  ASSERT_EQ(kill(pid, SIGTERM), 0);
  EXPECT_EQ(WaitForExit(pid), 0);
  std::error_code ignored;
  std::filesystem::remove_all(dir, ignored);
}

TEST(RegistryMainTest, ANegativeCapIsRefusedAtStartup) {
  pid_t pid = Spawn({"--runtime_dir=/tmp/pm_never_created_dir",
                     "--max_ended_records=-1"});
  ASSERT_GT(pid, 0);
  EXPECT_EQ(WaitForExit(pid), 2);
  EXPECT_NE(access("/tmp/pm_never_created_dir", F_OK), 0);
}

TEST(RegistryMainTest, APartialSetOfEtcdTlsFlagsIsRefusedAtStartupNamingTheMissingOne) {
  const std::string log = ::testing::TempDir() + "/partial_tls.stderr";
  pid_t pid = Spawn({"--runtime_dir=/tmp/pm_never_created_dir", "--etcd=127.0.0.1:1",
                     "--node=a", "--etcd_ca_file=/pki/etcd-ca.pem",
                     "--etcd_cert_file=/pki/etcd-client.pem"},
                    log);
  ASSERT_GT(pid, 0);
  EXPECT_EQ(WaitForExit(pid), 2);
  absl::StatusOr<std::string> said = ReadFile(log);
  ASSERT_TRUE(said.ok()) << said.status();
  EXPECT_THAT(*said, ::testing::HasSubstr(
                         "--etcd_key_file is missing: TLS to etcd takes --etcd_ca_file, "
                         "--etcd_cert_file and --etcd_key_file together (or none of them)"));

  // Without a cluster, TLS to etcd means nothing.
  pid = Spawn({"--runtime_dir=/tmp/pm_never_created_dir", "--etcd_ca_file=/pki/etcd-ca.pem"},
              log);
  ASSERT_GT(pid, 0);
  EXPECT_EQ(WaitForExit(pid), 2);
  said = ReadFile(log);
  ASSERT_TRUE(said.ok()) << said.status();
  EXPECT_THAT(*said, ::testing::HasSubstr(
                         "--etcd_ca_file=/pki/etcd-ca.pem needs a cluster: give "
                         "--etcd=ENDPOINTS too"));
  EXPECT_NE(access("/tmp/pm_never_created_dir", F_OK), 0);
}

}  // namespace
}  // namespace pm::registry
