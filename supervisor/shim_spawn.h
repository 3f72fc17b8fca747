// The Spawn message that has a pm-shim start a StartRequest: the
// supervisor's side of what shim.cc's SpawnProcess undoes (fd indices back
// to fds, isolation bits back to SpawnIsolation).
//
//   PM_ASSIGN_OR_RETURN(ShimSpawnMessage message,
//                       ShimSpawnOf(request, id, cgroup->spawn_options()));
//   PM_RETURN_IF_ERROR(shim::SendMessage(control, message.spawn, message.fds));
#ifndef PM_SUPERVISOR_SHIM_SPAWN_H_
#define PM_SUPERVISOR_SHIM_SPAWN_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/fd.h"
#include "pm/v1/process_manager.pb.h"
#include "shim/protocol.h"
#include "supervisor/spawn_command.h"

namespace pm::supervisor {

struct ShimSpawnMessage {
  shim::Spawn spawn;
  // The fds to attach, in the order the message's indices name them:
  // borrowed from the SpawnOptions, which must stay open until it is sent,
  // and command_memfd's.
  std::vector<int> fds;
  // The sealed memfd holding a command too large for one datagram (see
  // shim::Spawn), attached last; unset for a command that fits. Owned here,
  // so keep the message until it is sent.
  Fd command_memfd;
};

// The Spawn of `request` (validated beforehand) as process `id`: its
// command as bytes (CommandLineOf), its isolation, `options.file_limit`
// and the cgroup fds of `options` (the cgroup2 dir, its cgroup.procs for
// the fallback join, the v1 joins), each attached once; a command too
// large for a datagram goes in a sealed memfd (shim::SpillLargeCommand),
// attached after them. INVALID_ARGUMENT for a command CommandLineOf
// refuses; errors of SpillLargeCommand.
absl::StatusOr<ShimSpawnMessage> ShimSpawnOf(const pm::v1::StartRequest& request,
                                             const std::string& id,
                                             const SpawnOptions& options);

}  // namespace pm::supervisor

#endif  // PM_SUPERVISOR_SHIM_SPAWN_H_
