// The registry service: the directory of process records, served on
// <runtime_dir>/registry.sock until SIGTERM or SIGINT, kept in
// <state_dir>/registry.sqlite across restarts.
//
//   registry --runtime_dir=/run/user/1000/pm --state_dir=~/.local/state/pm
#include <cstdint>

#include <gflags/gflags.h>

#include "common/file_limit.h"
#include "common/log.h"
#include "common/log_flags.h"
#include "common/memory_trimmer.h"
#include "common/metrics_flags.h"
#include "common/runtime_dir.h"
#include "common/server.h"
#include "common/state_dir.h"
#include "common/version.h"
#include "registry/metrics.h"
#include "registry/registry.h"
#include "registry/registry_service.h"
#include "registry/sqlite_record_store.h"

DEFINE_string(runtime_dir, pm::DefaultRuntimeDir(),
              "Directory of the services' unix sockets.");
DEFINE_string(state_dir, "",
              "Directory of what pm keeps across restarts; the records are "
              "in registry.sqlite there (default: $PM_STATE_DIR, else "
              "/var/lib/pm for root, else $XDG_STATE_HOME/pm, else "
              "~/.local/state/pm)");
DEFINE_int64(max_ended_records, 10000,
             "How many ended process records to keep; past it, the record "
             "that ended first is dropped (asking for one of the last 65536 "
             "dropped says so and names this cap). Running ones are always "
             "kept.");
DEFINE_int64(max_events, 10000,
             "how many events (Watch) are kept, in memory and in the "
             "database; a watcher further behind is told how many it missed");

int main(int argc, char** argv) {
  // Before any thread exists, so every thread inherits the mask and only
  // ServeUntilSignal takes SIGTERM/SIGINT.
  pm::BlockTerminationSignals();
  pm::SetLogTag("registry");
  gflags::SetUsageMessage("pm registry: the directory of process records");
  gflags::SetVersionString(pm::VersionLine());
  gflags::ParseCommandLineFlags(&argc, &argv, true);
  if (!pm::ApplyLogFlags()) return 2;
  // Memory a burst of calls left free goes back to the OS.
  std::unique_ptr<pm::MemoryTrimmer> trimmer = pm::MemoryTrimmer::Start();
  pm::LogFileLimitRaise(pm::RaiseFileLimit());  // a connection is an fd
  if (FLAGS_max_ended_records < 0) {
    PM_LOG(ERROR) << "--max_ended_records must be >= 0, got "
                  << FLAGS_max_ended_records;
    return 2;
  }

  pm::registry::RegistryOptions options;
  options.max_ended_records = static_cast<size_t>(FLAGS_max_ended_records);
  if (FLAGS_max_events < 1) {
    PM_LOG(ERROR) << "--max_events must be >= 1, got " << FLAGS_max_events;
    return 2;
  }
  options.max_events = static_cast<size_t>(FLAGS_max_events);
  const std::string state_dir = pm::StateDirFlagOrDefault(FLAGS_state_dir);
  if (absl::Status made = pm::EnsureStateDir(state_dir); !made.ok()) {
    PM_LOG(ERROR) << "--state_dir: " << made;
    return 1;
  }
  absl::StatusOr<std::unique_ptr<pm::registry::SqliteRecordStore>> store =
      pm::registry::SqliteRecordStore::Open(state_dir + "/registry.sqlite");
  if (!store.ok()) {
    PM_LOG(ERROR) << "cannot open the records: " << store.status();
    return 1;
  }
  absl::StatusOr<std::unique_ptr<pm::registry::Registry>> registry =
      pm::registry::Registry::Open(options, *std::move(store));
  if (!registry.ok()) {
    PM_LOG(ERROR) << "cannot load the records: " << registry.status();
    return 1;
  }
  PM_LOG(INFO) << "records in " << state_dir << "/registry.sqlite: "
               << (*registry)->size() << " loaded";
  pm::registry::ExportMetrics(**registry, pm::metrics::Global());
  std::unique_ptr<pm::MetricsHttpServer> metrics;
  if (!pm::ServeMetricsIfAsked(metrics)) return 1;
  pm::registry::RegistryService service(registry->get());
  return pm::ServeUntilSignal(pm::Service::kRegistry, FLAGS_runtime_dir,
                              {&service}, [&] { service.Shutdown(); });
}
