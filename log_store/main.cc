// The log_store service: keeps each process's output on disk in the state
// dir (<state_dir>/procs/<id>/output) and serves it to readers. Serves
// pm.internal.v1.LogStore on <runtime_dir>/log_store.sock.
//
//   log_store --runtime_dir=/run/user/1000/pm --state_dir=~/.local/state/pm
#include <cstdint>
#include <cstdio>

#include <gflags/gflags.h>

#include "common/file_limit.h"
#include "common/log.h"
#include "common/memory_trimmer.h"
#include "common/runtime_dir.h"
#include "common/server.h"
#include "common/state_dir.h"
#include "log_store/log_store.h"
#include "log_store/log_store_service.h"

DEFINE_string(runtime_dir, pm::DefaultRuntimeDir(),
              "Directory of the services' unix sockets");
DEFINE_string(state_dir, "",
              "Directory of what pm keeps across restarts; each process's "
              "output is in procs/<id>/output there (default: "
              "$PM_STATE_DIR, else /var/lib/pm for root, else "
              "$XDG_STATE_HOME/pm, else ~/.local/state/pm)");
DEFINE_uint64(max_bytes_per_process, uint64_t{64} << 20,
              "Output bytes kept on disk per process; the oldest whole "
              "segments (a quarter of this, at most 8 MiB) are deleted "
              "beyond this");
DEFINE_uint64(max_total_bytes, uint64_t{1} << 30,
              "Output bytes kept on disk for all processes together; beyond "
              "this the oldest segments (by last write) go first, never the "
              "one a live process is writing");
DEFINE_uint64(max_closed_logs, 10000,
              "Logs of ended processes remembered in memory; older ones are "
              "found again on disk when asked for");

int main(int argc, char** argv) {
  pm::BlockTerminationSignals();  // before gRPC starts any thread
  gflags::SetUsageMessage("serves the output of pm's processes");
  gflags::ParseCommandLineFlags(&argc, &argv, true);
  // Memory a burst of calls left free goes back to the OS.
  std::unique_ptr<pm::MemoryTrimmer> trimmer = pm::MemoryTrimmer::Start();
  pm::SetLogTag("log_store");
  pm::LogFileLimitRaise(pm::RaiseFileLimit());  // a connection is an fd
  if (FLAGS_max_bytes_per_process == 0 || FLAGS_max_total_bytes == 0) {
    std::fprintf(stderr,
                 "log_store: --max_bytes_per_process and --max_total_bytes "
                 "must be positive\n");
    return 2;
  }

  const std::string state_dir = pm::StateDirFlagOrDefault(FLAGS_state_dir);
  if (absl::Status made = pm::EnsureStateDir(state_dir); !made.ok()) {
    PM_LOG(ERROR) << "--state_dir: " << made;
    return 1;
  }
  pm::log_store::LogStore::Options options;
  options.state_dir = state_dir;
  options.max_bytes_per_process = FLAGS_max_bytes_per_process;
  options.max_total_bytes = FLAGS_max_total_bytes;
  options.max_closed_logs = FLAGS_max_closed_logs;
  absl::StatusOr<std::unique_ptr<pm::log_store::LogStore>> store =
      pm::log_store::LogStore::Create(options);
  if (!store.ok()) {
    PM_LOG(ERROR) << "cannot open the output in " << state_dir << ": "
                  << store.status();
    return 1;
  }
  pm::log_store::LogStoreService service(store->get());
  // Follow streams last as long as their processes: end them before the
  // server's shutdown waits for open calls.
  return pm::ServeUntilSignal(pm::Service::kLogStore, FLAGS_runtime_dir,
                              {&service}, [&service] { service.Shutdown(); });
}
