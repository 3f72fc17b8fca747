#include "stack/stack_metrics.h"

#include <chrono>

#include <grpcpp/grpcpp.h>

#include "common/runtime_dir.h"
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
        {service.name, pm::internal::v1::Metrics::NewStub(grpc::CreateChannel(
                           UnixAddress(service.socket), grpc::InsecureChannelCredentials()))});
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
  std::string services;
  for (const Backend& backend : backends_) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() +
                         absl::ToChronoMilliseconds(kScrapeTimeout));
    pm::internal::v1::ScrapeResponse response;
    grpc::Status status =
        backend.stub->Scrape(&context, pm::internal::v1::ScrapeRequest(), &response);
    up_.With({backend.name}).Set(status.ok() ? 1 : 0);
    if (status.ok()) services += response.text();
  }
  return registry_.Render() + services;
}

}  // namespace pm::stack
