#include "shim/launch.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <string>
#include <vector>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "common/status_core.h"

extern char** environ;

namespace pm::shim {

absl::StatusOr<OutputCaps> ResolveOutputCaps(uint64_t max_output_bytes,
                                             uint64_t segment_bytes) {
  OutputCaps caps;
  if (max_output_bytes != 0) caps.max_output_bytes = max_output_bytes;
  if (caps.max_output_bytes < 4) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--max_output_bytes=", caps.max_output_bytes,
        ": at least 4 (four segments of at least one byte)"));
  }
  const uint64_t quarter = caps.max_output_bytes / 4;
  if (segment_bytes == 0) {
    caps.segment_bytes = std::min(kDefaultSegmentBytes, quarter);
  } else if (segment_bytes > quarter) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--segment_bytes=", segment_bytes, ": at most a quarter of --max_output_bytes=",
        caps.max_output_bytes, " (", quarter, ")"));
  } else {
    caps.segment_bytes = segment_bytes;
  }
  return caps;
}

absl::StatusOr<LaunchedShim> LaunchShim(const ShimLaunch& launch) {
  PM_RETURN_IF_ERROR(ResolveOutputCaps(launch.max_output_bytes, launch.segment_bytes).status());
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) {
    return ErrnoError("socketpair", "AF_UNIX, SOCK_SEQPACKET");
  }
  LaunchedShim shim;
  shim.control = Fd(sv[0]);
  Fd theirs(sv[1]);
  // Above 3, so the dup2 onto 3 always makes a new fd without FD_CLOEXEC.
  if (theirs.get() <= 3) {
    Fd moved(fcntl(theirs.get(), F_DUPFD_CLOEXEC, 4));
    if (!moved) return ErrnoError("fcntl", "F_DUPFD_CLOEXEC");
    theirs = std::move(moved);
  }

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  absl::Cleanup destroy_actions = [&] { posix_spawn_file_actions_destroy(&actions); };
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_adddup2(&actions, theirs.get(), 3);

  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  absl::Cleanup destroy_attr = [&] { posix_spawnattr_destroy(&attr); };
  sigset_t empty, all;
  sigemptyset(&empty);
  sigfillset(&all);
  posix_spawnattr_setsigmask(&attr, &empty);
  posix_spawnattr_setsigdefault(&attr, &all);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);

  const std::string state = absl::StrCat("--state_dir=", launch.state_dir);
  const std::string runtime = absl::StrCat("--runtime_dir=", launch.runtime_dir);
  std::vector<std::string> caps;
  if (launch.max_output_bytes != 0) {
    caps.push_back(absl::StrCat("--max_output_bytes=", launch.max_output_bytes));
  }
  if (launch.segment_bytes != 0) {
    caps.push_back(absl::StrCat("--segment_bytes=", launch.segment_bytes));
  }
  if (!launch.process_id.empty()) {
    caps.push_back(absl::StrCat("--process_id=", launch.process_id));
  }
  if (launch.zygote) caps.push_back("--zygote");
  std::vector<const char*> argv = {launch.binary.c_str(), "--control_fd=3", state.c_str(),
                                   runtime.c_str()};
  for (const std::string& cap : caps) argv.push_back(cap.c_str());
  argv.push_back(nullptr);
  const int err = posix_spawn(&shim.pid, launch.binary.c_str(), &actions, &attr,
                              const_cast<char**>(argv.data()), environ);
  if (err != 0) return ErrnoError("posix_spawn", launch.binary, err);
  shim.process_id = launch.process_id;
  // Not reaped before this, so the pid is still the shim's.
  shim.pidfd = Fd(static_cast<int>(syscall(SYS_pidfd_open, shim.pid, 0)));
  if (!shim.pidfd) {
    const absl::Status status = ErrnoError("pidfd_open", absl::StrCat(shim.pid));
    kill(shim.pid, SIGKILL);
    waitpid(shim.pid, nullptr, 0);
    return status;
  }
  return shim;
}

}  // namespace pm::shim
