// The registry's Prometheus metrics (README, "Metrics"): its records by
// state, read from `registry` at each scrape.
#ifndef PM_REGISTRY_METRICS_H_
#define PM_REGISTRY_METRICS_H_

#include "common/metrics.h"
#include "registry/registry.h"

namespace pm::registry {

// Adds pm_registry_processes{state} to `metrics`; `registry` must outlive
// every Render of it.
void ExportMetrics(const Registry& registry, metrics::Registry& metrics);

}  // namespace pm::registry

#endif  // PM_REGISTRY_METRICS_H_
