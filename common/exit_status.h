// ExitStatus: how a child ended, as a value (folly's ProcessReturnCode).
//
//   siginfo_t info;  // from waitid()
//   pm::ExitStatus status = ExitStatus::FromSiginfo(info);
//   PM_LOG(INFO) << status.ToString();   // "exited with code 3"
#ifndef PM_COMMON_EXIT_STATUS_H_
#define PM_COMMON_EXIT_STATUS_H_

#include <signal.h>

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace pm {

struct ExitStatus {
  enum class Kind { kExited, kSignaled };
  Kind kind = Kind::kExited;
  int code = 0;    // kExited
  int signal = 0;  // kSignaled
  bool core_dumped = false;

  static ExitStatus Exited(int code) { return {Kind::kExited, code, 0, false}; }
  static ExitStatus Signaled(int sig, bool core = false) {
    return {Kind::kSignaled, 0, sig, core};
  }
  // From the siginfo_t of waitid(WEXITED).
  static ExitStatus FromSiginfo(const siginfo_t& info);

  // The conventional shell exit code: the code, or 128 + signal.
  int ShellCode() const { return kind == Kind::kExited ? code : 128 + signal; }
  // "exited with code 3", "killed by signal 9 (SIGKILL)", "... (core dumped)".
  std::string ToString() const;
  bool operator==(const ExitStatus& o) const {
    return kind == o.kind && code == o.code && signal == o.signal &&
           core_dumped == o.core_dumped;
  }
};

// "SIGTERM" for 15, "signal 99" when unnamed.
std::string SignalName(int sig);

// A signal as a user names it, as kill(1) takes it: a number ("9"), a name
// with or without SIG in any case ("KILL", "sigterm", "hup"), or a
// real-time one ("RTMIN", "RTMIN+3", "SIGRTMAX-1"). INVALID_ARGUMENT naming
// the text for anything else, and for 0 or a number past SIGRTMAX.
absl::StatusOr<int> ParseSignal(absl::string_view text);

}  // namespace pm

#endif  // PM_COMMON_EXIT_STATUS_H_
