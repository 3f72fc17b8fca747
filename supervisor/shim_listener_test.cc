// ShimListener with the real pm-shim: a shim whose supervisor (here, the
// test) closed the control link reconnects to the listener and is handed
// over with its Hello.
#include "supervisor/shim_listener.h"

#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <memory>
#include <optional>
#include <string>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "common/fd.h"
#include "common/proc.h"
#include "gtest/gtest.h"
#include "segment_log/test_util.h"
#include "shim/launch.h"
#include "shim/protocol.h"
#include "supervisor/shim_spawn.h"

namespace pm::supervisor {
namespace {

constexpr char kId[] = "6a1c1f0e-3b2d-4e5f-8a9b-0c1d2e3f4a5b";

bool WaitReadable(int fd) {
  pollfd p = {fd, POLLIN, 0};
  return poll(&p, 1, 30000) == 1;
}

class ShimListenerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // Short, for sockaddr_un (TEST_TMPDIR can be long).
    char tmpl[] = "/tmp/pm_sl.XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    runtime_dir_ = tmpl;
    ASSERT_TRUE(loop_.Init().ok());
    loop_thread_ = std::thread([this] { loop_.Run(); });
  }
  void TearDown() override {
    OnLoop([this] { listener_.reset(); });
    loop_.Quit();
    loop_thread_.join();
    if (child_pidfd_) {
      syscall(SYS_pidfd_send_signal, child_pidfd_.get(), SIGKILL, nullptr, 0);
    }
    if (shim_.pidfd) {
      syscall(SYS_pidfd_send_signal, shim_.pidfd.get(), SIGKILL, nullptr, 0);
      siginfo_t info = {};
      waitid(static_cast<idtype_t>(P_PIDFD), shim_.pidfd.get(), &info, WEXITED);
    }
    rmdir(runtime_dir_.c_str());
  }

  void OnLoop(std::function<void()> fn) {
    absl::Notification done;
    ASSERT_TRUE(loop_.Post([&] {
      fn();
      done.Notify();
    }));
    done.WaitForNotification();
  }

  // A shim running `sleep 1000` whose control link the test then closes, as
  // a supervisor that dies would.
  void StartOrphanedShim() {
    absl::StatusOr<shim::LaunchedShim> launched = shim::LaunchShim(
        {absl::StrCat(getenv("TEST_SRCDIR"), "/pm/shim/pm-shim"),
         tmp_.Sub("state"), runtime_dir_});
    ASSERT_TRUE(launched.ok()) << launched.status();
    shim_ = *std::move(launched);
    pm::v1::StartRequest request;
    request.set_executable("sleep");
    request.add_args("1000");
    absl::StatusOr<ShimSpawnMessage> message = ShimSpawnOf(request, kId, {});
    ASSERT_TRUE(message.ok()) << message.status();
    ASSERT_TRUE(shim::SendMessage(shim_.control.get(), message->spawn, {}).ok());
    ASSERT_TRUE(WaitReadable(shim_.control.get()));
    absl::StatusOr<shim::Received> got = shim::ReceiveMessage(shim_.control.get());
    ASSERT_TRUE(got.ok()) << got.status();
    ASSERT_TRUE(std::holds_alternative<shim::Spawned>(got->message));
    spawned_ = std::get<shim::Spawned>(got->message);
    child_pidfd_ = std::move(got->fds[0]);
    shim_.control.reset();
  }

  void Listen(absl::Duration hello_deadline = ShimListener::kHelloDeadline) {
    OnLoop([this, hello_deadline] {
      absl::StatusOr<std::unique_ptr<ShimListener>> listener = ShimListener::Listen(
          &loop_, runtime_dir_,
          [this](ShimListener::Adoption adoption) {
            adopted_ = std::move(adoption);
            hello_.Notify();
          },
          hello_deadline);
      ASSERT_TRUE(listener.ok()) << listener.status();
      listener_ = *std::move(listener);
    });
  }

  segment_log::TempDir tmp_;
  std::string runtime_dir_;
  EventLoop loop_;
  std::thread loop_thread_;
  std::unique_ptr<ShimListener> listener_;
  shim::LaunchedShim shim_;
  shim::Spawned spawned_;
  Fd child_pidfd_;
  absl::Notification hello_;
  std::optional<ShimListener::Adoption> adopted_;
};

TEST_F(ShimListenerTest, AnOrphanedShimReconnectsAndIsHandedOverWithItsHello) {
  StartOrphanedShim();
  Listen();
  ASSERT_TRUE(hello_.WaitForNotificationWithTimeout(absl::Seconds(30)))
      << "no Hello";
  const shim::Hello& hello = adopted_->hello;
  EXPECT_EQ(hello.uuid, kId);
  EXPECT_EQ(hello.pid, spawned_.pid);
  EXPECT_EQ(hello.start_ticks, spawned_.start_ticks);
  EXPECT_FALSE(hello.end.has_value());
  // The pidfd names the same process (pid AND start time).
  ASSERT_TRUE(adopted_->pidfd.valid());
  absl::StatusOr<ProcStat> stat = ReadProcStat(hello.pid);
  ASSERT_TRUE(stat.ok()) << stat.status();
  EXPECT_EQ(stat->start_ticks, hello.start_ticks);
  EXPECT_EQ(syscall(SYS_pidfd_send_signal, adopted_->pidfd.get(), 0, nullptr, 0), 0);

  // The link is live: the process's end comes on it.
  ASSERT_EQ(syscall(SYS_pidfd_send_signal, adopted_->pidfd.get(), SIGTERM, nullptr, 0), 0);
  ASSERT_TRUE(WaitReadable(adopted_->control.get()));
  absl::StatusOr<shim::Received> exited = shim::ReceiveMessage(adopted_->control.get());
  ASSERT_TRUE(exited.ok()) << exited.status();
  ASSERT_TRUE(std::holds_alternative<shim::Exited>(exited->message))
      << shim::MessageName(exited->message);
  EXPECT_EQ(std::get<shim::Exited>(exited->message).end.status.ToString(),
            ExitStatus::Signaled(SIGTERM, false).ToString());
}

// A dead supervisor's socket file is replaced, and removed when the
// listener goes.
TEST_F(ShimListenerTest, ReplacesAStaleSocketAndRemovesItsOwnAtTheEnd) {
  const std::string path = runtime_dir_ + "/" + shim::kShimsSocketName;
  {
    Fd stale(socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
    sockaddr_un addr = {};
    addr.sun_family = AF_UNIX;
    memcpy(addr.sun_path, path.c_str(), path.size() + 1);
    ASSERT_EQ(bind(stale.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  }
  Listen();
  Fd client(socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
  sockaddr_un addr = {};
  addr.sun_family = AF_UNIX;
  memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  EXPECT_EQ(connect(client.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0)
      << strerror(errno);

  OnLoop([this] { listener_.reset(); });
  EXPECT_NE(access(path.c_str(), F_OK), 0) << path << " left behind";
}

// A connection that says nothing is closed after the deadline (each holds
// an fd of the supervisor's); the client sees the end of the stream.
TEST_F(ShimListenerTest, AConnectionThatSaysNothingIsClosedAtTheDeadline) {
  Listen(absl::Milliseconds(100));
  const std::string path = runtime_dir_ + "/" + shim::kShimsSocketName;
  Fd silent(socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
  sockaddr_un addr = {};
  addr.sun_family = AF_UNIX;
  memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  ASSERT_EQ(connect(silent.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0)
      << strerror(errno);
  ASSERT_TRUE(WaitReadable(silent.get())) << "never closed";
  char byte;
  EXPECT_EQ(recv(silent.get(), &byte, 1, 0), 0) << "not the end of the stream";
}

}  // namespace
}  // namespace pm::supervisor
