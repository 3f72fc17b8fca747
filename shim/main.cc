// pm-shim --control_fd=N --state_dir=DIR --runtime_dir=DIR
// [--max_output_bytes=N] [--segment_bytes=N]: the parent of
// one managed process (see shim.h and the README).
#include <iostream>

#include "common/log.h"
#include "shim/shim.h"

int main(int argc, char** argv) {
  pm::SetLogTag("pm-shim");
  absl::StatusOr<pm::shim::ShimFlags> flags = pm::shim::ParseShimFlags(argc, argv);
  if (!flags.ok()) {
    std::cerr << "pm-shim: " << flags.status().message() << "\n";
    return pm::shim::kExitBroken;
  }
  absl::StatusOr<std::unique_ptr<pm::shim::Shim>> shim = pm::shim::Shim::Create(*flags);
  if (!shim.ok()) {
    std::cerr << "pm-shim: " << shim.status().message() << "\n";
    return pm::shim::kExitBroken;
  }
  return (*shim)->Run();
}
