// Issue 14's acceptance, end to end: with processes writing continuously
// and followers attached, kill -9 one pm service (or all of them, or all of
// them and the launcher), and check that nothing a user can see was
// disturbed. The real launcher binary (`make up`'s, testing/
// launcher_process.h) runs the real services with their gateway on
// temporary dirs; the test kills them for real and waits only for events
// (the launcher's log lines, pidfds, output arriving, pm exiting).
//
// Each case runs one Scenario:
//   1. a workload (durability_writer): four writers of a numbered,
//      self-checking stream on stdout and stderr, one that will exit with
//      code 7 and one that will be killed by SIGKILL;
//   2. followers, cut off mid-stream by the fault: `pm logs -f` locally and
//      through the gateway, and Library followers locally and through the
//      gateway that resume from their last offset as an application would;
//   3. the fault, and while the service is down the exit (code 7) and the
//      kill (SIGKILL) of the two short-lived processes;
//   4. once the stack is back: every writer still runs (pidfd), status,
//      list, logs, logs -f and wait answer for every process, a new process
//      starts, is read and stops, the ended ones report their true end, no
//      zombie is left (then and at the end), no fd of pm's is in a managed
//      process;
//   5. the writers are stopped (SIGTERM: they lived until then, no SIGPIPE),
//      and each one's output read from offset 0 is its exact stream, with
//      output_bytes matching, and every follower got exactly those bytes.
#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "client/client.h"
#include "common/proc.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "common/loopback_ports_test_util.h"
#include "testing/launcher_process.h"
#include "testing/pm_runner.h"
#include "testing/test_stack.h"

namespace pm::testing {
namespace {

using ::pm::v1::ProcessStatus;
using ::testing::HasSubstr;
using ::testing::Not;

// One pair of lines every 2 ms per writer: ~12 KB/s each, enough to be
// writing at any moment of a fault, little enough for two cores.
constexpr char kWriterPeriodUs[] = "2000";
constexpr int kWriters = 4;

// A follower ends once its process's output has ended. Not a speed claim
// (it ends within milliseconds): a liveness bound, well above normal and
// well below the 15-20 s a `pm logs -f` through a restarted gateway took
// when its channel's reconnection advanced only with gRPC's backup poller
// (every 5 s, one connection step per tick) and its stream was reopened
// only after that.
constexpr absl::Duration kFollowerEndsWithin = absl::Seconds(5);

std::string WriterBinary() {
  const char* srcdir = getenv("TEST_SRCDIR");
  return absl::StrCat(srcdir != nullptr ? srcdir : ".", "/pm/testing/durability_writer");
}

int PidfdOpen(pid_t pid) { return static_cast<int>(syscall(SYS_pidfd_open, pid, 0)); }
int PidfdSendSignal(int pidfd, int sig) {
  return static_cast<int>(syscall(SYS_pidfd_send_signal, pidfd, sig, nullptr, 0));
}
// Whether the process behind `pidfd` has ended (readable pidfd).
bool HasEnded(int pidfd) {
  pollfd p = {pidfd, POLLIN, 0};
  return poll(&p, 1, 0) == 1;
}

// --- The self-checking stream ------------------------------------------------

// Checks that `data` (a process's stdout and stderr in arrival order, as
// the log_store and `pm logs` give them) is exactly writer `tag`'s lines:
// "TAG out N" and "TAG err N" each numbered 1, 2, 3, ... with none missing
// or repeated. A last line may be cut short (a read that ends mid-line).
::testing::AssertionResult IsWriterStream(const std::string& tag,
                                          const std::string& data) {
  uint64_t next_out = 1, next_err = 1;
  size_t at = 0;
  while (at < data.size()) {
    const size_t end = data.find('\n', at);
    const std::string line = data.substr(at, end == std::string::npos ? end : end - at);
    const std::string out = absl::StrCat(tag, " out ", next_out);
    const std::string err = absl::StrCat(tag, " err ", next_err);
    if (end == std::string::npos) {
      if (absl::StartsWith(out, line) || absl::StartsWith(err, line)) break;
      return ::testing::AssertionFailure()
             << "the last line \"" << line << "\" at offset " << at
             << " is none of the next ones (" << out << ", " << err << ")";
    }
    if (line == out) {
      ++next_out;
    } else if (line == err) {
      ++next_err;
    } else {
      return ::testing::AssertionFailure()
             << "\"" << line << "\" at offset " << at << " where \"" << out
             << "\" or \"" << err << "\" was due (" << data.size() << " bytes)";
    }
    at = end + 1;
  }
  return ::testing::AssertionSuccess()
         << (next_out - 1) << " out and " << (next_err - 1) << " err lines";
}

// --- Followers -----------------------------------------------------------------

using Connect = std::function<absl::StatusOr<std::unique_ptr<pm::Client>>()>;

// A Library follower as an application writes one: follows a process's
// output from the start and, when the stream is lost (UNAVAILABLE, or
// NOT_FOUND from a log_store that has just restarted), reconnects with a
// new client and resumes at the offset after the last byte it got, as
// `pm logs -f` does (cli/follow.h), for up to a minute.
class LibraryFollower {
 public:
  LibraryFollower(Connect connect, std::string id)
      : connect_(std::move(connect)), id_(std::move(id)) {
    thread_ = std::thread([this] { Run(); });
  }
  ~LibraryFollower() {
    Cancel();
    if (thread_.joinable()) thread_.join();
  }

  // Waits until it has `n` bytes (60 s safety net).
  bool WaitForBytes(size_t n) {
    absl::MutexLock lock(&mu_);
    auto enough = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return done_ || data_.size() >= n;
    };
    mu_.AwaitWithTimeout(absl::Condition(&enough), absl::Seconds(60));
    return data_.size() >= n;
  }
  size_t bytes() {
    absl::MutexLock lock(&mu_);
    return data_.size();
  }

  struct Result {
    std::string data;
    uint64_t dropped = 0;
    bool offsets_contiguous = true;
    int reconnects = 0;
    absl::Status status;
  };
  // Waits for the stream's end (the process ended and its output drained).
  Result Join() {
    if (thread_.joinable()) thread_.join();
    absl::MutexLock lock(&mu_);
    return {data_, dropped_, offsets_contiguous_, reconnects_, status_};
  }

 private:
  void Cancel() {
    absl::MutexLock lock(&mu_);
    cancelled_ = true;
    if (stream_ != nullptr) stream_->Cancel();
  }

  void Run() {
    const absl::Time give_up = absl::Now() + absl::Seconds(60);
    absl::Duration backoff = absl::Milliseconds(50);
    absl::optional<uint64_t> next_offset;
    for (;;) {
      absl::Status ended = FollowOnce(next_offset);
      const bool retry = (ended.code() == absl::StatusCode::kUnavailable ||
                          ended.code() == absl::StatusCode::kNotFound) &&
                         absl::Now() < give_up;
      absl::MutexLock lock(&mu_);
      if (!retry || cancelled_) {
        status_ = ended;
        done_ = true;
        return;
      }
      ++reconnects_;
      // A client's retry delay (as the CLI's), not a wait for an event.
      mu_.AwaitWithTimeout(absl::Condition(&cancelled_), backoff);
      backoff = std::min(backoff * 2, absl::Seconds(1));
    }
  }

  // One stream's life; `next_offset` is where the next byte is due.
  absl::Status FollowOnce(absl::optional<uint64_t>& next_offset) {
    // A new client each time: a channel that saw the service go may still
    // be in gRPC's reconnect backoff, failing calls at once.
    absl::StatusOr<std::unique_ptr<pm::Client>> client = connect_();
    if (!client.ok()) return client.status();
    pm::v1::StreamOutputRequest request;
    request.set_id(id_);
    request.set_follow(true);
    if (next_offset.has_value()) {
      request.set_from_offset(*next_offset);
    } else {
      request.set_from_start(true);
    }
    std::unique_ptr<pm::OutputStream> stream = (*client)->StreamOutput(request);
    {
      absl::MutexLock lock(&mu_);
      if (cancelled_) return absl::CancelledError();
      stream_ = stream.get();
    }
    pm::v1::OutputChunk chunk;
    while (stream->Next(&chunk)) {
      absl::MutexLock lock(&mu_);
      const uint64_t due = next_offset.value_or(0) + chunk.dropped_before();
      if (chunk.offset() != due) offsets_contiguous_ = false;
      dropped_ += chunk.dropped_before();
      data_ += chunk.data();
      next_offset = chunk.offset() + chunk.data().size();
    }
    absl::Status ended = stream->Finish();
    absl::MutexLock lock(&mu_);
    stream_ = nullptr;
    return ended;
  }

  const Connect connect_;
  const std::string id_;
  std::thread thread_;
  absl::Mutex mu_;
  pm::OutputStream* stream_ ABSL_GUARDED_BY(mu_) = nullptr;
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
  bool done_ ABSL_GUARDED_BY(mu_) = false;
  std::string data_ ABSL_GUARDED_BY(mu_);
  uint64_t dropped_ ABSL_GUARDED_BY(mu_) = 0;
  bool offsets_contiguous_ ABSL_GUARDED_BY(mu_) = true;
  int reconnects_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Status status_ ABSL_GUARDED_BY(mu_);
};

// `pm logs -f ID` drained by a thread of its own from the moment it has
// shown the first lines, so pm never blocks on a full pipe.
class CliFollower {
 public:
  CliFollower(const std::vector<std::string>& args, const std::vector<std::string>& env)
      : pm_(args, env), pidfd_(PidfdOpen(pm_.pid())) {}
  // Ends a pm still following (a test that failed early), then reaps it.
  ~CliFollower() {
    if (reader_.joinable()) {
      if (pidfd_ >= 0) PidfdSendSignal(pidfd_, SIGKILL);
      reader_.join();
    }
    if (pidfd_ >= 0) close(pidfd_);
  }
  // Waits for `needle`, then hands pm to the draining thread.
  bool Attach(const std::string& needle) {
    const bool seen = pm_.WaitForStdout(needle);
    reader_ = std::thread([this] { result_ = pm_.Finish(); });
    return seen;
  }
  PmResult Join() {
    if (reader_.joinable()) reader_.join();
    return result_;
  }

 private:
  PmRun pm_;
  const int pidfd_;
  std::thread reader_;
  PmResult result_;
};

// --- Looking at processes ------------------------------------------------------

// Zombies whose parent is one of `parents`, or a pm process (the launcher,
// a service, a shim, by its name) of this test's stack: one whose command
// line names `stack_dir` (every one of them has its runtime or state dir
// there). Never another stack's: tests run side by side, and a zombie
// another supervisor has not reaped yet is not this test's.
std::vector<std::string> ZombiesUnder(const std::set<pid_t>& parents,
                                      const std::string& stack_dir = "") {
  std::vector<std::string> found;
  DIR* proc = opendir("/proc");
  if (proc == nullptr) return {"cannot open /proc"};
  while (dirent* entry = readdir(proc)) {
    pid_t pid = 0;
    if (!absl::SimpleAtoi(entry->d_name, &pid)) continue;
    absl::StatusOr<ProcStat> stat = ReadProcStat(pid);
    if (!stat.ok() || stat->state != 'Z') continue;
    const pid_t parent = static_cast<pid_t>(stat->ppid);
    absl::StatusOr<ProcStat> parent_stat = ReadProcStat(parent);
    const std::string parent_comm = parent_stat.ok() ? parent_stat->comm : "";
    static const std::set<std::string> kPm = {"stack", "registry", "log_store",
                                              "supervisor", "gateway", "pm-shim"};
    auto of_this_stack = [&] {
      if (stack_dir.empty() || kPm.count(parent_comm) == 0) return false;
      std::ifstream cmdline(absl::StrCat("/proc/", parent, "/cmdline"));
      const std::string words((std::istreambuf_iterator<char>(cmdline)),
                              std::istreambuf_iterator<char>());
      return absl::StrContains(words, stack_dir + "/");
    };
    if (parents.count(parent) != 0 || of_this_stack()) {
      found.push_back(absl::StrCat(stat->comm, " (pid ", pid, ", parent ", parent,
                                   " ", parent_comm, ")"));
    }
  }
  closedir(proc);
  return found;
}

// The fds a managed process has beyond the 0, 1 and 2 it was given, with
// what they point at.
std::vector<std::string> ExtraFds(pid_t pid) {
  std::vector<std::string> extra;
  const std::string dir = absl::StrCat("/proc/", pid, "/fd");
  DIR* fds = opendir(dir.c_str());
  if (fds == nullptr) return {absl::StrCat("cannot open ", dir)};
  while (dirent* entry = readdir(fds)) {
    int fd = -1;
    if (!absl::SimpleAtoi(entry->d_name, &fd) || fd <= 2) continue;
    char target[512] = {};
    const ssize_t n = readlink(absl::StrCat(dir, "/", fd).c_str(), target,
                               sizeof(target) - 1);
    extra.push_back(absl::StrCat(fd, " -> ", n > 0 ? target : "?"));
  }
  closedir(fds);
  return extra;
}

// --- The scenario ----------------------------------------------------------------

// A process of the workload, and the pidfd the test holds on it.
struct Managed {
  std::string tag;
  std::string id;
  pid_t pid = -1;
  int pidfd = -1;
};

// What a case does to the stack while the workload runs.
enum class Fault {
  kOneService,   // kill -9 the services named; the launcher restarts them
  kEverything,   // kill -9 the launcher and every service, then a new launcher
};

class DurabilityTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // Under /tmp, not $TEST_TMPDIR: unix socket paths must fit in 108 bytes.
    char tmpl[] = "/tmp/pm_dur.XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    absl::StatusOr<std::vector<int>> port = FreeLoopbackPorts(1);
    ASSERT_TRUE(port.ok()) << port.status();
    port_ = port->front();
    ASSERT_NO_FATAL_FAILURE(StartLauncherAndConnect());
  }

  // `make up` on the test's runtime dir, state dir and certificates, and a
  // Library client of it.
  void StartLauncherAndConnect() {
    launcher_ = std::make_unique<LauncherProcess>(dir_, port_);
    ASSERT_TRUE(launcher_->ok()) << launcher_->log();
    absl::StatusOr<std::unique_ptr<pm::Client>> client =
        pm::Client::ConnectLocal(launcher_->runtime_dir());
    ASSERT_TRUE(client.ok()) << client.status();
    client_ = *std::move(client);
  }

  void TearDown() override {
    // Managed processes first (only left running if a check failed early),
    // so that every follower sees its process end and finishes.
    for (Managed& m : managed_) {
      if (m.pidfd >= 0) {
        PidfdSendSignal(m.pidfd, SIGKILL);
        close(m.pidfd);
        m.pidfd = -1;
      }
    }
    cli_followers_.clear();
    late_follower_.reset();
    library_followers_.clear();
    client_.reset();
    if (launcher_ != nullptr) {
      absl::optional<pm::ExitStatus> stopped = launcher_->Stop();
      EXPECT_TRUE(stopped.has_value() && *stopped == pm::ExitStatus::Exited(0))
          << "the launcher's end: "
          << (stopped.has_value() ? stopped->ToString() : "did not exit");
      if (HasFailure()) {
        const std::string log = launcher_->log();
        std::cerr << "--- the launcher's log (last 30000 bytes) ---\n"
                  << log.substr(log.size() > 30000 ? log.size() - 30000 : 0) << "\n";
      }
      launcher_.reset();
    }
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
  }

  // Runs a whole case: `fault` to `services` (all of them for kEverything).
  void RunScenario(Fault fault, const std::vector<std::string>& services) {
    // Each step's time goes to the log, to see where a slow run spends it.
    absl::Time last = absl::Now();
    auto step = [&](const char* name) {
      const absl::Time now = absl::Now();
      std::cerr << "step " << name << ": " << absl::FormatDuration(now - last) << "\n";
      last = now;
    };
    ASSERT_NO_FATAL_FAILURE(StartWorkload());
    step("StartWorkload");
    ASSERT_NO_FATAL_FAILURE(AttachFollowers());
    step("AttachFollowers");
    if (fault == Fault::kOneService) {
      ASSERT_NO_FATAL_FAILURE(KillAndAwaitRestart(services));
      step("KillAndAwaitRestart");
    } else {
      ASSERT_NO_FATAL_FAILURE(KillEverythingAndStartAgain());
      step("KillEverythingAndStartAgain");
    }
    ASSERT_NO_FATAL_FAILURE(CheckWritersUndisturbed());
    ASSERT_NO_FATAL_FAILURE(CheckEndedProcesses());
    step("CheckEndedProcesses");
    ASSERT_NO_FATAL_FAILURE(CheckCommandsWork());
    step("CheckCommandsWork");
    ASSERT_NO_FATAL_FAILURE(CheckNewProcessWorks());
    step("CheckNewProcessWorks");
    ASSERT_NO_FATAL_FAILURE(CheckNoZombie());
    ASSERT_NO_FATAL_FAILURE(CheckNoLeakedFd());
    ASSERT_NO_FATAL_FAILURE(StopWritersAndCheckOutput());
    step("StopWritersAndCheckOutput");
    ASSERT_NO_FATAL_FAILURE(CheckFollowers(services));
    step("CheckFollowers");
    ASSERT_NO_FATAL_FAILURE(CheckNoZombie());
  }

  // --- Steps ---

  // Started through `client`: the gateway shows a user only the processes
  // that user started, so those followed through it are started through it.
  Managed StartWriter(pm::Client& client, const std::string& tag) {
    Managed m;
    m.tag = tag;
    pm::v1::StartResponse started =
        MustStart(client, Command({WriterBinary(), tag, kWriterPeriodUs}));
    m.id = started.id();
    m.pid = started.status().pid();
    m.pidfd = m.pid > 0 ? PidfdOpen(m.pid) : -1;
    EXPECT_GE(m.pidfd, 0) << tag << ": pidfd_open(" << m.pid << ")";
    return m;
  }

  // Four writers, one to exit with 7 and one to be killed during the fault.
  // w1, w3 and exit7 are started through the gateway, the rest locally.
  void StartWorkload() {
    absl::StatusOr<std::unique_ptr<pm::Client>> remote = RemoteConnect()();
    ASSERT_TRUE(remote.ok()) << remote.status();
    for (int i = 0; i < kWriters; ++i) {
      managed_.push_back(StartWriter(i % 2 ? **remote : *client_, absl::StrCat("w", i)));
    }
    managed_.push_back(StartWriter(**remote, "exit7"));
    managed_.push_back(StartWriter(*client_, "kill9"));
    for (const Managed& m : managed_) ASSERT_FALSE(m.id.empty());
  }
  Managed& writer(int i) { return managed_[i]; }
  Managed& exiter() { return managed_[kWriters]; }
  Managed& victim() { return managed_[kWriters + 1]; }

  std::vector<std::string> LocalArgs(const std::vector<std::string>& args) {
    std::vector<std::string> all = {"--runtime_dir", launcher_->runtime_dir()};
    all.insert(all.end(), args.begin(), args.end());
    return all;
  }
  std::vector<std::string> GatewayArgs(const std::vector<std::string>& args) {
    const std::string certs = launcher_->certs_dir();
    std::vector<std::string> all = {"--gateway=" + launcher_->gateway_target(),
                                    "--ca", certs + "/ca.pem",
                                    "--cert", certs + "/client.pem",
                                    "--key", certs + "/client.key",
                                    "--user", "demo",
                                    "--password_file", certs + "/demo.password"};
    all.insert(all.end(), args.begin(), args.end());
    return all;
  }
  // The local stack's settings are dropped, so a slip to the local
  // sockets fails rather than passes.
  std::vector<std::string> GatewayEnvironment() {
    std::vector<std::string> env = EnvironmentWithout({"PM_PASSWORD", "PM_RUNTIME_DIR"});
    env.push_back("PM_RUNTIME_DIR=/nonexistent");
    return env;
  }
  PmResult Pm(const std::vector<std::string>& args) {
    return PmRun(LocalArgs(args)).Finish();
  }
  Connect LocalConnect() {
    const std::string dir = launcher_->runtime_dir();
    return [dir] { return pm::Client::ConnectLocal(dir); };
  }
  Connect RemoteConnect() {
    pm::RemoteOptions remote;
    remote.target = launcher_->gateway_target();
    remote.ca_file = launcher_->certs_dir() + "/ca.pem";
    remote.cert_file = launcher_->certs_dir() + "/client.pem";
    remote.key_file = launcher_->certs_dir() + "/client.key";
    remote.user = "demo";
    remote.password_file = launcher_->certs_dir() + "/demo.password";
    return [remote] { return pm::Client::ConnectRemote(remote); };
  }

  // w0: `pm logs -f` locally; w1: `pm logs -f` through the gateway;
  // w2: a Library follower locally; w3: one through the gateway. Each has
  // its first lines before the fault, so the fault cuts it off mid-stream.
  void AttachFollowers() {
    cli_followers_.push_back(std::make_unique<CliFollower>(
        LocalArgs({"logs", "-f", writer(0).id}), EnvironmentWithout({})));
    cli_followers_.push_back(std::make_unique<CliFollower>(
        GatewayArgs({"logs", "-f", writer(1).id}), GatewayEnvironment()));
    for (int i = 0; i < 2; ++i) {
      ASSERT_TRUE(cli_followers_[i]->Attach(absl::StrCat(writer(i).tag, " out 5\n")))
          << "pm logs -f " << writer(i).tag << ": " << cli_followers_[i]->Join().err;
    }
    library_followers_.push_back(
        std::make_unique<LibraryFollower>(LocalConnect(), writer(2).id));
    library_followers_.push_back(
        std::make_unique<LibraryFollower>(RemoteConnect(), writer(3).id));
    for (auto& follower : library_followers_) ASSERT_TRUE(follower->WaitForBytes(100));
  }

  // While the services are down (the launcher waits at least 100 ms before
  // a restart): one process exits with 7, one is killed by SIGKILL.
  void EndTwoDuringTheOutage() {
    ASSERT_EQ(PidfdSendSignal(exiter().pidfd, SIGUSR1), 0);
    ASSERT_EQ(PidfdSendSignal(victim().pidfd, SIGKILL), 0);
  }

  void KillAndAwaitRestart(const std::vector<std::string>& services) {
    std::vector<size_t> before;
    for (const std::string& s : services) before.push_back(launcher_->HealthyCount(s));
    const absl::Time killed_at = absl::Now();
    ASSERT_TRUE(launcher_->KillServices(services, SIGKILL));
    ASSERT_NO_FATAL_FAILURE(EndTwoDuringTheOutage());
    for (size_t i = 0; i < services.size(); ++i) {
      ASSERT_TRUE(launcher_->WaitForHealthy(services[i], before[i] + 1))
          << services[i] << " was not restarted";
    }
    RecordProperty("restart_ms", absl::StrCat(absl::ToInt64Milliseconds(
                                     absl::Now() - killed_at)));
  }

  // kill -9 of the launcher and every service at once, then `make up`
  // again on the same runtime dir, state dir and certificates.
  void KillEverythingAndStartAgain() {
    std::vector<int> pidfds;
    pidfds.push_back(PidfdOpen(launcher_->pid()));
    for (const char* s : {"registry", "log_store", "supervisor", "gateway"}) {
      const pid_t pid = launcher_->ServicePid(s);
      ASSERT_GT(pid, 0) << s;
      pidfds.push_back(PidfdOpen(pid));
    }
    for (int pidfd : pidfds) {
      ASSERT_GE(pidfd, 0);
      ASSERT_EQ(PidfdSendSignal(pidfd, SIGKILL), 0);
    }
    ASSERT_NO_FATAL_FAILURE(EndTwoDuringTheOutage());
    // Every pm process is gone before the new launcher starts.
    for (int pidfd : pidfds) {
      pollfd p = {pidfd, POLLIN, 0};
      ASSERT_EQ(poll(&p, 1, 60000), 1);
      close(pidfd);
    }
    launcher_->Kill();  // reaps it
    client_.reset();
    ASSERT_NO_FATAL_FAILURE(StartLauncherAndConnect());
  }

  // Every writer still runs (its pidfd says so), as the same process.
  // Fatal when one died: nothing after it could pass, and each check
  // would only wait out its safety net.
  void CheckWritersUndisturbed() {
    int dead = 0;
    for (int i = 0; i < kWriters; ++i) {
      absl::StatusOr<ProcessStatus> status = client_->GetStatus(writer(i).id);
      ASSERT_TRUE(status.ok()) << writer(i).tag << ": " << status.status();
      if (HasEnded(writer(i).pidfd)) {
        ++dead;
        ADD_FAILURE() << writer(i).tag << " (pid " << writer(i).pid
                      << ") died in the fault; its record says "
                      << ProcessStatus::State_Name(status->state()) << ", pid "
                      << status->pid();
        continue;
      }
      EXPECT_EQ(status->state(), ProcessStatus::STATE_RUNNING) << status->ShortDebugString();
      EXPECT_EQ(status->pid(), writer(i).pid);
    }
    ASSERT_EQ(dead, 0) << "writers killed by the fault";
  }

  // The two that ended in the outage are reported with their true end, by
  // the Library and by `pm wait`, and their output is all there.
  void CheckEndedProcesses() {
    ProcessStatus exited = MustWait(*client_, exiter().id);
    EXPECT_EQ(exited.state(), ProcessStatus::STATE_EXITED) << exited.DebugString();
    EXPECT_EQ(exited.exit_code(), 7);
    ProcessStatus killed = MustWait(*client_, victim().id);
    EXPECT_EQ(killed.state(), ProcessStatus::STATE_SIGNALED) << killed.DebugString();
    EXPECT_EQ(killed.signal(), SIGKILL);
    PmResult wait_exited = Pm({"wait", exiter().id});
    EXPECT_EQ(wait_exited.out, "exited with code 7\n") << wait_exited.err;
    EXPECT_EQ(wait_exited.code, 7);
    PmResult wait_killed = Pm({"wait", victim().id});
    EXPECT_EQ(wait_killed.out, "killed by signal 9 (SIGKILL)\n") << wait_killed.err;
    for (Managed* m : {&exiter(), &victim()}) {
      ProcessStatus status = MustGetStatus(*client_, m->id);
      ExpectWholeOutput(*m, status);
    }
    // `pm logs -f` of an ended process prints it all and ends.
    const std::string all = ReadOutput(*client_, exiter().id).all;
    PmResult followed =
        PmRun(GatewayArgs({"logs", "-f", exiter().id}), GatewayEnvironment()).Finish();
    EXPECT_EQ(followed.code, 0) << followed.err;
    EXPECT_TRUE(followed.out == all) << followed.out.size() << " bytes followed, "
                                     << all.size() << " stored";
  }

  // Read from offset 0 to its end, a process's output is exactly its
  // stream, every byte it wrote (output_bytes), no gap.
  std::string ExpectWholeOutput(const Managed& m, const ProcessStatus& ended) {
    Output output = ReadOutput(*client_, m.id);
    EXPECT_TRUE(output.status.ok()) << m.tag << ": " << output.status;
    EXPECT_TRUE(IsWriterStream(m.tag, output.all)) << m.tag;
    EXPECT_EQ(output.dropped, 0u) << m.tag;
    EXPECT_TRUE(output.offsets_contiguous) << m.tag;
    EXPECT_EQ(output.all.size(), ended.output_bytes()) << m.tag;
    EXPECT_EQ(output.next_offset, ended.output_bytes()) << m.tag;
    EXPECT_TRUE(absl::EndsWith(output.all, "\n")) << m.tag;
    return output.all;
  }

  // status, list and logs through the CLI, locally and through the gateway.
  void CheckCommandsWork() {
    for (int i = 0; i < kWriters; ++i) {
      PmResult status = Pm({"status", writer(i).id});
      EXPECT_EQ(status.code, 0) << status.err;
      EXPECT_THAT(status.out, HasSubstr("state:        running\n"));
    }
    PmResult list = Pm({"list", "--all"});
    EXPECT_EQ(list.code, 0) << list.err;
    for (const Managed& m : managed_) EXPECT_THAT(list.out, HasSubstr(m.id));
    PmResult remote_list = PmRun(GatewayArgs({"list", "--all"}), GatewayEnvironment()).Finish();
    EXPECT_EQ(remote_list.code, 0) << remote_list.err;
    for (const Managed* m : {&writer(1), &writer(3), &exiter()}) {
      EXPECT_THAT(remote_list.out, HasSubstr(m->id));
    }
    // A follower attached after the fault reads an old process from its
    // start (compared with the store in CheckFollowers).
    late_follower_ = std::make_unique<CliFollower>(
        LocalArgs({"logs", "-f", writer(2).id}), EnvironmentWithout({}));
    ASSERT_TRUE(late_follower_->Attach("w2 out 1\n"));
    PmResult logs = Pm({"logs", writer(0).id});
    EXPECT_EQ(logs.code, 0) << logs.err;
    EXPECT_TRUE(IsWriterStream(writer(0).tag, logs.out));
    PmResult remote_logs =
        PmRun(GatewayArgs({"logs", exiter().id}), GatewayEnvironment()).Finish();
    EXPECT_EQ(remote_logs.code, 0) << remote_logs.err;
    EXPECT_TRUE(IsWriterStream(exiter().tag, remote_logs.out));
    EXPECT_TRUE(absl::EndsWith(remote_logs.out, "\n"));
  }

  // A process started after the fault starts, writes, is read and stops.
  void CheckNewProcessWorks() {
    PmResult started = Pm({"start", "--", WriterBinary(), "new", kWriterPeriodUs});
    ASSERT_EQ(started.code, 0) << started.err;
    const std::string id = started.out.substr(0, 36);
    CliFollower follower(LocalArgs({"logs", "-f", id}), EnvironmentWithout({}));
    ASSERT_TRUE(follower.Attach("new out 3\n"));
    PmResult stopped = Pm({"stop", "--grace", "5s", id});
    EXPECT_EQ(stopped.code, 0) << stopped.err;
    EXPECT_EQ(stopped.out, "killed by signal 15 (SIGTERM)\n");
    PmResult followed = follower.Join();
    EXPECT_EQ(followed.code, 0) << followed.err;
    Managed m{"new", id};
    const std::string all = ExpectWholeOutput(m, MustGetStatus(*client_, id));
    EXPECT_TRUE(followed.out == all) << followed.out.size() << " bytes followed, "
                                     << all.size() << " stored";
  }

  void CheckNoLeakedFd() {
    for (int i = 0; i < kWriters; ++i) {
      EXPECT_THAT(ExtraFds(writer(i).pid), ::testing::IsEmpty()) << writer(i).tag;
    }
  }

  void CheckNoZombie() {
    std::set<pid_t> parents = {getpid(), launcher_->pid()};
    for (const char* s : {"registry", "log_store", "supervisor", "gateway"}) {
      parents.insert(launcher_->ServicePid(s));
    }
    // A zombie counts only if it is still there after a round trip through
    // the supervisor's event loop (a shim that exited just now, its SIGCHLD
    // not yet read, is reaped by then): a Stop of an id no one has goes
    // through that loop.
    std::vector<std::string> zombies = ZombiesUnder(parents, dir_);
    if (!zombies.empty()) {
      pm::v1::StopRequest nobody;
      nobody.set_id("00000000-0000-4000-8000-000000000000");
      EXPECT_EQ(client_->Stop(nobody).status().code(), absl::StatusCode::kNotFound);
      std::vector<std::string> again = ZombiesUnder(parents, dir_);
      std::vector<std::string> both;
      for (const std::string& z : zombies) {
        if (std::find(again.begin(), again.end(), z) != again.end()) both.push_back(z);
      }
      zombies = both;
    }
    EXPECT_THAT(zombies, ::testing::IsEmpty()) << SignalStateOf(launcher_->ServicePid("supervisor"));
  }

  // For a zombie left: each thread's blocked and pending signals, to tell a
  // SIGCHLD never seen from one seen and not acted on.
  static std::string SignalStateOf(pid_t pid) {
    std::string out = absl::StrCat("supervisor ", pid, " threads:\n");
    std::error_code ignored;
    for (const auto& task : std::filesystem::directory_iterator(
             absl::StrCat("/proc/", pid, "/task"), ignored)) {
      std::ifstream status(task.path() / "status");
      std::string line;
      absl::StrAppend(&out, "  ", task.path().filename().string());
      while (std::getline(status, line)) {
        if (absl::StartsWith(line, "Name:") || absl::StartsWith(line, "SigPnd:") ||
            absl::StartsWith(line, "ShdPnd:") || absl::StartsWith(line, "SigBlk:")) {
          absl::StrAppend(&out, " ", line);
        }
      }
      absl::StrAppend(&out, "\n");
    }
    return out;
  }

  // Half through the CLI, half through the Library; SIGTERM ends each, so
  // each lived until now. Then every byte each wrote is there.
  void StopWritersAndCheckOutput() {
    for (int i = 0; i < kWriters; ++i) {
      ProcessStatus ended;
      if (i % 2 == 0) {
        PmResult stopped = Pm({"stop", "--grace", "5s", writer(i).id});
        EXPECT_EQ(stopped.code, 0) << stopped.err;
        EXPECT_EQ(stopped.out, "killed by signal 15 (SIGTERM)\n") << writer(i).tag;
        ended = MustGetStatus(*client_, writer(i).id);
      } else {
        ended = MustStop(*client_, writer(i).id, 5000).status();
      }
      EXPECT_EQ(ended.state(), ProcessStatus::STATE_SIGNALED) << ended.DebugString();
      EXPECT_EQ(ended.signal(), SIGTERM) << writer(i).tag;
      ended_at_[i] = absl::Now();
      stored_[i] = ExpectWholeOutput(writer(i), MustGetStatus(*client_, writer(i).id));
    }
  }

  // Each follower got exactly the stored bytes: none lost, none twice.
  // A follower whose stream went through a killed service (every one, for
  // kEverything, whose `services` is empty) was cut off and said so.
  void CheckFollowers(const std::vector<std::string>& killed) {
    auto was_killed = [&](const std::string& service) {
      return killed.empty() ||
             std::find(killed.begin(), killed.end(), service) != killed.end();
    };
    const bool cut[2] = {was_killed("log_store"),
                         was_killed("log_store") || was_killed("gateway")};
    for (int i = 0; i < 2; ++i) {
      PmResult followed = cli_followers_[i]->Join();
      // At most this long after the end: the Join may return later than pm
      // exited, never earlier.
      const absl::Duration after_end = absl::Now() - ended_at_[i];
      std::cerr << "follower pm logs -f " << writer(i).tag << " ended at most "
                << absl::FormatDuration(after_end) << " after its process; stderr: "
                << followed.err;
      EXPECT_LT(after_end, kFollowerEndsWithin)
          << "pm logs -f " << writer(i).tag << " still followed a process that had ended";
      if (cut[i]) {
        EXPECT_THAT(followed.err, HasSubstr("pm: output stream lost ("))
            << writer(i).tag << " was not cut off by the fault";
        EXPECT_THAT(followed.err, HasSubstr("pm: resumed at offset ")) << writer(i).tag;
      }
      EXPECT_EQ(followed.code, 0) << writer(i).tag << ": " << followed.err;
      EXPECT_TRUE(IsWriterStream(writer(i).tag, followed.out)) << followed.err;
      EXPECT_TRUE(followed.out == stored_[i])
          << writer(i).tag << ": `pm logs -f` printed " << followed.out.size()
          << " bytes, the store has " << stored_[i].size() << "; stderr: " << followed.err;
      EXPECT_THAT(followed.err, Not(HasSubstr("not retained"))) << writer(i).tag;
    }
    PmResult late = late_follower_->Join();
    EXPECT_EQ(late.code, 0) << late.err;
    EXPECT_TRUE(late.out == stored_[2]) << "`pm logs -f` started after the fault printed "
                                        << late.out.size() << " bytes, the store has "
                                        << stored_[2].size();
    for (int i = 0; i < 2; ++i) {
      const absl::Time start = absl::Now();
      LibraryFollower::Result followed = library_followers_[i]->Join();
      const Managed& m = writer(2 + i);
      std::cerr << "Library follower of " << m.tag << " ended after "
                << absl::FormatDuration(absl::Now() - start) << ", "
                << followed.reconnects << " reconnects\n";
      if (cut[i]) {
        EXPECT_GT(followed.reconnects, 0) << m.tag << " was not cut off by the fault";
      }
      EXPECT_TRUE(followed.status.ok()) << m.tag << ": " << followed.status;
      EXPECT_EQ(followed.dropped, 0u) << m.tag;
      EXPECT_TRUE(followed.offsets_contiguous) << m.tag;
      EXPECT_TRUE(IsWriterStream(m.tag, followed.data)) << m.tag;
      EXPECT_TRUE(followed.data == stored_[2 + i])
          << m.tag << ": the follower got " << followed.data.size()
          << " bytes, the store has " << stored_[2 + i].size() << " ("
          << followed.reconnects << " reconnects)";
    }
  }

  std::string dir_;
  int port_ = 0;
  std::unique_ptr<LauncherProcess> launcher_;
  std::unique_ptr<pm::Client> client_;
  std::vector<Managed> managed_;
  std::vector<std::unique_ptr<CliFollower>> cli_followers_;
  std::unique_ptr<CliFollower> late_follower_;
  std::vector<std::unique_ptr<LibraryFollower>> library_followers_;
  std::string stored_[kWriters];
  absl::Time ended_at_[kWriters];  // when each writer's Stop answered
};

// --- The checks catch what they look for ---------------------------------------

TEST(DurabilityCheckTest, AStreamWithALineMissingOrTwiceIsRejected) {
  EXPECT_TRUE(IsWriterStream("w", "w out 1\nw err 1\nw out 2\nw err 2\n"));
  EXPECT_TRUE(IsWriterStream("w", "w out 1\nw out 2\nw err 1\nw er"));
  EXPECT_FALSE(IsWriterStream("w", "w out 1\nw out 3\n"));             // lost
  EXPECT_FALSE(IsWriterStream("w", "w out 1\nw err 1\nw out 1\n"));   // twice
  EXPECT_FALSE(IsWriterStream("w", "w out 1\nx err 1\n"));             // not ours
  EXPECT_FALSE(IsWriterStream("w", "w out 1\nw out 3"));                // cut, wrong
}

TEST(DurabilityCheckTest, AZombieChildIsFound) {
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) _exit(0);
  // Exited and not reaped: a zombie as soon as its pidfd is readable.
  const int pidfd = PidfdOpen(child);
  ASSERT_GE(pidfd, 0);
  pollfd p = {pidfd, POLLIN, 0};
  ASSERT_EQ(poll(&p, 1, 60000), 1);
  EXPECT_THAT(ZombiesUnder({getpid()}),
              ::testing::Contains(HasSubstr(absl::StrCat("(pid ", child, ","))));
  siginfo_t info = {};
  ASSERT_EQ(waitid(P_PID, static_cast<id_t>(child), &info, WEXITED), 0);
  close(pidfd);
  EXPECT_THAT(ZombiesUnder({getpid()}), ::testing::IsEmpty());
}

TEST(DurabilityCheckTest, AnFdBeyondTheThreeStandardOnesIsFound) {
  const int extra = open("/dev/null", O_RDONLY | O_CLOEXEC);
  ASSERT_GE(extra, 3);
  EXPECT_THAT(ExtraFds(getpid()),
              ::testing::Contains(absl::StrCat(extra, " -> /dev/null")));
  close(extra);
}

// --- The cases -------------------------------------------------------------------

TEST_F(DurabilityTest, ALogStoreKilledWithSigkillDisturbsNothing) {
  RunScenario(Fault::kOneService, {"log_store"});
}

TEST_F(DurabilityTest, ARegistryKilledWithSigkillDisturbsNothing) {
  RunScenario(Fault::kOneService, {"registry"});
}

TEST_F(DurabilityTest, AGatewayKilledWithSigkillDisturbsNothing) {
  RunScenario(Fault::kOneService, {"gateway"});
}

TEST_F(DurabilityTest, ASupervisorKilledWithSigkillDisturbsNothing) {
  RunScenario(Fault::kOneService, {"supervisor"});
}

TEST_F(DurabilityTest, EveryServiceKilledAtOnceDisturbsNothing) {
  RunScenario(Fault::kOneService, {"registry", "log_store", "supervisor", "gateway"});
}

TEST_F(DurabilityTest, TheLauncherAndEveryServiceKilledThenUpAgainDisturbsNothing) {
  RunScenario(Fault::kEverything, {});
}

}  // namespace
}  // namespace pm::testing
