#include "common/systemd_notify.h"

#include <systemd/sd-daemon.h>
#include <unistd.h>

#include <string>

#include "absl/strings/str_cat.h"
#include "common/log.h"

namespace pm {
namespace {

// One line of a notification's STATUS=: newlines would start other fields.
std::string OneLine(absl::string_view status) {
  std::string line(status);
  for (char& c : line) {
    if (c == '\n') c = ' ';
  }
  return line;
}

void Notify(const std::string& message) {
  // unset_environment 0: the pm-shims a supervisor starts do not inherit
  // it anyway (they get their own environment).
  const int sent = sd_notify(0, message.c_str());
  if (sent < 0) {
    PM_LOG(WARNING) << "sd_notify(\"" << OneLine(message) << "\"): " << strerror(-sent);
  }
}

}  // namespace

void NotifyReady(absl::string_view status) {
  Notify(absl::StrCat("READY=1\nMAINPID=", getpid(), "\nSTATUS=", OneLine(status)));
}

void NotifyStatus(absl::string_view status) {
  Notify(absl::StrCat("STATUS=", OneLine(status)));
}

void NotifyStopping(absl::string_view status) {
  Notify(absl::StrCat("STOPPING=1\nSTATUS=", OneLine(status)));
}

std::unique_ptr<Watchdog> Watchdog::StartIfAsked(Probe alive) {
  uint64_t usec = 0;
  // > 0: asked for this process ($WATCHDOG_PID, if set, is ours).
  if (sd_watchdog_enabled(0, &usec) <= 0 || usec == 0) return nullptr;
  return std::unique_ptr<Watchdog>(
      new Watchdog(absl::Microseconds(static_cast<int64_t>(usec)), std::move(alive)));
}

Watchdog::Watchdog(absl::Duration period, Probe alive)
    : period_(period), alive_(std::move(alive)), thread_([this] { Run(); }) {}

Watchdog::~Watchdog() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  thread_.join();
}

void Watchdog::Run() {
  absl::MutexLock lock(&mu_);
  while (!stop_) {
    mu_.Unlock();
    const bool alive = alive_(period_ / 4);
    if (alive) {
      Notify("WATCHDOG=1");
    } else {
      PM_LOG(WARNING) << "the service did not answer its own health check within "
                      << absl::FormatDuration(period_ / 4)
                      << "; no watchdog ping (systemd restarts it after "
                      << absl::FormatDuration(period_) << " without one)";
    }
    mu_.Lock();
    // The wait is the watchdog's period, not a wait for an event: the
    // destructor's stop is the only event, and it ends the wait at once.
    mu_.AwaitWithTimeout(absl::Condition(&stop_), period_ / 2);
  }
}

}  // namespace pm
