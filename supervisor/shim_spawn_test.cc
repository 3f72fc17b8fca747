#include "supervisor/shim_spawn.h"

#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/wait.h>

#include <string>
#include <variant>

#include "absl/strings/str_cat.h"
#include "common/fd.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "segment_log/test_util.h"
#include "shim/launch.h"
#include "shim/protocol.h"
#include "supervisor/spawn.h"

namespace pm::supervisor {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr char kId[] = "6a1c1f0e-3b2d-4e5f-8a9b-0c1d2e3f4a5b";

pm::v1::StartRequest Shell(const std::string& script) {
  pm::v1::StartRequest request;
  request.set_executable("/bin/sh");
  request.add_args("-c");
  request.add_args(script);
  return request;
}

TEST(ShimSpawnOfTest, CarriesTheCommandIsolationAndFileLimit) {
  pm::v1::StartRequest request = Shell("exit 0");
  request.set_working_dir("/tmp");
  (*request.mutable_env())["A"] = "1";
  request.add_isolate(pm::v1::ISOLATION_NET);
  request.add_isolate(pm::v1::ISOLATION_MOUNT);
  SpawnOptions options;
  options.file_limit = rlimit{1024, 4096};

  absl::StatusOr<ShimSpawnMessage> message = ShimSpawnOf(request, kId, options);
  ASSERT_TRUE(message.ok()) << message.status();
  const shim::Spawn& spawn = message->spawn;
  EXPECT_EQ(spawn.uuid, kId);
  EXPECT_EQ(spawn.command.executable, "/bin/sh");
  EXPECT_THAT(spawn.command.args, ElementsAre("-c", "exit 0"));
  EXPECT_EQ(spawn.command.working_dir, "/tmp");
  EXPECT_EQ(spawn.isolation, shim::kIsolateNet | shim::kIsolateMount);
  ASSERT_TRUE(spawn.file_limit.has_value());
  EXPECT_EQ(spawn.file_limit->rlim_cur, 1024u);
  EXPECT_EQ(spawn.file_limit->rlim_max, 4096u);
  EXPECT_FALSE(spawn.cgroup2_dir.has_value());
  EXPECT_FALSE(spawn.cgroup2_join.has_value());
  EXPECT_TRUE(message->fds.empty());
}

// Each cgroup fd is attached once, named by its index, and the protocol's
// strict decoder accepts the message with exactly those fds.
TEST(ShimSpawnOfTest, AttachesEachCgroupFdOnceByIndex) {
  SpawnOptions options;
  options.cgroup2_dir_fd = 10;
  options.cgroup2_join = {11, "/sys/fs/cgroup/pm/x/cgroup.procs"};
  options.joins = {{12, "/sys/fs/cgroup/memory/pm/x/cgroup.procs"},
                   {13, "/sys/fs/cgroup/cpu/pm/x/cgroup.procs"}};

  absl::StatusOr<ShimSpawnMessage> message =
      ShimSpawnOf(Shell("exit 0"), kId, options);
  ASSERT_TRUE(message.ok()) << message.status();
  EXPECT_THAT(message->fds, ElementsAre(10, 11, 12, 13));
  const shim::Spawn& spawn = message->spawn;
  EXPECT_EQ(spawn.cgroup2_dir, 0u);
  ASSERT_TRUE(spawn.cgroup2_join.has_value());
  EXPECT_EQ(spawn.cgroup2_join->fd_index, 1u);
  EXPECT_EQ(spawn.cgroup2_join->path, "/sys/fs/cgroup/pm/x/cgroup.procs");
  ASSERT_EQ(spawn.cgroup_joins.size(), 2u);
  EXPECT_EQ(spawn.cgroup_joins[1].fd_index, 3u);
  EXPECT_EQ(spawn.cgroup_joins[1].path, "/sys/fs/cgroup/cpu/pm/x/cgroup.procs");

  absl::StatusOr<std::string> datagram = shim::Encode(spawn);
  ASSERT_TRUE(datagram.ok()) << datagram.status();
  EXPECT_TRUE(shim::Decode(*datagram, message->fds.size()).ok());
  EXPECT_FALSE(shim::Decode(*datagram, message->fds.size() - 1).ok());
}

TEST(ShimSpawnOfTest, RefusesACommandCommandLineOfRefuses) {
  pm::v1::StartRequest request;
  absl::StatusOr<ShimSpawnMessage> message =
      ShimSpawnOf(request, kId, SpawnOptions());
  EXPECT_EQ(message.status().code(), absl::StatusCode::kInvalidArgument);
}

// --- Sent to the real pm-shim ----------------------------------------------

bool WaitReadable(int fd) {
  pollfd p = {fd, POLLIN, 0};
  return poll(&p, 1, 30000) == 1;
}

class ShimSpawnTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<shim::LaunchedShim> launched = shim::LaunchShim(
        {absl::StrCat(getenv("TEST_SRCDIR"), "/pm/shim/pm-shim"),
         tmp_.Sub("state"), tmp_.path()});
    ASSERT_TRUE(launched.ok()) << launched.status();
    shim_ = *std::move(launched);
  }
  void TearDown() override {
    shim_.control.reset();
    ASSERT_TRUE(WaitReadable(shim_.pidfd.get())) << "the shim did not exit";
    siginfo_t info = {};
    EXPECT_EQ(waitid(static_cast<idtype_t>(P_PIDFD), shim_.pidfd.get(), &info,
                     WEXITED),
              0);
  }

  shim::Received Send(const pm::v1::StartRequest& request) {
    SpawnOptions options;
    options.file_limit = rlimit{256, 512};
    absl::StatusOr<ShimSpawnMessage> message = ShimSpawnOf(request, kId, options);
    EXPECT_TRUE(message.ok()) << message.status();
    absl::Status sent =
        shim::SendMessage(shim_.control.get(), message->spawn, message->fds);
    EXPECT_TRUE(sent.ok()) << sent;
    return Next();
  }
  shim::Received Next() {
    EXPECT_TRUE(WaitReadable(shim_.control.get())) << "no answer from the shim";
    absl::StatusOr<shim::Received> got = shim::ReceiveMessage(shim_.control.get());
    EXPECT_TRUE(got.ok()) << got.status();
    return got.ok() ? *std::move(got) : shim::Received{};
  }

  segment_log::TempDir tmp_;
  shim::LaunchedShim shim_;
};

// The shim runs what the message says, with the file limit it carries.
TEST_F(ShimSpawnTest, TheShimRunsItAndReportsItsEnd) {
  shim::Received spawned =
      Send(Shell("[ \"$(ulimit -n)\" = 256 ] && [ \"$(ulimit -Hn)\" = 512 ] && exit 3"));
  ASSERT_TRUE(std::holds_alternative<shim::Spawned>(spawned.message))
      << shim::MessageName(spawned.message);
  EXPECT_GT(std::get<shim::Spawned>(spawned.message).pid, 0);
  EXPECT_EQ(spawned.fds.size(), 1u);  // its pidfd

  shim::Received exited = Next();
  ASSERT_TRUE(std::holds_alternative<shim::Exited>(exited.message))
      << shim::MessageName(exited.message);
  EXPECT_EQ(std::get<shim::Exited>(exited.message).end.status.ToString(),
            ExitStatus::Exited(3).ToString());
}

// A command of exactly the supervisor's --max_command_bytes (default; args
// and env), more than one datagram holds: it reaches the shim in a sealed
// memfd, and the process gets every byte.
TEST_F(ShimSpawnTest, ACommandAtTheSupervisorsMaximumReachesTheProcess) {
  const CommandCaps caps;  // the supervisor's defaults
  pm::v1::StartRequest request = Shell(
      "[ $# -eq 2 ] && [ ${#1} -eq 60000 ] && [ ${#2} -eq 60000 ] && "
      "[ ${#BIG} -eq 100000 ] && [ ${#PAD} -eq $PAD_LENGTH ] && exit 3; exit 1");
  request.add_args("zero");
  request.add_args(std::string(60000, 'a'));
  request.add_args(std::string(60000, 'b'));
  (*request.mutable_env())["BIG"] = std::string(100000, 'c');
  // Counted as ValidateStartRequest counts: each string with its NUL, each
  // env entry as NAME=VALUE.
  auto bytes = [&] {
    size_t n = request.executable().size() + 1 + request.working_dir().size() + 1;
    for (const std::string& arg : request.args()) n += arg.size() + 1;
    for (const auto& [name, value] : request.env()) n += name.size() + value.size() + 2;
    return n;
  };
  (*request.mutable_env())["PAD_LENGTH"] = "00000";
  (*request.mutable_env())["PAD"] = "";
  const size_t pad = caps.max_bytes - bytes();
  ASSERT_LT(pad, 100000u);
  (*request.mutable_env())["PAD"] = std::string(pad, 'd');
  (*request.mutable_env())["PAD_LENGTH"] = absl::StrCat(pad + 100000).substr(1);
  ASSERT_EQ(bytes(), caps.max_bytes);
  ASSERT_TRUE(ValidateStartRequest(request, caps).ok());

  absl::StatusOr<ShimSpawnMessage> message = ShimSpawnOf(request, kId, SpawnOptions());
  ASSERT_TRUE(message.ok()) << message.status();
  ASSERT_TRUE(message->command_memfd.valid());
  ASSERT_EQ(message->spawn.command_memfd, 0u);
  EXPECT_EQ(message->fds, std::vector<int>{message->command_memfd.get()});
  ASSERT_TRUE(shim::SendMessage(shim_.control.get(), message->spawn, message->fds).ok());

  shim::Received spawned = Next();
  ASSERT_TRUE(std::holds_alternative<shim::Spawned>(spawned.message))
      << shim::MessageName(spawned.message) << ": "
      << (std::holds_alternative<shim::SpawnFailed>(spawned.message)
              ? std::get<shim::SpawnFailed>(spawned.message).message
              : "");
  shim::Received exited = Next();
  ASSERT_TRUE(std::holds_alternative<shim::Exited>(exited.message))
      << shim::MessageName(exited.message);
  EXPECT_EQ(std::get<shim::Exited>(exited.message).end.status.ToString(),
            ExitStatus::Exited(3).ToString());
}

TEST_F(ShimSpawnTest, AFailedExecIsSpawnFailedNamingTheCall) {
  pm::v1::StartRequest request;
  request.set_executable("/nonexistent/program");
  shim::Received failed = Send(request);
  ASSERT_TRUE(std::holds_alternative<shim::SpawnFailed>(failed.message))
      << shim::MessageName(failed.message);
  const shim::SpawnFailed& why = std::get<shim::SpawnFailed>(failed.message);
  EXPECT_EQ(why.code, absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(why.message, HasSubstr("execve(\"/nonexistent/program\")"));
}

}  // namespace
}  // namespace pm::supervisor
