// The control link between the supervisor and a pm-shim: one message per
// SOCK_SEQPACKET datagram, in a small versioned TLV encoding, with fds
// attached as SCM_RIGHTS. No protobuf: the shim links none, and the
// supervisor links this library.
//
//   shim::Spawn spawn{.uuid = id, .command = {"sleep", {"60"}, {}, ""}};
//   PM_RETURN_IF_ERROR(shim::SendMessage(control.get(), spawn, {}));
//   PM_ASSIGN_OR_RETURN(shim::Received got, shim::ReceiveMessage(control.get()));
//   if (auto* spawned = std::get_if<shim::Spawned>(&got.message)) {
//     Fd pidfd = std::move(got.fds[0]);  // the process's pidfd
//   }
//
// A datagram (all integers little-endian):
//   header   version u16 (kProtocolVersion), type u16 (MessageType),
//            body length u32 (the datagram's size minus the 8 header bytes)
//   body     fields, each: tag u16 (FieldTag), length u32, `length` bytes
// Every message type has a fixed set of allowed fields; a field not in it,
// a required field missing, a single field given twice, a value of the
// wrong size, a length running past the end, a datagram above
// kMaxMessageBytes, an unknown type or version, or fds attached that the
// message does not account for are refused (INVALID_ARGUMENT naming what).
// A Spawn whose command is too large for a datagram carries it in a sealed
// memfd (see Spawn).
// Changing the encoding means a new version; a peer refuses another one.
//
// The conversation:
//   supervisor → shim   Spawn (+ the cgroup fds it names, and the command's
//                       memfd if the command is large)
//   shim → supervisor   Spawned (+ the pidfd) or SpawnFailed (then it exits)
//   shim → supervisor   Exited, when the leader has been reaped (and will not
//                       be started again)
//   shim → supervisor   Closed, when every pipe is at EOF, every child reaped
//                       and the output closed; the shim exits after it
// with a restart policy (Spawn.restart), between Spawned and Exited, any
// number of times:
//   shim → supervisor   Restarting, when a run has ended and another will
//                       start after the backoff delay
//   shim → supervisor   RunStarted (+ the new run's pidfd)
//   supervisor → shim   NoRestart, before a stop's first signal: the run
//                       that ends next is the last (during a backoff: the
//                       process ends now, Exited)
// and after a reconnect to <runtime_dir>/shims.sock:
//   shim → supervisor   Hello (+ the pidfd while the leader is not reaped),
//                       then Exited and Closed as above
// and with a pm-shim --zygote, which forks idle shims:
//   supervisor → zygote ForkShim (+ the new shim's end of its control link)
//   zygote → supervisor ShimForked (+ the new shim's pidfd), or SpawnFailed
//                       when it could not fork (the zygote carries on)
#ifndef PM_SHIM_PROTOCOL_H_
#define PM_SHIM_PROTOCOL_H_

#include <sys/resource.h>
#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "common/command_line_core.h"
#include "common/fd.h"
#include "shim/exit_file.h"

namespace pm::shim {

inline constexpr uint16_t kProtocolVersion = 1;
// The name of the supervisor's listening socket in the runtime dir, where
// a shim whose supervisor died reconnects.
inline constexpr char kShimsSocketName[] = "shims.sock";
inline constexpr size_t kHeaderBytes = 8;
// The largest datagram. A unix socket's default send buffer
// (net.core.wmem_default, 208 KiB) bounds a SOCK_SEQPACKET datagram, so a
// Spawn whose command is larger than about this carries it in a memfd.
inline constexpr size_t kMaxMessageBytes = 192 << 10;
// The most fds one message carries.
inline constexpr size_t kMaxFds = 16;
// The largest encoded command a command memfd may hold (see Spawn): above
// what the largest Start the supervisor can receive (a 64 MiB gRPC message,
// each string at least 2 bytes there, 6 here) encodes to, so any command
// the supervisor accepts fits; a larger memfd is refused unread.
inline constexpr size_t kMaxCommandBytes = size_t{256} << 20;

enum class MessageType : uint16_t {
  kSpawn = 1,
  kSpawned = 2,
  kSpawnFailed = 3,
  kExited = 4,
  kHello = 5,
  kClosed = 6,
  kForkShim = 7,
  kShimForked = 8,
  kNoRestart = 9,
  kRestarting = 10,
  kRunStarted = 11,
};

enum class FieldTag : uint16_t {
  kUuid = 1,           // bytes
  kExecutable = 2,     // bytes
  kArg = 3,            // bytes, repeated
  kEnv = 4,            // bytes "NAME=VALUE", repeated
  kWorkingDir = 5,     // bytes
  kIsolation = 6,      // u32: kIsolatePid | kIsolateNet | kIsolateMount
  kFileLimit = 7,      // u64 soft, u64 hard
  kCgroup2Dir = 8,     // u32: index of the attached fd
  kCgroup2Join = 9,    // u32 index of the attached fd, then the path bytes
  kCgroupJoin = 10,    // the same, repeated (the v1 hierarchies)
  kPid = 11,           // u32
  kStartTicks = 12,    // u64
  kCode = 13,          // u32: an absl::StatusCode
  kMessage = 14,       // bytes
  kExitStatus = 15,    // u8 kind (1 exited, 2 signaled), u8 core dumped,
                       // u16 0, i32 code or signal
  kEndedNs = 16,       // i64: realtime, ns since the Unix epoch
  kOutputEnd = 17,     // u64: the output's end offset now
  kExitOutputEnd = 18, // u64: the output's end offset when the leader ended
  kCommandMemfd = 19,  // u32: index of the attached fd, a sealed memfd
                       // holding the command's fields 2-5 (see Spawn)
  kRun = 20,           // u32: a run's number, 1 for the first
  kNextStartNs = 21,   // i64: realtime, ns since the Unix epoch
  kRestart = 22,       // u8 when, u8[3] 0, u32 max restarts, then u64 ns:
                       // first delay, max delay, reset after, window
  kGaveUp = 23,        // u32 1: the restarts' cap was reached
  kPreviousEnd = 24,   // the end of the run before: an exit status as
                       // kExitStatus (8 bytes), then i64 ended ns
  kOutputCapped = 25,  // u64: output bytes the per-process cap deleted
  kOutputLost = 26,    // u64: output bytes lost to failed writes
};

// How a process is started again after a run ends (Spawn.restart). The
// shim applies it, so restarts go on while the supervisor is away.
struct RestartPolicy {
  enum class When : uint8_t {
    kNever = 0,
    // A run that exited non-zero or was killed by a signal.
    kOnFailure = 1,
    // Any run.
    kAlways = 2,
  };
  When when = When::kNever;
  // The delay before the first restart, doubled for each one after it (with
  // jitter) up to max_delay; back to first_delay once a run has stayed up
  // for reset_after.
  absl::Duration first_delay = absl::Milliseconds(100);
  absl::Duration max_delay = absl::Seconds(30);
  absl::Duration reset_after = absl::Seconds(10);
  // More than max_restarts restarts within `window` gives the process up
  // (0: no cap).
  uint32_t max_restarts = 0;
  absl::Duration window = absl::ZeroDuration();

  bool operator==(const RestartPolicy& o) const {
    return when == o.when && first_delay == o.first_delay &&
           max_delay == o.max_delay && reset_after == o.reset_after &&
           max_restarts == o.max_restarts && window == o.window;
  }
};

// The longest delay or window a RestartPolicy may hold.
inline constexpr absl::Duration kMaxRestartDuration = absl::Hours(24 * 7);

inline constexpr uint32_t kIsolatePid = 1;
inline constexpr uint32_t kIsolateNet = 2;
inline constexpr uint32_t kIsolateMount = 4;

// A cgroup.procs file the child writes "0" to: the index of its fd among
// the message's attached fds, and its path for messages.
struct CgroupJoinRef {
  uint32_t fd_index = 0;
  std::string path;
  bool operator==(const CgroupJoinRef& o) const {
    return fd_index == o.fd_index && path == o.path;
  }
};

// Start this process. Attached: the fds its fields name by index.
//
// A command too large for one datagram (kMaxMessageBytes; the supervisor
// accepts larger ones) travels in a memfd instead: its fields 2-5
// (executable, args, env, working dir) encoded as in a datagram's body,
// sealed (F_SEAL_WRITE | F_SEAL_SHRINK | F_SEAL_GROW), attached, and named
// by command_memfd; the datagram then carries none of those fields. The
// sender calls SpillLargeCommand, the receiver LoadSpawnCommand.
struct Spawn {
  std::string uuid;  // canonical, 36 characters
  // Not encoded while command_memfd is set; filled by LoadSpawnCommand.
  CommandLine command;
  std::optional<uint32_t> command_memfd;  // fd index
  uint32_t isolation = 0;
  std::optional<rlimit> file_limit;
  std::optional<uint32_t> cgroup2_dir;  // fd index
  std::optional<CgroupJoinRef> cgroup2_join;
  std::vector<CgroupJoinRef> cgroup_joins;
  // Unset: never started again (as when = kNever).
  std::optional<RestartPolicy> restart;
};

// It runs. Attached: its pidfd.
struct Spawned {
  pid_t pid = 0;
  uint64_t start_ticks = 0;  // field 22 of /proc/PID/stat
  std::string executable;    // the path exec'd, after the PATH lookup
};

// It could not be started (the shim exits after sending this).
struct SpawnFailed {
  absl::StatusCode code = absl::StatusCode::kUnknown;
  std::string message;  // e.g. execve("/nope"): No such file or directory (ENOENT)
};

// The leader was reaped, and no run follows.
struct Exited {
  ProcessEnd end;
  // With a restart policy: the last run's number, and whether the
  // restarts' cap ended it.
  std::optional<uint32_t> run;
  bool gave_up = false;
};

// The shim (re)connected. Attached: the pidfd, unless `end` is set.
struct Hello {
  std::string uuid;
  pid_t pid = 0;
  uint64_t start_ticks = 0;
  std::optional<ProcessEnd> end;  // unset while the leader runs
  uint64_t output_end = 0;        // the output's end offset when sent
  // With a restart policy: the current run (its leader is pid), and while
  // it waits for the next run, when that starts (`end` is then the ended
  // run's).
  std::optional<uint32_t> run;
  std::optional<absl::Time> next_start;
  // In run 2 or a later one (running, or ended for good): how the run
  // before it ended (its output_end is not sent: 0).
  std::optional<ProcessEnd> previous_end;
  // With `end` and no next start: the restarts' cap ended it.
  bool gave_up = false;
};

// To the shim: a stop is under way; the run that ends next is the last.
struct NoRestart {};

// Run `run` ended with `end`; run + 1 starts at `next_start`.
struct Restarting {
  uint32_t run = 0;
  ProcessEnd end;
  absl::Time next_start;
};

// Run `run` started (as Spawned says of the first). Attached: its pidfd.
struct RunStarted {
  uint32_t run = 0;
  pid_t pid = 0;
  uint64_t start_ticks = 0;
  std::string executable;
};

// The output is closed at `output_end`; the shim exits.
struct Closed {
  uint64_t output_end = 0;
  // Output bytes dropped on the way to disk: the oldest segments the
  // per-process cap deleted, and bytes whose write failed (a full disk).
  // Sent only when not zero (an older supervisor knows neither field).
  uint64_t capped = 0;
  uint64_t lost = 0;
  bool operator==(const Closed& o) const {
    return output_end == o.output_end && capped == o.capped && lost == o.lost;
  }
};

// To a zygote: fork an idle shim for the process `uuid` (its --process_id).
// Attached: the new shim's end of its control link.
struct ForkShim {
  std::string uuid;  // canonical, 36 characters
};

// From a zygote: the idle shim runs, a child of the zygote's parent.
// Attached: its pidfd.
struct ShimForked {
  pid_t pid = 0;
};

using Message = std::variant<Spawn, Spawned, SpawnFailed, Exited, Hello, Closed,
                             ForkShim, ShimForked, NoRestart, Restarting,
                             RunStarted>;

// The datagram for `message`, or INVALID_ARGUMENT when it would exceed
// kMaxMessageBytes (naming the size).
absl::StatusOr<std::string> Encode(const Message& message);

// The message in `datagram`, checking that it accounts for exactly
// `fd_count` attached fds (Spawned, ForkShim, ShimForked, RunStarted: 1;
// Hello: 1 while running, else 0; Spawn: each index it names, 0 ..
// fd_count-1, used once). INVALID_ARGUMENT
// naming the problem (truncated header, unknown type 9, field 3 runs past
// the end, ...).
absl::StatusOr<Message> Decode(absl::string_view datagram, size_t fd_count);

// When `spawn`'s datagram would exceed kMaxMessageBytes, moves its command
// into a sealed memfd, sets spawn.command_memfd to `fd_index` and returns
// the memfd, to attach at that index and keep open until sent; nullopt
// (nothing changed) when the datagram fits. INVALID_ARGUMENT for a command
// over kMaxCommandBytes encoded, or a message still too large without its
// command; errors name memfd_create, write or fcntl(F_ADD_SEALS).
absl::StatusOr<std::optional<Fd>> SpillLargeCommand(Spawn& spawn, uint32_t fd_index);

// Fills spawn.command from the memfd among `fds` that command_memfd names
// (a no-op without one): ReadSealedCommand.
absl::Status LoadSpawnCommand(Spawn& spawn, absl::Span<const Fd> fds);

// The command in `memfd`, checked as strictly as in a datagram.
// INVALID_ARGUMENT when it is not sealed against writes, growing and
// shrinking, is larger than kMaxCommandBytes (refused before reading) or
// does not decode; errors name fcntl(F_GET_SEALS) (not a memfd), fstat or
// pread.
absl::StatusOr<CommandLine> ReadSealedCommand(int memfd);

// A sealed memfd holding `command` (MFD_CLOEXEC), as SpillLargeCommand
// makes it.
absl::StatusOr<Fd> SealCommand(const CommandLine& command);

// The encoding of a command memfd's contents, and its strict decoding
// (what ReadSealedCommand applies to the bytes it read).
absl::StatusOr<std::string> EncodeCommand(const CommandLine& command);
absl::StatusOr<CommandLine> DecodeCommandBytes(absl::string_view bytes);

// A message with the fds that came with it (born close-on-exec).
struct Received {
  Message message;
  std::vector<Fd> fds;
};

// Sends `message` with `fds` attached (sendmsg, MSG_NOSIGNAL). Errors name
// the call and the OS reason (EPIPE when the peer is gone).
absl::Status SendMessage(int socket, const Message& message,
                         absl::Span<const int> fds);

// Receives one message (recvmsg, MSG_CMSG_CLOEXEC). NOT_FOUND "end of
// stream" at EOF (the peer closed), UNAVAILABLE for EAGAIN on a
// non-blocking socket, RESOURCE_EXHAUSTED when the attached fds were
// dropped (MSG_CTRUNC: over kMaxFds, or the receiver is out of fds),
// INVALID_ARGUMENT for a truncated datagram and for what Decode refuses;
// other errors name recvmsg and the OS reason.
absl::StatusOr<Received> ReceiveMessage(int socket);

// The name of a message's type ("Spawn", ...), for logs.
absl::string_view MessageName(const Message& message);

}  // namespace pm::shim

#endif  // PM_SHIM_PROTOCOL_H_
