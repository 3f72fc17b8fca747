#include "log_store/metrics.h"

#include <vector>

namespace pm::log_store {

void ExportMetrics(const LogStore& store, metrics::Registry& metrics) {
  metrics.AddGaugeCallback("pm_log_store_followers", "Output streams following live output",
                           {}, [&store] {
                             return std::vector<metrics::Sample>{
                                 {{}, static_cast<double>(store.follower_count())}};
                           });
  metrics.AddGaugeCallback(
      "pm_log_store_retained_bytes",
      "Bytes of output on disk (segment files) as of the total cap's last run", {},
      [&store] {
        return std::vector<metrics::Sample>{{{}, static_cast<double>(store.retained_bytes())}};
      });
  metrics.AddCounterCallback(
      "pm_log_store_dropped_bytes_total",
      "Bytes of output deleted, by cause (total_cap: --max_total_bytes over every "
      "process's output); readers see them as dropped_before",
      {"cause"}, [&store] {
        return std::vector<metrics::Sample>{
            {{"total_cap"}, static_cast<double>(store.total_cap_deleted_bytes())}};
      });
}

}  // namespace pm::log_store
