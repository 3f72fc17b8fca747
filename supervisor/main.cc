// The supervisor service: spawns, signals and reaps managed processes.
// Serves <runtime_dir>/supervisor.sock; talks to the registry on its
// socket in the same directory; runs each process under a pm-shim, which
// keeps its output and exit file in the state dir.
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <cstdint>
#include <utility>

#include <gflags/gflags.h>

#include "common/file_limit.h"
#include "common/log.h"
#include "common/log_flags.h"
#include "common/metrics_flags.h"
#include "common/names.h"
#include "common/memory_trimmer.h"
#include "common/runtime_dir.h"
#include "common/state_dir.h"
#include "common/server.h"
#include "common/stop_request.h"
#include "common/version.h"
#include "supervisor/metrics.h"
#include "supervisor/supervisor.h"
#include "supervisor/supervisor_service.h"

DEFINE_string(runtime_dir, "",
              "Directory of the services' unix sockets (default: "
              "$PM_RUNTIME_DIR, else $XDG_RUNTIME_DIR/pm, else /tmp/pm-<uid>)");
DEFINE_string(state_dir, "",
              "Directory of what pm keeps across restarts; each process's "
              "output and exit file go under procs/<uuid>/ (default: "
              "$PM_STATE_DIR, else /var/lib/pm for root, else "
              "$XDG_STATE_HOME/pm, else ~/.local/state/pm)");
DEFINE_string(shim_binary, "",
              "The pm-shim executable that parents each process (required; "
              "the stack launcher passes the one built beside it)");
DEFINE_uint32(default_grace_ms, 10000,
              "Stop's grace period between SIGTERM and SIGKILL when the "
              "request gives none (at most 3600000, 1h)");
DEFINE_uint32(kill_timeout_ms, 5000,
              "How long Stop waits after SIGKILL before answering "
              "stopped=false");
DEFINE_uint32(max_args, 4096, "Most arguments a Start may give");
DEFINE_uint32(max_command_bytes, 256 << 10,
              "Largest command a Start may give: executable, arguments, "
              "environment and working dir, in bytes");
DEFINE_uint32(max_processes, 4096,
              "Cap on processes that have not ended; Start beyond it fails "
              "with RESOURCE_EXHAUSTED");
DEFINE_uint64(max_output_bytes, pm::shim::kDefaultMaxOutputBytes,
              "Per-process cap on the output kept on disk (each process's "
              "pm-shim deletes its oldest segments beyond it; readers see "
              "them as dropped)");
DEFINE_uint64(output_segment_bytes, 0,
              "Size of each output segment file, at most a quarter of "
              "--max_output_bytes (0: 8 MiB, or that quarter if smaller)");
DEFINE_uint32(shutdown_grace_ms, 3000,
              "Grace period of the stop every process gets at shutdown; a "
              "stop in progress with a longer one is brought forward to it");
DEFINE_uint32(adopt_wait_ms, 1000,
              "At start, how long the records of processes an earlier "
              "supervisor left running wait for their shims to reconnect "
              "before they are settled without one");
DEFINE_uint32(spare_shims, 2,
              "Idle pm-shims kept ready, each with its process's directory "
              "made, so a Start only sends it a message; 0 makes each one at "
              "its Start (slower)");
DEFINE_string(node, "",
              "This host's name in its cluster, as its registry's --node "
              "gives it (1 to 64 of A-Z a-z 0-9 _ . -); a Start naming "
              "another node is refused (start it through that host's "
              "gateway). Empty: not in a cluster, a Start naming any node is "
              "refused");
DEFINE_string(cgroups, "auto",
              "Which cgroups hold the managed processes: auto (cgroup2 to "
              "track and kill and for the controllers it has, cgroup v1 for "
              "the others), v2 (cgroup2 only), v1 (v1 only, tracking with the "
              "freezer), off (none: stop by process group, refuse limits)");
DEFINE_string(cgroup_parent, "",
              "Cgroup path (as in /proc/self/cgroup, e.g. /pm.slice/pm) below "
              "which each process gets its cgroup, in every hierarchy used; "
              "nothing outside it is written. Default: <the supervisor's own "
              "cgroup>/pm in each hierarchy");

namespace {

// Managed children get /dev/null as stdin by dup2 onto fd 0; that only works
// if 0, 1 and 2 are taken here, so a supervisor started with closed
// standard fds gets /dev/null for them.
void EnsureStandardFds() {
  for (int fd = 0; fd < 3; ++fd) {
    if (fcntl(fd, F_GETFD) < 0) {
      int null_fd = open("/dev/null", O_RDWR);
      if (null_fd >= 0 && null_fd != fd) {
        dup2(null_fd, fd);
        close(null_fd);
      }
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  EnsureStandardFds();
  pm::BlockTerminationSignals({SIGCHLD, SIGUSR2});
  gflags::SetUsageMessage("pm supervisor: spawns, signals and reaps processes");
  gflags::SetVersionString(pm::VersionLine());
  gflags::ParseCommandLineFlags(&argc, &argv, true);
  if (!pm::ApplyLogFlags()) return 2;
  // Memory a burst of calls left free goes back to the OS.
  std::unique_ptr<pm::MemoryTrimmer> trimmer = pm::MemoryTrimmer::Start();
  pm::SetLogTag("supervisor");
  // About four fds per process: raised to the hard limit, and each process
  // started gets the limit we had.
  const absl::StatusOr<rlimit> file_limit = pm::RaiseFileLimit();
  pm::LogFileLimitRaise(file_limit);
  const std::string dir =
      FLAGS_runtime_dir.empty() ? pm::DefaultRuntimeDir() : FLAGS_runtime_dir;

  for (const auto& [flag, value] :
       {std::pair<const char*, uint32_t>{"--default_grace_ms", FLAGS_default_grace_ms},
        {"--shutdown_grace_ms", FLAGS_shutdown_grace_ms}}) {
    if (value > pm::kMaxGracePeriodMs) {
      PM_LOG(ERROR) << flag << " is " << value << "; the maximum is "
                    << pm::kMaxGracePeriodMs << " (1h)";
      return 2;
    }
  }

  pm::supervisor::SupervisorOptions options;
  options.registry_socket = pm::SocketPath(dir, pm::Service::kRegistry);
  options.default_grace = absl::Milliseconds(FLAGS_default_grace_ms);
  options.kill_timeout = absl::Milliseconds(FLAGS_kill_timeout_ms);
  options.max_processes = FLAGS_max_processes;
  options.adopt_wait = absl::Milliseconds(FLAGS_adopt_wait_ms);
  options.spare_shims = FLAGS_spare_shims;
  options.command_caps.max_args = FLAGS_max_args;
  options.command_caps.max_bytes = FLAGS_max_command_bytes;
  if (!FLAGS_node.empty()) {
    if (absl::Status valid = pm::ValidateNodeName(FLAGS_node); !valid.ok()) {
      PM_LOG(ERROR) << "--node: " << valid.message();
      return 2;
    }
  }
  options.node = FLAGS_node;
  if (file_limit.ok()) options.child_file_limit = *file_limit;
  if (FLAGS_shim_binary.empty()) {
    PM_LOG(ERROR) << "--shim_binary is required: the pm-shim each process "
                     "runs under";
    return 2;
  }
  const std::string state_dir = pm::StateDirFlagOrDefault(FLAGS_state_dir);
  if (absl::Status made = pm::EnsureStateDir(state_dir); !made.ok()) {
    PM_LOG(ERROR) << "--state_dir: " << made;
    return 1;
  }
  absl::StatusOr<pm::shim::OutputCaps> caps = pm::shim::ResolveOutputCaps(
      FLAGS_max_output_bytes, FLAGS_output_segment_bytes);
  if (!caps.ok()) {
    PM_LOG(ERROR) << "--max_output_bytes / --output_segment_bytes (the "
                     "shim's --max_output_bytes / --segment_bytes): "
                  << caps.status();
    return 2;
  }
  options.shim = pm::shim::ShimLaunch{FLAGS_shim_binary, state_dir, dir,
                                      caps->max_output_bytes,
                                      caps->segment_bytes};
  absl::StatusOr<pm::supervisor::CgroupMode> cgroup_mode =
      pm::supervisor::ParseCgroupMode(FLAGS_cgroups);
  if (!cgroup_mode.ok()) {
    PM_LOG(ERROR) << "--cgroups: " << cgroup_mode.status();
    return 1;
  }
  options.cgroup.mode = *cgroup_mode;
  options.cgroup.parent = FLAGS_cgroup_parent;
  options.cgroup.stack = pm::supervisor::CgroupStackTag(state_dir);

  // Before Create: a supervisor that cannot serve its metrics exits before
  // it adopts anything (its destructor would stop what it had adopted).
  pm::supervisor::Metrics();  // every metric shown from the first scrape
  std::unique_ptr<pm::MetricsHttpServer> metrics;
  if (!pm::ServeMetricsIfAsked(metrics)) return 1;
  absl::StatusOr<std::unique_ptr<pm::supervisor::Supervisor>> supervisor =
      pm::supervisor::Supervisor::Create(options);
  if (!supervisor.ok()) {
    PM_LOG(ERROR) << "cannot start: " << supervisor.status();
    return 1;
  }
  pm::supervisor::SupervisorService service(supervisor->get());
  // SIGTERM, SIGINT: every process is stopped. SIGUSR2 (an upgrade): every
  // process is left running under its shim, for the next supervisor.
  return pm::ServeUntilSignal(
      pm::Service::kSupervisor, dir, {&service},
      [&](int sig) {
        if (sig == SIGUSR2) {
          (*supervisor)->HandOff();
        } else {
          (*supervisor)->Shutdown(absl::Milliseconds(FLAGS_shutdown_grace_ms));
        }
      },
      {SIGUSR2});
}
