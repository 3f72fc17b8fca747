#include "supervisor/metrics.h"

#include "absl/time/time.h"
#include "common/status_core.h"

namespace pm::supervisor {

SupervisorMetrics& Metrics() {
  static SupervisorMetrics* m = [] {
    metrics::Registry& r = metrics::Global();
    auto* made = new SupervisorMetrics{
        r.AddCounter("pm_supervisor_starts_total", "Start calls answered, by status code",
                     {"code"}),
        r.AddHistogram("pm_supervisor_start_seconds",
                       "Time from a Start call to its answer, for the ones that succeeded",
                       {}, metrics::ExponentialBuckets(0.0005, 2, 14))
            .With({}),
        r.AddCounter("pm_supervisor_stops_total", "Stop calls (one process each)", {})
            .With({}),
        r.AddCounter("pm_supervisor_restarts_total",
                     "Runs started again by a process's restart policy", {})
            .With({}),
        r.AddCounter("pm_supervisor_exits_total",
                     "Ends of processes and of their runs, by reason (exit_zero, "
                     "exit_nonzero, signal, oom_kill, lost)",
                     {"reason"}),
        r.AddCounter("pm_supervisor_oom_kills_total",
                     "OOM kills in the trees of the processes that ended", {})
            .With({}),
        r.AddCounter("pm_supervisor_output_bytes_total",
                     "Output bytes (stdout and stderr) of the processes, counted when "
                     "their output ends",
                     {})
            .With({}),
        r.AddCounter("pm_supervisor_output_dropped_bytes_total",
                     "Output bytes the processes' shims dropped, counted when their output "
                     "ends, by cause (process_cap: --max_output_bytes; write_error: a full "
                     "disk or an I/O error)",
                     {"cause"}),
    };
    for (const char* reason : {"exit_zero", "exit_nonzero", "signal", "oom_kill", "lost"}) {
      made->exits.With({reason});
    }
    for (const char* cause : {"process_cap", "write_error"}) made->output_dropped.With({cause});
    made->starts.With({"OK"});
    return made;
  }();
  return *m;
}

std::string ExitReason(const ExitStatus& exit, bool oom_killed) {
  if (oom_killed) return "oom_kill";
  if (exit.kind == ExitStatus::Kind::kExited) {
    return exit.code == 0 ? "exit_zero" : "exit_nonzero";
  }
  return "signal";
}

void CountOutputDropped(uint64_t capped, uint64_t lost) {
  SupervisorMetrics& m = Metrics();
  m.output_dropped.With({"process_cap"}).Increment(capped);
  m.output_dropped.With({"write_error"}).Increment(lost);
}

void CountStart(const absl::Status& status, absl::Duration took) {
  SupervisorMetrics& m = Metrics();
  m.starts.With({absl::StatusCodeToString(status.code())}).Increment();
  if (status.ok()) m.start_seconds.Observe(absl::ToDoubleSeconds(took));
}

}  // namespace pm::supervisor
