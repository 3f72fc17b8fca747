#include "common/exit_status.h"

#include <string.h>

#include "absl/strings/str_cat.h"

namespace pm {

ExitStatus ExitStatus::FromSiginfo(const siginfo_t& info) {
  switch (info.si_code) {
    case CLD_EXITED:
      return Exited(info.si_status);
    case CLD_DUMPED:
      return Signaled(info.si_status, /*core=*/true);
    default:  // CLD_KILLED
      return Signaled(info.si_status);
  }
}

std::string SignalName(int sig) {
  const char* abbrev = sigabbrev_np(sig);
  return abbrev != nullptr ? absl::StrCat("SIG", abbrev)
                           : absl::StrCat("signal ", sig);
}

std::string ExitStatus::ToString() const {
  if (kind == Kind::kExited) return absl::StrCat("exited with code ", code);
  return absl::StrCat("killed by signal ", signal, " (", SignalName(signal),
                      ")", core_dumped ? " (core dumped)" : "");
}

}  // namespace pm
