// Starting a pm-shim: what the supervisor does to get an idle shim.
//
//   PM_ASSIGN_OR_RETURN(LaunchedShim shim,
//                       LaunchShim({binary, state_dir, runtime_dir}));
//   PM_RETURN_IF_ERROR(SendMessage(shim.control.get(), spawn, cgroup_fds));
//   // then Spawned or SpawnFailed on shim.control; shim.pidfd ends with it
//
// The shim gets the other end of a fresh socketpair(AF_UNIX,
// SOCK_SEQPACKET) on fd 3, /dev/null on stdin and stdout, the caller's
// stderr (its log until a Spawn gives it one of its own), an empty signal
// mask and default dispositions (the caller may block signals for a
// signalfd). Nothing else of the caller's is inherited, as long as the
// caller's fds are close-on-exec (pm's rule); the shim closes any that
// leak anyway.
#ifndef PM_SHIM_LAUNCH_H_
#define PM_SHIM_LAUNCH_H_

#include <sys/types.h>

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "common/fd.h"

namespace pm::shim {

// The output caps when the supervisor gives none: what the log_store kept
// per process before output moved to the shims (64 MiB, 8 MiB segments).
inline constexpr uint64_t kDefaultMaxOutputBytes = uint64_t{64} << 20;
inline constexpr uint64_t kDefaultSegmentBytes = uint64_t{8} << 20;

// A process's output caps on disk (pm-shim's --max_output_bytes and
// --segment_bytes).
struct OutputCaps {
  uint64_t max_output_bytes = kDefaultMaxOutputBytes;
  uint64_t segment_bytes = kDefaultSegmentBytes;
};

// The caps pm-shim uses for these flag values, 0 meaning absent: the cap
// defaults to kDefaultMaxOutputBytes and must be at least 4; the segment
// defaults to the smaller of kDefaultSegmentBytes and a quarter of the cap,
// and may not be above that quarter (the cap deletes whole segments, so a
// larger one would drop most of what is kept at once). INVALID_ARGUMENT
// naming the shim's flag otherwise.
absl::StatusOr<OutputCaps> ResolveOutputCaps(uint64_t max_output_bytes,
                                             uint64_t segment_bytes);

struct ShimLaunch {
  std::string binary;  // the pm-shim executable
  std::string state_dir;
  std::string runtime_dir;
  // The shim's --max_output_bytes and --segment_bytes; 0 leaves the flag
  // out, so the shim's default applies (ResolveOutputCaps).
  uint64_t max_output_bytes = 0;
  uint64_t segment_bytes = 0;
  // The shim's --process_id: the id its process will have, whose directory
  // it makes while idle. Empty leaves it out (the Spawn names the id).
  std::string process_id{};
  // --zygote: a shim that forks idle shims (zygote.h); not with process_id.
  bool zygote = false;
};

struct LaunchedShim {
  pid_t pid = -1;
  Fd pidfd;    // the shim's, to wait for it
  Fd control;  // the supervisor's end of the control link
  std::string process_id;  // ShimLaunch::process_id
};

// Starts pm-shim as a child of the caller. INVALID_ARGUMENT for output caps
// ResolveOutputCaps refuses (checked here, so that a bad setting fails the
// caller once instead of every shim exiting at start); other errors name
// the call (socketpair, posix_spawn with the binary's path, pidfd_open) and
// the OS reason.
absl::StatusOr<LaunchedShim> LaunchShim(const ShimLaunch& launch);

}  // namespace pm::shim

#endif  // PM_SHIM_LAUNCH_H_
