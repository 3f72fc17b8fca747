// The log_store's Prometheus metrics (README, "Metrics"), read from the
// store at each scrape: followers, output bytes retained on disk, and bytes
// dropped by the total cap.
#ifndef PM_LOG_STORE_METRICS_H_
#define PM_LOG_STORE_METRICS_H_

#include "common/metrics.h"
#include "log_store/log_store.h"

namespace pm::log_store {

// `store` must outlive every Render of `metrics`.
void ExportMetrics(const LogStore& store, metrics::Registry& metrics);

}  // namespace pm::log_store

#endif  // PM_LOG_STORE_METRICS_H_
