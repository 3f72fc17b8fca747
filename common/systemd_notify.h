// Telling systemd how a pm service is, for a Type=notify unit
// (packaging/systemd/): READY=1 once it serves, STATUS= lines, STOPPING=1
// when it begins to stop, and, with WatchdogSec= in the unit, WATCHDOG=1
// pings while the service really answers. Through libsystemd's sd_notify:
// without $NOTIFY_SOCKET (not under systemd) every call does nothing.
//
//   pm::NotifyReady(absl::StrCat("serving on ", socket_path));
//   std::unique_ptr<pm::Watchdog> watchdog = pm::Watchdog::StartIfAsked(
//       [&](absl::Duration within) { return AnswersHealthCheck(within); });
//   ...
//   pm::NotifyStopping("got SIGTERM");
#ifndef PM_COMMON_SYSTEMD_NOTIFY_H_
#define PM_COMMON_SYSTEMD_NOTIFY_H_

#include <functional>
#include <memory>
#include <thread>

#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace pm {

// READY=1 (with MAINPID, and STATUS=`status`).
void NotifyReady(absl::string_view status);
// STATUS=`status`: what `systemctl status` shows.
void NotifyStatus(absl::string_view status);
// STOPPING=1 and STATUS=`status`.
void NotifyStopping(absl::string_view status);

// With $WATCHDOG_USEC set for this process (the unit's WatchdogSec=): a
// thread that, every half of that period, asks `alive` (given the time it
// has: a quarter of the period) and pings WATCHDOG=1 only when it says yes,
// so a service that stops answering is restarted by systemd, not pinged
// for by a thread that never hung. Stops when destroyed.
class Watchdog {
 public:
  using Probe = std::function<bool(absl::Duration within)>;
  // Null when no watchdog is asked for.
  static std::unique_ptr<Watchdog> StartIfAsked(Probe alive);
  ~Watchdog();
  Watchdog(const Watchdog&) = delete;
  Watchdog& operator=(const Watchdog&) = delete;

 private:
  Watchdog(absl::Duration period, Probe alive);
  void Run();

  const absl::Duration period_;
  const Probe alive_;
  absl::Mutex mu_;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace pm

#endif  // PM_COMMON_SYSTEMD_NOTIFY_H_
