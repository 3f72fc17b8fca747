// The log_store service: retains each process's output and serves it to
// readers. Serves pm.internal.v1.LogStore on <runtime_dir>/log_store.sock.
#include <cstdint>
#include <cstdio>

#include <gflags/gflags.h>

#include "common/file_limit.h"
#include "common/log.h"
#include "common/memory_trimmer.h"
#include "common/runtime_dir.h"
#include "common/server.h"
#include "log_store/log_store.h"
#include "log_store/log_store_service.h"

DEFINE_string(runtime_dir, pm::DefaultRuntimeDir(),
              "Directory of the services' unix sockets");
DEFINE_uint64(max_bytes_per_process, uint64_t{64} << 20,
              "Output bytes retained per process; the oldest are dropped "
              "beyond this");
DEFINE_uint64(max_total_bytes, uint64_t{1} << 30,
              "Output bytes retained for all processes together; beyond "
              "this the oldest bytes of closed logs go first, then those of "
              "the largest open log");
DEFINE_uint64(max_closed_logs, 10000,
              "Logs of ended processes kept; the oldest is forgotten beyond "
              "this");

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

  pm::log_store::LogStore::Options options;
  options.max_bytes_per_process = FLAGS_max_bytes_per_process;
  options.max_total_bytes = FLAGS_max_total_bytes;
  options.max_closed_logs = FLAGS_max_closed_logs;
  pm::log_store::LogStore store(options);
  pm::log_store::LogStoreService service(&store);
  // Follow streams last as long as their processes: end them before the
  // server's shutdown waits for open calls.
  return pm::ServeUntilSignal(pm::Service::kLogStore, FLAGS_runtime_dir,
                              {&service}, [&service] { service.Shutdown(); });
}
