// pm-shim as the supervisor will use it: the real binary, started with one
// end of a socketpair on fd 3, temp state and runtime dirs. Every wait is on
// an event (the socket, a pidfd, inotify on the output directory), with a
// generous timeout as a safety net.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/inotify.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <dirent.h>

#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "absl/strings/str_split.h"
#include "common/fd.h"
#include "common/proc.h"
#include "gtest/gtest.h"
#include "segment_log/test_util.h"
#include "shim/exit_file.h"
#include "shim/launch.h"
#include "shim/protocol.h"
#include "shim/shim.h"
#include "shim/zygote.h"

extern char** environ;

namespace pm::shim {
namespace {

constexpr int kTimeoutMs = 30000;  // a safety net, not a speed assertion
constexpr char kUuid[] = "6a1c1f0e-3b2d-4e5f-8a9b-0c1d2e3f4a5b";

std::string ShimBinary() {
  return absl::StrCat(getenv("TEST_SRCDIR"), "/pm/shim/pm-shim");
}

std::string EndlessWriter() {
  return absl::StrCat(getenv("TEST_SRCDIR"), "/pm/shim/endless_writer");
}

Fd PidfdOpen(pid_t pid) { return Fd(static_cast<int>(syscall(SYS_pidfd_open, pid, 0))); }

int PidfdSignal(int pidfd, int sig) {
  return static_cast<int>(syscall(SYS_pidfd_send_signal, pidfd, sig, nullptr, 0));
}

bool WaitReadable(int fd, int timeout_ms = kTimeoutMs) {
  pollfd p{fd, POLLIN, 0};
  return poll(&p, 1, timeout_ms) == 1;
}

// The pid a pidfd refers to, from /proc/self/fdinfo.
pid_t PidOfPidfd(int pidfd) {
  absl::StatusOr<std::string> info = ReadFile(absl::StrCat("/proc/self/fdinfo/", pidfd));
  if (!info.ok()) return -1;
  for (absl::string_view line : absl::StrSplit(*info, '\n')) {
    int pid;
    if (absl::ConsumePrefix(&line, "Pid:") &&
        absl::SimpleAtoi(absl::StripAsciiWhitespace(line), &pid)) {
      return pid;
    }
  }
  return -1;
}

std::vector<std::string> FdLinks(pid_t pid) {
  std::vector<std::string> out;
  const std::string dir = absl::StrCat("/proc/", pid, "/fd");
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) return out;
  while (dirent* e = readdir(d)) {
    if (e->d_name[0] == '.') continue;
    char target[512];
    const ssize_t n = readlink(absl::StrCat(dir, "/", e->d_name).c_str(), target, sizeof(target));
    out.push_back(absl::StrCat(e->d_name, " -> ", n > 0 ? std::string(target, n) : "?"));
  }
  closedir(d);
  return out;
}

// One pm-shim, started as the supervisor will start it (LaunchShim).
class ShimProcess {
 public:
  ShimProcess(const std::string& state_dir, const std::string& runtime_dir,
              uint64_t max_output_bytes = 0, uint64_t segment_bytes = 0,
              std::string process_id = "") {
    absl::StatusOr<LaunchedShim> shim =
        LaunchShim({ShimBinary(), state_dir, runtime_dir, max_output_bytes, segment_bytes,
                    std::move(process_id)});
    EXPECT_TRUE(shim.ok()) << shim.status();
    if (!shim.ok()) return;
    pid_ = shim->pid;
    pidfd_ = std::move(shim->pidfd);
    control_ = std::move(shim->control);
  }
  ~ShimProcess() {
    if (pidfd_) {
      PidfdSignal(pidfd_.get(), SIGKILL);
      Wait();
    }
  }

  pid_t pid() const { return pid_; }
  Fd& control() { return control_; }

  // The next message on the control socket (fails the test on none).
  Received Next() {
    EXPECT_TRUE(WaitReadable(control_.get())) << "no message from the shim";
    absl::StatusOr<Received> got = ReceiveMessage(control_.get());
    EXPECT_TRUE(got.ok()) << got.status();
    return got.ok() ? std::move(*got) : Received{};
  }

  // Its exit code, once it has exited.
  int Wait() {
    EXPECT_TRUE(WaitReadable(pidfd_.get())) << "the shim did not exit";
    siginfo_t info = {};
    EXPECT_EQ(waitid(static_cast<idtype_t>(P_PIDFD), pidfd_.get(), &info, WEXITED), 0);
    pidfd_.reset();
    return info.si_code == CLD_EXITED ? info.si_status : 128 + info.si_status;
  }

 private:
  pid_t pid_ = -1;
  Fd pidfd_;
  Fd control_;
};

class ShimTest : public ::testing::Test {
 protected:
  std::string state_dir() const { return tmp_.Sub("state"); }
  // Short, for sockaddr_un (TEST_TMPDIR can be longer than 108 bytes).
  const std::string& runtime_dir() const { return runtime_dir_; }
  std::string proc_dir() const { return absl::StrCat(state_dir(), "/procs/", kUuid); }
  std::string output_dir() const { return proc_dir() + "/output"; }

  void SetUp() override {
    char tmpl[] = "/tmp/pm-shim-test.XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    runtime_dir_ = tmpl;
  }
  void TearDown() override {
    unlink((runtime_dir_ + "/" + kShimsSocketName).c_str());
    unlink((runtime_dir_ + "/shims.sock.new").c_str());
    rmdir(runtime_dir_.c_str());
  }

  static Spawn SpawnOf(std::vector<std::string> argv) {
    Spawn spawn;
    spawn.uuid = kUuid;
    spawn.command.executable = argv[0];
    spawn.command.args.assign(argv.begin() + 1, argv.end());
    spawn.command.env = {{"PATH", "/usr/bin:/bin"}};
    return spawn;
  }

  // Sends the Spawn and expects Spawned; returns it and its pidfd.
  static Spawned Start(ShimProcess& shim, const Spawn& spawn, Fd* pidfd) {
    EXPECT_TRUE(SendMessage(shim.control().get(), spawn, {}).ok());
    Received got = shim.Next();
    const Spawned* spawned = std::get_if<Spawned>(&got.message);
    EXPECT_NE(spawned, nullptr) << "got " << MessageName(got.message);
    if (spawned == nullptr) return {};
    EXPECT_EQ(got.fds.size(), 1u);
    if (pidfd != nullptr && !got.fds.empty()) *pidfd = std::move(got.fds[0]);
    return *spawned;
  }

  // The bytes of `stream` on disk so far.
  std::string OutputOf(segment_log::Stream stream) const {
    std::string out;
    for (const segment_log::Record& r : segment_log::RecordsIn(output_dir())) {
      if (r.kind == segment_log::RecordKind::kData && r.stream == stream) out += r.payload;
    }
    return out;
  }

  // Waits (inotify on `dir`) until `done()`.
  template <typename Done>
  static void WaitFor(const std::string& dir, Done done, absl::string_view what) {
    Fd watch(inotify_init1(IN_CLOEXEC | IN_NONBLOCK));
    ASSERT_GE(inotify_add_watch(watch.get(), dir.c_str(), IN_MODIFY | IN_CREATE), 0);
    while (!done()) {
      ASSERT_TRUE(WaitReadable(watch.get())) << "never saw " << what;
      char buffer[4096];
      while (read(watch.get(), buffer, sizeof(buffer)) > 0) {
      }
    }
  }

  static void WaitForPath(const std::string& path) {
    ASSERT_TRUE(segment_log::WaitForPath(path)) << path << " never appeared";
  }

  void WaitForStdout(absl::string_view text) const {
    WaitFor(
        output_dir(),
        [&] { return absl::StrContains(OutputOf(segment_log::Stream::kStdout), text); },
        absl::StrCat("\"", text, "\" on disk"));
  }

  // Waits until the shim's log says `text`.
  void WaitForShimLog(absl::string_view text) const {
    const std::string log = proc_dir() + "/" + kShimLogName;
    WaitFor(
        proc_dir(),
        [&] {
          absl::StatusOr<std::string> content = ReadFile(log);
          return content.ok() && absl::StrContains(*content, text);
        },
        absl::StrCat("\"", text, "\" in the shim's log"));
    if (::testing::Test::HasFailure()) {
      absl::StatusOr<std::string> content = ReadFile(log);
      ADD_FAILURE() << "the shim's log: " << (content.ok() ? *content : "(unreadable)");
    }
  }

  ProcessEnd ExpectExited(ShimProcess& shim) const {
    Received got = shim.Next();
    const Exited* exited = std::get_if<Exited>(&got.message);
    EXPECT_NE(exited, nullptr) << "got " << MessageName(got.message);
    return exited != nullptr ? exited->end : ProcessEnd{};
  }

  // The exit file, once it is there (the shim says Exited first).
  ProcessEnd ExitFile() const {
    WaitForPath(proc_dir() + "/" + kExitFileName);
    absl::StatusOr<std::optional<ExitRecord>> end = ReadExitFile(proc_dir());
    EXPECT_TRUE(end.ok()) << end.status();
    EXPECT_TRUE(end.ok() && end->has_value()) << "no exit file";
    return end.ok() && end->has_value() ? (*end)->end : ProcessEnd{};
  }

  segment_log::TempDir tmp_;
  std::string runtime_dir_;
};

TEST_F(ShimTest, SpawnedNamesALivePidWhoseStartTicksMatchProcAndAWorkingPidfd) {
  ShimProcess shim(state_dir(), runtime_dir());
  Fd pidfd;
  Spawned spawned = Start(shim, SpawnOf({"sleep", "1000"}), &pidfd);
  EXPECT_EQ(spawned.executable, "/usr/bin/sleep");
  absl::StatusOr<ProcStat> stat = ReadProcStat(spawned.pid);
  ASSERT_TRUE(stat.ok()) << stat.status();
  EXPECT_EQ(stat->start_ticks, spawned.start_ticks);
  EXPECT_EQ(stat->ppid, shim.pid());
  EXPECT_EQ(PidOfPidfd(pidfd.get()), spawned.pid);

  // The shim ignores what would end a service; only its process ends it.
  ASSERT_EQ(kill(shim.pid(), SIGTERM), 0);
  ASSERT_EQ(kill(shim.pid(), SIGINT), 0);
  ASSERT_EQ(kill(shim.pid(), SIGHUP), 0);
  ASSERT_EQ(PidfdSignal(pidfd.get(), SIGKILL), 0);
  const ProcessEnd end = ExpectExited(shim);
  EXPECT_EQ(end.status, ExitStatus::Signaled(SIGKILL));
  EXPECT_EQ(ExitFile(), end);
  Received closed = shim.Next();
  EXPECT_TRUE(std::holds_alternative<Closed>(closed.message));
  EXPECT_EQ(shim.Wait(), kExitDone);
}

TEST_F(ShimTest, BothStreamsLandOnDiskByteExact) {
  ShimProcess shim(state_dir(), runtime_dir());
  // 300,000 bytes of stdout (more than a pipe holds), binary bytes on
  // stderr, interleaved.
  Start(shim,
        SpawnOf({"sh", "-c",
                 "printf 'first\\n'; printf 'caf\\351\\000\\001' >&2; "
                 "head -c 300000 /dev/zero | tr '\\0' x; printf 'last\\n' >&2"}),
        nullptr);
  const ProcessEnd end = ExpectExited(shim);
  EXPECT_EQ(end.status, ExitStatus::Exited(0));
  EXPECT_EQ(end.output_end, 6u + 6u + 300000u + 5u);
  Received closed = shim.Next();
  ASSERT_TRUE(std::holds_alternative<Closed>(closed.message));
  EXPECT_EQ(std::get<Closed>(closed.message).output_end, end.output_end);
  EXPECT_EQ(shim.Wait(), kExitDone);

  EXPECT_EQ(OutputOf(segment_log::Stream::kStdout), "first\n" + std::string(300000, 'x'));
  EXPECT_EQ(OutputOf(segment_log::Stream::kStderr), std::string("caf\xe9\0\x01last\n", 11));
  std::vector<segment_log::Record> records = segment_log::RecordsIn(output_dir());
  ASSERT_FALSE(records.empty());
  EXPECT_EQ(records.back().kind, segment_log::RecordKind::kEnd);
  EXPECT_EQ(records.back().offset, end.output_end);
}

TEST_F(ShimTest, ExitFileHoldsExitCode3) {
  ShimProcess shim(state_dir(), runtime_dir());
  Start(shim, SpawnOf({"sh", "-c", "printf abc; exit 3"}), nullptr);
  const ProcessEnd end = ExpectExited(shim);
  EXPECT_EQ(end.status, ExitStatus::Exited(3));
  EXPECT_EQ(end.output_end, 3u);
  EXPECT_EQ(ExitFile(), end);
  EXPECT_EQ(shim.Wait(), kExitDone);
}

TEST_F(ShimTest, ExitFileSaysCoreDumpedExactlyAsTheKernelDoes) {
  const std::string dir = tmp_.Sub("cores");
  ASSERT_EQ(mkdir(dir.c_str(), 0700), 0);
  const std::vector<std::string> argv = {
      "sh", "-c", "ulimit -c unlimited 2>/dev/null; kill -ABRT $$"};
  // The reference: the same command as our own child.
  pid_t ref;
  const char* ref_argv[] = {"/bin/sh", "-c", argv[2].c_str(), nullptr};
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addchdir_np(&actions, dir.c_str());
  ASSERT_EQ(posix_spawn(&ref, "/bin/sh", &actions, nullptr, const_cast<char**>(ref_argv),
                        environ),
            0);
  posix_spawn_file_actions_destroy(&actions);
  siginfo_t info = {};
  ASSERT_EQ(waitid(P_PID, ref, &info, WEXITED), 0);
  const ExitStatus expected = ExitStatus::FromSiginfo(info);
  ASSERT_EQ(expected.signal, SIGABRT);

  ShimProcess shim(state_dir(), runtime_dir());
  Spawn spawn = SpawnOf(argv);
  spawn.command.working_dir = dir;
  Start(shim, spawn, nullptr);
  const ProcessEnd end = ExpectExited(shim);
  EXPECT_EQ(end.status, expected) << end.status.ToString();
  EXPECT_EQ(ExitFile().status, expected);
  EXPECT_EQ(shim.Wait(), kExitDone);
}

TEST_F(ShimTest, AFailingDiskNeitherBlocksNorKillsTheProcess) {
  ShimProcess shim(state_dir(), runtime_dir());
  // Output files may not grow past 64 KiB (EFBIG): a full disk as far as the
  // shim can tell.
  const rlimit small = {64 << 10, 64 << 10};
  ASSERT_EQ(prlimit(shim.pid(), RLIMIT_FSIZE, &small, nullptr), 0);
  Start(shim, SpawnOf({"sh", "-c", "head -c 1000000 /dev/zero; echo done >&2"}), nullptr);
  const ProcessEnd end = ExpectExited(shim);
  EXPECT_EQ(end.status, ExitStatus::Exited(0));
  // Every byte is counted, written or lost.
  EXPECT_EQ(end.output_end, 1000000u + 5u);
  EXPECT_EQ(ExitFile(), end);
  // And Closed tells the supervisor how many were lost (its metrics).
  Received closed = shim.Next();
  ASSERT_TRUE(std::holds_alternative<Closed>(closed.message)) << MessageName(closed.message);
  const Closed& told = std::get<Closed>(closed.message);
  EXPECT_GT(told.lost, 0u);
  EXPECT_EQ(told.lost + OutputOf(segment_log::Stream::kStdout).size() +
                OutputOf(segment_log::Stream::kStderr).size(),
            end.output_end);
  EXPECT_EQ(told.capped, 0u);
  EXPECT_EQ(shim.Wait(), kExitDone);
  absl::StatusOr<std::string> log = ReadFile(proc_dir() + "/" + kShimLogName);
  ASSERT_TRUE(log.ok()) << log.status();
  EXPECT_TRUE(absl::StrContains(*log, "File too large (EFBIG)")) << *log;
  // Rate-limited: one line for the many failed appends.
  EXPECT_EQ(std::vector<absl::string_view>(absl::StrSplit(*log, "] output: ")).size(), 2u)
      << *log;
  // What was written before the limit is there, byte-exact.
  const std::string written = OutputOf(segment_log::Stream::kStdout);
  EXPECT_GT(written.size(), 0u);
  EXPECT_EQ(written, std::string(written.size(), '\0'));
}

TEST_F(ShimTest, TheSpawnsFileLimitAndCgroupFdsReachTheChild) {
  // A cgroup.procs stand-in: the child writes "0" to each join fd first
  // thing, so a plain file shows that the fd came through and was used.
  const std::string procs = tmp_.Sub("cgroup.procs");
  Fd join = Fd(open(procs.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600));
  ASSERT_TRUE(join.valid());
  ShimProcess shim(state_dir(), runtime_dir());
  Spawn spawn = SpawnOf({"sh", "-c", "ulimit -n; ulimit -Hn"});
  spawn.file_limit = rlimit{123, 456};
  spawn.cgroup_joins = {{0, procs}};
  const int fd = join.get();
  ASSERT_TRUE(SendMessage(shim.control().get(), spawn, {&fd, 1}).ok());
  Received got = shim.Next();
  ASSERT_TRUE(std::holds_alternative<Spawned>(got.message)) << MessageName(got.message);
  EXPECT_EQ(ExpectExited(shim).status, ExitStatus::Exited(0));
  EXPECT_EQ(shim.Wait(), kExitDone);
  EXPECT_EQ(OutputOf(segment_log::Stream::kStdout), "123\n456\n");
  absl::StatusOr<std::string> written = ReadFile(procs);
  ASSERT_TRUE(written.ok()) << written.status();
  EXPECT_EQ(*written, "0");
}

TEST(ShimFlagsTest, OutputCapsDefaultToTheLogStoresOldOnes) {
  const char* argv[] = {"pm-shim", "--control_fd=3", "--state_dir=s", "--runtime_dir=r"};
  absl::StatusOr<ShimFlags> flags = ParseShimFlags(4, argv);
  ASSERT_TRUE(flags.ok()) << flags.status();
  EXPECT_EQ(flags->max_output_bytes, uint64_t{64} << 20);
  EXPECT_EQ(flags->segment_bytes, uint64_t{8} << 20);
}

TEST(ShimFlagsTest, ASmallCapWithoutASegmentSizeGetsSegmentsOfAQuarterOfIt) {
  const char* argv[] = {"pm-shim", "--control_fd=3", "--state_dir=s", "--runtime_dir=r",
                        "--max_output_bytes=1000"};
  absl::StatusOr<ShimFlags> flags = ParseShimFlags(5, argv);
  ASSERT_TRUE(flags.ok()) << flags.status();
  EXPECT_EQ(flags->max_output_bytes, 1000u);
  EXPECT_EQ(flags->segment_bytes, 250u);
}

TEST(ShimFlagsTest, ASegmentAboveAQuarterOfTheCapIsRefusedNamingTheFlag) {
  const char* argv[] = {"pm-shim", "--control_fd=3", "--state_dir=s", "--runtime_dir=r",
                        "--max_output_bytes=1000", "--segment_bytes=251"};
  absl::StatusOr<ShimFlags> flags = ParseShimFlags(6, argv);
  EXPECT_EQ(flags.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(flags.status().message(),
            "--segment_bytes=251: at most a quarter of --max_output_bytes=1000 (250)");
}

TEST(ShimFlagsTest, AZeroOrNonNumericByteCountIsRefusedNamingTheFlag) {
  for (const char* bad : {"--max_output_bytes=0", "--segment_bytes=0",
                          "--max_output_bytes=1x", "--segment_bytes=-1"}) {
    const char* argv[] = {"pm-shim", "--control_fd=3", "--state_dir=s", "--runtime_dir=r",
                          bad};
    absl::StatusOr<ShimFlags> flags = ParseShimFlags(5, argv);
    EXPECT_EQ(flags.status().code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_TRUE(absl::StartsWith(flags.status().message(),
                                 absl::string_view(bad).substr(0, 12)))
        << flags.status();
  }
  const char* tiny[] = {"pm-shim", "--control_fd=3", "--state_dir=s", "--runtime_dir=r",
                        "--max_output_bytes=3"};
  EXPECT_EQ(ParseShimFlags(5, tiny).status().message(),
            "--max_output_bytes=3: at least 4 (four segments of at least one byte)");
}

TEST_F(ShimTest, ASmallOutputCapDropsTheOldestSegmentsAndKeepsWriting) {
  constexpr uint64_t kCap = 64 << 10, kSegment = 16 << 10;
  ShimProcess shim(state_dir(), runtime_dir(), kCap, kSegment);
  Start(shim, SpawnOf({"sh", "-c", "head -c 1000000 /dev/zero | tr '\\0' x; echo end"}),
        nullptr);
  const ProcessEnd end = ExpectExited(shim);
  EXPECT_EQ(end.status, ExitStatus::Exited(0));
  EXPECT_EQ(end.output_end, 1000000u + 4u);
  Received closed = shim.Next();
  ASSERT_TRUE(std::holds_alternative<Closed>(closed.message)) << MessageName(closed.message);
  EXPECT_EQ(shim.Wait(), kExitDone);

  std::unique_ptr<segment_log::Reader> reader = segment_log::OpenReader(output_dir());
  ASSERT_NE(reader, nullptr);
  const std::vector<segment_log::Chunk> chunks = segment_log::ReadChunks(*reader, 0);
  const uint64_t dropped = segment_log::DroppedIn(chunks);
  const std::string kept = segment_log::DataOf(chunks);
  EXPECT_GT(dropped, 0u);
  EXPECT_EQ(dropped + kept.size(), end.output_end);
  // Closed tells the supervisor what the cap dropped (its metrics).
  EXPECT_EQ(std::get<Closed>(closed.message), (Closed{end.output_end, dropped, 0}));
  // The newest output is what is kept, byte-exact.
  EXPECT_EQ(kept, std::string(kept.size() - 4, 'x') + "end\n");
  // At most the cap, plus the segment being written past its size by one
  // read's record.
  uint64_t on_disk = 0;
  for (const std::string& path : segment_log::SegmentPaths(output_dir())) {
    on_disk += segment_log::FileSize(path);
  }
  EXPECT_LE(on_disk, kCap + kSegment + (64 << 10)) << on_disk;
  EXPECT_LT(kept.size(), 1000000u);
}

TEST_F(ShimTest, ExitedComesPromptlyWhileAChildOfTheLeaderKeepsWriting) {
  // A small cap: the writer below fills the disk as fast as it can.
  ShimProcess shim(state_dir(), runtime_dir(), 4 << 20, 1 << 20);
  const std::string pid_file = tmp_.Sub("writer.pid");
  const std::string fifo = tmp_.Sub("gate");
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  Fd gate(open(fifo.c_str(), O_RDWR | O_CLOEXEC));
  // The leader starts writers that never stop (two, through a pipe they
  // grow to 1 MiB), says their pids, and exits once the gate opens.
  Start(shim,
        SpawnOf({"sh", "-c",
                 "for i in 1 2; do \"$2\" & echo $! >> \"$0\"; done; "
                 "read -r x < \"$1\"; exit 4",
                 pid_file, fifo, EndlessWriter()}),
        nullptr);
  std::unique_ptr<segment_log::Reader> reader = segment_log::OpenReader(output_dir());
  ASSERT_NE(reader, nullptr);
  WaitFor(
      output_dir(),
      [&] { return reader->Refresh().ok() && reader->end_offset() > (1 << 20); },
      "the writers' output");
  ASSERT_EQ(write(gate.get(), "go\n", 3), 3);
  // The drain at the leader's reap reads what the pipes hold then, not until
  // they are empty, which writers like these need never let them be. (The
  // old drain did stop here, after 3 to 5 MB, whenever a writer lost the
  // race for a moment; nothing bounded it.)
  const ProcessEnd end = ExpectExited(shim);
  EXPECT_EQ(end.status, ExitStatus::Exited(4));

  // The output keeps flowing after it.
  WaitFor(
      output_dir(),
      [&] { return reader->Refresh().ok() && reader->end_offset() > end.output_end + (1 << 20); },
      "output written after Exited");
  EXPECT_FALSE(reader->closed());

  absl::StatusOr<std::string> pid_text = ReadFile(pid_file);
  ASSERT_TRUE(pid_text.ok()) << pid_text.status();
  for (absl::string_view line : absl::StrSplit(*pid_text, '\n', absl::SkipEmpty())) {
    pid_t writer;
    ASSERT_TRUE(absl::SimpleAtoi(line, &writer)) << *pid_text;
    Fd writer_fd = PidfdOpen(writer);
    ASSERT_TRUE(writer_fd.valid());
    ASSERT_EQ(PidfdSignal(writer_fd.get(), SIGKILL), 0);
  }
  Received closed = shim.Next();
  ASSERT_TRUE(std::holds_alternative<Closed>(closed.message)) << MessageName(closed.message);
  EXPECT_GT(std::get<Closed>(closed.message).output_end, end.output_end + (1 << 20));
  EXPECT_EQ(shim.Wait(), kExitDone);
}

TEST(LaunchShimTest, RefusesCapsTheShimWouldRefuseBeforeStartingIt) {
  absl::StatusOr<LaunchedShim> shim =
      LaunchShim({ShimBinary(), "state", "runtime", /*max_output_bytes=*/1000,
                  /*segment_bytes=*/251, /*process_id=*/""});
  EXPECT_EQ(shim.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(shim.status().message(),
            "--segment_bytes=251: at most a quarter of --max_output_bytes=1000 (250)");
}

TEST_F(ShimTest, AControlFdThatIsNotASeqpacketSocketIsRefused) {
  int sv[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  Fd a(sv[0]), b(sv[1]);
  int out[2];
  ASSERT_EQ(pipe2(out, O_CLOEXEC), 0);
  Fd out_read(out[0]), out_write(out[1]);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, b.get(), 3);
  posix_spawn_file_actions_adddup2(&actions, out_write.get(), 2);
  const std::string binary = ShimBinary();
  const std::string state = "--state_dir=" + state_dir();
  const std::string runtime = "--runtime_dir=" + runtime_dir();
  const char* argv[] = {binary.c_str(), "--control_fd=3", state.c_str(), runtime.c_str(),
                        nullptr};
  pid_t pid;
  ASSERT_EQ(posix_spawn(&pid, binary.c_str(), &actions, nullptr, const_cast<char**>(argv),
                        environ),
            0);
  posix_spawn_file_actions_destroy(&actions);
  out_write.reset();
  siginfo_t info = {};
  ASSERT_EQ(waitid(P_PID, pid, &info, WEXITED), 0);
  EXPECT_EQ(info.si_code, CLD_EXITED);
  EXPECT_EQ(info.si_status, kExitBroken);
  absl::StatusOr<std::string> said = ReadToEnd(out_read.get(), "pm-shim stderr");
  ASSERT_TRUE(said.ok());
  EXPECT_EQ(*said, absl::StrCat("pm-shim: --control_fd=3 is a socket of type ", SOCK_STREAM,
                                ", not SOCK_SEQPACKET\n"));
}

TEST_F(ShimTest, SpawnFailedForAMissingExecutableNamesTheCall) {
  ShimProcess shim(state_dir(), runtime_dir());
  ASSERT_TRUE(SendMessage(shim.control().get(), SpawnOf({"/nope"}), {}).ok());
  Received got = shim.Next();
  const SpawnFailed* failed = std::get_if<SpawnFailed>(&got.message);
  ASSERT_NE(failed, nullptr) << "got " << MessageName(got.message);
  EXPECT_EQ(failed->code, absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(failed->message, "execve(\"/nope\"): No such file or directory (ENOENT)");
  EXPECT_EQ(shim.Wait(), kExitSpawnFailed);
}

TEST_F(ShimTest, ACommandMemfdThatIsNotSealedIsSpawnFailed) {
  ShimProcess shim(state_dir(), runtime_dir());
  // A memfd the sender could still change after the shim checked it.
  Fd memfd(memfd_create("command", MFD_CLOEXEC | MFD_ALLOW_SEALING));
  absl::StatusOr<std::string> bytes = EncodeCommand({"true", {}, {}, ""});
  ASSERT_TRUE(bytes.ok());
  ASSERT_EQ(write(memfd.get(), bytes->data(), bytes->size()),
            static_cast<ssize_t>(bytes->size()));
  Spawn spawn = SpawnOf({"unused"});
  spawn.command_memfd = 0;
  const int fd = memfd.get();
  ASSERT_TRUE(SendMessage(shim.control().get(), spawn, {&fd, 1}).ok());
  Received got = shim.Next();
  const SpawnFailed* failed = std::get_if<SpawnFailed>(&got.message);
  ASSERT_NE(failed, nullptr) << "got " << MessageName(got.message);
  EXPECT_EQ(failed->code, absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(failed->message, "shim message: the command memfd is not sealed (seals 0)");
  EXPECT_EQ(shim.Wait(), kExitSpawnFailed);
}

TEST_F(ShimTest, ASealedCommandMemfdIsRun) {
  ShimProcess shim(state_dir(), runtime_dir());
  absl::StatusOr<Fd> memfd =
      SealCommand({"sh", {"-c", "printf %s \"$X\"; exit 6"}, {{"X", "from the memfd"}}, ""});
  ASSERT_TRUE(memfd.ok()) << memfd.status();
  Spawn spawn = SpawnOf({"unused"});
  spawn.command_memfd = 0;
  const int fd = memfd->get();
  ASSERT_TRUE(SendMessage(shim.control().get(), spawn, {&fd, 1}).ok());
  Received got = shim.Next();
  ASSERT_TRUE(std::holds_alternative<Spawned>(got.message)) << MessageName(got.message);
  EXPECT_EQ(ExpectExited(shim).status, ExitStatus::Exited(6));
  EXPECT_EQ(shim.Wait(), kExitDone);
  EXPECT_EQ(OutputOf(segment_log::Stream::kStdout), "from the memfd");
}

TEST_F(ShimTest, AnIdleShimExitsWhenItsControlSocketCloses) {
  ShimProcess shim(state_dir(), runtime_dir());
  shim.control().reset();
  EXPECT_EQ(shim.Wait(), kExitDone);
}

// A spare (--process_id) has its process's directory, log and first
// segment before any Spawn: the Start that takes it does not wait for them.
TEST_F(ShimTest, AShimStartedForAnIdMakesItsDirectoryBeforeTheSpawnAndRunsThere) {
  ShimProcess shim(state_dir(), runtime_dir(), 0, 0, kUuid);
  WaitForPath(output_dir() + "/00000000000000000000.seg");
  EXPECT_EQ(access((proc_dir() + "/" + kShimLogName).c_str(), F_OK), 0);

  Start(shim, SpawnOf({"/bin/echo", "made ahead"}), nullptr);
  EXPECT_EQ(ExpectExited(shim).status, ExitStatus::Exited(0));
  EXPECT_EQ(shim.Wait(), kExitDone);
  EXPECT_EQ(OutputOf(segment_log::Stream::kStdout), "made ahead\n");
  EXPECT_EQ(ExitFile().status, ExitStatus::Exited(0));
}

TEST_F(ShimTest, AnIdleShimLetGoRemovesTheDirectoryItMadeAhead) {
  ShimProcess shim(state_dir(), runtime_dir(), 0, 0, kUuid);
  WaitForPath(output_dir() + "/00000000000000000000.seg");
  shim.control().reset();
  EXPECT_EQ(shim.Wait(), kExitDone);
  EXPECT_NE(access(proc_dir().c_str(), F_OK), 0) << proc_dir() << " was left behind";
  EXPECT_EQ(errno, ENOENT);
}

// A failed Spawn keeps the directory made ahead: its shim.log says why.
TEST_F(ShimTest, AFailedSpawnKeepsTheDirectoryMadeAheadWithTheReason) {
  ShimProcess shim(state_dir(), runtime_dir(), 0, 0, kUuid);
  ASSERT_TRUE(SendMessage(shim.control().get(), SpawnOf({"/no/such/binary"}), {}).ok());
  Received got = shim.Next();
  ASSERT_TRUE(std::holds_alternative<SpawnFailed>(got.message)) << MessageName(got.message);
  EXPECT_EQ(shim.Wait(), kExitSpawnFailed);
  absl::StatusOr<std::string> log = ReadFile(proc_dir() + "/" + kShimLogName);
  ASSERT_TRUE(log.ok()) << log.status();
  EXPECT_TRUE(absl::StrContains(*log, "/no/such/binary")) << *log;
}

TEST_F(ShimTest, ASpawnNamingAnotherIdThanTheShimWasStartedForIsSpawnFailed) {
  ShimProcess shim(state_dir(), runtime_dir(), 0, 0, kUuid);
  Spawn spawn = SpawnOf({"/bin/true"});
  spawn.uuid = "0b7e6a2c-1d3f-4a5b-9c8d-7e6f5a4b3c2d";
  ASSERT_TRUE(SendMessage(shim.control().get(), spawn, {}).ok());
  Received got = shim.Next();
  const SpawnFailed* failed = std::get_if<SpawnFailed>(&got.message);
  ASSERT_NE(failed, nullptr) << "got " << MessageName(got.message);
  EXPECT_EQ(failed->code, absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(failed->message, "--process_id")) << failed->message;
  EXPECT_EQ(shim.Wait(), kExitSpawnFailed);
}

// --- The zygote --------------------------------------------------------------

// A shim forked by a pm-shim --zygote is the zygote's parent's child (so
// the supervisor reaps it as it reaps an exec'd one), names itself pm-shim,
// makes its process's directory ahead, and runs a process like any other;
// the zygote, let go, exits 0.
TEST_F(ShimTest, AZygoteForksShimsThatAreItsParentsChildrenAndRunProcesses) {
  absl::StatusOr<LaunchedShim> zygote =
      LaunchShim({ShimBinary(), state_dir(), runtime_dir(), 0, 0, "", /*zygote=*/true});
  ASSERT_TRUE(zygote.ok()) << zygote.status();

  int sv[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
  Fd control(sv[0]), theirs(sv[1]);
  const int link = theirs.get();
  ASSERT_TRUE(SendMessage(zygote->control.get(), ForkShim{kUuid}, {&link, 1}).ok());
  theirs.reset();
  ASSERT_TRUE(WaitReadable(zygote->control.get()));
  absl::StatusOr<Received> answer = ReceiveMessage(zygote->control.get());
  ASSERT_TRUE(answer.ok()) << answer.status();
  const ShimForked* forked = std::get_if<ShimForked>(&answer->message);
  ASSERT_NE(forked, nullptr) << "got " << MessageName(answer->message);
  Fd shim_pidfd = std::move(answer->fds[0]);

  absl::StatusOr<ProcStat> shim = ReadProcStat(forked->pid);
  ASSERT_TRUE(shim.ok()) << shim.status();
  EXPECT_EQ(shim->ppid, getpid()) << "not a child of the zygote's parent";
  absl::StatusOr<ProcStat> zygote_stat = ReadProcStat(zygote->pid);
  ASSERT_TRUE(zygote_stat.ok()) << zygote_stat.status();
  EXPECT_EQ(zygote_stat->comm, "pm-shim-zygote");

  WaitForPath(output_dir() + "/00000000000000000000.seg");
  Spawn spawn = SpawnOf({"/bin/echo", "forked"});
  ASSERT_TRUE(SendMessage(control.get(), spawn, {}).ok());
  ASSERT_TRUE(WaitReadable(control.get()));
  absl::StatusOr<Received> spawned = ReceiveMessage(control.get());
  ASSERT_TRUE(spawned.ok()) << spawned.status();
  ASSERT_TRUE(std::holds_alternative<Spawned>(spawned->message))
      << MessageName(spawned->message);
  // Its comm is set right after the fork: read it once it has answered.
  shim = ReadProcStat(forked->pid);
  ASSERT_TRUE(shim.ok()) << shim.status();
  EXPECT_EQ(shim->comm, "pm-shim");
  // Exited, Closed, then the shim exits; this process reaps it.
  for (int i = 0; i < 2; ++i) {
    ASSERT_TRUE(WaitReadable(control.get()));
    ASSERT_TRUE(ReceiveMessage(control.get()).ok());
  }
  ASSERT_TRUE(WaitReadable(shim_pidfd.get()));
  siginfo_t info = {};
  ASSERT_EQ(waitid(static_cast<idtype_t>(P_PIDFD), shim_pidfd.get(), &info, WEXITED), 0)
      << strerror(errno);
  EXPECT_EQ(info.si_code, CLD_EXITED);
  EXPECT_EQ(info.si_status, kExitDone);
  EXPECT_EQ(OutputOf(segment_log::Stream::kStdout), "forked\n");

  zygote->control.reset();
  ASSERT_TRUE(WaitReadable(zygote->pidfd.get()));
  info = {};
  ASSERT_EQ(waitid(static_cast<idtype_t>(P_PIDFD), zygote->pidfd.get(), &info, WEXITED), 0);
  EXPECT_EQ(info.si_status, kExitDone);
}

TEST(ShimFlagsTest, AnUpperCaseProcessIdIsRefused) {
  const char* argv[] = {"pm-shim", "--control_fd=3", "--state_dir=s", "--runtime_dir=r",
                        "--process_id=6A1C1F0E-3B2D-4E5F-8A9B-0C1D2E3F4A5B"};
  absl::StatusOr<ShimFlags> flags = ParseShimFlags(5, argv);
  EXPECT_EQ(flags.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(flags.status().message(), "lower-case")) << flags.status();
}

TEST(ShimFlagsTest, AZygoteWithAProcessIdIsRefused) {
  const char* argv[] = {"pm-shim", "--control_fd=3", "--state_dir=s", "--runtime_dir=r",
                        "--zygote", "--process_id=6a1c1f0e-3b2d-4e5f-8a9b-0c1d2e3f4a5b"};
  absl::StatusOr<ShimFlags> flags = ParseShimFlags(6, argv);
  EXPECT_EQ(flags.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(flags.status().message(), "--zygote")) << flags.status();
}

TEST(ShimFlagsTest, AProcessIdThatIsNotAUuidIsRefusedNamingTheFlag) {
  const char* argv[] = {"pm-shim", "--control_fd=3", "--state_dir=s", "--runtime_dir=r",
                        "--process_id=../../etc"};
  absl::StatusOr<ShimFlags> flags = ParseShimFlags(5, argv);
  EXPECT_EQ(flags.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(flags.status().message(), "--process_id")) << flags.status();
}

TEST_F(ShimTest, TheProcessHasOnlyStdioAndTheShimHoldsNothingLeakedIntoIt) {
  const std::string secret = tmp_.Sub("leaked-file");
  // Not close-on-exec: as a careless starter would leak it.
  const int leaked = open(secret.c_str(), O_WRONLY | O_CREAT, 0600);
  ASSERT_GE(leaked, 0);
  ShimProcess shim(state_dir(), runtime_dir());
  close(leaked);
  Fd pidfd;
  // Looked at once it has printed: while the dynamic loader still runs it
  // holds the libraries it maps open (a flake, seen under load). It then
  // stops itself, its fds as they stay.
  Spawned spawned = Start(shim, SpawnOf({"sh", "-c", "echo ready; kill -STOP $$"}), &pidfd);
  WaitForStdout("ready\n");
  std::vector<std::string> fds = FdLinks(spawned.pid);
  ASSERT_EQ(fds.size(), 3u) << absl::StrJoin(fds, ", ");
  EXPECT_TRUE(absl::StartsWith(fds[0], "0 -> /dev/null")) << fds[0];
  EXPECT_TRUE(absl::StrContains(fds[1], "pipe:")) << fds[1];
  EXPECT_TRUE(absl::StrContains(fds[2], "pipe:")) << fds[2];
  for (const std::string& fd : FdLinks(shim.pid())) {
    EXPECT_FALSE(absl::StrContains(fd, secret)) << "the shim kept " << fd;
  }
  ASSERT_EQ(PidfdSignal(pidfd.get(), SIGKILL), 0);
  ExpectExited(shim);
}

TEST_F(ShimTest, AnOrphanedGrandchildIsReparentedToTheShimAndReaped) {
  ShimProcess shim(state_dir(), runtime_dir());
  // The grandchild lets go of the pipes, so only reaping it ends the shim.
  Start(shim, SpawnOf({"sh", "-c", "sleep 1000 >/dev/null 2>&1 & echo $!"}), nullptr);
  EXPECT_EQ(ExpectExited(shim).status, ExitStatus::Exited(0));
  std::string out = OutputOf(segment_log::Stream::kStdout);
  pid_t grandchild;
  ASSERT_TRUE(absl::SimpleAtoi(absl::StripAsciiWhitespace(out), &grandchild)) << out;
  absl::StatusOr<ProcStat> stat = ReadProcStat(grandchild);
  ASSERT_TRUE(stat.ok()) << stat.status();
  EXPECT_EQ(stat->ppid, shim.pid());
  Fd grandchild_fd = PidfdOpen(grandchild);
  ASSERT_TRUE(grandchild_fd.valid());
  // The shim is not done while a child of its is left.
  EXPECT_FALSE(WaitReadable(shim.control().get(), 0));
  ASSERT_EQ(PidfdSignal(grandchild_fd.get(), SIGKILL), 0);
  Received closed = shim.Next();
  EXPECT_TRUE(std::holds_alternative<Closed>(closed.message));
  // Reaped, not a zombie left behind: it is gone from /proc while the shim
  // (its parent) still runs or has just exited.
  EXPECT_EQ(ReadProcStat(grandchild).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(shim.Wait(), kExitDone);
}

// A listener at <runtime_dir>/shims.sock made to appear as the supervisor
// must: bound under another name, listening, then renamed into place.
Fd ListenAt(const std::string& runtime_dir, int backlog = 16) {
  const std::string temp = runtime_dir + "/shims.sock.new";
  const std::string path = runtime_dir + "/" + kShimsSocketName;
  Fd sock(socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
  sockaddr_un addr = {};
  addr.sun_family = AF_UNIX;
  EXPECT_LT(temp.size(), sizeof(addr.sun_path));
  memcpy(addr.sun_path, temp.c_str(), std::min(temp.size() + 1, sizeof(addr.sun_path) - 1));
  EXPECT_EQ(bind(sock.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  EXPECT_EQ(listen(sock.get(), backlog), 0);
  EXPECT_EQ(rename(temp.c_str(), path.c_str()), 0);
  return sock;
}

// A socket file nobody listens on, as a dead supervisor leaves it.
void LeaveStaleSocket(const std::string& runtime_dir) {
  const std::string path = runtime_dir + "/" + kShimsSocketName;
  Fd sock(socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
  sockaddr_un addr = {};
  addr.sun_family = AF_UNIX;
  ASSERT_LT(path.size(), sizeof(addr.sun_path));
  memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  ASSERT_EQ(bind(sock.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
}

TEST_F(ShimTest, ThePeerClosesMidRunTheProcessCarriesOnAndTheShimReconnects) {
  const std::string fifo = tmp_.Sub("commands");
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  // O_RDWR: opening does not wait for the reader.
  Fd commands(open(fifo.c_str(), O_RDWR | O_CLOEXEC));
  ASSERT_TRUE(commands.valid());
  auto say = [&](absl::string_view line) {
    ASSERT_EQ(write(commands.get(), line.data(), line.size()),
              static_cast<ssize_t>(line.size()));
  };

  ShimProcess shim(state_dir(), runtime_dir());
  Spawned spawned = Start(
      shim,
      SpawnOf({"sh", "-c",
               "while read -r line; do echo \"got $line\"; "
               "[ \"$line\" = quit ] && exit 7; done < \"$0\"",
               fifo}),
      nullptr);
  say("one\n");
  WaitForStdout("got one\n");

  // The supervisor dies, leaving its socket behind: the shim's first
  // connect is refused, and it waits for the socket to reappear.
  LeaveStaleSocket(runtime_dir());
  shim.control().reset();
  WaitForShimLog("Connection refused (ECONNREFUSED); waiting for it to appear");
  say("two\n");
  WaitForStdout("got two\n");
  absl::StatusOr<ProcStat> stat = ReadProcStat(spawned.pid);
  ASSERT_TRUE(stat.ok()) << stat.status();
  EXPECT_EQ(stat->start_ticks, spawned.start_ticks);

  // A new supervisor appears: the shim says Hello with a working pidfd.
  Fd listener = ListenAt(runtime_dir());
  ASSERT_TRUE(WaitReadable(listener.get())) << "the shim did not reconnect";
  Fd conn(accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
  ASSERT_TRUE(conn.valid());
  ASSERT_TRUE(WaitReadable(conn.get()));
  absl::StatusOr<Received> got = ReceiveMessage(conn.get());
  ASSERT_TRUE(got.ok()) << got.status();
  const Hello* hello = std::get_if<Hello>(&got->message);
  ASSERT_NE(hello, nullptr) << "got " << MessageName(got->message);
  EXPECT_EQ(hello->uuid, kUuid);
  EXPECT_EQ(hello->pid, spawned.pid);
  EXPECT_EQ(hello->start_ticks, spawned.start_ticks);
  EXPECT_FALSE(hello->end.has_value());
  EXPECT_EQ(hello->output_end, std::string("got one\ngot two\n").size());
  ASSERT_EQ(got->fds.size(), 1u);
  EXPECT_EQ(PidOfPidfd(got->fds[0].get()), spawned.pid);
  EXPECT_EQ(PidfdSignal(got->fds[0].get(), 0), 0);

  // That supervisor goes too; the process ends while nobody listens.
  ASSERT_EQ(unlink((runtime_dir() + "/" + kShimsSocketName).c_str()), 0);
  listener.reset();
  conn.reset();
  say("quit\n");
  EXPECT_EQ(shim.Wait(), kExitDone);
  const ProcessEnd end = ExitFile();
  EXPECT_EQ(end.status, ExitStatus::Exited(7));
  EXPECT_EQ(end.output_end, std::string("got one\ngot two\ngot quit\n").size());
  EXPECT_EQ(OutputOf(segment_log::Stream::kStdout), "got one\ngot two\ngot quit\n");
}

TEST_F(ShimTest, AListenerWhoseBacklogIsFullDoesNotStopTheOutput) {
  const std::string fifo = tmp_.Sub("commands");
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  Fd commands(open(fifo.c_str(), O_RDWR | O_CLOEXEC));
  ASSERT_TRUE(commands.valid());
  auto say = [&](absl::string_view line) {
    ASSERT_EQ(write(commands.get(), line.data(), line.size()),
              static_cast<ssize_t>(line.size()));
  };
  ShimProcess shim(state_dir(), runtime_dir());
  Spawned spawned = Start(
      shim,
      SpawnOf({"sh", "-c",
               "while read -r line; do echo \"got $line\"; "
               "[ \"$line\" = quit ] && exit 7; done < \"$0\"",
               fifo}),
      nullptr);
  say("one\n");
  WaitForStdout("got one\n");

  // A supervisor that listens but does not accept, its backlog full.
  Fd listener = ListenAt(runtime_dir(), /*backlog=*/0);
  const std::string path = runtime_dir() + "/" + kShimsSocketName;
  std::vector<Fd> fillers;
  for (int i = 0; i < 64; ++i) {
    Fd filler(socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    sockaddr_un addr = {};
    addr.sun_family = AF_UNIX;
    memcpy(addr.sun_path, path.c_str(), path.size() + 1);
    if (connect(filler.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
      ASSERT_EQ(errno, EAGAIN) << strerror(errno);
      break;
    }
    fillers.push_back(std::move(filler));
  }
  ASSERT_LT(fillers.size(), 64u) << "the backlog never filled";

  // The old supervisor goes: the shim's connect finds the backlog full.
  // (The shim logs this line and connects, without a turn of its loop
  // between the two.)
  shim.control().reset();
  WaitForShimLog("the supervisor is gone");
  // Before, that connect blocked the shim's loop: nothing more was drained.
  say("two\n");
  WaitForStdout("got two\n");
  WaitForShimLog("backlog full, retrying in 50ms: connect(");

  // Room in the backlog: the backoff timer's next try gets through.
  for (size_t i = 0; i < fillers.size(); ++i) {
    ASSERT_TRUE(WaitReadable(listener.get()));
    Fd accepted(accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
    ASSERT_TRUE(accepted.valid());
  }
  fillers.clear();
  Fd conn;
  for (;;) {
    ASSERT_TRUE(WaitReadable(listener.get())) << "the shim did not reconnect";
    conn = Fd(accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
    ASSERT_TRUE(conn.valid());
    // A filler's connection may still be queued; the shim's says Hello.
    pollfd p{conn.get(), POLLIN, 0};
    if (poll(&p, 1, kTimeoutMs) == 1 && (p.revents & POLLIN) != 0) {
      absl::StatusOr<Received> got = ReceiveMessage(conn.get());
      if (got.ok() && std::holds_alternative<Hello>(got->message)) {
        EXPECT_EQ(std::get<Hello>(got->message).pid, spawned.pid);
        break;
      }
    }
  }
  say("quit\n");
  ASSERT_TRUE(WaitReadable(conn.get()));
  absl::StatusOr<Received> exited = ReceiveMessage(conn.get());
  ASSERT_TRUE(exited.ok()) << exited.status();
  ASSERT_TRUE(std::holds_alternative<Exited>(exited->message));
  EXPECT_EQ(std::get<Exited>(exited->message).end.status, ExitStatus::Exited(7));
  EXPECT_EQ(shim.Wait(), kExitDone);
}

// A supervisor may bind shims.sock in place and listen a moment later:
// the listen raises no inotify event, so a refused connect is tried again.
TEST_F(ShimTest, ASocketBoundInPlaceThatListensLaterIsReconnectedTo) {
  const std::string fifo = tmp_.Sub("gate");
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  Fd gate(open(fifo.c_str(), O_RDWR | O_CLOEXEC));
  ShimProcess shim(state_dir(), runtime_dir());
  Spawned spawned = Start(shim, SpawnOf({"sh", "-c", "read -r x < \"$0\"", fifo}), nullptr);

  const std::string path = runtime_dir() + "/" + kShimsSocketName;
  Fd sock(socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
  sockaddr_un addr = {};
  addr.sun_family = AF_UNIX;
  ASSERT_LT(path.size(), sizeof(addr.sun_path));
  memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  ASSERT_EQ(bind(sock.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  shim.control().reset();
  WaitForShimLog("Connection refused (ECONNREFUSED); waiting for it to appear");
  ASSERT_EQ(listen(sock.get(), 16), 0);

  ASSERT_TRUE(WaitReadable(sock.get())) << "the shim did not try again";
  Fd conn(accept4(sock.get(), nullptr, nullptr, SOCK_CLOEXEC));
  ASSERT_TRUE(conn.valid());
  ASSERT_TRUE(WaitReadable(conn.get()));
  absl::StatusOr<Received> got = ReceiveMessage(conn.get());
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_TRUE(std::holds_alternative<Hello>(got->message)) << MessageName(got->message);
  EXPECT_EQ(std::get<Hello>(got->message).pid, spawned.pid);
  ASSERT_EQ(write(gate.get(), "go\n", 3), 3);
  EXPECT_EQ(shim.Wait(), kExitDone);
}

TEST_F(ShimTest, AShimReconnectingAfterTheEndSaysHowItEnded) {
  const std::string fifo = tmp_.Sub("gate");
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  Fd gate(open(fifo.c_str(), O_RDWR | O_CLOEXEC));
  ShimProcess shim(state_dir(), runtime_dir());
  // The leader exits at once; its child holds stdout until the gate opens.
  Spawned spawned =
      Start(shim, SpawnOf({"sh", "-c", "(read -r x < \"$0\"; echo late) & exit 5", fifo}),
            nullptr);
  EXPECT_EQ(ExpectExited(shim).status, ExitStatus::Exited(5));
  // The new supervisor is there before the shim sees the old one go: it
  // connects at once.
  Fd listener = ListenAt(runtime_dir());
  shim.control().reset();
  ASSERT_TRUE(WaitReadable(listener.get()));
  Fd conn(accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
  ASSERT_TRUE(WaitReadable(conn.get()));
  absl::StatusOr<Received> got = ReceiveMessage(conn.get());
  ASSERT_TRUE(got.ok()) << got.status();
  const Hello* hello = std::get_if<Hello>(&got->message);
  ASSERT_NE(hello, nullptr);
  EXPECT_EQ(hello->pid, spawned.pid);
  ASSERT_TRUE(hello->end.has_value());
  EXPECT_EQ(hello->end->status, ExitStatus::Exited(5));
  EXPECT_TRUE(got->fds.empty());
  ASSERT_EQ(write(gate.get(), "go\n", 3), 3);
  ASSERT_TRUE(WaitReadable(conn.get()));
  got = ReceiveMessage(conn.get());
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_TRUE(std::holds_alternative<Closed>(got->message));
  EXPECT_EQ(std::get<Closed>(got->message).output_end, 5u);
  EXPECT_EQ(shim.Wait(), kExitDone);
}

// What the shim holds when it spawns and while the process runs (its
// control socket, epoll, signalfd, output segment, log, the Spawn's cgroup
// fd and command memfd, and later its inotify) never reaches the process:
// the process lists its own fds and finds only stdin, stdout and stderr.
TEST_F(ShimTest, TheProcessListsOnlyStdioWhateverTheShimHolds) {
  const std::string fifo = tmp_.Sub("gate");
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  Fd gate(open(fifo.c_str(), O_RDWR | O_CLOEXEC));
  const std::string procs = tmp_.Sub("cgroup.procs");
  Fd join(open(procs.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600));
  ASSERT_TRUE(join.valid());
  absl::StatusOr<Fd> memfd = SealCommand(
      {"sh",
       {"-c", "read -r x < \"$0\"; ls /proc/$$/fd", fifo},
       {{"PATH", "/usr/bin:/bin"}},
       ""});
  ASSERT_TRUE(memfd.ok()) << memfd.status();

  ShimProcess shim(state_dir(), runtime_dir());
  Spawn spawn = SpawnOf({"unused"});
  spawn.command_memfd = 0;
  spawn.cgroup_joins = {{1, procs}};
  const int fds[] = {memfd->get(), join.get()};
  ASSERT_TRUE(SendMessage(shim.control().get(), spawn, fds).ok());
  Received got = shim.Next();
  ASSERT_TRUE(std::holds_alternative<Spawned>(got.message)) << MessageName(got.message);
  EXPECT_TRUE(absl::StrContains(absl::StrJoin(FdLinks(shim.pid()), "\n"), "socket:"))
      << "the shim holds no control socket";

  // The supervisor goes, leaving a stale socket: the shim adds an inotify.
  LeaveStaleSocket(runtime_dir());
  shim.control().reset();
  WaitForShimLog("waiting for it to appear");
  const std::string held = absl::StrJoin(FdLinks(shim.pid()), "\n");
  for (const char* kind : {"anon_inode:[eventpoll]", "anon_inode:[signalfd]",
                           "anon_inode:inotify", "/output/", "shim.log"}) {
    EXPECT_TRUE(absl::StrContains(held, kind)) << "the shim holds no " << kind << ":\n"
                                               << held;
  }

  ASSERT_EQ(write(gate.get(), "go\n", 3), 3);
  EXPECT_EQ(shim.Wait(), kExitDone);
  EXPECT_EQ(ExitFile().status, ExitStatus::Exited(0));
  EXPECT_EQ(OutputOf(segment_log::Stream::kStdout), "0\n1\n2\n");
}

// ---- restart policies ----

RestartPolicy Policy(RestartPolicy::When when, absl::Duration first_delay,
                     uint32_t max_restarts = 0) {
  RestartPolicy policy;
  policy.when = when;
  policy.first_delay = first_delay;
  policy.max_delay = std::max(first_delay, absl::Seconds(30));
  policy.max_restarts = max_restarts;
  policy.window = absl::Hours(1);
  return policy;
}

template <typename T>
T ExpectMessage(ShimProcess& shim, Received* with = nullptr) {
  Received got = shim.Next();
  const T* message = std::get_if<T>(&got.message);
  EXPECT_NE(message, nullptr) << "got " << MessageName(got.message);
  T copy = message != nullptr ? *message : T{};
  if (with != nullptr) *with = std::move(got);
  return copy;
}

// A crash loop under a cap: every run's end is told, each next run starts
// with its own pidfd, the cap gives it up, and its output is one log.
TEST_F(ShimTest, RunsThatFailAreStartedAgainUntilTheCapGivesUp) {
  ShimProcess shim(state_dir(), runtime_dir());
  Spawn spawn = SpawnOf({"sh", "-c", "echo \"run $$\"; exit 3"});
  spawn.restart = Policy(RestartPolicy::When::kOnFailure, absl::ZeroDuration(), 2);
  Spawned first = Start(shim, spawn, nullptr);
  std::vector<pid_t> pids = {first.pid};
  for (uint32_t run = 1; run <= 2; ++run) {
    Restarting restarting = ExpectMessage<Restarting>(shim);
    EXPECT_EQ(restarting.run, run);
    EXPECT_EQ(restarting.end.status, ExitStatus::Exited(3));
    EXPECT_GE(restarting.next_start, restarting.end.ended);
    Received got;
    RunStarted started = ExpectMessage<RunStarted>(shim, &got);
    EXPECT_EQ(started.run, run + 1);
    ASSERT_EQ(got.fds.size(), 1u);
    // Its pid, or -1 once the run (which exits at once) has been reaped.
    const pid_t of_pidfd = PidOfPidfd(got.fds[0].get());
    EXPECT_TRUE(of_pidfd == started.pid || of_pidfd == -1) << of_pidfd;
    pids.push_back(started.pid);
  }
  const Exited exited = ExpectMessage<Exited>(shim);
  EXPECT_EQ(exited.end.status, ExitStatus::Exited(3));
  EXPECT_EQ(exited.run, 3u);
  EXPECT_TRUE(exited.gave_up);
  EXPECT_TRUE(std::holds_alternative<Closed>(shim.Next().message));
  EXPECT_EQ(shim.Wait(), kExitDone);
  EXPECT_EQ(ExitFile().status, ExitStatus::Exited(3));
  EXPECT_EQ(OutputOf(segment_log::Stream::kStdout),
            absl::StrCat("run ", pids[0], "\nrun ", pids[1], "\nrun ", pids[2], "\n"));
}

TEST_F(ShimTest, OnFailureLeavesARunThatExitedZeroEnded) {
  ShimProcess shim(state_dir(), runtime_dir());
  Spawn spawn = SpawnOf({"true"});
  spawn.restart = Policy(RestartPolicy::When::kOnFailure, absl::ZeroDuration());
  Start(shim, spawn, nullptr);
  const Exited exited = ExpectMessage<Exited>(shim);
  EXPECT_EQ(exited.end.status, ExitStatus::Exited(0));
  EXPECT_EQ(exited.run, 1u);
  EXPECT_FALSE(exited.gave_up);
  EXPECT_EQ(shim.Wait(), kExitDone);
}

// A stop during the backoff: no next run, the process ends at once with the
// ended run's end.
TEST_F(ShimTest, NoRestartDuringTheBackoffEndsTheProcess) {
  ShimProcess shim(state_dir(), runtime_dir());
  Spawn spawn = SpawnOf({"sh", "-c", "exit 4"});
  spawn.restart = Policy(RestartPolicy::When::kAlways, absl::Hours(1));
  Start(shim, spawn, nullptr);
  const Restarting restarting = ExpectMessage<Restarting>(shim);
  EXPECT_GE(restarting.next_start, restarting.end.ended + absl::Minutes(50));
  ASSERT_TRUE(SendMessage(shim.control().get(), NoRestart{}, {}).ok());
  const Exited exited = ExpectMessage<Exited>(shim);
  EXPECT_EQ(exited.end, restarting.end);
  EXPECT_EQ(exited.run, 1u);
  EXPECT_TRUE(std::holds_alternative<Closed>(shim.Next().message));
  EXPECT_EQ(shim.Wait(), kExitDone);
  EXPECT_EQ(ExitFile(), restarting.end);
}

// A stop of a running run: NoRestart first, then the signal; that run is
// the last.
TEST_F(ShimTest, NoRestartBeforeAStopsSignalMakesThatRunTheLast) {
  ShimProcess shim(state_dir(), runtime_dir());
  Spawn spawn = SpawnOf({"sleep", "1000"});
  spawn.restart = Policy(RestartPolicy::When::kAlways, absl::ZeroDuration());
  Fd pidfd;
  Start(shim, spawn, &pidfd);
  ASSERT_TRUE(SendMessage(shim.control().get(), NoRestart{}, {}).ok());
  WaitForShimLog("is the last");
  ASSERT_EQ(PidfdSignal(pidfd.get(), SIGTERM), 0);
  const Exited exited = ExpectMessage<Exited>(shim);
  EXPECT_EQ(exited.end.status, ExitStatus::Signaled(SIGTERM, false));
  EXPECT_FALSE(exited.gave_up);
  EXPECT_EQ(shim.Wait(), kExitDone);
}

// What the ended run left running (a child in its group) is killed before
// the next run starts, so two runs never overlap.
TEST_F(ShimTest, TheEndedRunsLeftoversAreKilledBeforeTheNextRun) {
  ShimProcess shim(state_dir(), runtime_dir());
  Spawn spawn = SpawnOf({"sh", "-c", "sleep 1000 & echo \"child $!\"; exit 1"});
  spawn.restart = Policy(RestartPolicy::When::kAlways, absl::Hours(1));
  Start(shim, spawn, nullptr);
  ExpectMessage<Restarting>(shim);
  const std::string out = OutputOf(segment_log::Stream::kStdout);
  pid_t child = 0;
  ASSERT_TRUE(absl::SimpleAtoi(absl::StripSuffix(absl::StripPrefix(out, "child "), "\n"), &child))
      << out;
  // Reaped by the shim, its subreaper: the pid is gone, not a zombie.
  Fd child_pidfd = PidfdOpen(child);
  if (child_pidfd.valid()) {
    ASSERT_TRUE(WaitReadable(child_pidfd.get()));
  }
  ASSERT_TRUE(SendMessage(shim.control().get(), NoRestart{}, {}).ok());
  ExpectMessage<Exited>(shim);
  EXPECT_EQ(shim.Wait(), kExitDone);
}

// A host whose tracking cgroup is v1 (the Spawn has joins, no cgroup2
// dir): the leftovers are found through the join's cgroup.procs, so a
// member that left the run's group (setsid) and one forked while the shim
// kills are killed too. Needs root and a v1 pids hierarchy.
TEST_F(ShimTest, LeftoversOutsideTheGroupAreKilledThroughAV1Cgroup) {
  const std::string cgroup =
      absl::StrCat("/sys/fs/cgroup/pids/pm_shim_test.", getpid(), ".", random());
  if (mkdir(cgroup.c_str(), 0755) != 0) {
    GTEST_SKIP() << "no v1 pids cgroup to make here: " << strerror(errno);
  }
  const std::string procs = cgroup + "/cgroup.procs";
  // Whatever the outcome, nothing of this test is left running.
  struct Cleanup {
    std::string cgroup, procs;
    ~Cleanup() {
      for (int round = 0; round < 100 && rmdir(cgroup.c_str()) != 0; ++round) {
        absl::StatusOr<std::string> left = ReadFile(procs);
        if (!left.ok()) break;
        for (absl::string_view line : absl::StrSplit(*left, '\n', absl::SkipEmpty())) {
          pid_t pid = 0;
          if (absl::SimpleAtoi(line, &pid) && pid > 0) kill(pid, SIGKILL);
        }
      }
    }
  } cleanup{cgroup, procs};
  const std::string ready = tmp_.Sub("ready");
  ASSERT_EQ(mkfifo(ready.c_str(), 0600), 0) << strerror(errno);
  {
    Fd join(open(procs.c_str(), O_WRONLY | O_CLOEXEC));
    ASSERT_TRUE(join.valid());
    ShimProcess shim(state_dir(), runtime_dir());
    // Two children that leave the run's group (setsid) and say so once
    // they have; one of them then forks 200 more members. The run ends
    // once both said so.
    Spawn spawn = SpawnOf(
        {"sh", "-c",
         absl::StrCat("setsid sh -c 'echo \"escaped $$\"; echo >", ready,
                      "; exec sleep 1000' & "
                      "setsid sh -c 'echo \"forker $$\"; echo >", ready,
                      "; i=0; while [ $i -lt 200 ]; do sleep 1000 & i=$((i+1)); done; wait' & "
                      "n=0; while [ $n -lt 2 ]; do while read l; do n=$((n+1)); done <",
                      ready, "; done; exit 1")});
    spawn.restart = Policy(RestartPolicy::When::kAlways, absl::Hours(1));
    spawn.cgroup_joins = {{0, procs}};
    const int fd = join.get();
    ASSERT_TRUE(SendMessage(shim.control().get(), spawn, {&fd, 1}).ok());
    Received got = shim.Next();
    ASSERT_TRUE(std::holds_alternative<Spawned>(got.message)) << MessageName(got.message);
    ExpectMessage<Restarting>(shim);
    const std::string out = OutputOf(segment_log::Stream::kStdout);
    for (const char* who : {"escaped ", "forker "}) {
      const size_t at = out.find(who);
      ASSERT_NE(at, std::string::npos) << out;
      pid_t pid = 0;
      ASSERT_TRUE(absl::SimpleAtoi(
          out.substr(at + strlen(who), out.find('\n', at) - at - strlen(who)), &pid))
          << out;
      // Gone already (killed, and reaped by the shim), or going.
      Fd pidfd = PidfdOpen(pid);
      if (pidfd.valid()) {
        EXPECT_TRUE(WaitReadable(pidfd.get())) << who << pid << " outlived its run";
      }
    }
    ASSERT_TRUE(SendMessage(shim.control().get(), NoRestart{}, {}).ok());
    ExpectMessage<Exited>(shim);
    EXPECT_EQ(shim.Wait(), kExitDone);
  }
  // Every member gone (the forker's children too).
  absl::StatusOr<std::string> left = ReadFile(procs);
  ASSERT_TRUE(left.ok()) << left.status();
  EXPECT_EQ(*left, "");
}

// The supervisor away during the backoff: the shim says Hello with the
// ended run and when the next starts, and restarts on its own meanwhile.
TEST_F(ShimTest, RestartsGoOnWithoutASupervisorAndHelloTellsTheRun) {
  ShimProcess shim(state_dir(), runtime_dir());
  const std::string gate = tmp_.Sub("gate");
  ASSERT_EQ(mkfifo(gate.c_str(), 0600), 0);
  Fd gate_fd(open(gate.c_str(), O_RDWR | O_CLOEXEC));
  ASSERT_TRUE(gate_fd.valid());
  // Each run prints, then waits for a line on the gate and exits 1.
  Spawn spawn = SpawnOf({"sh", "-c", "echo \"run $$\"; read x < \"$0\"; exit 1", gate});
  spawn.restart = Policy(RestartPolicy::When::kAlways, absl::ZeroDuration());
  Start(shim, spawn, nullptr);
  WaitForStdout("run ");
  shim.control().reset();  // the supervisor goes
  WaitForShimLog("waiting for it to appear");
  ASSERT_EQ(write(gate_fd.get(), "x\n", 2), 2);
  WaitForShimLog("run 2 runs as pid");

  Fd listener = ListenAt(runtime_dir());
  ASSERT_TRUE(WaitReadable(listener.get())) << "the shim did not reconnect";
  Fd conn(accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
  ASSERT_TRUE(conn.valid());
  ASSERT_TRUE(WaitReadable(conn.get()));
  absl::StatusOr<Received> got = ReceiveMessage(conn.get());
  ASSERT_TRUE(got.ok()) << got.status();
  const Hello* hello = std::get_if<Hello>(&got->message);
  ASSERT_NE(hello, nullptr) << "got " << MessageName(got->message);
  EXPECT_EQ(hello->run, 2u);
  EXPECT_FALSE(hello->end.has_value());
  EXPECT_FALSE(hello->next_start.has_value());
  ASSERT_EQ(got->fds.size(), 1u);
  EXPECT_EQ(PidOfPidfd(got->fds[0].get()), hello->pid);

  // A stop through the new link ends it.
  ASSERT_TRUE(SendMessage(conn.get(), NoRestart{}, {}).ok());
  ASSERT_EQ(PidfdSignal(got->fds[0].get(), SIGKILL), 0);
  ASSERT_TRUE(WaitReadable(conn.get()));
  absl::StatusOr<Received> exited = ReceiveMessage(conn.get());
  ASSERT_TRUE(exited.ok()) << exited.status();
  ASSERT_TRUE(std::holds_alternative<Exited>(exited->message));
  EXPECT_EQ(std::get<Exited>(exited->message).run, 2u);
  unlink((runtime_dir() + "/" + kShimsSocketName).c_str());
  conn.reset();
  EXPECT_EQ(shim.Wait(), kExitDone);
}

}  // namespace
}  // namespace pm::shim
