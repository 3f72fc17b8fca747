// --metrics_listen for the services' mains: the /metrics endpoint of the
// process's metrics::Global(), off unless the flag is set.
//
//   std::unique_ptr<pm::MetricsHttpServer> metrics;
//   if (!pm::ServeMetricsIfAsked(metrics)) return 2;   // logged why
#ifndef PM_COMMON_METRICS_FLAGS_H_
#define PM_COMMON_METRICS_FLAGS_H_

#include <memory>

#include <gflags/gflags_declare.h>

#include "common/metrics_http.h"

DECLARE_string(metrics_listen);

namespace pm {

// With --metrics_listen set, starts its server into `server` and logs where
// it listens; false (logged) when it cannot. True and nothing started when
// the flag is empty.
bool ServeMetricsIfAsked(std::unique_ptr<MetricsHttpServer>& server);

}  // namespace pm

#endif  // PM_COMMON_METRICS_FLAGS_H_
