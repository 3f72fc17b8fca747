// PmRun: the `pm` binary run as a user's shell runs it, for black-box tests
// (testing/cli_test.cc, testing/gateway/cli_gateway_test.cc). Its stdin is
// /dev/null; its stdout and stderr are pipes read here; nothing is blocked
// and SIGINT has its default action, as from a shell.
//
//   PmRun pm({"--runtime_dir", dir, "logs", "-f", id});
//   ASSERT_TRUE(pm.WaitForStdout("ready\n"));
//   kill(pm.pid(), SIGINT);
//   PmResult ended = pm.Finish();   // ended.code == 130
//
// Tests wait for events (output appearing, pm exiting), never for time to
// pass; kPmTimeout is only a safety net against a hung pm.
#ifndef PM_TESTING_PM_RUNNER_H_
#define PM_TESTING_PM_RUNNER_H_

#include <sys/types.h>

#include <string>
#include <vector>

#include "absl/time/time.h"

namespace pm::testing {

// A safety net against a hung pm, not an expectation of speed.
inline constexpr absl::Duration kPmTimeout = absl::Seconds(60);

// Starts `binary` with `args` as a user's shell would: stdin /dev/null,
// stdout on `stdout_fd` and stderr on `stderr_fd`, no signal blocked and
// each of `defaults` at its default action, in `environment` (null: this
// process's). Returns posix_spawn's error (0: `*pid` runs it). PmRun and
// LauncherProcess start their binaries through it.
int SpawnAsFromShell(const std::string& binary, const std::vector<std::string>& args,
                     int stdout_fd, int stderr_fd, const std::vector<int>& defaults,
                     const std::vector<std::string>* environment, pid_t* pid);

// The pm binary in the test's runfiles (data = ["//cli:pm"]).
std::string PmBinary();

struct PmResult {
  // The exit code, or 128 + the signal that killed pm.
  int code = -1;
  std::string out;
  std::string err;
};

// One run of the pm binary, started by the constructor (a failure to start
// is a test failure).
class PmRun {
 public:
  // `args` after the program name. `environment` ("K=V" each) replaces the
  // test's own when given.
  explicit PmRun(const std::vector<std::string>& args);
  PmRun(const std::vector<std::string>& args,
        const std::vector<std::string>& environment);
  // Kills and reaps pm if Finish() did not.
  ~PmRun();
  PmRun(const PmRun&) = delete;
  PmRun& operator=(const PmRun&) = delete;

  pid_t pid() const { return pid_; }

  // Reads until stdout holds `needle`; false at EOF or the safety net.
  bool WaitForStdout(const std::string& needle);

  // Reads stdout and stderr to their end, then reaps pm.
  PmResult Finish();

 private:
  void Spawn(const std::vector<std::string>& args,
             const std::vector<std::string>* environment);
  // One poll() over the open pipes and a read of what is ready; false once
  // the deadline has passed.
  bool ReadSome(absl::Time deadline);
  bool WaitForExit(absl::Time deadline);

  pid_t pid_ = -1;
  int pidfd_ = -1;
  int out_fd_ = -1;
  int err_fd_ = -1;
  bool reaped_ = false;
  PmResult result_;
};

// The environment of this process, "K=V" each, without the variables named
// in `drop`.
std::vector<std::string> EnvironmentWithout(
    const std::vector<std::string>& drop);

}  // namespace pm::testing

#endif  // PM_TESTING_PM_RUNNER_H_
