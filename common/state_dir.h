// The state directory: what pm keeps across restarts of its services and of
// the host (the registry's records, the gateway's audit log, and each
// process's directory under procs/<uuid>/).
//
//   DEFINE_string(state_dir, "", "...");            // in a service's main
//   std::string dir = pm::StateDirFlagOrDefault(FLAGS_state_dir);
//   PM_RETURN_IF_ERROR(pm::EnsureStateDir(dir));    // mkdir 0700, checked
//   std::string db = absl::StrCat(dir, "/registry.sqlite");
//
// Unlike the runtime dir (sockets, gone at reboot), it must outlive the
// host's power: it sits on a disk, not in a tmpfs. It is created 0700 and
// must be ours, like the runtime dir: the records name every command run.
#ifndef PM_COMMON_STATE_DIR_H_
#define PM_COMMON_STATE_DIR_H_

#include <sys/types.h>

#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "common/state_layout.h"  // ProcsDir, ProcessDir, ProcessOutputDir

namespace pm {

// What the default depends on, read from the process by StateDirInputs::Of
// or given by a test.
struct StateDirInputs {
  std::string pm_state_dir;    // $PM_STATE_DIR
  uid_t uid = 0;               // getuid()
  std::string xdg_state_home;  // $XDG_STATE_HOME
  std::string home;            // $HOME, else the passwd entry's home

  static StateDirInputs OfThisProcess();
};

// `flag` if set; else $PM_STATE_DIR; else /var/lib/pm for root; else
// $XDG_STATE_HOME/pm; else $HOME/.local/state/pm. Empty only when none of
// these is known (no flag, not root, no $XDG_STATE_HOME and no home).
std::string ResolveStateDir(absl::string_view flag,
                            const StateDirInputs& inputs);

// ResolveStateDir(flag, StateDirInputs::OfThisProcess()).
std::string StateDirFlagOrDefault(absl::string_view flag);

// Creates `dir` (and missing parents) with mode 0700. An existing directory
// must be owned by us; a mode open to group or others is tightened to 0700.
// INVALID_ARGUMENT for an empty path, FAILED_PRECONDITION naming the path
// and what is wrong, or the failed syscall (mkdir, lstat, chmod) with its
// argument and the OS reason.
absl::Status EnsureStateDir(const std::string& dir);


}  // namespace pm

#endif  // PM_COMMON_STATE_DIR_H_
