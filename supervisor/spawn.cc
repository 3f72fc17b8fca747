#include "supervisor/spawn.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "common/limit_ranges.h"
#include "common/restart_policy.h"
#include "common/names.h"
#include "common/status.h"

namespace pm::supervisor {

SpawnIsolation IsolationOf(const pm::v1::StartRequest& request) {
  SpawnIsolation isolation;
  for (int value : request.isolate()) {
    switch (value) {
      case pm::v1::ISOLATION_PID:
        isolation.pid = true;
        break;
      case pm::v1::ISOLATION_NET:
        isolation.net = true;
        break;
      case pm::v1::ISOLATION_MOUNT:
        isolation.mount = true;
        break;
      default:
        break;  // ValidateStartRequest refused it
    }
  }
  return isolation;
}

absl::Status ValidateStartRequest(const pm::v1::StartRequest& request,
                                  const CommandCaps& caps) {
  PM_ASSIGN_OR_RETURN(CommandLine command, CommandLineOf(request));
  if (!request.name().empty()) PM_RETURN_IF_ERROR(ValidateName(request.name()));
  if (!request.node().empty()) PM_RETURN_IF_ERROR(ValidateNodeName(request.node()));
  PM_RETURN_IF_ERROR(ValidateLabels(request.labels()));
  if (request.has_restart()) PM_RETURN_IF_ERROR(ValidateRestartPolicy(request.restart()));
  if (command.args.size() > caps.max_args) {
    return absl::InvalidArgumentError(absl::StrCat(
        "args: ", command.args.size(), " arguments, over the supervisor's "
        "--max_args=", caps.max_args));
  }
  size_t bytes = command.executable.size() + 1 + command.working_dir.size() + 1;
  for (const std::string& arg : command.args) bytes += arg.size() + 1;
  for (const auto& [name, value] : command.env) bytes += name.size() + value.size() + 2;
  if (bytes > caps.max_bytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the command (executable, args, env, working_dir) is ", bytes,
        " bytes, over the supervisor's --max_command_bytes=", caps.max_bytes));
  }
  const pm::v1::Limits& limits = request.limits();
  if (!std::isfinite(limits.cpus()) || limits.cpus() < 0 ||
      (limits.cpus() > 0 &&
       (limits.cpus() < kMinCpus || limits.cpus() > kMaxCpus))) {
    return absl::InvalidArgumentError(
        absl::StrCat("limits.cpus must be in [", kMinCpus, ", ", kMaxCpus,
                     "] (or 0 for no limit), got ", limits.cpus()));
  }
  if (limits.io_weight() > kMaxIoWeight) {
    return absl::InvalidArgumentError(
        absl::StrCat("limits.io_weight must be in ", kMinIoWeight, "..",
                     kMaxIoWeight, " (or 0 for the default), got ",
                     limits.io_weight()));
  }
  for (int i = 0; i < request.isolate_size(); ++i) {
    const int value = request.isolate(i);
    if (value == pm::v1::ISOLATION_UNSPECIFIED ||
        !pm::v1::Isolation_IsValid(value)) {
      return absl::InvalidArgumentError(
          absl::StrCat("isolate[", i, "]: unknown isolation ", value,
                       " (want ISOLATION_PID, ISOLATION_NET or "
                       "ISOLATION_MOUNT)"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<SpawnedChild> Spawn(const pm::v1::StartRequest& request,
                                   const SpawnOptions& options) {
  PM_ASSIGN_OR_RETURN(CommandLine command, CommandLineOf(request));
  return SpawnCommand(std::move(command), IsolationOf(request), options);
}

}  // namespace pm::supervisor
