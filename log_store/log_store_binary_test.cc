// The log_store binary as the stack runs it: serves on
// <runtime_dir>/log_store.sock the output shims write to the state dir,
// takes the flags the launcher passes, and on SIGTERM ends its open streams
// with UNAVAILABLE (follow streams would otherwise hold the shutdown),
// removes the socket and exits 0.
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "log_store/test_client.h"
#include "absl/time/clock.h"
#include "pm/internal/v1/internal.grpc.pb.h"
#include "segment_log/writer.h"

extern char** environ;

namespace pm::log_store {
namespace {

using ::pm::v1::OutputChunk;
using ::testing::HasSubstr;

constexpr char kId[] = "0b7e3d1c-6a1f-4e8e-9f3c-2d6a5b4c3d2e";

std::string BinaryPath() {
  const char* srcdir = getenv("TEST_SRCDIR");
  const char* workspace = getenv("TEST_WORKSPACE");
  return std::string(srcdir ? srcdir : ".") + "/" +
         (workspace ? workspace : "pm") + "/log_store/log_store";
}

// The log_store binary, run with `flags`, killed if the test leaves it.
class LogStoreProcess {
 public:
  explicit LogStoreProcess(const std::vector<std::string>& flags) {
    std::vector<std::string> args = {BinaryPath()};
    args.insert(args.end(), flags.begin(), flags.end());
    std::vector<char*> argv;
    for (std::string& arg : args) argv.push_back(arg.data());
    argv.push_back(nullptr);
    spawn_error_ = posix_spawn(&pid_, argv[0], nullptr, nullptr, argv.data(),
                               environ);
    if (spawn_error_ == 0) {
      pidfd_ = static_cast<int>(syscall(SYS_pidfd_open, pid_, 0));
    }
  }
  ~LogStoreProcess() {
    if (pid_ > 0 && !reaped_) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
    if (pidfd_ >= 0) close(pidfd_);
  }

  bool started() const { return spawn_error_ == 0 && pidfd_ >= 0; }
  void Signal(int sig) { kill(pid_, sig); }

  // The wait status once it exits, or -1 if it is still running after
  // `timeout_ms` (a safety net against a hang).
  int WaitForExit(int timeout_ms) {
    struct pollfd pfd = {pidfd_, POLLIN, 0};
    if (poll(&pfd, 1, timeout_ms) != 1) return -1;
    int status = 0;
    if (waitpid(pid_, &status, 0) != pid_) return -1;
    reaped_ = true;
    return status;
  }

 private:
  pid_t pid_ = -1;
  int pidfd_ = -1;
  int spawn_error_ = 0;
  bool reaped_ = false;
};

class LogStoreBinaryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char dir_template[] = "/tmp/pm_ls.XXXXXX";
    ASSERT_NE(mkdtemp(dir_template), nullptr);
    dir_ = dir_template;
    socket_ = dir_ + "/log_store.sock";
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::vector<std::string> Flags() const {
    return {"--runtime_dir=" + dir_, "--state_dir=" + dir_ + "/state"};
  }

  // A stub that has connected to the service (it waits for the socket).
  std::unique_ptr<pm::internal::v1::LogStore::Stub> Connect() {
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 50);
    args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 200);
    std::shared_ptr<grpc::Channel> channel = grpc::CreateCustomChannel(
        "unix:" + socket_, grpc::InsecureChannelCredentials(), args);
    if (!channel->WaitForConnected(std::chrono::system_clock::now() +
                                   std::chrono::seconds(60))) {
      return nullptr;
    }
    return pm::internal::v1::LogStore::NewStub(channel);
  }

  std::string dir_;
  std::string socket_;
};

TEST_F(LogStoreBinaryTest, ServesAndEndsFollowStreamsOnSigterm) {
  // The flags the launcher and the tests' stacks pass.
  std::vector<std::string> flags = Flags();
  flags.push_back("--max_total_bytes=1073741824");
  LogStoreProcess process(flags);
  ASSERT_TRUE(process.started());
  {
    std::unique_ptr<pm::internal::v1::LogStore::Stub> stub = Connect();
    ASSERT_NE(stub, nullptr) << "log_store never listened on " << socket_;

    // A process with output, still running, and a reader following it.
    std::unique_ptr<segment_log::Writer> shim =
        OpenShimWriter(dir_ + "/state", kId);
    ASSERT_NE(shim, nullptr);
    ASSERT_TRUE(
        shim->Append(segment_log::Stream::kStdout, "hello\n", absl::Now())
            .ok());
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() +
                         std::chrono::seconds(120));
    std::unique_ptr<grpc::ClientReader<OutputChunk>> follower =
        stub->StreamOutput(&context, OutputRequest(kId, true, true));
    OutputChunk chunk;
    ASSERT_TRUE(follower->Read(&chunk));
    EXPECT_EQ(chunk.data(), "hello\n");

    process.Signal(SIGTERM);
    EXPECT_FALSE(follower->Read(&chunk));
    grpc::Status status = follower->Finish();
    EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE);
    EXPECT_THAT(status.error_message(), HasSubstr("log_store shutting down"));
  }  // Clients gone: the server need not wait for their connections.

  const int wait_status = process.WaitForExit(60000);
  ASSERT_NE(wait_status, -1) << "log_store did not exit after SIGTERM";
  EXPECT_TRUE(WIFEXITED(wait_status) && WEXITSTATUS(wait_status) == 0)
      << "wait status " << wait_status;
  struct stat st;
  EXPECT_NE(lstat(socket_.c_str(), &st), 0) << "socket left behind";
}

// A shim writes on while the log_store is killed and restarted: the next
// log_store serves all of it, and the reader resumes where it was.
TEST_F(LogStoreBinaryTest, AKill9OfTheLogStoreLosesNoOutput) {
  ASSERT_EQ(mkdir((dir_ + "/state").c_str(), 0700), 0);
  std::unique_ptr<segment_log::Writer> shim =
      OpenShimWriter(dir_ + "/state", kId);
  ASSERT_NE(shim, nullptr);
  std::string written;
  auto write = [&](int from, int to) {
    for (int i = from; i < to; ++i) {
      const std::string piece = "line " + std::to_string(i) + "\n";
      ASSERT_TRUE(
          shim->Append(segment_log::Stream::kStdout, piece, absl::Now()).ok());
      written += piece;
    }
  };
  {
    LogStoreProcess first(Flags());
    ASSERT_TRUE(first.started());
    std::unique_ptr<pm::internal::v1::LogStore::Stub> stub = Connect();
    ASSERT_NE(stub, nullptr) << "log_store never listened on " << socket_;
    write(0, 50);
    OutputRead read = ReadOutput(stub.get(), OutputRequest(kId, true, false));
    ASSERT_TRUE(read.status.ok()) << read.status.error_message();
    EXPECT_EQ(read.Data(), written);
    first.Signal(SIGKILL);
    ASSERT_NE(first.WaitForExit(60000), -1);
  }
  unlink(socket_.c_str());  // a stale socket, as a real kill leaves it
  write(50, 100);

  LogStoreProcess second(Flags());
  ASSERT_TRUE(second.started());
  std::unique_ptr<pm::internal::v1::LogStore::Stub> stub = Connect();
  ASSERT_NE(stub, nullptr) << "log_store never listened on " << socket_;
  write(100, 120);
  ASSERT_TRUE(shim->Close(absl::Now()).ok());
  OutputRead after = ReadOutput(stub.get(), OutputRequest(kId, true, true));
  ASSERT_TRUE(after.status.ok()) << after.status.error_message();
  EXPECT_EQ(after.Data(), written);
  for (const OutputChunk& chunk : after.chunks) {
    EXPECT_EQ(chunk.dropped_before(), 0u);
  }
  second.Signal(SIGTERM);
  EXPECT_NE(second.WaitForExit(60000), -1);
}

TEST_F(LogStoreBinaryTest, RefusesAZeroCapOrInterval) {
  for (const char* flag :
       {"--max_total_bytes=0", "--total_cap_check_interval_ms=0"}) {
    std::vector<std::string> flags = Flags();
    flags.push_back(flag);
    LogStoreProcess process(flags);
    ASSERT_TRUE(process.started());
    const int wait_status = process.WaitForExit(60000);
    ASSERT_NE(wait_status, -1) << flag;
    EXPECT_TRUE(WIFEXITED(wait_status) && WEXITSTATUS(wait_status) == 2)
        << flag << ": wait status " << wait_status;
  }
}

}  // namespace
}  // namespace pm::log_store
