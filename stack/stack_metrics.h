// The whole stack's metrics on one endpoint (README, "Metrics"): the
// launcher's `--metrics_listen` serves its own metrics (services' deaths
// and restarts, and whether each answered this scrape) followed by each
// service's, fetched over its unix socket (pm.internal.v1.Metrics/Scrape).
// Each service names its metrics with its own prefix, so the text stays
// valid concatenated.
//
//   PM_ASSIGN_OR_RETURN(std::unique_ptr<StackMetrics> metrics,
//                       StackMetrics::Start("127.0.0.1:9464",
//                                           {{"registry", socket}, ...}));
//   metrics->OnEvent(event);    // each StackEvent of the launcher
#ifndef PM_STACK_STACK_METRICS_H_
#define PM_STACK_STACK_METRICS_H_

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "absl/types/optional.h"
#include "common/metrics.h"
#include "common/metrics_http.h"
#include "pm/internal/v1/metrics.grpc.pb.h"

namespace pm::stack {

struct StackEvent;  // stack.h

class StackMetrics {
 public:
  struct Service {
    std::string name;
    std::string socket;
  };
  // How long a scrape waits for one service.
  static constexpr absl::Duration kScrapeTimeout = absl::Seconds(2);

  static absl::StatusOr<std::unique_ptr<StackMetrics>> Start(
      const std::string& listen, const std::vector<Service>& services);
  ~StackMetrics();

  int port() const { return server_->port(); }
  void OnEvent(const StackEvent& event);
  // What a scrape answers (also without the HTTP server, for tests).
  std::string Render();

 private:
  struct Backend {
    std::string name;
    std::unique_ptr<pm::internal::v1::Metrics::Stub> stub;
  };
  explicit StackMetrics(const std::vector<Service>& services);

  metrics::Registry registry_;
  metrics::Family<metrics::Counter>& deaths_;
  metrics::Family<metrics::Counter>& restarts_;
  metrics::Family<metrics::Gauge>& up_;
  std::vector<Backend> backends_;
  std::unique_ptr<MetricsHttpServer> server_;  // last: it calls Render
};

}  // namespace pm::stack

#endif  // PM_STACK_STACK_METRICS_H_
