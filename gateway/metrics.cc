#include "gateway/metrics.h"

namespace pm::gateway {

GatewayMetrics& Metrics() {
  static GatewayMetrics* m = [] {
    metrics::Registry& r = metrics::Global();
    auto* made = new GatewayMetrics{
        r.AddCounter("pm_gateway_calls_total",
                     "Calls of external clients answered, by method and status code",
                     {"method", "code"}),
        r.AddCounter("pm_gateway_auth_failures_total",
                     "Calls refused by basic authentication, by reason (malformed, "
                     "rejected, throttled)",
                     {"reason"}),
    };
    for (const char* reason : {"malformed", "rejected", "throttled"}) {
      made->auth_failures.With({reason});
    }
    return made;
  }();
  return *m;
}

}  // namespace pm::gateway
