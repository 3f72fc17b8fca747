#include "registry/metrics.h"

#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/strip.h"

namespace pm::registry {

void ExportMetrics(const Registry& registry, metrics::Registry& metrics) {
  metrics.AddGaugeCallback(
      "pm_registry_processes",
      "Processes on record by state (running, stopping, backoff, exited, signaled, lost)",
      {"state"}, [&registry] {
        std::vector<metrics::Sample> samples;
        for (const auto& [state, count] : registry.CountByState()) {
          std::string name = absl::AsciiStrToLower(absl::StripPrefix(
              pm::v1::ProcessStatus::State_Name(state), "STATE_"));
          samples.push_back({{name}, static_cast<double>(count)});
        }
        return samples;
      });
}

}  // namespace pm::registry
