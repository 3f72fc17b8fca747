#include "stack/stack_metrics.h"

#include <chrono>
#include <future>

#include <grpcpp/grpcpp.h>

#include "common/channel.h"
#include "stack/stack.h"

namespace pm::stack {

StackMetrics::StackMetrics(const std::vector<Service>& services)
    : deaths_(registry_.AddCounter("pm_stack_service_deaths_total",
                                   "Services that exited without being asked to, by service",
                                   {"service"})),
      restarts_(registry_.AddCounter("pm_stack_service_restarts_total",
                                     "Services the launcher started again, by service",
                                     {"service"})),
      up_(registry_.AddGauge("pm_stack_service_up",
                             "1 if the service answered this scrape, else 0", {"service"})) {
  for (const Service& service : services) {
    deaths_.With({service.name});
    restarts_.With({service.name});
    backends_.push_back(
        {service.name, pm::internal::v1::Metrics::NewStub(UnixChannel(service.socket))});
  }
}

StackMetrics::~StackMetrics() { server_.reset(); }

absl::StatusOr<std::unique_ptr<StackMetrics>> StackMetrics::Start(
    const std::string& listen, const std::vector<Service>& services) {
  std::unique_ptr<StackMetrics> metrics(new StackMetrics(services));
  StackMetrics* self = metrics.get();
  absl::StatusOr<std::unique_ptr<MetricsHttpServer>> server =
      MetricsHttpServer::Start(listen, [self] { return self->Render(); });
  if (!server.ok()) return server.status();
  metrics->server_ = *std::move(server);
  return metrics;
}

void StackMetrics::OnEvent(const StackEvent& event) {
  if (event.service.empty()) return;
  if (event.kind == StackEvent::Kind::kDied) deaths_.With({event.service}).Increment();
  if (event.kind == StackEvent::Kind::kRestarted) restarts_.With({event.service}).Increment();
}

std::string StackMetrics::Render() {
  // All at once: a service that hangs costs one timeout, not one each.
  std::vector<std::future<absl::optional<std::string>>> scrapes;
  for (const Backend& backend : backends_) {
    scrapes.push_back(std::async(std::launch::async, [&backend]() -> absl::optional<std::string> {
      grpc::ClientContext context;
      // A service just restarted is waited for (within the deadline), not
      // failed at once on the channel's last connection error.
      context.set_wait_for_ready(true);
      context.set_deadline(std::chrono::system_clock::now() +
                           absl::ToChronoMilliseconds(kScrapeTimeout));
      pm::internal::v1::ScrapeResponse response;
      grpc::Status status =
          backend.stub->Scrape(&context, pm::internal::v1::ScrapeRequest(), &response);
      if (!status.ok()) return absl::nullopt;
      return std::move(*response.mutable_text());
    }));
  }
  std::string services;
  for (size_t i = 0; i < backends_.size(); ++i) {
    absl::optional<std::string> text = scrapes[i].get();
    up_.With({backends_[i].name}).Set(text.has_value() ? 1 : 0);
    if (text) services += *text;
  }
  return registry_.Render() + services;
}

}  // namespace pm::stack
