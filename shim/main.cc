// pm-shim --control_fd=N --state_dir=DIR --runtime_dir=DIR
// [--max_output_bytes=N] [--segment_bytes=N]: the parent of
// one managed process (see shim.h and the README).
#include <iostream>
#include <string>

#include "common/log.h"
#include "common/version.h"
#include "shim/shim.h"
#include "shim/zygote.h"

int main(int argc, char** argv) {
  pm::SetLogTag("pm-shim");
  if (argc == 2 && std::string(argv[1]) == "--version") {
    std::cout << pm::VersionLine() << "\n";
    return 0;
  }
  absl::StatusOr<pm::shim::ShimFlags> flags = pm::shim::ParseShimFlags(argc, argv);
  if (!flags.ok()) {
    std::cerr << "pm-shim: " << flags.status().message() << "\n";
    return pm::shim::kExitBroken;
  }
  if (flags->zygote) {
    absl::StatusOr<std::optional<pm::shim::ShimFlags>> become = pm::shim::ServeForks(*flags);
    if (!become.ok()) {
      std::cerr << "pm-shim zygote: " << become.status().message() << "\n";
      return pm::shim::kExitBroken;
    }
    if (!become->has_value()) return pm::shim::kExitDone;
    flags = **become;  // a forked child: an idle shim from here on
  }
  absl::StatusOr<std::unique_ptr<pm::shim::Shim>> shim = pm::shim::Shim::Create(*flags);
  if (!shim.ok()) {
    std::cerr << "pm-shim: " << shim.status().message() << "\n";
    return pm::shim::kExitBroken;
  }
  return (*shim)->Run();
}
