#include "cli/invocation.h"

#include <unistd.h>

#include <fstream>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "cli/command_tree.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace pm::cli {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Pair;
using ::testing::UnorderedElementsAre;

GlobalOptions Defaults() {
  GlobalOptions defaults;
  defaults.runtime_dir = "/run/pm";
  return defaults;
}

Environment TestEnvironment() {
  return {{"HOME=/home/u", "PATH=/usr/bin:/bin", "EMPTY="}, "/home/u/src"};
}

// Parses `args` as pm does (the first word's command's tree first), and
// checks that the whole tree parses them the same: every line of these
// tests is a case of that too.
absl::StatusOr<Invocation> ParseBothWays(const std::vector<std::string>& args) {
  std::string command, whole_command;
  absl::StatusOr<Invocation> invocation =
      ParseInvocation(args, Defaults(), TestEnvironment(), &command);
  absl::StatusOr<Invocation> whole = ParseInvocation(
      args, Defaults(), TestEnvironment(), &whole_command, TreeScope::kWhole);
  EXPECT_EQ(command, whole_command);
  EXPECT_EQ(invocation.status(), whole.status());
  if (invocation.ok() && whole.ok()) {
    EXPECT_EQ(invocation->command, whole->command);
    EXPECT_EQ(invocation->id, whole->id);
    EXPECT_EQ(invocation->ids, whole->ids);
    EXPECT_EQ(invocation->help_topic, whole->help_topic);
    // (The whole tree's start flags make start's empty limits and restart
    // as they are declared; a command other than start and run never reads
    // them.)
    if (invocation->command == Command::kStart || invocation->command == Command::kRun) {
      EXPECT_EQ(invocation->start.ShortDebugString(), whole->start.ShortDebugString());
    }
    EXPECT_EQ(invocation->list.ShortDebugString(), whole->list.ShortDebugString());
    EXPECT_EQ(invocation->watch.ShortDebugString(), whole->watch.ShortDebugString());
    EXPECT_EQ(invocation->connection.Describe(), whole->connection.Describe());
    EXPECT_EQ(invocation->grace, whole->grace);
    EXPECT_EQ(invocation->tail_lines, whole->tail_lines);
    EXPECT_EQ(invocation->follow, whole->follow);
  }
  return invocation;
}

Invocation MustParse(const std::vector<std::string>& args) {
  absl::StatusOr<Invocation> invocation = ParseBothWays(args);
  EXPECT_TRUE(invocation.ok()) << invocation.status();
  return invocation.ok() ? *invocation : Invocation();
}

// The message of a usage error (and that it is one).
std::string UsageError(const std::vector<std::string>& args) {
  absl::StatusOr<Invocation> invocation = ParseBothWays(args);
  EXPECT_EQ(invocation.status().code(), absl::StatusCode::kInvalidArgument);
  return std::string(invocation.status().message());
}

TEST(InvocationTest, StartTakesRepeatedEnvAndTheCommandVerbatim) {
  Invocation invocation = MustParse({"start", "--env", "A=1", "--env=B=x=y",
                                     "--", "sh", "-c", "echo $A", "--env"});
  EXPECT_EQ(invocation.command, Command::kStart);
  EXPECT_EQ(invocation.start.executable(), "sh");
  EXPECT_THAT(invocation.start.args(), ElementsAre("-c", "echo $A", "--env"));
  EXPECT_THAT(invocation.start.env(),
              UnorderedElementsAre(Pair("A", "1"), Pair("B", "x=y")));
  EXPECT_EQ(invocation.connection.runtime_dir, "/run/pm");
  // Where pm was typed, as in a shell.
  EXPECT_EQ(invocation.start.working_dir(), "/home/u/src");
}

TEST(InvocationTest, EnvFileLinesGoBeforeEnvFlagsAndErrorsNameTheLine) {
  char path[] = "/tmp/pm_env_file.XXXXXX";
  const int fd = mkstemp(path);
  ASSERT_GE(fd, 0);
  const std::string text =
      "# a comment\n\nA=1\nB=from the file\r\nHOME\n  # indented comment\nC=x=y\n";
  ASSERT_EQ(write(fd, text.data(), text.size()), static_cast<ssize_t>(text.size()));
  close(fd);
  Invocation invocation = MustParse({"start", "--env-file", path, "--env", "B=flag", "--", "true"});
  EXPECT_THAT(invocation.start.env(),
              UnorderedElementsAre(Pair("A", "1"), Pair("B", "flag"), Pair("HOME", "/home/u"),
                                   Pair("C", "x=y")));

  const std::string bad = "A=1\nNOT_SET_ANYWHERE\n";
  std::ofstream(path, std::ios::trunc) << bad;
  absl::StatusOr<Invocation> refused =
      ParseInvocation({"start", "--env-file", path, "--", "true"}, Defaults(), TestEnvironment());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(refused.status().message(),
              HasSubstr(absl::StrCat("--env-file ", path, " line 2: NOT_SET_ANYWHERE is not set")));
  unlink(path);

  absl::StatusOr<Invocation> missing =
      ParseInvocation({"start", "--env-file", "/no/such/file", "--", "true"}, Defaults(),
                      TestEnvironment());
  EXPECT_THAT(missing.status().message(), HasSubstr("--env-file /no/such/file: open"));
}

// Found by review: a bad env file read from a pipe was read a second time
// (by the whole command tree, after the first tree's parse failed on it),
// found empty and accepted. It is read once, and its error stands.
TEST(InvocationTest, ABadEnvFileFromAPipeIsRefusedNotReadTwice) {
  int pipe_fds[2];
  ASSERT_EQ(pipe(pipe_fds), 0);
  const std::string bad = "A=1\nNOT_SET_ANYWHERE\n";
  ASSERT_EQ(write(pipe_fds[1], bad.data(), bad.size()), static_cast<ssize_t>(bad.size()));
  close(pipe_fds[1]);
  const std::string path = absl::StrCat("/dev/fd/", pipe_fds[0]);
  absl::StatusOr<Invocation> refused = ParseInvocation(
      {"start", "--env-file", path, "--", "true"}, Defaults(), TestEnvironment());
  close(pipe_fds[0]);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(refused.status().message(), HasSubstr("line 2: NOT_SET_ANYWHERE is not set"));
}

// A file without end (or just huge) is refused at 1 MiB, not read forever.
TEST(InvocationTest, AnEnvFileThatNeverEndsIsRefusedAtItsCap) {
  absl::StatusOr<Invocation> endless =
      ParseInvocation({"start", "--env-file", "/dev/zero", "--", "true"}, Defaults(),
                      TestEnvironment());
  EXPECT_EQ(endless.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(endless.status().message(),
              HasSubstr("--env-file /dev/zero: over 1048576 bytes"));
}

TEST(InvocationTest, WhatIsNotUtf8GoesInTheBytesForms) {
  Invocation latin1 = MustParse({"start", "--env", "NOM=caf\xe9", "--env",
                                 "LANG=C", "--cwd", "/tmp/caf\xe9", "--",
                                 "printf", "%s", "caf\xe9"});
  EXPECT_EQ(latin1.start.executable(), "printf");
  EXPECT_THAT(latin1.start.args(), IsEmpty());
  EXPECT_THAT(latin1.start.args_bytes(), ElementsAre("%s", "caf\xe9"));
  EXPECT_THAT(latin1.start.env(), UnorderedElementsAre(Pair("LANG", "C")));
  ASSERT_EQ(latin1.start.env_bytes_size(), 1);
  EXPECT_EQ(latin1.start.env_bytes(0).name(), "NOM");
  EXPECT_EQ(latin1.start.env_bytes(0).value(), "caf\xe9");
  EXPECT_TRUE(latin1.start.working_dir().empty());
  EXPECT_EQ(latin1.start.working_dir_bytes(), "/tmp/caf\xe9");

  // A relative --cwd joins pm's own directory, bytes and all.
  Invocation relative =
      MustParse({"start", "--cwd", "\xe9", "--", "/opt/\xff/run"});
  EXPECT_EQ(relative.start.working_dir_bytes(), "/home/u/src/\xe9");
  EXPECT_TRUE(relative.start.executable().empty());
  EXPECT_EQ(relative.start.executable_bytes(), "/opt/\xff/run");

  // UTF-8 stays in the string forms.
  Invocation utf8 = MustParse({"run", "--cwd", "/tmp/caf\xc3\xa9", "--", "echo",
                               "caf\xc3\xa9"});
  EXPECT_THAT(utf8.start.args(), ElementsAre("caf\xc3\xa9"));
  EXPECT_THAT(utf8.start.args_bytes(), IsEmpty());
  EXPECT_EQ(utf8.start.working_dir(), "/tmp/caf\xc3\xa9");
}

TEST(InvocationTest, AnInheritedVariableThatIsNotUtf8GoesInEnvBytes) {
  absl::StatusOr<Invocation> invocation =
      ParseInvocation({"start", "--inherit-env", "--", "env"}, Defaults(),
                      {{"HOME=/home/u", "NOM=caf\xe9", "N\xe9=1"}, ""});
  ASSERT_TRUE(invocation.ok()) << invocation.status();
  EXPECT_THAT(invocation->start.env(),
              UnorderedElementsAre(Pair("HOME", "/home/u")));
  ASSERT_EQ(invocation->start.env_bytes_size(), 2);
  EXPECT_EQ(invocation->start.env_bytes(0).name(), "NOM");
  EXPECT_EQ(invocation->start.env_bytes(1).name(), "N\xe9");
}

TEST(InvocationTest, StartCommandBeginsAtTheFirstWordWithoutDoubleDash) {
  Invocation invocation = MustParse({"start", "ls", "-l", "--cwd", "/"});
  EXPECT_EQ(invocation.start.executable(), "ls");
  EXPECT_THAT(invocation.start.args(), ElementsAre("-l", "--cwd", "/"));
  // --cwd went to ls: the working dir is pm's own.
  EXPECT_EQ(invocation.start.working_dir(), "/home/u/src");
}

TEST(InvocationTest, InheritEnvCopiesOursAndEnvOverrides) {
  Invocation invocation =
      MustParse({"start", "--inherit-env", "--env", "HOME=/tmp", "--", "env"});
  EXPECT_THAT(
      invocation.start.env(),
      UnorderedElementsAre(Pair("HOME", "/tmp"), Pair("PATH", "/usr/bin:/bin"),
                           Pair("EMPTY", "")));
}

TEST(InvocationTest, EnvWithoutValueCopiesThatVariable) {
  Invocation invocation = MustParse({"start", "--env", "PATH", "--", "env"});
  EXPECT_THAT(invocation.start.env(),
              UnorderedElementsAre(Pair("PATH", "/usr/bin:/bin")));
  EXPECT_THAT(UsageError({"start", "--env", "NOPE", "--", "env"}),
              HasSubstr("NOPE is not set"));
  EXPECT_THAT(UsageError({"start", "--env", "=1", "--", "env"}),
              HasSubstr("the name is empty"));
}

TEST(InvocationTest, InheritEnvLeavesThePasswordOut) {
  const Environment environment = {{"HOME=/h", "PM_PASSWORD=s3cret"}, "/"};
  absl::StatusOr<Invocation> inherited = ParseInvocation(
      {"start", "--inherit-env", "--", "env"}, Defaults(), environment);
  ASSERT_TRUE(inherited.ok()) << inherited.status();
  EXPECT_THAT(inherited->start.env(), UnorderedElementsAre(Pair("HOME", "/h")));
  // Asked for by name, it is passed on.
  absl::StatusOr<Invocation> asked = ParseInvocation(
      {"start", "--env", "PM_PASSWORD", "--", "env"}, Defaults(), environment);
  ASSERT_TRUE(asked.ok()) << asked.status();
  EXPECT_THAT(asked->start.env(),
              UnorderedElementsAre(Pair("PM_PASSWORD", "s3cret")));
}

TEST(InvocationTest, StartTakesLimitsAndIsolation) {
  Invocation invocation =
      MustParse({"run", "--memory", "256M", "--cpus=0.5", "--pids", "64",
                 "--io-weight=200", "--isolate=pid,net", "--isolate",
                 "mount,pid", "--", "make", "--memory", "1"});
  const pm::v1::Limits& limits = invocation.start.limits();
  EXPECT_EQ(limits.memory_bytes(), 256u << 20);
  EXPECT_EQ(limits.cpus(), 0.5);
  EXPECT_EQ(limits.pids(), 64u);
  EXPECT_EQ(limits.io_weight(), 200u);
  EXPECT_THAT(invocation.start.isolate(),
              ElementsAre(pm::v1::ISOLATION_PID, pm::v1::ISOLATION_NET,
                          pm::v1::ISOLATION_MOUNT));
  // The command's own flags are its own.
  EXPECT_THAT(invocation.start.args(), ElementsAre("--memory", "1"));
  EXPECT_EQ(MustParse({"start", "--io_weight", "5", "--", "ls"})
                .start.limits()
                .io_weight(),
            5u);
}

TEST(InvocationTest, StartWithoutLimitsSendsNone) {
  Invocation invocation = MustParse({"start", "--", "ls"});
  EXPECT_FALSE(invocation.start.has_limits());
  EXPECT_THAT(invocation.start.isolate(), IsEmpty());
}

TEST(InvocationTest, BadLimitsAreUsageErrors) {
  EXPECT_THAT(UsageError({"start", "--memory", "big", "--", "ls"}),
              HasSubstr("--memory takes a size like 256M"));
  EXPECT_THAT(UsageError({"start", "--memory=0", "--", "ls"}),
              HasSubstr("--memory 0 is no size"));
  EXPECT_THAT(UsageError({"run", "--cpus=-1", "--", "ls"}),
              HasSubstr("--cpus takes a number of cores"));
  EXPECT_THAT(UsageError({"run", "--cpus=0", "--", "ls"}),
              HasSubstr("--cpus 0 is out of range"));
  EXPECT_THAT(UsageError({"run", "--pids=0", "--", "ls"}),
              HasSubstr("--pids takes a whole number"));
  EXPECT_THAT(UsageError({"run", "--io-weight=20000", "--", "ls"}),
              HasSubstr("--io-weight takes a whole number from 1 to 10000"));
  EXPECT_THAT(UsageError({"run", "--isolate=user", "--", "ls"}),
              HasSubstr("--isolate takes a comma-separated list"));
}

TEST(InvocationTest, RelativeCwdIsResolvedWhereTheUserIs) {
  EXPECT_EQ(
      MustParse({"start", "--cwd", "build", "--", "ls"}).start.working_dir(),
      "/home/u/src/build");
  EXPECT_EQ(MustParse({"start", "--cwd=/var", "--", "ls"}).start.working_dir(),
            "/var");
}

TEST(InvocationTest, StartWithoutCommandIsAUsageError) {
  EXPECT_THAT(UsageError({"start"}), HasSubstr("missing the command"));
  EXPECT_THAT(UsageError({"start", "--env", "A=1", "--"}),
              HasSubstr("missing the command"));
  EXPECT_EQ(UsageError({"run", "", "x"}), "run: the executable is an empty word");
  EXPECT_THAT(UsageError({"run", "--bogus", "--", "ls"}),
              HasSubstr("run: unknown flag --bogus"));
}

TEST(InvocationTest, IdCommandsNeedExactlyOneUuid) {
  EXPECT_EQ(UsageError({"stop"}),
            "stop: missing the process (its UUID, its name or a unique prefix of its UUID)");
  EXPECT_EQ(UsageError({"status"}),
            "status: missing the process (its UUID, its name or a unique prefix of its UUID)");
  EXPECT_EQ(UsageError({"logs", "-f"}),
            "logs: missing the process (its UUID, its name or a unique prefix of its UUID)");
  EXPECT_EQ(UsageError({"wait"}),
            "wait: missing the process (its UUID, its name or a unique prefix of its UUID)");
  EXPECT_EQ(UsageError({"status", "a", "b"}),
            "status: unexpected argument \"b\"");
  EXPECT_EQ(UsageError({"list", "x"}), "list: unexpected argument \"x\"");
  EXPECT_EQ(MustParse({"status", "abc"}).id, "abc");
}

TEST(InvocationTest, Grace) {
  EXPECT_FALSE(MustParse({"stop", "id"}).grace.has_value());
  EXPECT_EQ(MustParse({"stop", "--grace", "2s", "id"}).grace, absl::Seconds(2));
  EXPECT_EQ(MustParse({"stop", "--grace=500ms", "id"}).grace,
            absl::Milliseconds(500));
  EXPECT_EQ(MustParse({"stop", "--grace=3", "id"}).grace, absl::Seconds(3));
  EXPECT_EQ(MustParse({"stop", "--grace=0", "id"}).grace, absl::ZeroDuration());
  EXPECT_EQ(MustParse({"run", "--grace=1m", "--", "ls"}).grace,
            absl::Minutes(1));
  EXPECT_THAT(UsageError({"stop", "--grace=soon", "id"}),
              HasSubstr("--grace takes a duration"));
  EXPECT_THAT(UsageError({"stop", "--grace=-1s", "id"}),
              HasSubstr("out of range"));
}

TEST(InvocationTest, GraceAboveTheMaximumIsRefused) {
  EXPECT_EQ(MustParse({"stop", "--grace=1h", "id"}).grace, absl::Hours(1));
  EXPECT_EQ(MustParse({"stop", "--grace=0s", "id"}).grace, absl::ZeroDuration());
  for (const char* grace : {"--grace=3601s", "--grace=1h0m0.001s",
                            "--grace=4294967295ms", "--grace=9999999999999"}) {
    EXPECT_THAT(UsageError({"stop", grace, "id"}),
                HasSubstr("is above the maximum, 1h"))
        << grace;
  }
  EXPECT_THAT(UsageError({"run", "--grace=2h", "--", "ls"}),
              HasSubstr("--grace 2h is above the maximum, 1h"));
}

TEST(InvocationTest, Logs) {
  Invocation plain = MustParse({"logs", "id"});
  EXPECT_EQ(plain.command, Command::kLogs);
  EXPECT_FALSE(plain.follow);
  EXPECT_TRUE(plain.from_start);
  Invocation follow = MustParse({"logs", "-f", "--tail=now", "id"});
  EXPECT_TRUE(follow.follow);
  EXPECT_FALSE(follow.from_start);
  EXPECT_TRUE(MustParse({"logs", "id", "--follow", "--from-start"}).follow);
  EXPECT_THAT(UsageError({"logs", "--tail=now", "--from-start", "id"}),
              HasSubstr("contradict"));

  Invocation tail = MustParse({"logs", "--tail", "20", "-t", "--stderr", "id"});
  EXPECT_EQ(tail.tail_lines, 20u);
  EXPECT_TRUE(tail.timestamps);
  EXPECT_TRUE(tail.stderr_only);
  EXPECT_FALSE(tail.stdout_only);
  EXPECT_TRUE(tail.from_start);
  EXPECT_FALSE(MustParse({"logs", "--tail=all", "id"}).tail_lines.has_value());
  EXPECT_THAT(UsageError({"logs", "--tail=lots", "id"}),
              HasSubstr("--tail takes a number of lines"));
  EXPECT_THAT(UsageError({"logs", "--tail=1000001", "id"}),
              HasSubstr("--tail takes a number of lines"));

  const absl::Time before = absl::Now();
  Invocation since = MustParse({"logs", "--since", "10m", "id"});
  ASSERT_TRUE(since.since.has_value());
  EXPECT_LE(*since.since, before - absl::Minutes(10) + absl::Seconds(5));
  EXPECT_GE(*since.since, before - absl::Minutes(10) - absl::Seconds(5));
  Invocation at = MustParse({"logs", "--since", "2026-12-04T08:00:00Z",
                             "--until", "2026-12-04T09:00:00.5+01:00", "id"});
  EXPECT_EQ(*at.since, absl::FromUnixSeconds(1796371200));
  EXPECT_EQ(*at.until, absl::FromUnixSeconds(1796371200) + absl::Milliseconds(500));
  EXPECT_THAT(UsageError({"logs", "--since", "yesterday", "id"}),
              HasSubstr("--since takes a duration ago"));
  EXPECT_THAT(UsageError({"logs", "--since", "1m", "--until", "2m", "id"}),
              HasSubstr("--until is before --since"));
  EXPECT_THAT(UsageError({"logs", "--tail=now", "--since", "1m", "id"}),
              HasSubstr("contradict"));
}

TEST(InvocationTest, StartAndRunTakeTheNodeToRunOn) {
  EXPECT_EQ(MustParse({"start", "--", "true"}).start.node(), "");
  EXPECT_EQ(MustParse({"start", "--node", "b", "--", "true"}).start.node(), "b");
  Invocation run = MustParse({"run", "--node=host-2.example.com", "true"});
  EXPECT_EQ(run.command, Command::kRun);
  EXPECT_EQ(run.start.node(), "host-2.example.com");
  EXPECT_EQ(run.start.executable(), "true");
  // After the command, --node is the command's.
  EXPECT_THAT(MustParse({"start", "sh", "--node", "b"}).start.args(),
              ElementsAre("--node", "b"));
  EXPECT_EQ(UsageError({"start", "--node", "a/b", "--", "true"}),
            "start: --node: node \"a/b\" has '/': only letters, digits and _ "
            ". - are allowed");
  EXPECT_EQ(UsageError({"run", "--node=", "true"}), "run: --node is empty");
}

TEST(InvocationTest, ListTakesANodeByFlagOrFilter) {
  EXPECT_EQ(MustParse({"list"}).list.node(), "");
  EXPECT_EQ(MustParse({"list", "--node", "b"}).list.node(), "b");
  EXPECT_EQ(MustParse({"ps", "-a", "--filter", "node=b"}).list.node(), "b");
  // Both, naming one node: that node.
  EXPECT_EQ(MustParse({"list", "--node=b", "--filter=node=b"}).list.node(), "b");
  EXPECT_EQ(UsageError({"list", "--node=a", "--filter=node=b"}),
            "--filter node=b: a process is on one node: two different "
            "nodes match nothing");
  EXPECT_THAT(UsageError({"list", "--filter", "node=a b"}),
              HasSubstr("--filter node=a b: node \"a b\" has ' '"));
  EXPECT_THAT(UsageError({"list", "--node", "-x"}), HasSubstr("--node"));
}

TEST(InvocationTest, TheStateFilterTakesUnknownAndBackoff) {
  EXPECT_THAT(MustParse({"list", "--filter", "state=unknown"}).list.states(),
              ElementsAre(pm::v1::ProcessStatus::STATE_UNKNOWN));
  EXPECT_THAT(MustParse({"list", "--filter", "state=backoff",
                         "--filter", "state=unknown"}).list.states(),
              ElementsAre(pm::v1::ProcessStatus::STATE_BACKOFF,
                          pm::v1::ProcessStatus::STATE_UNKNOWN));
  EXPECT_THAT(UsageError({"list", "--filter", "state=sleeping"}),
              HasSubstr("running, stopping, exited, signaled, lost, backoff, "
                        "unknown"));
  // The default is unchanged: what runs, as `docker ps`.
  EXPECT_THAT(MustParse({"list"}).list.states(),
              ElementsAre(pm::v1::ProcessStatus::STATE_RUNNING,
                          pm::v1::ProcessStatus::STATE_STOPPING));
}

TEST(InvocationTest, ListAndItsAlias) {
  EXPECT_EQ(MustParse({"list"}).command, Command::kList);
  EXPECT_EQ(MustParse({"ps"}).command, Command::kList);
}

TEST(InvocationTest, OutputFormat) {
  EXPECT_EQ(MustParse({"list"}).output, OutputFormat::kText);
  EXPECT_EQ(MustParse({"list", "--output=json"}).output, OutputFormat::kJson);
  EXPECT_EQ(MustParse({"status", "--output", "json", "id"}).output,
            OutputFormat::kJson);
  // Before the command, as a global flag, too.
  EXPECT_EQ(MustParse({"--output=json", "wait", "id"}).output,
            OutputFormat::kJson);
  EXPECT_EQ(UsageError({"--output", "json", "logs", "id"}),
            "logs has no --output=json");
  EXPECT_EQ(UsageError({"run", "--output=json", "--", "true"}),
            "run has no --output=json");
  EXPECT_THAT(UsageError({"list", "--output=yaml"}),
              HasSubstr("--output must be text or json"));
}

TEST(InvocationTest, RuntimeDirAfterTheCommandWins) {
  EXPECT_EQ(MustParse({"list", "--runtime_dir=/x"}).connection.runtime_dir,
            "/x");
  EXPECT_EQ(MustParse({"list", "--runtime-dir", "/y"}).connection.runtime_dir,
            "/y");
  EXPECT_EQ(UsageError({"list", "--runtime_dir="}),
            "list: --runtime_dir is empty");
}

// Every flag that --gateway needs, after the command.
std::vector<std::string> ThroughGateway(std::vector<std::string> args) {
  for (const char* flag :
       {"--gateway=127.0.0.1:8443", "--ca=/pki/ca.pem", "--cert=/pki/c.pem",
        "--key=/pki/c.key", "--user=demo"}) {
    args.push_back(flag);
  }
  return args;
}

absl::StatusOr<Invocation> ParseWithPassword(
    const std::vector<std::string>& args, const GlobalOptions& defaults) {
  return ParseInvocation(args, defaults,
                         {{"HOME=/h", "PM_PASSWORD=s3cret"}, "/h"});
}

// Through a gateway the process runs on another machine: this directory
// means nothing there, so none is sent (the server's default is /).
TEST(InvocationTest, ThroughAGatewayNoWorkingDirIsSentUnlessGiven) {
  std::vector<std::string> args = ThroughGateway({"start"});
  args.insert(args.end(), {"--", "true"});
  absl::StatusOr<Invocation> remote = ParseWithPassword(args, Defaults());
  ASSERT_TRUE(remote.ok()) << remote.status();
  EXPECT_TRUE(remote->start.working_dir().empty());
  EXPECT_TRUE(remote->start.working_dir_bytes().empty());

  args = ThroughGateway({"start", "--cwd", "/srv"});
  args.insert(args.end(), {"--", "true"});
  remote = ParseWithPassword(args, Defaults());
  ASSERT_TRUE(remote.ok()) << remote.status();
  EXPECT_EQ(remote->start.working_dir(), "/srv");
}

TEST(InvocationTest, GatewayAfterTheCommandWithThePasswordFromTheEnvironment) {
  absl::StatusOr<Invocation> invocation =
      ParseWithPassword(ThroughGateway({"status", "id"}), Defaults());
  ASSERT_TRUE(invocation.ok()) << invocation.status();
  ASSERT_TRUE(invocation->connection.gateway.has_value());
  const pm::RemoteOptions& remote = *invocation->connection.gateway;
  EXPECT_EQ(remote.target, "127.0.0.1:8443");
  EXPECT_EQ(remote.ca_file, "/pki/ca.pem");
  EXPECT_EQ(remote.cert_file, "/pki/c.pem");
  EXPECT_EQ(remote.key_file, "/pki/c.key");
  EXPECT_EQ(remote.user, "demo");
  EXPECT_EQ(remote.password, "s3cret");
  EXPECT_EQ(remote.password_file, "");
  EXPECT_EQ(invocation->connection.Describe(), "the gateway at 127.0.0.1:8443");
  EXPECT_EQ(invocation->id, "id");
}

TEST(InvocationTest, GatewayBeforeTheCommandWithAPasswordFile) {
  // The file wins over the environment: it was asked for on this line. A
  // flag given twice (before and after the command) means its last value.
  absl::StatusOr<Invocation> invocation = ParseWithPassword(
      {"--gateway", "[::1]:8443", "--ca=ca.pem", "--cert", "c.pem", "--key",
       "c.key", "--user", "demo", "--password_file", "/secrets/demo", "list",
       "--user", "ops"},
      Defaults());
  ASSERT_TRUE(invocation.ok()) << invocation.status();
  ASSERT_TRUE(invocation->connection.gateway.has_value());
  EXPECT_EQ(invocation->connection.gateway->target, "[::1]:8443");
  EXPECT_EQ(invocation->connection.gateway->user, "ops");
  EXPECT_EQ(invocation->connection.gateway->password_file, "/secrets/demo");
  EXPECT_EQ(invocation->connection.gateway->password, "");
}

TEST(InvocationTest, WithoutGatewayTheLocalSockets) {
  Invocation invocation = MustParse({"list"});
  EXPECT_FALSE(invocation.connection.gateway.has_value());
  EXPECT_EQ(invocation.connection.Describe(), "/run/pm");
}

TEST(InvocationTest, GatewayMistakesAreUsageErrors) {
  EXPECT_EQ(UsageError({"list", "--ca=x", "--user", "demo"}),
            "--ca, --user apply only with --gateway HOST:PORT");
  EXPECT_EQ(UsageError({"list", "--password_file=/p"}),
            "--password_file applies only with --gateway HOST:PORT");
  EXPECT_EQ(UsageError({"list", "--gateway=gw:1", "--user=demo"}),
            "--gateway also needs --ca FILE, --cert FILE, --key FILE");
  EXPECT_EQ(UsageError({"list", "--gateway="}), "list: --gateway is empty");
  for (const char* target :
       {"gw", "gw:", ":8443", "gw:http", "gw:0", "gw:65536"}) {
    std::vector<std::string> args = ThroughGateway({"list"});
    args.push_back("--gateway");  // the last one wins
    args.push_back(target);
    EXPECT_EQ(UsageError(args),
              absl::StrCat("--gateway takes HOST:PORT (e.g. localhost:8080), "
                           "not \"",
                           target, "\""));
  }
  // No password anywhere (the test environment has no PM_PASSWORD).
  EXPECT_EQ(UsageError(ThroughGateway({"list"})),
            "--gateway needs the password of demo: set $PM_PASSWORD or give "
            "--password_file FILE");
}

TEST(InvocationTest, ThereIsNoPasswordFlag) {
  for (const char* flag : {"--password=x", "--password", "-password"}) {
    EXPECT_THAT(UsageError({"list", flag, "x"}),
                HasSubstr("list: there is no --password flag"))
        << flag;
    EXPECT_TRUE(IsPasswordFlag(flag)) << flag;
  }
  EXPECT_FALSE(IsPasswordFlag("--password_file=x"));
  EXPECT_FALSE(IsPasswordFlag("--password-file"));
  EXPECT_FALSE(IsPasswordFlag("password"));
  EXPECT_THAT(NoPasswordFlagMessage(), HasSubstr("$PM_PASSWORD"));
  // The command's own arguments are its own.
  EXPECT_THAT(MustParse({"start", "--", "mysql", "--password=x"}).start.args(),
              ElementsAre("--password=x"));
}

TEST(InvocationTest, Help) {
  Invocation overview = MustParse({"help"});
  EXPECT_EQ(overview.command, Command::kHelp);
  EXPECT_EQ(overview.help_topic, "");
  EXPECT_EQ(MustParse({"help", "ps"}).help_topic, "list");
  Invocation stop_help = MustParse({"stop", "--help"});
  EXPECT_EQ(stop_help.command, Command::kHelp);
  EXPECT_EQ(stop_help.help_topic, "stop");
  EXPECT_EQ(MustParse({"logs", "-h"}).help_topic, "logs");
  // After --, --help belongs to the command being started.
  EXPECT_EQ(MustParse({"start", "--", "ls", "--help"}).command,
            Command::kStart);
  EXPECT_THAT(UsageError({"help", "bogus"}), HasSubstr("unknown command"));
}

TEST(InvocationTest, UnknownCommand) {
  EXPECT_EQ(UsageError({"frobnicate"}), "unknown command \"frobnicate\"");
  EXPECT_EQ(UsageError({}), "missing a command");
}

// What the command-line library must get right, as users type it.
TEST(InvocationTest, UnknownFlagsAndMissingValuesAreNamed) {
  EXPECT_EQ(UsageError({"stop", "--bogus", "id"}), "stop: unknown flag --bogus");
  EXPECT_EQ(UsageError({"stop", "--bogus=1", "id"}), "stop: unknown flag --bogus");
  EXPECT_EQ(UsageError({"list", "-qz"}), "list: unknown flag -z");
  EXPECT_EQ(UsageError({"--bogus", "list"}), "list: unknown flag --bogus");
  EXPECT_EQ(UsageError({"start", "--env"}), "start: --env needs a value");
  EXPECT_EQ(UsageError({"stop", "id", "--grace"}), "stop: --grace needs a value");
  EXPECT_EQ(UsageError({"--runtime_dir"}), "--runtime_dir needs a value");
  EXPECT_EQ(UsageError({"logs", "--follow=maybe", "id"}),
            "logs: --follow takes no value (or true or false), not \"maybe\"");
  EXPECT_EQ(UsageError({"--runtime_dir=/x"}), "missing a command");
  // A -- before the command ends the global flags.
  EXPECT_EQ(MustParse({"--", "list"}).command, Command::kList);
}

TEST(InvocationTest, BadDurationsSizesAndEnumsAreRefusedAsTheyAreParsed) {
  EXPECT_EQ(UsageError({"stop", "--grace", "soon", "id"}),
            "stop: --grace takes a duration like 500ms, 10s or 1m, not \"soon\"");
  EXPECT_EQ(UsageError({"logs", "--reconnect-timeout=-1s", "id"}),
            "logs: --reconnect-timeout -1s is out of range");
  EXPECT_THAT(UsageError({"run", "--cpus=0", "--", "true"}),
              HasSubstr("run: --cpus 0 is out of range: 0.01 to 100000 cores"));
  EXPECT_THAT(UsageError({"start", "--io-weight", "10001", "--", "true"}),
              HasSubstr("from 1 to 10000"));
  EXPECT_EQ(UsageError({"--output=yaml", "list"}),
            "list: --output must be text or json, not \"yaml\"");
  EXPECT_THAT(UsageError({"kill", "-s", "NOPE", "id"}),
              HasSubstr("kill: --signal: \"NOPE\" is not a signal"));
  EXPECT_EQ(UsageError({"events", "--after=x"}),
            "events: --after takes a sequence number, not \"x\"");
}

TEST(InvocationTest, FlagsAfterTheDoubleDashOrTheCommandBelongToTheCommand) {
  Invocation after_dash =
      MustParse({"run", "--", "ls", "--runtime_dir=/x", "-h", "--", "--env"});
  EXPECT_EQ(after_dash.start.executable(), "ls");
  EXPECT_THAT(after_dash.start.args(),
              ElementsAre("--runtime_dir=/x", "-h", "--", "--env"));
  EXPECT_EQ(after_dash.connection.runtime_dir, "/run/pm");
  Invocation no_dash = MustParse({"start", "grep", "-r", "--help", "x"});
  EXPECT_EQ(no_dash.command, Command::kStart);
  EXPECT_THAT(no_dash.start.args(), ElementsAre("-r", "--help", "x"));
  // A command named like one of pm's is still the command.
  EXPECT_EQ(MustParse({"start", "--", "stop"}).start.executable(), "stop");
  EXPECT_EQ(MustParse({"status", "stop"}).id, "stop");
}

TEST(InvocationTest, GlobalFlagsGoBeforeOrAfterTheCommand) {
  EXPECT_EQ(MustParse({"--runtime_dir", "/a", "status", "id"}).connection.runtime_dir, "/a");
  EXPECT_EQ(MustParse({"status", "id", "--runtime_dir", "/b"}).connection.runtime_dir, "/b");
  EXPECT_EQ(MustParse({"status", "--runtime-dir=/c", "id"}).connection.runtime_dir, "/c");
  EXPECT_EQ(MustParse({"start", "--runtime_dir=/d", "--", "true"}).connection.runtime_dir, "/d");
  // Given twice, the last one.
  EXPECT_EQ(MustParse({"--runtime_dir=/e", "list", "--runtime_dir=/f"}).connection.runtime_dir,
            "/f");
  EXPECT_EQ(MustParse({"--output", "json", "list"}).output, OutputFormat::kJson);
}

TEST(InvocationTest, ShortFlagsBundleAndLongNamesTakeDashesOrUnderscores) {
  Invocation list = MustParse({"ps", "-qan", "3"});
  EXPECT_TRUE(list.quiet);
  EXPECT_EQ(list.list.limit(), 3u);
  EXPECT_TRUE(list.list.states().empty());  // -a: every state
  Invocation logs = MustParse({"logs", "-ft", "id"});
  EXPECT_TRUE(logs.follow);
  EXPECT_TRUE(logs.timestamps);
  EXPECT_EQ(MustParse({"start", "--inherit_env", "--", "true"}).start.env().at("HOME"),
            "/home/u");
  EXPECT_EQ(MustParse({"logs", "--reconnect_timeout=5s", "id"}).reconnect_timeout,
            absl::Seconds(5));
  EXPECT_FALSE(MustParse({"logs", "--follow=false", "id"}).follow);
}

// Found by review: what CLI11 alone would misread or word badly.
TEST(InvocationTest, AnEmptyInlineValueNeverTakesTheNextWord) {
  EXPECT_EQ(UsageError({"start", "--name=", "sleep", "1"}), "start: --name is empty");
  EXPECT_EQ(UsageError({"stop", "--grace=", "5s", "id"}), "stop: --grace is empty");
  EXPECT_EQ(UsageError({"--gateway=", "list"}), "--gateway is empty");
  // The command's own words are its own.
  EXPECT_THAT(MustParse({"start", "sh", "--name=", "x"}).start.args(),
              ElementsAre("--name=", "x"));
  EXPECT_THAT(MustParse({"start", "--", "--cwd="}).start.executable(), "--cwd=");
}

TEST(InvocationTest, SingleDashLongFlagsAndStrayWordsAreNamedAsTyped) {
  EXPECT_EQ(UsageError({"list", "-all"}),
            "unknown flag -all (long flags take two dashes: --all)");
  EXPECT_EQ(UsageError({"-runtime_dir=/x", "list"}),
            "unknown flag -runtime_dir (long flags take two dashes: --runtime_dir)");
  EXPECT_EQ(UsageError({"--", "nosuch"}), "unknown command \"nosuch\"");
  EXPECT_EQ(UsageError({"foo", "list"}), "unknown command \"foo\"");
  EXPECT_EQ(UsageError({"prune", "--", "--x"}), "prune: unexpected argument \"--x\"");
  EXPECT_EQ(UsageError({"rm", "", "a"}), "rm: an empty process id");
}

TEST(InvocationTest, ErrorsStayOnOneLine) {
  const std::string error = UsageError({"list", "a\nb"});
  EXPECT_EQ(error, "list: unexpected argument \"a\\x0ab\"");
  EXPECT_EQ(UsageError({"--gateway", "a\nb", "list"}).find('\n'), std::string::npos);
}

TEST(InvocationTest, Version) {
  EXPECT_EQ(MustParse({"--version"}).command, Command::kVersion);
}

TEST(InvocationTest, HelpTexts) {
  const std::string overview = HelpText("");
  for (const char* command :
       {"start", "run", "stop", "status", "list", "logs", "wait", "help"}) {
    EXPECT_THAT(overview, HasSubstr(absl::StrCat("\n  ", command, " ")))
        << command;
    EXPECT_THAT(HelpText(command),
                HasSubstr(absl::StrCat("usage: pm ", command, " ")));
  }
  EXPECT_THAT(HelpText("start"), HasSubstr("--inherit-env"));
  EXPECT_THAT(HelpText("run"), HasSubstr("Ctrl+C"));
  for (const char* flag : {"--memory SIZE", "--cpus N", "--pids N",
                           "--io-weight N", "--isolate pid,net,mount"}) {
    EXPECT_THAT(HelpText("start"), HasSubstr(flag));
    EXPECT_THAT(HelpText("run"), HasSubstr(flag));
  }
  for (const char* flag :
       {"--gateway HOST:PORT", "--ca FILE", "--cert FILE", "--key FILE",
        "--user NAME", "--password_file FILE", "PM_PASSWORD"}) {
    EXPECT_THAT(overview, HasSubstr(flag));
  }
  EXPECT_THAT(HelpText("status"), HasSubstr("OOM"));
  for (const char* command : {"start", "run", "list"}) {
    EXPECT_THAT(HelpText(command), HasSubstr("--node NAME")) << command;
  }
  EXPECT_THAT(HelpText("list"), HasSubstr("node=NAME"));
  EXPECT_THAT(HelpText("list"), HasSubstr("unknown"));
  EXPECT_THAT(HelpText("status"), HasSubstr("last known"));
  EXPECT_THAT(
      UsageText("stop"),
      HasSubstr("usage: pm stop [--grace DURATION] [--output json] ID"));
  EXPECT_THAT(UsageText("bogus"), HasSubstr("usage: pm [--runtime_dir DIR]"));
}

TEST(InvocationTest, CompletionTakesOnlyBash) {
  EXPECT_EQ(MustParse({"completion", "bash"}).command, Command::kCompletion);
  EXPECT_EQ(MustParse({"completion", "bash"}).help_topic, "bash");
  EXPECT_EQ(UsageError({"completion", "zsh"}),
            "completion: no script for \"zsh\" (there is one for bash)");
  EXPECT_THAT(UsageError({"completion"}), HasSubstr("SHELL"));
  EXPECT_EQ(UsageError({"completion", "bash", "--output", "json"}),
            "completion has no --output=json");
}

}  // namespace
}  // namespace pm::cli
