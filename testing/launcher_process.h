// LauncherProcess: the real stack launcher (`make up`'s //stack:stack
// binary) run by a test as a child process, on the test's own runtime dir,
// state dir and certificate dir, with its gateway on 127.0.0.1:`port`.
// Unlike TestStack (the launcher's code on a thread of the test), the
// launcher here is a process of its own, so a test can kill it with
// SIGKILL together with its services, then start a new one on the same
// directories, as a user would after a crash.
//
//   LauncherProcess launcher(dir, port);        // waits for "pm stack is up"
//   ASSERT_TRUE(launcher.ok()) << launcher.log();
//   size_t before = launcher.HealthyCount("log_store");
//   launcher.KillServices({"log_store"}, SIGKILL);
//   ASSERT_TRUE(launcher.WaitForHealthy("log_store", before + 1));
//   EXPECT_EQ(launcher.Stop(), pm::ExitStatus::Exited(0));
//
// The launcher's stdout and stderr (its banner, its supervision log and
// its services' logs) go to one pipe that a thread drains into log(); tests
// wait for lines there (events), never for time to pass.
//
// A host of a cluster in a network namespace of the test's: its gateway on
// that namespace's address, the launcher started through nsenter.
//
//   LauncherProcess::Options options;
//   options.dir = dir;
//   options.gateway_host = "10.1.0.2";
//   options.gateway_port = 8443;
//   options.prefix = {"/usr/bin/nsenter", "--net=/run/netns/x", "--"};
//   LauncherProcess host(options);
#ifndef PM_TESTING_LAUNCHER_PROCESS_H_
#define PM_TESTING_LAUNCHER_PROCESS_H_

#include <sys/types.h>

#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "absl/types/optional.h"
#include "common/exit_status.h"
#include "common/fd.h"

namespace pm::testing {

// The stack binary in the runfiles (data = ["//:stack"]) of a test
// ($TEST_SRCDIR) or of a benchmark run by `bazel run` ($RUNFILES_DIR).
std::string StackBinary();

class LauncherProcess {
 public:
  struct Options {
    // <dir>/run, <dir>/state and <dir>/certs are its dirs.
    std::string dir;
    // Where its gateway listens.
    std::string gateway_host = "127.0.0.1";
    int gateway_port = 0;
    // After the launcher's own flags (a flag given twice: the last one
    // counts).
    std::vector<std::string> extra_args;
    // A command that runs the launcher with its arguments (e.g. nsenter);
    // it must exec the launcher in its own process (pid() is the
    // launcher's). Empty: the launcher is spawned directly.
    std::vector<std::string> prefix;
  };

  // Starts `stack --runtime_dir=<dir>/run --state_dir=<dir>/state
  // --certs_dir=<dir>/certs --gateway_listen=<gateway_host>:<gateway_port>`
  // and waits until it prints its banner (every service healthy). ok()
  // says whether it did.
  explicit LauncherProcess(Options options);
  // The same with the gateway on 127.0.0.1:`gateway_port`.
  LauncherProcess(const std::string& dir, int gateway_port,
                  const std::vector<std::string>& extra_args = {});
  // Stop() if the test did not, or reaps it if it was killed.
  ~LauncherProcess();
  LauncherProcess(const LauncherProcess&) = delete;
  LauncherProcess& operator=(const LauncherProcess&) = delete;

  bool ok() const { return up_; }
  pid_t pid() const { return pid_; }
  std::string runtime_dir() const { return options_.dir + "/run"; }
  std::string state_dir() const { return options_.dir + "/state"; }
  std::string certs_dir() const { return options_.dir + "/certs"; }
  std::string gateway_target() const;

  // The pid of the running service `name` (a child of the launcher with
  // that command name); -1 if there is none.
  pid_t ServicePid(const std::string& name) const;
  // Sends `sig` to every service named, through pidfds opened first, so
  // that they are hit as nearly at once as the kernel allows. False (and a
  // test failure) when one is not running.
  bool KillServices(const std::vector<std::string>& names, int sig);

  // How many times the launcher said `name` is healthy again.
  size_t HealthyCount(const std::string& name);
  // Waits until that count reaches `n` (60 s safety net).
  bool WaitForHealthy(const std::string& name, size_t n);
  // Waits until a line holding `needle` has appeared `n` times in the log
  // (60 s safety net, or the launcher's output ending).
  bool WaitForLines(const std::string& needle, size_t n);

  // SIGTERM (the launcher stops every service in order), then waits for it
  // to exit; the exit status, or nullopt if it did not exit in 60 s.
  absl::optional<pm::ExitStatus> Stop();
  // SIGKILL to the launcher alone, and reaps it.
  void Kill();
  // SIGKILL to the launcher and every service at once (as a crash of the
  // host's pm would end them), then waits until each is gone and reaps the
  // launcher. The shims, and the processes they run, are left alone. False
  // (and a test failure) when one of them could not be signalled or did
  // not end.
  bool KillWithServices();
  // Everything the launcher and its services wrote.
  std::string log();

 private:
  void Spawn(const std::vector<std::string>& args);
  void Drain();
  size_t CountLinesLocked(const std::function<bool(absl::string_view)>& match)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::optional<pm::ExitStatus> Reap(absl::Duration timeout);
  // A pidfd of each running service of `names`; a test failure (and
  // `all` false) for one that is not running.
  std::vector<pm::Fd> ServicePidfds(const std::vector<std::string>& names, bool& all);

  const Options options_;
  pid_t pid_ = -1;
  int pidfd_ = -1;
  bool up_ = false;
  bool reaped_ = false;
  std::thread drainer_;

  absl::Mutex mu_;
  std::string log_ ABSL_GUARDED_BY(mu_);
  bool log_ended_ ABSL_GUARDED_BY(mu_) = false;
  int log_fd_ = -1;  // read end; owned by the drainer thread once started
  int stop_fd_ = -1;  // eventfd: the destructor ends the drainer
};

}  // namespace pm::testing

#endif  // PM_TESTING_LAUNCHER_PROCESS_H_
