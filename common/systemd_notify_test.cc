#include "common/systemd_notify.h"

#include <poll.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <string>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/fd.h"
#include "gtest/gtest.h"

namespace pm {
namespace {

// A datagram socket standing for systemd's notify socket, named in
// $NOTIFY_SOCKET while it lives.
class NotifySocket {
 public:
  NotifySocket() {
    path_ = absl::StrCat(::testing::TempDir(), "/notify.", getpid());
    if (path_.size() >= sizeof(sockaddr_un::sun_path)) {
      path_ = absl::StrCat("/tmp/pm_notify.", getpid());
    }
    unlink(path_.c_str());
    fd_ = Fd(socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    sockaddr_un address = {};
    address.sun_family = AF_UNIX;
    path_.copy(address.sun_path, path_.size());
    EXPECT_EQ(bind(fd_.get(), reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
    setenv("NOTIFY_SOCKET", path_.c_str(), 1);
  }
  ~NotifySocket() {
    unsetenv("NOTIFY_SOCKET");
    unsetenv("WATCHDOG_USEC");
    unlink(path_.c_str());
  }
  // A datagram already queued, or "".
  std::string Pending() {
    char buffer[4096];
    const ssize_t n = recv(fd_.get(), buffer, sizeof(buffer), MSG_DONTWAIT);
    return n > 0 ? std::string(buffer, n) : "";
  }
  // The next datagram; "" after 60 s without one.
  std::string Next() {
    pollfd p = {fd_.get(), POLLIN, 0};
    if (poll(&p, 1, 60000) != 1) return "";
    char buffer[4096];
    const ssize_t n = recv(fd_.get(), buffer, sizeof(buffer), 0);
    return n > 0 ? std::string(buffer, n) : "";
  }

 private:
  std::string path_;
  Fd fd_;
};

TEST(SystemdNotifyTest, ReadyStatusAndStoppingReachTheNotifySocket) {
  NotifySocket systemd;
  NotifyReady("serving on a\nsocket");
  EXPECT_EQ(systemd.Next(),
            absl::StrCat("READY=1\nMAINPID=", getpid(), "\nSTATUS=serving on a socket"));
  NotifyStatus("42 processes");
  EXPECT_EQ(systemd.Next(), "STATUS=42 processes");
  NotifyStopping("got Terminated");
  EXPECT_EQ(systemd.Next(), "STOPPING=1\nSTATUS=got Terminated");
}

TEST(SystemdNotifyTest, WithoutNotifySocketNothingHappens) {
  unsetenv("NOTIFY_SOCKET");
  NotifyReady("nobody listens");  // no error, no crash
  unsetenv("WATCHDOG_USEC");
  EXPECT_EQ(Watchdog::StartIfAsked([](absl::Duration) { return true; }), nullptr);
}

// The watchdog pings exactly when the probe says the service answers.
TEST(SystemdNotifyTest, TheWatchdogPingsOnlyWhileTheServiceAnswers) {
  NotifySocket systemd;
  setenv("WATCHDOG_USEC", "200000", 1);
  absl::Mutex mu;
  bool answers = true;
  int answered = 0;
  int unanswered = 0;
  std::unique_ptr<Watchdog> watchdog = Watchdog::StartIfAsked([&](absl::Duration within) {
    EXPECT_EQ(within, absl::Milliseconds(50));
    absl::MutexLock lock(&mu);
    ++(answers ? answered : unanswered);
    return answers;
  });
  ASSERT_NE(watchdog, nullptr);
  EXPECT_EQ(systemd.Next(), "WATCHDOG=1");
  EXPECT_EQ(systemd.Next(), "WATCHDOG=1");
  {
    absl::MutexLock lock(&mu);
    answers = false;
    // Two probes that were not answered (the probes come every 100 ms).
    mu.Await(absl::Condition(
        +[](int* n) { return *n >= 2; }, &unanswered));
  }
  watchdog.reset();
  int pings = 2;
  while (systemd.Pending() == "WATCHDOG=1") ++pings;
  absl::MutexLock lock(&mu);
  EXPECT_EQ(pings, answered);
}

}  // namespace
}  // namespace pm
