#include "supervisor/spawn.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "supervisor/test_util.h"
#include "common/exit_status.h"
#include "common/status.h"

namespace pm::supervisor {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;


ExitStatus Wait(const SpawnedChild& child) {
  siginfo_t info = {};
  EXPECT_EQ(waitid(static_cast<idtype_t>(P_PIDFD), child.pidfd.get(), &info,
                   WEXITED),
            0);
  return ExitStatus::FromSiginfo(info);
}

pm::v1::StartRequest Shell(const std::string& script) {
  pm::v1::StartRequest request;
  request.set_executable("/bin/sh");
  request.add_args("-c");
  request.add_args(script);
  return request;
}

TEST(SpawnTest, RunsProgramWithArgsAndSeparatePipes) {
  absl::StatusOr<SpawnedChild> child =
      Spawn(Shell("printf 'out:%s' \"$1\"; printf err >&2; exit 3"));
  // $0 is the executable, args follow: add one positional parameter.
  ASSERT_TRUE(child.ok()) << child.status();
  EXPECT_EQ(ReadAll(child->stdout_read.get()), "out:");
  EXPECT_EQ(ReadAll(child->stderr_read.get()), "err");
  EXPECT_EQ(Wait(*child), ExitStatus::Exited(3));
  EXPECT_EQ(child->executable, "/bin/sh");
}

TEST(SpawnTest, EnvIsTheWholeEnvironmentWithDefaultPath) {
  setenv("PM_SPAWN_TEST_LEAK", "leaked", 1);
  pm::v1::StartRequest request = Shell("env | sort");
  (*request.mutable_env())["FOO"] = "bar baz";
  absl::StatusOr<SpawnedChild> child = Spawn(request);
  ASSERT_TRUE(child.ok()) << child.status();
  std::string env = ReadAll(child->stdout_read.get());
  Wait(*child);
  EXPECT_THAT(env, HasSubstr("FOO=bar baz\n"));
  EXPECT_THAT(env, HasSubstr(std::string("PATH=") + kDefaultPath));
  EXPECT_THAT(env, ::testing::Not(HasSubstr("PM_SPAWN_TEST_LEAK")));
}

TEST(SpawnTest, ResolvesNameOnTheProcessPath) {
  pm::v1::StartRequest request;
  request.set_executable("true");
  (*request.mutable_env())["PATH"] = "/nonexistent:/bin:/usr/bin";
  absl::StatusOr<SpawnedChild> child = Spawn(request);
  ASSERT_TRUE(child.ok()) << child.status();
  EXPECT_EQ(child->executable, "/bin/true");
  EXPECT_EQ(Wait(*child), ExitStatus::Exited(0));
}

// A directory of the test's own (TEST_TMPDIR), `name` below it.
std::string MakeTestDir(const std::string& name) {
  const std::string path = std::string(getenv("TEST_TMPDIR")) + "/" + name;
  EXPECT_EQ(mkdir(path.c_str(), 0755), 0) << path;
  return path;
}

// Linux arguments, environment and paths are bytes: Latin-1 ones reach the
// program exactly as sent.
TEST(SpawnTest, ArgumentsEnvAndWorkingDirAreBytes) {
  const std::string dir = MakeTestDir("caf\xe9");
  pm::v1::StartRequest request;
  request.set_executable("/bin/sh");
  for (const char* arg : {"-c", "printf '%s|%s|' \"$1\" \"$NOM\"; pwd", "sh",
                          "caf\xe9"}) {
    request.add_args_bytes(arg);
  }
  pm::v1::EnvVar* var = request.add_env_bytes();
  var->set_name("NOM");
  var->set_value("\xe9t\xe9");
  request.set_working_dir_bytes(dir);
  ASSERT_TRUE(ValidateStartRequest(request).ok());
  absl::StatusOr<SpawnedChild> child = Spawn(request);
  ASSERT_TRUE(child.ok()) << child.status();
  EXPECT_EQ(ReadAll(child->stdout_read.get()),
            "caf\xe9|\xe9t\xe9|" + dir + "\n");
  EXPECT_EQ(Wait(*child), ExitStatus::Exited(0));
  EXPECT_EQ(child->command.working_dir, dir);
}

// The PATH lookup joins bytes: a name and a PATH entry need not be UTF-8.
TEST(SpawnTest, ResolvesANameThatIsNotUtf8OnAPathThatIsNot) {
  const std::string dir = MakeTestDir("bin\xff");
  const std::string program = dir + "/caf\xe9";
  {
    std::ofstream out(program);
    out << "#!/bin/sh\necho ran\n";
  }
  ASSERT_EQ(chmod(program.c_str(), 0755), 0);
  pm::v1::StartRequest request;
  request.set_executable_bytes("caf\xe9");
  pm::v1::EnvVar* path = request.add_env_bytes();
  path->set_name("PATH");
  path->set_value("/nonexistent:" + dir);
  absl::StatusOr<SpawnedChild> child = Spawn(request);
  ASSERT_TRUE(child.ok()) << child.status();
  EXPECT_EQ(child->executable, program);
  EXPECT_EQ(ReadAll(child->stdout_read.get()), "ran\n");
  EXPECT_EQ(Wait(*child), ExitStatus::Exited(0));

  // Its errors name it readably: the bytes that are not UTF-8 as \xNN.
  request.set_executable_bytes("nop\xe9");
  child = Spawn(request);
  EXPECT_EQ(child.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(child.status().message(),
              HasSubstr("execvp(\"nop\\xe9\"): No such file or directory"));
  EXPECT_THAT(child.status().message(), HasSubstr("/bin\\xff"));
}

TEST(SpawnTest, WorkingDirStdinAndSession) {
  pm::v1::StartRequest request = Shell(
      "pwd; cat; ps -o pid=,pgid=,sid= -p $$ | awk '{print ($1==$2 && "
      "$2==$3) ? \"leader\" : \"not leader\"}'");
  request.set_working_dir("/usr");
  absl::StatusOr<SpawnedChild> child = Spawn(request);
  ASSERT_TRUE(child.ok()) << child.status();
  EXPECT_EQ(ReadAll(child->stdout_read.get()), "/usr\nleader\n");
  EXPECT_EQ(Wait(*child), ExitStatus::Exited(0));
}

TEST(SpawnTest, NoFdLeaksAndSignalsReset) {
  // An fd of ours without CLOEXEC must still not reach the child.
  int leaky = open("/dev/null", O_RDONLY);
  ASSERT_GE(leaky, 3);
  signal(SIGUSR1, SIG_IGN);
  sigset_t block;
  sigemptyset(&block);
  sigaddset(&block, SIGUSR2);
  pthread_sigmask(SIG_BLOCK, &block, nullptr);
  absl::StatusOr<SpawnedChild> child = Spawn(Shell(
      "ls /proc/self/fd | sort -n | tr '\\n' ' '; "
      "grep -E '^(SigBlk|SigIgn)' /proc/self/status"));
  signal(SIGUSR1, SIG_DFL);
  pthread_sigmask(SIG_UNBLOCK, &block, nullptr);
  close(leaky);
  ASSERT_TRUE(child.ok()) << child.status();
  std::string out = ReadAll(child->stdout_read.get());
  Wait(*child);
  // 0, 1, 2 and the fd ls opens for /proc/self/fd (3).
  EXPECT_THAT(out, StartsWith("0 1 2 3 Sig"));
  EXPECT_THAT(out, HasSubstr("SigBlk:\t0000000000000000"));
  EXPECT_THAT(out, HasSubstr("SigIgn:\t0000000000000000"));
}

// The child gets the file limit it is given (the supervisor's own before it
// raised it), not the supervisor's, whatever the supervisor has now.
TEST(SpawnTest, TheChildGetsTheFileLimitItIsGiven) {
  rlimit ours;
  ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &ours), 0);
  if (ours.rlim_max < 1000) GTEST_SKIP() << "a hard limit below 1000";
  SpawnOptions options;
  options.file_limit = rlimit{1000, ours.rlim_max};
  absl::StatusOr<SpawnedChild> child = Spawn(Shell("ulimit -Sn; ulimit -Hn"), options);
  ASSERT_TRUE(child.ok()) << child.status();
  EXPECT_EQ(ReadAll(child->stdout_read.get()),
            absl::StrCat("1000\n", ours.rlim_max == RLIM_INFINITY
                                       ? std::string("unlimited")
                                       : absl::StrCat(ours.rlim_max),
                         "\n"));
  EXPECT_EQ(Wait(*child), ExitStatus::Exited(0));
  rlimit after;
  ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &after), 0);
  EXPECT_EQ(after.rlim_cur, ours.rlim_cur) << "the parent's own limit changed";
}

TEST(SpawnTest, AFileLimitTheChildCannotSetIsFailedPrecondition) {
  SpawnOptions options;
  options.file_limit = rlimit{100, 50};  // soft above hard: EINVAL
  absl::StatusOr<SpawnedChild> child = Spawn(Shell("exit 0"), options);
  EXPECT_EQ(child.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(child.status().message(),
            "setrlimit(RLIMIT_NOFILE, {100, 50}): Invalid argument (EINVAL)");
}

// Out of fds at each of the parent's steps (the /dev/null, each pipe, the
// pidfd clone makes): RESOURCE_EXHAUSTED with the errno, and nothing
// opened before the failing step is left open.
TEST(SpawnTest, RunningOutOfFdsAtAnyStepIsResourceExhaustedAndLeaksNothing) {
  const int before = OpenFdCount();
  ASSERT_GT(before, 0);
  const int lowest = LowestFreeFd();
  ASSERT_GE(lowest, 3);
  for (int room = 0; room <= 5; ++room) {
    absl::StatusOr<SpawnedChild> child;
    {
      ScopedFileLimit limit(lowest + room);
      ASSERT_TRUE(limit.ok());
      child = Spawn(Shell("exit 0"));
    }
    EXPECT_EQ(child.status().code(), absl::StatusCode::kResourceExhausted)
        << "with room for " << room << " fds: " << child.status();
    EXPECT_EQ(ErrnoOf(child.status()), EMFILE) << child.status();
    EXPECT_THAT(child.status().message(), HasSubstr("Too many open files (EMFILE)"));
    EXPECT_EQ(OpenFdCount(), before) << "with room for " << room << " fds";
  }
  // With room for all six it runs.
  ScopedFileLimit limit(lowest + 6);
  absl::StatusOr<SpawnedChild> child = Spawn(Shell("exit 0"));
  ASSERT_TRUE(child.ok()) << child.status();
  EXPECT_EQ(Wait(*child), ExitStatus::Exited(0));
}

TEST(SpawnTest, MissingExecutableIsFailedPreconditionWithOsError) {
  pm::v1::StartRequest request;
  request.set_executable("/nope");
  absl::StatusOr<SpawnedChild> child = Spawn(request);
  EXPECT_EQ(child.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(child.status().message(),
            "execve(\"/nope\"): No such file or directory (ENOENT)");
}

TEST(SpawnTest, NameNotOnPathSaysWhereItLooked) {
  pm::v1::StartRequest request;
  request.set_executable("pm-no-such-program");
  (*request.mutable_env())["PATH"] = "/bin:/usr/bin";
  absl::StatusOr<SpawnedChild> child = Spawn(request);
  EXPECT_EQ(child.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(child.status().message(),
              HasSubstr("execvp(\"pm-no-such-program\"): No such file or "
                        "directory (ENOENT)"));
  EXPECT_THAT(child.status().message(), HasSubstr("PATH=/bin:/usr/bin"));
}

TEST(SpawnTest, NotExecutableIsEacces) {
  // No execute bit at all: EACCES even for root.
  std::string path = std::string(getenv("TEST_TMPDIR")) + "/not-executable";
  int fd = open(path.c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(write(fd, "#!/bin/sh\n", 10), 10);
  close(fd);
  pm::v1::StartRequest request;
  request.set_executable(path);
  absl::StatusOr<SpawnedChild> child = Spawn(request);
  EXPECT_EQ(child.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(child.status().message(),
              HasSubstr("execve(\"" + path + "\"): Permission denied (EACCES)"));
}

// No working dir given: "/", never the spawner's own.
TEST(SpawnTest, NoWorkingDirMeansTheRoot) {
  ASSERT_EQ(chdir("/tmp"), 0);
  absl::StatusOr<SpawnedChild> child = Spawn(Shell("pwd"));
  ASSERT_TRUE(child.ok()) << child.status();
  EXPECT_EQ(ReadAll(child->stdout_read.get()), "/\n");
  EXPECT_EQ(Wait(*child), ExitStatus::Exited(0));
}

// A relative executable that is not there: the error says where it was
// looked for.
TEST(SpawnTest, AMissingRelativeExecutableNamesTheWorkingDir) {
  pm::v1::StartRequest request;
  request.set_executable("./no-such-script.sh");
  request.set_working_dir("/usr");
  absl::StatusOr<SpawnedChild> child = Spawn(request);
  EXPECT_EQ(child.status().message(),
            "in the working dir /usr: execve(\"./no-such-script.sh\"): No such file or "
            "directory (ENOENT)");
}

TEST(SpawnTest, BadWorkingDirNamesChdir) {
  pm::v1::StartRequest request = Shell("true");
  request.set_working_dir("/no/such/dir");
  absl::StatusOr<SpawnedChild> child = Spawn(request);
  EXPECT_EQ(child.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(child.status().message(),
            "chdir(\"/no/such/dir\"): No such file or directory (ENOENT)");
}

TEST(ValidateStartRequestTest, RejectsBadInputNamingTheField) {
  pm::v1::StartRequest request;
  EXPECT_THAT(ValidateStartRequest(request).message(),
              HasSubstr("executable is empty"));
  request.set_executable("/bin/true");
  EXPECT_TRUE(ValidateStartRequest(request).ok());

  pm::v1::StartRequest nul = request;
  nul.add_args(std::string("a\0b", 3));
  EXPECT_EQ(ValidateStartRequest(nul).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(ValidateStartRequest(nul).message(), HasSubstr("args[0]"));

  pm::v1::StartRequest eq = request;
  (*eq.mutable_env())["A=B"] = "x";
  EXPECT_THAT(ValidateStartRequest(eq).message(), HasSubstr("contains '='"));

  pm::v1::StartRequest empty = request;
  (*empty.mutable_env())[""] = "x";
  EXPECT_THAT(ValidateStartRequest(empty).message(), HasSubstr("empty name"));

  pm::v1::StartRequest value = request;
  (*value.mutable_env())["A"] = std::string("x\0y", 3);
  EXPECT_EQ(ValidateStartRequest(value).code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(ValidateStartRequestTest, ANodeMustBeANodeNameAndIsNamedInTheError) {
  pm::v1::StartRequest request;
  request.set_executable("/bin/true");
  request.set_node("host-b.example.com");
  EXPECT_TRUE(ValidateStartRequest(request).ok());
  for (const std::string& bad :
       {std::string("b c"), std::string("b/c"), std::string(65, 'b'), std::string(".b")}) {
    request.set_node(bad);
    const absl::Status refused = ValidateStartRequest(request);
    EXPECT_EQ(refused.code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_THAT(refused.message(), HasSubstr("node \"")) << bad;
  }
}

// A probe started /bin/sleep with 100,000 one-byte arguments: the registry
// kept them for the record's life and copied them into every List.
TEST(ValidateStartRequestTest, RefusesACommandOverTheCapsNamingTheFlag) {
  pm::v1::StartRequest request;
  request.set_executable("/bin/sleep");
  for (int i = 0; i < 4096; ++i) request.add_args("1");
  EXPECT_TRUE(ValidateStartRequest(request).ok());
  request.add_args("1");
  absl::Status many = ValidateStartRequest(request);
  EXPECT_EQ(many.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(many.message(), HasSubstr("4097 arguments, over the supervisor's --max_args=4096"));

  request.clear_args();
  request.add_args_bytes(std::string(200 << 10, 'x'));
  EXPECT_TRUE(ValidateStartRequest(request).ok());
  pm::v1::EnvVar* big = request.add_env_bytes();
  big->set_name("BIG");
  big->set_value(std::string(100 << 10, 'y'));
  absl::Status large = ValidateStartRequest(request);
  EXPECT_EQ(large.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(large.message(), HasSubstr("over the supervisor's --max_command_bytes=262144"));
  CommandCaps roomy;
  roomy.max_bytes = 1 << 20;
  EXPECT_TRUE(ValidateStartRequest(request, roomy).ok());
}

TEST(ValidateStartRequestTest, RejectsBothFormsOfAFieldAndANameGivenTwice) {
  pm::v1::StartRequest request = Shell("true");
  request.add_args_bytes("caf\xe9");
  absl::Status status = ValidateStartRequest(request);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("args and args_bytes are both set"));

  request = Shell("true");
  (*request.mutable_env())["LANG"] = "C";
  request.add_env_bytes()->set_name("LANG");
  status = ValidateStartRequest(request);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("env name \"LANG\" is given twice"));
}

TEST(ValidateStartRequestTest, RejectsLimitsOutOfRangeAndUnknownIsolation) {
  pm::v1::StartRequest request = Shell("true");
  request.mutable_limits()->set_cpus(0.001);
  absl::Status status = ValidateStartRequest(request);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("limits.cpus must be in [0.01"));
  request.mutable_limits()->set_cpus(-1);
  EXPECT_EQ(ValidateStartRequest(request).code(),
            absl::StatusCode::kInvalidArgument);
  request.mutable_limits()->set_cpus(0.5);
  EXPECT_TRUE(ValidateStartRequest(request).ok());
  request.mutable_limits()->set_io_weight(10001);
  EXPECT_THAT(ValidateStartRequest(request).message(),
              HasSubstr("limits.io_weight must be in 1..10000"));
  request.mutable_limits()->set_io_weight(100);

  request.add_isolate(pm::v1::ISOLATION_NET);
  EXPECT_TRUE(ValidateStartRequest(request).ok());
  request.add_isolate(static_cast<pm::v1::Isolation>(42));
  status = ValidateStartRequest(request);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("isolate[1]: unknown isolation 42"));
}

// Namespaces need CAP_SYS_ADMIN; CI runs the tests as root.
bool CanIsolate() { return geteuid() == 0; }

TEST(SpawnIsolationTest, PidNamespaceMakesItPidOneWithItsOwnProc) {
  if (!CanIsolate()) GTEST_SKIP() << "namespaces need root";
  pm::v1::StartRequest request =
      Shell("echo $$; ls /proc | grep -c '^[0-9]*$'; readlink /proc/self");
  request.add_isolate(pm::v1::ISOLATION_PID);
  absl::StatusOr<SpawnedChild> child = Spawn(request);
  ASSERT_TRUE(child.ok()) << child.status();
  // sh is 1; ls, grep and readlink run one after another or together: a
  // handful of pids, never the host's.
  const std::string out = ReadAll(child->stdout_read.get());
  EXPECT_THAT(out, ::testing::StartsWith("1\n"));
  std::vector<std::string> lines = absl::StrSplit(out, '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 3u) << out;
  int count = 0;
  ASSERT_TRUE(absl::SimpleAtoi(lines[1], &count));
  EXPECT_LE(count, 4);
  EXPECT_EQ(Wait(*child), ExitStatus::Exited(0));
  // The host's /proc is untouched.
  EXPECT_EQ(access(("/proc/" + std::to_string(getpid())).c_str(), F_OK), 0);
}

TEST(SpawnIsolationTest, NetNamespaceHasOnlyLoopbackAndItIsUp) {
  if (!CanIsolate()) GTEST_SKIP() << "namespaces need root";
  pm::v1::StartRequest request = Shell(
      "tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '; "
      "cat /proc/net/if_inet6 2>/dev/null | grep -c ' lo$' || true");
  request.add_isolate(pm::v1::ISOLATION_NET);
  absl::StatusOr<SpawnedChild> child = Spawn(request);
  ASSERT_TRUE(child.ok()) << child.status();
  const std::string out = ReadAll(child->stdout_read.get());
  std::vector<std::string> lines = absl::StrSplit(out, '\n', absl::SkipEmpty());
  ASSERT_FALSE(lines.empty());
  EXPECT_EQ(lines[0], "lo");  // the only interface
  // ::1 is assigned to lo only once it is up (when IPv6 is on at all).
  if (lines.size() == 2 && access("/proc/net/if_inet6", F_OK) == 0) {
    EXPECT_EQ(lines[1], "1") << out;
  }
  EXPECT_EQ(Wait(*child), ExitStatus::Exited(0));
}

TEST(SpawnIsolationTest, MountNamespaceKeepsMountsInside) {
  if (!CanIsolate()) GTEST_SKIP() << "namespaces need root";
  const std::string dir = std::string(getenv("TEST_TMPDIR")) + "/mnt";
  ASSERT_EQ(mkdir(dir.c_str(), 0755), 0);
  pm::v1::StartRequest request = Shell(
      "mount -t tmpfs none " + dir + " && touch " + dir + "/inside && ls " + dir);
  request.add_isolate(pm::v1::ISOLATION_MOUNT);
  absl::StatusOr<SpawnedChild> child = Spawn(request);
  ASSERT_TRUE(child.ok()) << child.status();
  EXPECT_EQ(ReadAll(child->stdout_read.get()), "inside\n");
  EXPECT_EQ(Wait(*child), ExitStatus::Exited(0));
  // Outside, the directory is still the empty one.
  EXPECT_NE(access((dir + "/inside").c_str(), F_OK), 0);
}

TEST(ExitStatusTest, DescribesItself) {
  EXPECT_EQ(ExitStatus::Exited(3).ToString(), "exited with code 3");
  EXPECT_EQ(ExitStatus::Signaled(SIGKILL).ToString(),
            "killed by signal 9 (SIGKILL)");
  EXPECT_EQ(ExitStatus::Signaled(SIGSEGV, true).ToString(),
            "killed by signal 11 (SIGSEGV) (core dumped)");
  EXPECT_EQ(ExitStatus::Signaled(SIGTERM).ShellCode(), 143);
}

}  // namespace
}  // namespace pm::supervisor
