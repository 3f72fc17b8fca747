#include "common/metrics_flags.h"

#include <gflags/gflags.h>

#include "common/log.h"
#include "common/metrics.h"

DEFINE_string(metrics_listen, "",
              "Serve Prometheus metrics (GET /metrics) on this TCP address, "
              "host:port (e.g. 127.0.0.1:9464; port 0 picks a free one); "
              "empty: off");

namespace pm {

bool ServeMetricsIfAsked(std::unique_ptr<MetricsHttpServer>& server) {
  if (FLAGS_metrics_listen.empty()) return true;
  absl::StatusOr<std::unique_ptr<MetricsHttpServer>> started =
      MetricsHttpServer::Start(FLAGS_metrics_listen, [] { return metrics::Global().Render(); });
  if (!started.ok()) {
    PM_LOG(ERROR) << "--metrics_listen: " << started.status();
    return false;
  }
  server = *std::move(started);
  PM_LOG(INFO) << "metrics on http://" << FLAGS_metrics_listen << "/metrics (port "
               << server->port() << ")";
  return true;
}

}  // namespace pm
