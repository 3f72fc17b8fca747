// The log_store service: serves each process's output, which its pm-shim
// writes to the state dir (<state_dir>/procs/<id>/output), to readers, and
// keeps the total cap on it. Serves pm.internal.v1.LogStore on
// <runtime_dir>/log_store.sock.
//
//   log_store --runtime_dir=/run/user/1000/pm --state_dir=~/.local/state/pm
#include <cstdint>
#include <cstdio>

#include <gflags/gflags.h>

#include "common/file_limit.h"
#include "common/log.h"
#include "common/log_flags.h"
#include "common/metrics_flags.h"
#include "common/memory_trimmer.h"
#include "common/runtime_dir.h"
#include "common/server.h"
#include "common/state_dir.h"
#include "common/version.h"
#include "log_store/log_store.h"
#include "log_store/metrics.h"
#include "log_store/log_store_service.h"

DEFINE_string(runtime_dir, pm::DefaultRuntimeDir(),
              "Directory of the services' unix sockets");
DEFINE_string(state_dir, "",
              "Directory of what pm keeps across restarts; each process's "
              "output is in procs/<id>/output there (default: "
              "$PM_STATE_DIR, else /var/lib/pm for root, else "
              "$XDG_STATE_HOME/pm, else ~/.local/state/pm)");
DEFINE_uint64(max_total_bytes, uint64_t{1} << 30,
              "Output bytes kept on disk for all processes together; beyond "
              "this the oldest segments (by last write) go first, never the "
              "one a live process is writing. Checked at start and every "
              "--total_cap_check_interval_ms");
DEFINE_uint64(total_cap_check_interval_ms, 5000,
              "How often --max_total_bytes is enforced over the disk (the "
              "shims write, so the total can pass the cap by what they "
              "write in this time)");
DEFINE_uint64(max_logs_in_memory, 10000,
              "Logs no reader holds that are remembered in memory; older "
              "ones are found again on disk when asked for");

int main(int argc, char** argv) {
  pm::BlockTerminationSignals();  // before gRPC starts any thread
  gflags::SetUsageMessage("serves the output of pm's processes");
  gflags::SetVersionString(pm::VersionLine());
  gflags::ParseCommandLineFlags(&argc, &argv, true);
  if (!pm::ApplyLogFlags()) return 2;
  // Memory a burst of calls left free goes back to the OS.
  std::unique_ptr<pm::MemoryTrimmer> trimmer = pm::MemoryTrimmer::Start();
  pm::SetLogTag("log_store");
  pm::LogFileLimitRaise(pm::RaiseFileLimit());  // a connection is an fd
  if (FLAGS_max_total_bytes == 0 || FLAGS_total_cap_check_interval_ms == 0) {
    std::fprintf(stderr,
                 "log_store: --max_total_bytes and "
                 "--total_cap_check_interval_ms must be positive\n");
    return 2;
  }

  const std::string state_dir = pm::StateDirFlagOrDefault(FLAGS_state_dir);
  if (absl::Status made = pm::EnsureStateDir(state_dir); !made.ok()) {
    PM_LOG(ERROR) << "--state_dir: " << made;
    return 1;
  }
  pm::log_store::LogStore::Options options;
  options.state_dir = state_dir;
  options.max_total_bytes = FLAGS_max_total_bytes;
  options.total_cap_interval =
      absl::Milliseconds(FLAGS_total_cap_check_interval_ms);
  options.max_logs = FLAGS_max_logs_in_memory;
  absl::StatusOr<std::unique_ptr<pm::log_store::LogStore>> store =
      pm::log_store::LogStore::Create(options);
  if (!store.ok()) {
    PM_LOG(ERROR) << "cannot open the output in " << state_dir << ": "
                  << store.status();
    return 1;
  }
  pm::log_store::ExportMetrics(**store, pm::metrics::Global());
  std::unique_ptr<pm::MetricsHttpServer> metrics;
  if (!pm::ServeMetricsIfAsked(metrics)) return 1;
  pm::log_store::LogStoreService service(store->get());
  // Follow streams last as long as their processes: end them before the
  // server's shutdown waits for open calls.
  return pm::ServeUntilSignal(pm::Service::kLogStore, FLAGS_runtime_dir,
                              {&service}, [&service] { service.Shutdown(); });
}
