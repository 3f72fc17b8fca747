// The supervisor's Prometheus metrics (README, "Metrics"), in
// metrics::Global(): what its /metrics and its Scrape RPC serve.
#ifndef PM_SUPERVISOR_METRICS_H_
#define PM_SUPERVISOR_METRICS_H_

#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "common/exit_status.h"
#include "common/metrics.h"

namespace pm::supervisor {

struct SupervisorMetrics {
  // Start calls by their status code ("OK", "INVALID_ARGUMENT", ...).
  metrics::Family<metrics::Counter>& starts;
  // From the Start call to its answer, for the ones that succeeded.
  metrics::Histogram& start_seconds;
  // Stop calls (each asks for one process's stop).
  metrics::Counter& stops;
  // Runs started again by a restart policy.
  metrics::Counter& restarts;
  // Ends of processes and of runs, by reason: exit_zero, exit_nonzero,
  // signal, oom_kill (a SIGKILL by the OOM killer), lost (its shim died
  // first, so how is unknown).
  metrics::Family<metrics::Counter>& exits;
  // OOM kills in the trees of processes that ended (the cgroup's count).
  metrics::Counter& oom_kills;
  // Output bytes of the processes whose output ended (stdout and stderr).
  metrics::Counter& output_bytes;
  // Output bytes their shims dropped, by cause: process_cap (the oldest
  // segments, past --max_output_bytes), write_error (a full disk, EIO).
  metrics::Family<metrics::Counter>& output_dropped;
};

SupervisorMetrics& Metrics();

// The exits label of an end (see above).
std::string ExitReason(const ExitStatus& exit, bool oom_killed);

// Counts one Start's answer that took `took`.
void CountStart(const absl::Status& status, absl::Duration took);

// Counts what a shim's Closed says it dropped.
void CountOutputDropped(uint64_t capped, uint64_t lost);

}  // namespace pm::supervisor

#endif  // PM_SUPERVISOR_METRICS_H_
