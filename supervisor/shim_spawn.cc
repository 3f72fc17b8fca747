#include "supervisor/shim_spawn.h"

#include <utility>

#include "common/command_line.h"
#include "common/restart_policy.h"
#include "common/status.h"
#include "supervisor/spawn.h"

namespace pm::supervisor {
namespace {

uint32_t IsolationBits(const SpawnIsolation& isolation) {
  return (isolation.pid ? shim::kIsolatePid : 0) |
         (isolation.net ? shim::kIsolateNet : 0) |
         (isolation.mount ? shim::kIsolateMount : 0);
}

// Attaches `fd` to the message and returns its index.
uint32_t Attach(ShimSpawnMessage& message, int fd) {
  message.fds.push_back(fd);
  return static_cast<uint32_t>(message.fds.size() - 1);
}

}  // namespace

absl::StatusOr<ShimSpawnMessage> ShimSpawnOf(const pm::v1::StartRequest& request,
                                             const std::string& id,
                                             const SpawnOptions& options) {
  ShimSpawnMessage message;
  shim::Spawn& spawn = message.spawn;
  spawn.uuid = id;
  PM_ASSIGN_OR_RETURN(spawn.command, CommandLineOf(request));
  spawn.isolation = IsolationBits(IsolationOf(request));
  spawn.file_limit = options.file_limit;
  if (options.cgroup2_dir_fd >= 0) {
    spawn.cgroup2_dir = Attach(message, options.cgroup2_dir_fd);
  }
  if (options.cgroup2_join.fd >= 0) {
    spawn.cgroup2_join = shim::CgroupJoinRef{
        Attach(message, options.cgroup2_join.fd), options.cgroup2_join.path};
  }
  for (const CgroupJoin& join : options.joins) {
    spawn.cgroup_joins.push_back({Attach(message, join.fd), join.path});
  }
  if (RestartsOf(request)) {
    const RestartDurations durations = DurationsOf(request.restart());
    shim::RestartPolicy& policy = spawn.restart.emplace();
    policy.when = request.restart().policy() == pm::v1::RestartPolicy::POLICY_ALWAYS
                      ? shim::RestartPolicy::When::kAlways
                      : shim::RestartPolicy::When::kOnFailure;
    policy.first_delay = durations.first_delay;
    policy.max_delay = durations.max_delay;
    policy.reset_after = durations.reset_after;
    policy.max_restarts = request.restart().max_restarts();
    policy.window = durations.window;
  }
  PM_ASSIGN_OR_RETURN(std::optional<Fd> memfd,
                      shim::SpillLargeCommand(spawn, static_cast<uint32_t>(message.fds.size())));
  if (memfd) {
    message.command_memfd = *std::move(memfd);
    Attach(message, message.command_memfd.get());
  }
  return message;
}

}  // namespace pm::supervisor
