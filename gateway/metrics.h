// The gateway's Prometheus metrics (README, "Metrics"), in
// metrics::Global().
#ifndef PM_GATEWAY_METRICS_H_
#define PM_GATEWAY_METRICS_H_

#include "common/metrics.h"

namespace pm::gateway {

struct GatewayMetrics {
  // Calls answered, by method (Start, Stop, GetStatus, List, StreamOutput,
  // ...) and status code (OK, NOT_FOUND, ...).
  metrics::Family<metrics::Counter>& calls;
  // Calls refused before any method ran, by reason: malformed (no usable
  // basic credentials), rejected (an unknown user or a wrong password),
  // throttled (the client or user is blocked after failures).
  metrics::Family<metrics::Counter>& auth_failures;
};

GatewayMetrics& Metrics();

}  // namespace pm::gateway

#endif  // PM_GATEWAY_METRICS_H_
