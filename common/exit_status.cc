#include "common/exit_status.h"

#include <string.h>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/strip.h"
#include "absl/strings/numbers.h"
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

absl::StatusOr<int> ParseSignal(absl::string_view text) {
  auto invalid = [&](absl::string_view why) {
    return absl::InvalidArgumentError(
        absl::StrCat("\"", absl::CHexEscape(text.substr(0, 32)),
                     "\" is not a signal: ", why));
  };
  int number = 0;
  if (absl::SimpleAtoi(text, &number)) {
    if (number < 1 || number > SIGRTMAX) {
      return invalid(absl::StrCat("signals are 1 to ", SIGRTMAX));
    }
    return number;
  }
  std::string name = absl::AsciiStrToUpper(text);
  absl::string_view rest = name;
  absl::ConsumePrefix(&rest, "SIG");
  for (const auto& [base, low] :
       {std::pair<absl::string_view, bool>{"RTMIN", true}, {"RTMAX", false}}) {
    if (!absl::ConsumePrefix(&rest, base)) continue;
    int offset = 0;
    if (!rest.empty() &&
        (!absl::SimpleAtoi(rest.substr(1), &offset) || offset < 0 ||
         rest[0] != (low ? '+' : '-'))) {
      return invalid(low ? "RTMIN takes +N" : "RTMAX takes -N");
    }
    const int sig = low ? SIGRTMIN + offset : SIGRTMAX - offset;
    if (sig < SIGRTMIN || sig > SIGRTMAX) {
      return invalid(absl::StrCat("real-time signals are ", SIGRTMIN, " to ",
                                  SIGRTMAX));
    }
    return sig;
  }
  for (int sig = 1; sig < SIGRTMIN; ++sig) {
    const char* abbrev = sigabbrev_np(sig);
    if (abbrev != nullptr && rest == abbrev) return sig;
  }
  return invalid("give a number (kill -l) or a name such as HUP or SIGTERM");
}

std::string ExitStatus::ToString() const {
  if (kind == Kind::kExited) return absl::StrCat("exited with code ", code);
  return absl::StrCat("killed by signal ", signal, " (", SignalName(signal),
                      ")", core_dumped ? " (core dumped)" : "");
}

}  // namespace pm
