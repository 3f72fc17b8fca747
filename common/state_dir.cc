#include "common/state_dir.h"

#include <pwd.h>
#include <stdlib.h>
#include <unistd.h>

#include <vector>

#include "absl/strings/str_cat.h"
#include "common/runtime_dir.h"

namespace pm {
namespace {

std::string Env(const char* name) {
  const char* value = getenv(name);
  return value != nullptr ? value : "";
}

// The passwd entry's home directory, for a process started without $HOME
// (a systemd unit, an init script).
std::string PasswdHome(uid_t uid) {
  long size = sysconf(_SC_GETPW_R_SIZE_MAX);
  std::vector<char> buffer(size > 0 ? static_cast<size_t>(size) : 16384);
  struct passwd entry;
  struct passwd* found = nullptr;
  if (getpwuid_r(uid, &entry, buffer.data(), buffer.size(), &found) != 0 ||
      found == nullptr || found->pw_dir == nullptr) {
    return "";
  }
  return found->pw_dir;
}

}  // namespace

StateDirInputs StateDirInputs::OfThisProcess() {
  StateDirInputs inputs;
  inputs.pm_state_dir = Env("PM_STATE_DIR");
  inputs.uid = getuid();
  inputs.xdg_state_home = Env("XDG_STATE_HOME");
  inputs.home = Env("HOME");
  if (inputs.home.empty()) inputs.home = PasswdHome(inputs.uid);
  return inputs;
}

std::string ResolveStateDir(absl::string_view flag,
                            const StateDirInputs& inputs) {
  if (!flag.empty()) return std::string(flag);
  if (!inputs.pm_state_dir.empty()) return inputs.pm_state_dir;
  if (inputs.uid == 0) return "/var/lib/pm";
  if (!inputs.xdg_state_home.empty()) {
    return absl::StrCat(inputs.xdg_state_home, "/pm");
  }
  if (!inputs.home.empty()) return absl::StrCat(inputs.home, "/.local/state/pm");
  return "";
}

std::string StateDirFlagOrDefault(absl::string_view flag) {
  return ResolveStateDir(flag, StateDirInputs::OfThisProcess());
}

absl::Status EnsureStateDir(const std::string& dir) {
  return EnsurePrivateDir(dir, "state dir");
}

}  // namespace pm
