// pm: the command line of the process manager. The commands and their flags
// are declared in cli/command_tree.cc and parsed by cli/invocation.cc; the
// commands themselves are in cli/commands.cc. With --gateway they go to a
// gateway through the remote Library client, otherwise to the local
// services' sockets. This file only wires Ctrl+C and pm's environment.
#include <signal.h>
#include <stdio.h>
#include <unistd.h>

#include <iostream>
#include <string>
#include <thread>
#include <vector>

#include "absl/time/time.h"
#include "cli/commands.h"
#include "cli/interrupts.h"
#include "cli/invocation.h"
#include "client/client.h"
#include "common/runtime_dir.h"

extern char** environ;

namespace {

// Ctrl+C and SIGTERM become events: blocked here, before any thread exists
// (gRPC's included), so that only the watcher takes them.
void BlockInterrupts(sigset_t& set) {
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
}

// Hands each signal to the running command; with no handler (or a declined
// one) pm ends as an unhandled SIGINT would have ended it.
void WatchInterrupts(sigset_t set, pm::cli::Interrupts* interrupts) {
  while (true) {
    int sig = 0;
    if (sigwait(&set, &sig) != 0) continue;
    if (!interrupts->Deliver(sig)) _exit(128 + sig);
  }
}

}  // namespace

int main(int argc, char** argv) {
  sigset_t interrupt_signals;
  BlockInterrupts(interrupt_signals);
  pm::cli::Interrupts interrupts;
  std::thread(WatchInterrupts, interrupt_signals, &interrupts).detach();

  pm::cli::GlobalOptions defaults{pm::DefaultRuntimeDir()};
  pm::cli::Environment environment;
  for (char** variable = environ; *variable != nullptr; ++variable) {
    environment.variables.emplace_back(*variable);
  }
  char cwd[4096];
  if (getcwd(cwd, sizeof(cwd)) != nullptr) environment.cwd = cwd;

  pm::cli::Context context{&std::cout, &std::cerr, absl::LocalTimeZone(),
                           &interrupts};
  // The command's client is kept, never destroyed: its channel's teardown
  // and the join of gRPC's threads cost about as much as the call (a third
  // of `pm status`), and the kernel closes the connection as well. Every
  // call has finished by now; what pm printed is flushed before _exit.
  std::unique_ptr<pm::Client> client;
  context.keep_client = &client;
  const int code =
      pm::cli::RunCli(std::vector<std::string>(argv + 1, argv + argc),
                      defaults, environment, context, pm::cli::Connect);
  std::cout.flush();
  std::cerr.flush();
  fflush(nullptr);
  _exit(code);
}
