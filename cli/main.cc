// pm: the command line of the process manager. Global flags with gflags,
// then a subcommand that parses its own flags (cli/invocation.h); the
// commands themselves are in cli/commands.cc. With --gateway they go to a
// gateway through the remote Library client, otherwise to the local
// services' sockets.
#include <gflags/gflags.h>
#include <signal.h>
#include <unistd.h>

#include <iostream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/strip.h"
#include "absl/time/time.h"
#include "cli/commands.h"
#include "cli/interrupts.h"
#include "cli/invocation.h"
#include "common/runtime_dir.h"
#include "common/version.h"

extern char** environ;

DEFINE_string(runtime_dir, "",
              "Directory of the services' unix sockets (default: "
              "$PM_RUNTIME_DIR, else $XDG_RUNTIME_DIR/pm, else /tmp/pm-<uid>)");
DEFINE_string(output, "text",
              "text, or json for start, stop, status, list and wait");
// No --password: a command line is readable by every user (ps, /proc).
DEFINE_string(gateway, "",
              "HOST:PORT of a pm gateway to go through instead of the local "
              "sockets");
DEFINE_string(ca, "", "With --gateway: the CA certificate (PEM)");
DEFINE_string(cert, "", "With --gateway: this client's certificate (PEM)");
DEFINE_string(key, "", "With --gateway: this client's private key (PEM)");
DEFINE_string(user, "", "With --gateway: the user name");
DEFINE_string(password_file, "",
              "With --gateway: the file whose first line is the password "
              "(default: $PM_PASSWORD)");

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

// The name of a global flag as gflags knows it: "runtime_dir" for
// "--runtime_dir=/x".
std::string FlagName(const std::string& arg) {
  absl::string_view name = absl::StripPrefix(absl::StripPrefix(arg, "-"), "-");
  return std::string(name.substr(0, name.find('=')));
}

bool IsHelpFlag(const std::string& name) {
  return name == "h" || absl::StartsWith(name, "help");
}

// Catches what gflags would reject with exit 1 (an unknown flag): bad usage
// exits 2. A help flag anywhere before the command means `pm help`.
bool CheckGlobalFlags(pm::cli::SplitArgs& split) {
  for (size_t i = 0; i < split.global_flags.size(); ++i) {
    const std::string name = FlagName(split.global_flags[i]);
    if (IsHelpFlag(name)) {
      std::vector<std::string> help = {"help"};
      if (!split.command.empty()) help.push_back(split.command[0]);
      split.command = help;
      split.global_flags.clear();
      return true;
    }
    if (pm::cli::IsPasswordFlag(split.global_flags[i])) {
      std::cerr << "pm: " << pm::cli::NoPasswordFlagMessage() << "\n"
                << pm::cli::UsageText("");
      return false;
    }
    gflags::CommandLineFlagInfo info;
    if (!gflags::GetCommandLineFlagInfo(name.c_str(), &info)) {
      std::cerr << "pm: unknown flag " << split.global_flags[i] << "\n"
                << pm::cli::UsageText("");
      return false;
    }
    if (split.global_flags[i].find('=') == std::string::npos &&
        info.type != "bool") {
      if (++i == split.global_flags.size()) {  // its value, as the next word
        std::cerr << "pm: " << split.global_flags[i - 1] << " needs a value\n"
                  << pm::cli::UsageText("");
        return false;
      }
    }
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  sigset_t interrupt_signals;
  BlockInterrupts(interrupt_signals);
  pm::cli::Interrupts interrupts;
  std::thread(WatchInterrupts, interrupt_signals, &interrupts).detach();

  pm::cli::SplitArgs split =
      pm::cli::SplitAtCommand(std::vector<std::string>(argv + 1, argv + argc));
  for (const std::string& flag : split.global_flags) {
    if (FlagName(flag) == "version") {
      std::cout << pm::VersionLine() << "\n";
      return 0;
    }
  }
  if (!CheckGlobalFlags(split)) return pm::cli::kExitUsage;
  std::vector<char*> global_argv = {argv[0]};
  for (std::string& flag : split.global_flags) {
    global_argv.push_back(flag.data());
  }
  int global_argc = static_cast<int>(global_argv.size());
  char** global_argv_data = global_argv.data();
  gflags::SetUsageMessage("pm COMMAND [FLAGS] [ARGS...]; see `pm help`");
  gflags::ParseCommandLineNonHelpFlags(&global_argc, &global_argv_data,
                                       /*remove_flags=*/true);

  pm::cli::GlobalOptions defaults;
  defaults.runtime_dir =
      FLAGS_runtime_dir.empty() ? pm::DefaultRuntimeDir() : FLAGS_runtime_dir;
  defaults.output = FLAGS_output;
  defaults.gateway = FLAGS_gateway;
  defaults.ca_file = FLAGS_ca;
  defaults.cert_file = FLAGS_cert;
  defaults.key_file = FLAGS_key;
  defaults.user = FLAGS_user;
  defaults.password_file = FLAGS_password_file;
  pm::cli::Environment environment;
  for (char** variable = environ; *variable != nullptr; ++variable) {
    environment.variables.emplace_back(*variable);
  }
  char cwd[4096];
  if (getcwd(cwd, sizeof(cwd)) != nullptr) environment.cwd = cwd;

  pm::cli::Context context{&std::cout, &std::cerr, absl::LocalTimeZone(),
                           &interrupts};
  const int code = pm::cli::RunCli(split.command, defaults, environment,
                                   context, pm::cli::Connect);
  std::cout.flush();
  return code;
}
