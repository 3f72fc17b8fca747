// The `pm` command through the gateway: the real binary with --gateway, as
// a user on another machine would type it, against the private stack and
// gateway that gateway_harness starts (on 127.0.0.1, a free port, a fresh
// PKI; see gateway_harness.cc for the environment it passes).
//
// The password goes in $PM_PASSWORD or --password_file, never on pm's
// command line: the test looks at a running pm's /proc/PID/cmdline, and the
// harness checks every process's command line and the services' log.
#include <signal.h>

#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "common/fd.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "testing/pm_runner.h"

namespace pm::testing {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::MatchesRegex;
using ::testing::Not;
using ::testing::StartsWith;

std::string Env(const char* name) {
  const char* value = getenv(name);
  return value != nullptr ? value : "";
}

class CliGatewayTest : public ::testing::Test {
 protected:
  void SetUp() override {
    port_ = Env("PM_GATEWAY_PORT");
    certs_ = Env("PM_CERTS");
    user_ = Env("PM_USER");
    password_file_ = Env("PM_PASSWORD_FILE");
    ASSERT_FALSE(port_.empty() || certs_.empty() || user_.empty() ||
                 password_file_.empty())
        << "run this under gateway_harness";
    absl::StatusOr<std::string> password = pm::ReadFile(password_file_);
    ASSERT_TRUE(password.ok()) << password.status();
    password_ = password->substr(0, password->find('\n'));
    ASSERT_FALSE(password_.empty());
  }

  std::string Target() const { return absl::StrCat("127.0.0.1:", port_); }

  // The flags that reach the gateway with this client's certificate.
  std::vector<std::string> GatewayFlags(const std::string& cert = "client",
                                        const std::string& user = "") {
    return {"--gateway=" + Target(),
            "--ca",
            certs_ + "/ca.pem",
            "--cert",
            absl::StrCat(certs_, "/", cert, ".pem"),
            "--key",
            absl::StrCat(certs_, "/", cert, ".key"),
            "--user",
            user.empty() ? user_ : user};
  }

  // pm with `args` as given and `password` (if any) in $PM_PASSWORD; none
  // of the local stack's settings, so a slip to the local sockets fails.
  std::unique_ptr<PmRun> Spawn(const std::vector<std::string>& args,
                               const std::string& password) {
    std::vector<std::string> environment =
        EnvironmentWithout({"PM_PASSWORD", "PM_RUNTIME_DIR"});
    environment.push_back("PM_RUNTIME_DIR=/nonexistent");
    if (!password.empty()) environment.push_back("PM_PASSWORD=" + password);
    return std::make_unique<PmRun>(args, environment);
  }

  // `pm --gateway=... <args>` with the right password in $PM_PASSWORD.
  PmResult Run(const std::vector<std::string>& args) {
    std::vector<std::string> all = GatewayFlags();
    all.insert(all.end(), args.begin(), args.end());
    return Spawn(all, password_)->Finish();
  }
  // The same as another user of the gateway (the harness's --extra_users
  // share demo's password).
  PmResult RunAs(const std::string& user, const std::vector<std::string>& args) {
    std::vector<std::string> all = GatewayFlags("client", user);
    all.insert(all.end(), args.begin(), args.end());
    return Spawn(all, password_)->Finish();
  }

  std::string port_, certs_, user_, password_file_, password_;
};

TEST_F(CliGatewayTest, StartLogsStatusAndStopThroughTheGateway) {
  PmResult started =
      Run({"start", "--", "sh", "-c", "echo hello; exec sleep 1000"});
  ASSERT_EQ(started.code, 0) << started.err;
  EXPECT_THAT(started.out, MatchesRegex("[0-9a-f-]{36}\n"));
  EXPECT_THAT(started.err, IsEmpty());
  const std::string id = started.out.substr(0, 36);

  std::vector<std::string> follow = GatewayFlags();
  follow.insert(follow.end(), {"logs", "-f", id});
  std::unique_ptr<PmRun> logs = Spawn(follow, password_);
  ASSERT_TRUE(logs->WaitForStdout("hello\n"));
  // While pm runs, its command line is anyone's to read: no password there.
  absl::StatusOr<std::string> raw_cmdline =
      pm::ReadFile(absl::StrCat("/proc/", logs->pid(), "/cmdline"));
  ASSERT_TRUE(raw_cmdline.ok()) << raw_cmdline.status();
  const std::string cmdline =
      absl::StrReplaceAll(*raw_cmdline, {{std::string(1, '\0'), " "}});
  EXPECT_THAT(cmdline, HasSubstr("--gateway=" + Target()));
  EXPECT_THAT(cmdline, Not(HasSubstr(password_)));

  // The global flags work after the command too.
  std::vector<std::string> status_args = {"status", id};
  for (const std::string& flag : GatewayFlags()) status_args.push_back(flag);
  PmResult status = Spawn(status_args, password_)->Finish();
  ASSERT_EQ(status.code, 0) << status.err;
  EXPECT_THAT(status.out,
              AllOf(HasSubstr("state:        running\n"),
                    HasSubstr(absl::StrCat("owner:        ", user_, " "))));

  PmResult stopped = Run({"stop", "--grace=5s", id});
  EXPECT_EQ(stopped.code, 0) << stopped.err;
  EXPECT_EQ(stopped.out, "killed by signal 15 (SIGTERM)\n");
  PmResult followed = logs->Finish();
  EXPECT_EQ(followed.code, 0) << followed.err;
  EXPECT_EQ(followed.out, "hello\n");

  PmResult list = Run({"list", "--all"});
  EXPECT_EQ(list.code, 0) << list.err;
  EXPECT_THAT(list.out, HasSubstr(id + "  -     signaled "));
}

// A name or an id prefix is resolved among the caller's own processes: user
// B cannot reach user A's process by its name or its prefix, and an
// ambiguous prefix lists only the caller's ids.
TEST_F(CliGatewayTest, NamesAndPrefixesAreResolvedAmongTheCallersOwn) {
  PmResult started = Run({"start", "--name", "gw-web", "--label", "app=gw",
                          "--", "sleep", "1000"});
  ASSERT_EQ(started.code, 0) << started.err;
  const std::string web = started.out.substr(0, 36);

  PmResult mine = Run({"status", "gw-web"});
  EXPECT_EQ(mine.code, 0) << mine.err;
  EXPECT_THAT(mine.out, HasSubstr(absl::StrCat("id:           ", web, "\n")));
  EXPECT_EQ(Run({"list", "-q", "--filter", "label=app=gw"}).out, web + "\n");

  PmResult by_name = RunAs("load1", {"status", "gw-web"});
  EXPECT_EQ(by_name.code, 1);
  EXPECT_THAT(by_name.err, HasSubstr("no process has the id, name or id prefix"));
  PmResult by_prefix = RunAs("load1", {"stop", web.substr(0, 13)});
  EXPECT_EQ(by_prefix.code, 1);
  EXPECT_THAT(by_prefix.err, HasSubstr("no process has the id"));
  EXPECT_EQ(RunAs("load1", {"list", "-a", "-q"}).out, "");
  // The name is taken on the whole host; another user learns no more than
  // that.
  PmResult taken = RunAs("load1", {"start", "--name", "gw-web", "--", "true"});
  EXPECT_EQ(taken.code, 1);
  EXPECT_THAT(taken.err, AllOf(HasSubstr("another user"), Not(HasSubstr(web))));

  // Seventeen ids of one user: two share their first digit (pigeonhole),
  // and that digit alone is ambiguous.
  std::vector<std::string> ids = {web};
  for (int i = 0; i < 16; ++i) {
    PmResult one = Run({"start", "--", "true"});
    ASSERT_EQ(one.code, 0) << one.err;
    ids.push_back(one.out.substr(0, 36));
  }
  PmResult other = RunAs("load1", {"start", "--", "true"});
  ASSERT_EQ(other.code, 0) << other.err;
  const std::string theirs = other.out.substr(0, 36);
  std::string shared;
  for (const std::string& id : ids) {
    if (std::count_if(ids.begin(), ids.end(), [&](const std::string& other) {
          return other[0] == id[0];
        }) > 1) {
      shared = id.substr(0, 1);
      break;
    }
  }
  ASSERT_FALSE(shared.empty());
  PmResult ambiguous = Run({"status", shared});
  EXPECT_EQ(ambiguous.code, 1);
  EXPECT_THAT(ambiguous.err, HasSubstr("ambiguous"));
  for (const std::string& id : ids) {
    if (id[0] == shared[0]) {
      EXPECT_THAT(ambiguous.err, HasSubstr(id));
    }
  }
  EXPECT_THAT(ambiguous.err, Not(HasSubstr(theirs)));

  // Signal and Remove are scoped the same way.
  PmResult their_kill = RunAs("load1", {"kill", web});
  EXPECT_EQ(their_kill.code, 1);
  EXPECT_THAT(their_kill.err, HasSubstr("no process with id " + web));
  PmResult their_rm = RunAs("load1", {"rm", "-f", web});
  EXPECT_EQ(their_rm.code, 1);
  EXPECT_EQ(Run({"status", "gw-web"}).code, 0);
  PmResult prune = RunAs("load1", {"prune"});
  EXPECT_EQ(prune.code, 0) << prune.err;
  EXPECT_EQ(prune.out, theirs + "\n");
  EXPECT_EQ(RunAs("load1", {"list", "-a", "-q"}).out, "");
  PmResult killed = Run({"kill", "-s", "TERM", "gw-web"});
  EXPECT_EQ(killed.code, 0) << killed.err;
  EXPECT_EQ(killed.out, web + "\n");
  EXPECT_EQ(Run({"wait", "gw-web"}).code, 143);
  PmResult removed = Run({"rm", "gw-web"});
  EXPECT_EQ(removed.code, 0) << removed.err;
  EXPECT_EQ(removed.out, web + "\n");
  EXPECT_EQ(Run({"status", web}).code, 1);
}

// pm events through the gateway: the caller's own processes only, replayed
// from the first retained event and then live; another user's process is
// not even a filter it may name.
TEST_F(CliGatewayTest, EventsThroughTheGatewayAreTheCallersOwn) {
  PmResult other = RunAs("load1", {"start", "--", "sh", "-c", "exit 5"});
  ASSERT_EQ(other.code, 0) << other.err;
  const std::string theirs = other.out.substr(0, 36);
  EXPECT_EQ(RunAs("load1", {"wait", theirs}).code, 5);
  PmResult started =
      Run({"start", "--name", "gw-events", "--", "sh", "-c", "exit 7"});
  ASSERT_EQ(started.code, 0) << started.err;
  const std::string mine = started.out.substr(0, 36);
  EXPECT_EQ(Run({"wait", mine}).code, 7);

  std::vector<std::string> args = GatewayFlags();
  args.insert(args.end(), {"events", "--after", "0"});
  std::unique_ptr<PmRun> events = Spawn(args, password_);
  // load1's events came first: had they passed, they would be printed by
  // the time this one is.
  ASSERT_TRUE(events->WaitForStdout(absl::StrCat(" exited ", mine, " gw-events")));
  PmResult live = Run({"start", "--", "true"});
  ASSERT_EQ(live.code, 0) << live.err;
  ASSERT_TRUE(events->WaitForStdout(
      absl::StrCat(" started ", live.out.substr(0, 36))));
  kill(events->pid(), SIGINT);
  PmResult watched = events->Finish();
  EXPECT_EQ(watched.code, 130) << watched.err;
  EXPECT_THAT(watched.out, HasSubstr(absl::StrCat(" started ", mine, " gw-events")));
  EXPECT_THAT(watched.out, Not(HasSubstr(theirs)));

  // load1 watching: its own, never demo's.
  std::vector<std::string> theirs_args = GatewayFlags("client", "load1");
  theirs_args.insert(theirs_args.end(), {"events", "--after", "0"});
  std::unique_ptr<PmRun> their_events = Spawn(theirs_args, password_);
  ASSERT_TRUE(their_events->WaitForStdout(absl::StrCat(" exited ", theirs)));
  kill(their_events->pid(), SIGINT);
  PmResult their_watch = their_events->Finish();
  EXPECT_THAT(their_watch.out, Not(HasSubstr(mine)));
  PmResult named = RunAs("load1", {"events", "--filter", "id=" + mine});
  EXPECT_EQ(named.code, 1);
  EXPECT_THAT(named.err, HasSubstr("no process with id " + mine));
}

TEST_F(CliGatewayTest, RunWithAPasswordFileAndLimits) {
  // No $PM_PASSWORD at all: the file is the only source.
  std::vector<std::string> args = GatewayFlags();
  args.insert(args.end(),
              {"--password_file", password_file_, "run", "--isolate=pid",
               "--pids=16", "--", "sh", "-c", "echo $$; exit 3"});
  PmResult run = Spawn(args, "")->Finish();
  EXPECT_EQ(run.code, 3) << run.err;
  EXPECT_EQ(run.out, "1\n");
  EXPECT_THAT(run.err, IsEmpty());
}

TEST_F(CliGatewayTest, WrongPasswordIsPermissionDenied) {
  std::vector<std::string> args = GatewayFlags();
  args.push_back("list");
  PmResult refused = Spawn(args, "not-" + password_)->Finish();
  EXPECT_EQ(refused.code, 1);
  EXPECT_THAT(refused.out, IsEmpty());
  EXPECT_EQ(refused.err,
            "pm: list: PERMISSION_DENIED: wrong user name or password (check "
            "--user and the password in $PM_PASSWORD or --password_file)\n");
}

TEST_F(CliGatewayTest, NoPasswordIsAUsageError) {
  std::vector<std::string> args = GatewayFlags();
  args.push_back("list");
  PmResult result = Spawn(args, "")->Finish();
  EXPECT_EQ(result.code, 2);
  EXPECT_THAT(result.err,
              StartsWith(absl::StrCat("pm: --gateway needs the password of ",
                                      user_, ": set $PM_PASSWORD")));
  std::vector<std::string> with_flag = GatewayFlags();
  with_flag.insert(with_flag.end(), {"--password=guess", "list"});
  PmResult flag = Spawn(with_flag, "")->Finish();
  EXPECT_EQ(flag.code, 2);
  EXPECT_THAT(flag.err, StartsWith("pm: list: there is no --password flag"));
}

TEST_F(CliGatewayTest, ClientCertificateTheGatewayDoesNotTrust) {
  std::vector<std::string> args = GatewayFlags("untrusted-client");
  args.push_back("list");
  PmResult refused = Spawn(args, password_)->Finish();
  EXPECT_EQ(refused.code, 1);
  EXPECT_THAT(
      refused.err,
      AllOf(StartsWith(
                absl::StrCat("pm: list: gateway is unavailable at ", Target())),
            HasSubstr(absl::StrCat("(is the gateway up at ", Target(), "?"))));
  EXPECT_EQ(std::count(refused.err.begin(), refused.err.end(), '\n'), 1);
}

}  // namespace
}  // namespace pm::testing
