// The local stack launcher behind `make up` (bazel run //:stack): runs the
// registry, log_store and supervisor in the foreground until Ctrl+C.
#include <signal.h>
#include <stdio.h>
#include <unistd.h>

#include <gflags/gflags.h>

#include "absl/strings/str_cat.h"
#include "common/exit_status.h"
#include "common/runtime_dir.h"
#include "common/server.h"
#include "stack/stack.h"

DEFINE_string(runtime_dir, "",
              "Directory of the services' unix sockets (default: "
              "$PM_RUNTIME_DIR, else $XDG_RUNTIME_DIR/pm, else /tmp/pm-<uid>)");

namespace {

void PrintBanner(const pm::stack::Stack& stack) {
  std::string text = absl::StrCat("\npm stack is up (runtime dir ",
                                   stack.runtime_dir(), ")\n");
  for (const auto& service : stack.services()) {
    absl::StrAppend(&text, "  ", service.name,
                    std::string(12 - service.name.size(), ' '), "pid ",
                    service.pid, "  unix:", service.socket, "\n");
  }
  absl::StrAppend(
      &text,
      "Use it from another terminal (in the repo):\n"
      "  id=$(bazel run //cli:pm -- start -- sh -c 'for i in 1 2 3; do echo "
      "tick $i; sleep 1; done')\n"
      "  bazel run //cli:pm -- logs -f $id\n"
      "  bazel run //cli:pm -- status $id\n"
      "  bazel run //cli:pm -- list\n"
      "Ctrl+C stops everything.\n\n");
  fputs(text.c_str(), stdout);
  fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  // Blocked before any thread exists: the launcher reads them from a
  // signalfd and stops the services in order.
  pm::BlockTerminationSignals();
  gflags::SetUsageMessage("pm stack: runs registry, log_store and supervisor");
  gflags::ParseCommandLineFlags(&argc, &argv, true);

  pm::stack::StackOptions options;
  options.runtime_dir =
      FLAGS_runtime_dir.empty() ? pm::DefaultRuntimeDir() : FLAGS_runtime_dir;
  absl::StatusOr<std::unique_ptr<pm::stack::Stack>> stack =
      pm::stack::Stack::Start(options);
  if (!stack.ok()) {
    fprintf(stderr, "pm: cannot start the stack: %s\n",
            std::string(stack.status().message()).c_str());
    return 1;
  }
  PrintBanner(**stack);

  absl::StatusOr<pm::stack::Stack::Event> event = (*stack)->WaitForSignalOrExit();
  int code = 0;
  if (!event.ok()) {
    fprintf(stderr, "pm: %s\n", std::string(event.status().message()).c_str());
    code = 1;
  } else if (event->signal != 0) {
    fprintf(stderr, "\npm: got %s, stopping supervisor, log_store, registry\n",
            strsignal(event->signal));
  } else {
    fprintf(stderr, "pm: %s %s unexpectedly; stopping the rest\n",
            event->service.c_str(), event->exit->ToString().c_str());
    code = 1;
  }
  absl::Status stopped = (*stack)->StopAll();
  if (!stopped.ok()) {
    fprintf(stderr, "pm: %s\n", std::string(stopped.message()).c_str());
    code = 1;
  } else {
    fprintf(stderr, "pm: stack stopped\n");
  }
  return code;
}
