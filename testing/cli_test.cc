// The `pm` command end to end: the real binary, spawned as a user's shell
// would, against a private real stack (testing/test_stack.h). Each test
// reads pm's stdout and stderr through pipes and waits for events (output
// appearing, pm exiting), never for time to pass.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/uuid.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "testing/test_stack.h"

extern char** environ;

namespace pm::testing {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::MatchesRegex;
using ::testing::StartsWith;

// A safety net against a hung pm, not an expectation of speed.
constexpr absl::Duration kTimeout = absl::Seconds(60);

std::string PmBinary() {
  const char* srcdir = getenv("TEST_SRCDIR");
  return absl::StrCat(srcdir != nullptr ? srcdir : ".", "/pm/cli/pm");
}

struct Result {
  // The exit code, or 128 + the signal that killed pm.
  int code = -1;
  std::string out;
  std::string err;
};

// One run of the pm binary. Its stdin is /dev/null; stdout and stderr are
// pipes read here.
class Pm {
 public:
  explicit Pm(const std::vector<std::string>& args) {
    int out[2], err[2];
    if (pipe2(out, O_CLOEXEC) != 0 || pipe2(err, O_CLOEXEC) != 0) {
      ADD_FAILURE() << "pipe2: " << strerror(errno);
      return;
    }
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&actions, out[1], 1);
    posix_spawn_file_actions_adddup2(&actions, err[1], 2);
    // As from a shell: nothing blocked, Ctrl+C's default action.
    posix_spawnattr_t attr;
    posix_spawnattr_init(&attr);
    sigset_t empty, defaults;
    sigemptyset(&empty);
    sigemptyset(&defaults);
    for (int sig : {SIGINT, SIGTERM, SIGPIPE}) sigaddset(&defaults, sig);
    posix_spawnattr_setflags(&attr,
                             POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    posix_spawnattr_setsigmask(&attr, &empty);
    posix_spawnattr_setsigdefault(&attr, &defaults);

    const std::string binary = PmBinary();
    std::vector<char*> argv = {const_cast<char*>(binary.c_str())};
    for (const std::string& arg : args)
      argv.push_back(const_cast<char*>(arg.c_str()));
    argv.push_back(nullptr);
    const int spawned = posix_spawn(&pid_, binary.c_str(), &actions, &attr,
                                    argv.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    posix_spawnattr_destroy(&attr);
    close(out[1]);
    close(err[1]);
    out_fd_ = out[0];
    err_fd_ = err[0];
    if (spawned != 0) {
      ADD_FAILURE() << "posix_spawn(" << binary << "): " << strerror(spawned);
      pid_ = -1;
      return;
    }
    pidfd_ = static_cast<int>(syscall(SYS_pidfd_open, pid_, 0));
    if (pidfd_ < 0) ADD_FAILURE() << "pidfd_open: " << strerror(errno);
  }

  ~Pm() {
    if (pid_ > 0 && !reaped_) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
    for (int fd : {out_fd_, err_fd_, pidfd_}) {
      if (fd >= 0) close(fd);
    }
  }

  pid_t pid() const { return pid_; }

  // Reads until stdout holds `needle`; false at EOF or the safety net.
  bool WaitForStdout(const std::string& needle) {
    const absl::Time deadline = absl::Now() + kTimeout;
    while (result_.out.find(needle) == std::string::npos) {
      if (out_fd_ < 0 || !ReadSome(deadline)) return false;
    }
    return true;
  }

  // Reads stdout and stderr to their end, then reaps pm.
  Result Finish() {
    if (pid_ <= 0 || pidfd_ < 0) return result_;  // spawning failed
    const absl::Time deadline = absl::Now() + kTimeout;
    while (out_fd_ >= 0 || err_fd_ >= 0) {
      if (!ReadSome(deadline)) {
        ADD_FAILURE() << "pm did not finish: stdout " << result_.out
                      << "\nstderr " << result_.err;
        return result_;
      }
    }
    if (!WaitForExit(deadline)) {
      ADD_FAILURE() << "pm closed its output but did not exit";
      return result_;
    }
    int status = 0;
    waitpid(pid_, &status, 0);
    reaped_ = true;
    result_.code =
        WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    return result_;
  }

 private:
  // One poll() over the open pipes and a read of what is ready; false once
  // the deadline has passed.
  bool ReadSome(absl::Time deadline) {
    std::vector<pollfd> fds;
    for (int fd : {out_fd_, err_fd_}) {
      if (fd >= 0) fds.push_back({fd, POLLIN, 0});
    }
    const int64_t ms = absl::ToInt64Milliseconds(deadline - absl::Now());
    if (ms <= 0) return false;
    const int ready = poll(fds.data(), fds.size(), static_cast<int>(ms));
    if (ready < 0 && errno != EINTR) return false;
    for (const pollfd& p : fds) {
      if (p.revents == 0) continue;
      const bool is_out = p.fd == out_fd_;
      char buffer[4096];
      const ssize_t n = read(p.fd, buffer, sizeof(buffer));
      if (n > 0) {
        (is_out ? result_.out : result_.err).append(buffer, n);
      } else if (n == 0 || errno != EINTR) {
        close(p.fd);
        (is_out ? out_fd_ : err_fd_) = -1;
      }
    }
    return true;
  }

  bool WaitForExit(absl::Time deadline) {
    pollfd p = {pidfd_, POLLIN, 0};
    const int64_t ms = absl::ToInt64Milliseconds(deadline - absl::Now());
    return ms > 0 && poll(&p, 1, static_cast<int>(ms)) == 1;
  }

  pid_t pid_ = -1;
  int pidfd_ = -1;
  int out_fd_ = -1;
  int err_fd_ = -1;
  bool reaped_ = false;
  Result result_;
};

const std::map<std::string, std::vector<std::string>> kFlags = {
    {"supervisor", {"--kill_timeout_ms=2000"}},
};

class CliTest : public ::testing::Test {
 protected:
  CliTest() : stack_(kFlags) {}
  void SetUp() override { ASSERT_TRUE(stack_.ok()) << stack_.status(); }

  // `pm --runtime_dir DIR <args>`, as typed at a shell, to its end.
  Result Run(const std::vector<std::string>& args) {
    return Spawn(args)->Finish();
  }
  std::unique_ptr<Pm> Spawn(const std::vector<std::string>& args) {
    std::vector<std::string> all = {"--runtime_dir", stack_.runtime_dir()};
    all.insert(all.end(), args.begin(), args.end());
    return std::make_unique<Pm>(all);
  }
  // `pm start -- <command>`: the UUID it printed.
  std::string Start(const std::vector<std::string>& command) {
    std::vector<std::string> args = {"start", "--"};
    args.insert(args.end(), command.begin(), command.end());
    Result started = Run(args);
    EXPECT_EQ(started.code, 0) << started.err;
    EXPECT_THAT(started.err, IsEmpty());
    EXPECT_THAT(started.out, MatchesRegex("[0-9a-f-]{36}\n"));
    std::string id = started.out.substr(0, started.out.find('\n'));
    EXPECT_TRUE(ValidateProcessId(id).ok()) << id;
    return id;
  }

  TestStack stack_;
};

const char kUuidLine[] =
    "[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}\n";

TEST_F(CliTest, StartPrintsTheUuidThenLogsPrintsTheOutput) {
  Result started = Run({"start", "--env", "A=1", "--env", "B=2", "--", "sh",
                        "-c", "echo \"hello $A$B\"; echo oops >&2"});
  ASSERT_EQ(started.code, 0) << started.err;
  EXPECT_THAT(started.out, MatchesRegex(kUuidLine));
  EXPECT_THAT(started.err, IsEmpty());
  const std::string id = started.out.substr(0, started.out.size() - 1);

  Result waited = Run({"wait", id});
  EXPECT_EQ(waited.code, 0) << waited.err;
  EXPECT_EQ(waited.out, "exited with code 0\n");

  Result logs = Run({"logs", id});
  EXPECT_EQ(logs.code, 0) << logs.err;
  // stdout and stderr both, on stdout.
  EXPECT_THAT(logs.out, AllOf(HasSubstr("hello 12\n"), HasSubstr("oops\n")));
  EXPECT_EQ(logs.out.size(), std::string("hello 12\noops\n").size());
  EXPECT_THAT(logs.err, IsEmpty());
}

TEST_F(CliTest, CtrlCEndsLogsFollowCleanly) {
  const std::string id = Start({"sh", "-c", "echo ready; exec sleep 1000"});
  std::unique_ptr<Pm> logs = Spawn({"logs", "-f", id});
  ASSERT_TRUE(logs->WaitForStdout("ready\n"));
  ASSERT_EQ(kill(logs->pid(), SIGINT), 0);
  Result ended = logs->Finish();
  EXPECT_EQ(ended.code, 130);
  EXPECT_EQ(ended.out, "ready\n");
  EXPECT_THAT(ended.err, IsEmpty());

  // The process was only being read, not touched; a new follower works.
  Result status = Run({"status", id});
  EXPECT_THAT(status.out, HasSubstr("state:        running\n"));
  std::unique_ptr<Pm> again = Spawn({"logs", "--follow", id});
  ASSERT_TRUE(again->WaitForStdout("ready\n"));
  Result stopped = Run({"stop", "--grace", "5s", id});
  EXPECT_EQ(stopped.code, 0) << stopped.err;
  EXPECT_EQ(stopped.out, "killed by signal 15 (SIGTERM)\n");
  // A follower ends by itself once the process has ended.
  Result followed = again->Finish();
  EXPECT_EQ(followed.code, 0) << followed.err;
  EXPECT_EQ(followed.out, "ready\n");
}

TEST_F(CliTest, RunExitsWithTheProcessCode) {
  Result ok = Run({"run", "--", "sh", "-c", "echo out; echo err >&2"});
  EXPECT_EQ(ok.code, 0) << ok.err;
  EXPECT_THAT(ok.out, AllOf(HasSubstr("out\n"), HasSubstr("err\n")));
  EXPECT_THAT(ok.err, IsEmpty());

  Result three = Run({"run", "--", "sh", "-c", "echo three; exit 3"});
  EXPECT_EQ(three.code, 3) << three.err;
  EXPECT_EQ(three.out, "three\n");
  EXPECT_THAT(three.err, IsEmpty());

  Result killed = Run({"run", "--", "sh", "-c", "kill -9 $$"});
  EXPECT_EQ(killed.code, 128 + 9) << killed.err;
  EXPECT_THAT(killed.err, IsEmpty());
}

TEST_F(CliTest, CtrlCDuringRunStopsTheProcess) {
  std::unique_ptr<Pm> run = Spawn({"run", "--grace", "10s", "--", "sh", "-c",
                                   "echo ready; exec sleep 1000"});
  ASSERT_TRUE(run->WaitForStdout("ready\n"));
  ASSERT_EQ(kill(run->pid(), SIGINT), 0);
  Result ended = run->Finish();
  // sleep ended by the stop's SIGTERM: 128 + 15.
  EXPECT_EQ(ended.code, 143) << ended.err;
  EXPECT_THAT(ended.err, StartsWith("pm: stopping "));

  Result list = Run({"list"});
  EXPECT_THAT(list.out, HasSubstr("signaled"));
  EXPECT_THAT(list.out, HasSubstr("SIGTERM"));
}

TEST_F(CliTest, ListShowsWhatWasStartedNewestFirst) {
  const std::string sleeper = Start({"sleep", "1000"});
  const std::string three = Start({"sh", "-c", "exit 3"});
  EXPECT_EQ(Run({"wait", three}).code, 3);

  Result list = Run({"list"});
  ASSERT_EQ(list.code, 0) << list.err;
  std::vector<std::string> lines = absl::StrSplit(list.out, '\n');
  ASSERT_EQ(lines.size(), 4u) << list.out;  // header, two rows, ""
  EXPECT_THAT(lines[0],
              MatchesRegex("UUID +STATE +PID +EXIT +STARTED +COMMAND"));
  EXPECT_THAT(lines[1], StartsWith(three + "  exited "));
  EXPECT_THAT(lines[1], HasSubstr("sh -c 'exit 3'"));
  EXPECT_THAT(lines[2], StartsWith(sleeper + "  running "));
  EXPECT_THAT(lines[2], HasSubstr("sleep 1000"));
  // The columns line up.
  EXPECT_EQ(lines[0].find("STATE"), lines[1].find("exited"));
  EXPECT_EQ(lines[0].find("COMMAND"), lines[1].find("sh -c"));

  Result json = Run({"ps", "--output=json"});
  EXPECT_EQ(json.code, 0) << json.err;
  EXPECT_THAT(json.out,
              AllOf(StartsWith("{\"processes\":["), HasSubstr(sleeper),
                    HasSubstr(three), HasSubstr("\"exitCode\":3")));
  EXPECT_EQ(Run({"stop", "--grace=0", sleeper}).code, 0);
}

TEST_F(CliTest, StatusShowsTheProcStatusWhileRunningAndTheEndAfter) {
  const std::string id = Start({"sleep", "1000"});
  Result running = Run({"status", id});
  ASSERT_EQ(running.code, 0) << running.err;
  EXPECT_THAT(running.out,
              AllOf(HasSubstr(absl::StrCat("id:           ", id, "\n")),
                    HasSubstr("state:        running\n"),
                    HasSubstr("command:      sleep 1000\n"), HasSubstr("pid: "),
                    HasSubstr("rss: "), HasSubstr("threads:      1\n"),
                    HasSubstr("proc status:\n"), HasSubstr("  Name: ")));

  Result stopped = Run({"stop", id});
  EXPECT_EQ(stopped.code, 0) << stopped.err;
  Result ended = Run({"status", "--output", "json", id});
  EXPECT_EQ(ended.code, 0) << ended.err;
  EXPECT_THAT(ended.out, AllOf(HasSubstr("\"state\":\"STATE_SIGNALED\""),
                               HasSubstr("\"signal\":15")));
}

TEST_F(CliTest, FailuresAreOneLineAndExitOne) {
  Result missing = Run({"start", "--", "/nonexistent/program"});
  EXPECT_EQ(missing.code, 1);
  EXPECT_THAT(missing.out, IsEmpty());
  EXPECT_THAT(missing.err, StartsWith("pm: start /nonexistent/program: "));
  EXPECT_THAT(missing.err, HasSubstr("No such file or directory"));
  EXPECT_EQ(std::count(missing.err.begin(), missing.err.end(), '\n'), 1);

  const std::string unknown = "6f1c2e34-8b7a-4c1d-9e2f-0a1b2c3d4e5f";
  Result status = Run({"status", unknown});
  EXPECT_EQ(status.code, 1);
  EXPECT_EQ(status.err, absl::StrCat("pm: status ", unknown,
                                     ": no process with id ", unknown, "\n"));
}

TEST_F(CliTest, BadUsageExitsTwo) {
  for (const std::vector<std::string>& args :
       std::vector<std::vector<std::string>>{{},
                                             {"stop"},
                                             {"logs", "-f"},
                                             {"frobnicate"},
                                             {"start", "--bogus", "--", "true"},
                                             {"start"},
                                             {"--bogus", "list"}}) {
    Result result = Run(args);
    EXPECT_EQ(result.code, 2) << absl::StrJoin(args, " ");
    EXPECT_THAT(result.err, HasSubstr("usage: pm")) << absl::StrJoin(args, " ");
    EXPECT_THAT(result.out, IsEmpty());
  }
  Result help = Run({"stop", "--help"});
  EXPECT_EQ(help.code, 0);
  EXPECT_THAT(help.out, StartsWith("usage: pm stop"));
}

TEST_F(CliTest, StackThatIsNotUpGivesAFriendlyError) {
  const std::string empty = stack_.temp_dir() + "/no-services";
  ASSERT_EQ(mkdir(empty.c_str(), 0700), 0);
  Result list = Pm({"--runtime_dir", empty, "list"}).Finish();
  EXPECT_EQ(list.code, 1);
  EXPECT_THAT(list.out, IsEmpty());
  EXPECT_THAT(list.err, StartsWith("pm: list: registry is unavailable at " +
                                   empty + "/registry.sock"));
  EXPECT_THAT(list.err, HasSubstr("(is the stack up? try 'make up')\n"));
  EXPECT_EQ(std::count(list.err.begin(), list.err.end(), '\n'), 1);

  Result start = Pm({"start", "--runtime_dir=" + empty, "--", "true"}).Finish();
  EXPECT_EQ(start.code, 1);
  EXPECT_THAT(start.err,
              StartsWith("pm: start true: supervisor is unavailable"));
}

// A log_store that keeps only the last 64 KiB of each process's output.
const std::map<std::string, std::vector<std::string>> kCappedFlags = {
    {"log_store", {"--max_bytes_per_process=65536"}},
};

class CliCappedOutputTest : public ::testing::Test {
 protected:
  CliCappedOutputTest() : capped_(kCappedFlags) {}
  void SetUp() override { ASSERT_TRUE(capped_.ok()) << capped_.status(); }
  TestStack capped_;
};

TEST_F(CliCappedOutputTest, LogsReportBytesThatWereNotRetained) {
  Result run = Pm({"--runtime_dir", capped_.runtime_dir(), "run", "--", "sh",
                   "-c", "head -c 300000 /dev/zero | tr '\\0' x"})
                   .Finish();
  ASSERT_EQ(run.code, 0) << run.err;
  Result list = Pm({"--runtime_dir", capped_.runtime_dir(), "list"}).Finish();
  const std::string id = list.out.substr(list.out.find('\n') + 1, 36);

  Result logs =
      Pm({"--runtime_dir", capped_.runtime_dir(), "logs", id}).Finish();
  EXPECT_EQ(logs.code, 0) << logs.err;
  EXPECT_EQ(logs.out, std::string(logs.out.size(), 'x'));
  EXPECT_LE(logs.out.size(), 65536u);
  // Never silent: the gap is on stderr, and with it every byte is counted.
  const uint64_t dropped = 300000 - logs.out.size();
  EXPECT_EQ(logs.err,
            absl::StrCat("pm: [", dropped, " bytes not retained before offset ",
                         dropped, "]\n"));
}

}  // namespace
}  // namespace pm::testing
