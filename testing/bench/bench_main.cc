// pm's benchmark driver: brings up a private stack and measures what users
// feel, each measure beside its physical baseline from the same run.
//
//   bazel run -c opt //testing/bench:all                 # full sizes
//   bazel run -c opt //testing/bench:all -- --json=out.json
//   bazel run //testing/bench:all -- --smoke             # tiny, seconds
//   bazel run -c opt //testing/bench:all -- --peers      # and supervisord, PM2
//
// Measures: start and start + stop, starts/s, capture until retained and
// readable (every byte read back), follow latency, memory at rest and per
// managed process (its pm-shim's PSS and the services' growth), List, churn,
// the gateway, and re-adoption (kill -9 of the supervisor with N processes,
// restart, every process's status and stop).
//
// Prints a table of medians, p99 and ratios (and writes it as JSON). Never
// asserts a speed: the machines are noisy, so ratios to a baseline measured
// in the same run are what to read. With --peers, supervisord and PM2 go
// through the same measures afterwards (peers/peers.sh), their rows carry
// the baselines of pm's, and a last table puts the three side by side.
#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <gflags/gflags.h>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "client/client.h"
#include "common/fd.h"
#include "common/proto_time.h"
#include "stack/dev_certs.h"
#include "stack/stack.h"

DEFINE_string(supervisor_flags, "",
              "Extra flags for pm's supervisor, comma-separated (e.g. "
              "--cgroups=off to see what cgroups cost a start)");
DEFINE_string(only, "",
              "Run only these measures, comma-separated, of: idle, start, "
              "cli, rate, capture, tail, restart, follow, sleepers, churn, gateway, adopt "
              "(default: all)");
DEFINE_bool(gateway, true,
            "Also run the gateway (mutual TLS, basic auth) and measure Start "
            "and StreamOutput through it on a reused connection");
DEFINE_int32(churn_processes, 0,
             "Short processes for the memory-at-rest-after-churn measure (0: "
             "30,000, or 40 with --smoke)");
DEFINE_string(tmp_dir, "/tmp",
              "Where the stack's runtime and state dirs (and so the captured "
              "output) are made; /dev/shm takes the disk out of the capture");
DEFINE_bool(keep_dir, false,
            "Keep the stack's runtime and state dirs at the end (each process's "
            "output and its pm-shim's shim.log), for a look after the run");
DEFINE_bool(smoke, false, "Tiny sizes: proves the driver works, measures nothing");
DEFINE_string(json, "", "Also write the results as JSON to this file");
DEFINE_int32(rounds, 0, "Repetitions per measure (0: 200, or 5 with --smoke)");
DEFINE_uint64(capture_bytes, 0, "Bytes for the capture measure (0: 1 GiB, or 4 MiB with --smoke)");
DEFINE_int32(idle_seconds, 0, "Seconds of the idle CPU measure (0: 60, or 1 with --smoke)");
DEFINE_int32(sleepers, 0,
             "Sleeping processes for the per-process memory and the re-adoption "
             "measures (0: 1000, or 20 with --smoke)");
DEFINE_int32(capture_rounds, 0, "Rounds of the capture measure, for pm and each peer (0: 5, or 1 with --smoke)");
DEFINE_int32(adopt_rounds, 0,
             "Rounds of the re-adoption measure, each with --sleepers processes "
             "(0: 3, or 1 with --smoke)");
DEFINE_bool(peers, false,
            "Then run supervisord and PM2 through the start, start + stop, capture "
            "and at-rest measures, each on its own socket and home under a temp dir "
            "(testing/bench/peers), and print them beside pm. Installs what is "
            "missing on demand: Debian's supervisor (apt-get, needs root) and the "
            "pm2 that testing/bench/peers/package-lock.json pins (npm ci into the "
            "temp dir). Takes minutes more: PM2 captures at tens of MB/s, and "
            "supervisord loses some stops and waits 10 s for each. For runs by "
            "hand: make test never passes it");

extern char** environ;

namespace pm::bench {
namespace {

using Clock = std::chrono::steady_clock;

double Ms(Clock::duration d) {
  return std::chrono::duration<double, std::milli>(d).count();
}

struct Stats {
  double median = 0, p99 = 0;
};
Stats Summarize(std::vector<double> v) {
  Stats s;
  if (v.empty()) return s;
  std::sort(v.begin(), v.end());
  s.median = v[v.size() / 2];
  s.p99 = v[std::min(v.size() - 1, static_cast<size_t>(v.size() * 0.99))];
  return s;
}

struct Row {
  std::string measure;
  std::string unit;
  double median = 0, p99 = 0;
  std::string baseline;
  double base_median = 0;
  std::string ratio_note;  // the target
  // Which measure this is ("start", "capture", ...), where peers have it
  // too, and whose ("pm" or a peer's name).
  std::string key = "";
  std::string who = "pm";
  std::string note = "";  // what else was seen, such as lost bytes
};
std::vector<Row> g_rows;

void Report(Row row) {
  absl::PrintF("%-52s %10.3f %-6s p99 %10.3f | %-34s %10.3f | ratio %.2f %s%s%s\n",
               row.measure, row.median, row.unit, row.p99, row.baseline,
               row.base_median,
               row.base_median > 0 ? row.median / row.base_median : 0.0,
               row.ratio_note, row.ratio_note.empty() || row.note.empty() ? "" : " ",
               row.note);
  fflush(stdout);
  g_rows.push_back(std::move(row));
}

int PidfdOpen(pid_t pid) { return static_cast<int>(syscall(SYS_pidfd_open, pid, 0)); }

// The physical limit of a start: posix_spawn + pidfd + reap of /bin/true.
// Baselines measured earlier in the run, for the gateway rows.
double g_raw_spawn_ms = 0;
double g_raw_pipe_gbps = 0;

double RawSpawnReapMs() {
  auto t0 = Clock::now();
  pid_t pid;
  char* argv[] = {const_cast<char*>("/bin/true"), nullptr};
  posix_spawn(&pid, "/bin/true", nullptr, nullptr, argv, environ);
  pm::Fd pidfd(PidfdOpen(pid));
  siginfo_t info;
  waitid(static_cast<idtype_t>(P_PIDFD), pidfd.get(), &info, WEXITED);
  return Ms(Clock::now() - t0);
}

pm::v1::StartRequest Cmd(std::vector<std::string> argv);

// One run of the pm binary as a shell runs it (output to /dev/null), to its
// exit: the time of the whole command.
double RunPmMs(const std::string& pm, const std::vector<std::string>& args) {
  std::vector<char*> argv = {const_cast<char*>(pm.c_str())};
  for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0);
  auto t0 = Clock::now();
  pid_t pid;
  const int err = posix_spawn(&pid, pm.c_str(), &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (err != 0) return -1;
  int status = 0;
  waitpid(pid, &status, 0);
  return Ms(Clock::now() - t0);
}

// The CLI as people type it, whole commands (issue 15): `pm help` (the
// binary's own start: dynamic loading, static initialisers), then `pm
// list`, `pm status ID` and `pm start -- true`, each against `pm help` in
// the same run (target: within 1.5x), and `pm help` against an exec of
// /bin/true.
void MeasureCli(const std::string& runtime_dir, int rounds) {
  absl::StatusOr<std::string> root = pm::stack::FindBinaryRoot();
  if (!root.ok()) {
    absl::PrintF("no CLI measures: %s\n", root.status().ToString());
    return;
  }
  const std::string pm = *root + "/cli/pm";
  const std::string dir = "--runtime_dir=" + runtime_dir;
  // A process for `pm status` to look at.
  std::string id;
  {
    auto client = pm::Client::ConnectLocal(runtime_dir);
    if (!client.ok()) return;
    auto started = (*client)->Start(Cmd({"/bin/sleep", "1000"}));
    if (!started.ok()) return;
    id = started->id();
  }
  auto measure = [&](const std::vector<std::string>& args) {
    std::vector<double> ms;
    for (int i = 0; i < rounds; ++i) ms.push_back(RunPmMs(pm, args));
    return Summarize(ms);
  };
  std::vector<double> raw;
  for (int i = 0; i < rounds; ++i) raw.push_back(RawSpawnReapMs());
  const Stats help = measure({"help"});
  Report({"pm help (the binary's start), whole command", "ms", help.median, help.p99,
          "posix_spawn+pidfd+reap /bin/true", Summarize(raw).median, "", "cli_help"});
  const struct {
    const char* what;
    std::vector<std::string> args;
    const char* key;
  } commands[] = {
      {"pm list, whole command", {dir, "list"}, "cli_list"},
      {"pm status ID, whole command", {dir, "status", id}, "cli_status"},
      {"pm start -- true, whole command", {dir, "start", "--", "/bin/true"}, "cli_start"},
  };
  for (const auto& c : commands) {
    const Stats s = measure(c.args);
    Report({c.what, "ms", s.median, s.p99, "pm help, same run", help.median,
            "(target <= 1.5)", c.key});
  }
  RunPmMs(pm, {dir, "stop", "--grace", "0", id});
}

pm::v1::StartRequest Cmd(std::vector<std::string> argv) {
  pm::v1::StartRequest r;
  r.set_executable(argv[0]);
  for (size_t i = 1; i < argv.size(); ++i) r.add_args(argv[i]);
  return r;
}

// A restart policy's latency: from a run's end (its shim reaped it) to the
// next run on record as started (exec'd, and the supervisor told), with
// --restart-delay 0; against systemd's documented RestartSec default of
// 100 ms (issue 15). One sample per process: run 1 exits 1, run 2 exits 1,
// and the cap of 1 restart ends it.
void MeasureRestart(pm::Client& client, int rounds) {
  std::vector<double> ms;
  for (int i = 0; i < rounds; ++i) {
    pm::v1::StartRequest request = Cmd({"/bin/sh", "-c", "exit 1"});
    pm::v1::RestartPolicy& restart = *request.mutable_restart();
    restart.set_policy(pm::v1::RestartPolicy::POLICY_ON_FAILURE);
    restart.set_max_restarts(1);
    *restart.mutable_first_delay() = pm::ToProtoDuration(absl::ZeroDuration());
    auto started = client.Start(request);
    if (!started.ok()) {
      absl::PrintF("restart: start failed: %s\n", started.status().ToString());
      return;
    }
    auto ended = client.Wait(started->id(), absl::Minutes(1));
    if (!ended.ok() || ended->run() != 2 || !ended->has_last_run()) {
      absl::PrintF("restart: no second run on record\n");
      return;
    }
    ms.push_back(absl::ToDoubleMilliseconds(
        pm::FromProtoTimestamp(ended->started_at()) -
        pm::FromProtoTimestamp(ended->last_run().ended_at())));
  }
  const Stats stats = Summarize(ms);
  Report({"restart: a run's end to the next run started (delay 0)", "ms", stats.median,
          stats.p99, "systemd RestartSec default", 100.0, "", "restart"});
}

// `pm logs --tail 20` on a process with `bytes` of output retained (1 GiB
// in a full run), the whole command, against `tail -n 20` of a file of the
// same bytes (issue 15: an index, not a scan). The lines are 64 bytes.
void MeasureTail(pm::Client& client, const std::string& runtime_dir,
                 const std::string& dir, uint64_t bytes, int rounds) {
  absl::StatusOr<std::string> root = pm::stack::FindBinaryRoot();
  if (!root.ok()) {
    absl::PrintF("no tail measure: %s\n", root.status().ToString());
    return;
  }
  const std::string writer = absl::StrCat(
      "yes 'a line of sixty-three characters, and then its newline, here' | "
      "head -c ", bytes);
  auto started = client.Start(Cmd({"/bin/sh", "-c", writer}));
  if (!started.ok()) {
    absl::PrintF("tail: start failed: %s\n", started.status().ToString());
    return;
  }
  auto ended = client.Wait(started->id(), absl::Minutes(10));
  if (!ended.ok() || ended->output_bytes() < bytes) {
    absl::PrintF("tail: the writer's %d bytes are not all retained\n", bytes);
    return;
  }
  const std::string file = dir + "/tail_baseline";
  if (system(absl::StrCat(writer, " > ", file).c_str()) != 0) return;
  const std::string pm = *root + "/cli/pm";
  std::vector<double> pm_ms, tail_ms;
  for (int i = 0; i < rounds; ++i) {
    pm_ms.push_back(RunPmMs(pm, {"--runtime_dir=" + runtime_dir, "logs", "--tail",
                                 "20", started->id()}));
    tail_ms.push_back(RunPmMs("/usr/bin/tail", {"-n", "20", file}));
  }
  const Stats pm_stats = Summarize(pm_ms);
  Report({absl::StrCat("pm logs --tail 20, ", bytes >> 20, " MiB retained"), "ms",
          pm_stats.median, pm_stats.p99, "tail -n 20 of a file that size",
          Summarize(tail_ms).median, "", "logs_tail"});
  unlink(file.c_str());
}

void MeasureStart(pm::Client& client, int rounds) {
  std::vector<double> raw, start, start_stop;
  for (int i = 0; i < rounds; ++i) raw.push_back(RawSpawnReapMs());
  for (int i = 0; i < rounds; ++i) {
    auto t0 = Clock::now();
    auto started = client.Start(Cmd({"/bin/true"}));
    start.push_back(Ms(Clock::now() - t0));
    if (!started.ok()) absl::PrintF("start failed: %s\n", started.status().ToString());
  }
  for (int i = 0; i < rounds; ++i) {
    auto t0 = Clock::now();
    auto started = client.Start(Cmd({"/bin/sleep", "100"}));
    if (!started.ok()) continue;
    pm::v1::StopRequest stop;
    stop.set_id(started->id());
    auto stopped = client.Stop(stop);
    start_stop.push_back(Ms(Clock::now() - t0));
  }
  // The floor under a Start: one local gRPC round trip (a status of an id
  // nobody has: the registry answers NOT_FOUND without work). A Start is
  // two of them (client -> supervisor, supervisor -> registry) plus a spawn.
  std::vector<double> round_trip;
  for (int i = 0; i < rounds; ++i) {
    auto t0 = Clock::now();
    auto status = client.GetStatus("00000000-0000-4000-8000-000000000000");
    round_trip.push_back(Ms(Clock::now() - t0));
  }
  Stats rt = Summarize(round_trip);
  Report({"gRPC round trip over the unix socket (GetStatus)", "ms", rt.median, rt.p99,
          "posix_spawn+pidfd+reap /bin/true", Summarize(raw).median, "(the floor: Start is 2 of these + a spawn)"});
  Stats r = Summarize(raw), s = Summarize(start), ss = Summarize(start_stop);
  g_raw_spawn_ms = r.median;
  Report({"Start /bin/true, exec confirmed (Library, unix socket)", "ms", s.median,
          s.p99, "posix_spawn+pidfd+reap /bin/true", r.median, "(target <= 2)", "start"});
  Report({"Start + Stop of sleep", "ms", ss.median, ss.p99,
          "posix_spawn+pidfd+reap /bin/true", r.median, "(target < 3 ms)", "start_stop"});
}

// The machine's busy and total CPU time so far, from /proc/stat's "cpu" line
// (all cores; idle and iowait count as not busy).
struct MachineTicks {
  uint64_t busy = 0, total = 0;
};
MachineTicks ReadMachineTicks() {
  std::string line;
  std::getline(std::ifstream("/proc/stat"), line);
  std::vector<std::string> fields = absl::StrSplit(line, ' ', absl::SkipEmpty());
  MachineTicks t;
  for (size_t i = 1; i < fields.size(); ++i) {
    uint64_t v = 0;
    if (!absl::SimpleAtoi(fields[i], &v)) continue;
    t.total += v;
    if (i != 4 && i != 5) t.busy += v;  // 4: idle, 5: iowait
  }
  return t;
}


// The physical limit of capture: a pipe drained by an epoll reader into a
// ring (bytes discarded).
double RawPipeCaptureSeconds(uint64_t bytes) {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) return 1e9;
  fcntl(fds[1], F_SETPIPE_SZ, 1 << 20);
  pm::Fd read_end(fds[0]);
  fcntl(read_end.get(), F_SETFL, O_NONBLOCK);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, fds[1], 1);
  std::string count = absl::StrCat("-c", bytes);
  char* argv[] = {const_cast<char*>("head"), count.data(),
                  const_cast<char*>("/dev/zero"), nullptr};
  auto t0 = Clock::now();
  pid_t pid;
  posix_spawnp(&pid, "head", &actions, nullptr, argv, environ);
  close(fds[1]);
  posix_spawn_file_actions_destroy(&actions);
  pm::Fd ep(epoll_create1(EPOLL_CLOEXEC));
  struct epoll_event ev = {};
  ev.events = EPOLLIN;
  epoll_ctl(ep.get(), EPOLL_CTL_ADD, read_end.get(), &ev);
  std::vector<char> ring(4 << 20);
  size_t at = 0;
  uint64_t got = 0;
  for (;;) {
    ssize_t n = read(read_end.get(), ring.data() + at, 128 * 1024);
    if (n > 0) {
      got += n;
      at = (at + n) % (ring.size() - 128 * 1024);
    } else if (n == 0) {
      break;
    } else if (errno == EAGAIN) {
      epoll_wait(ep.get(), &ev, 1, -1);
    }
  }
  waitpid(pid, nullptr, 0);
  if (got != static_cast<uint64_t>(bytes)) {
    fprintf(stderr, "bench: the pipe baseline read %llu bytes of %llu\n",
            static_cast<unsigned long long>(got), static_cast<unsigned long long>(bytes));
  }
  return Ms(Clock::now() - t0) / 1000;
}

// What StreamOutput gives back of a process's whole output, read from the
// start to the end of the log.
struct ReadBack {
  uint64_t bytes = 0;
  uint64_t dropped = 0;  // bytes the reader was told are gone (the cap)
  uint64_t nonzero = 0;  // bytes that are not what head -c /dev/zero wrote
};
ReadBack ReadAllOutput(pm::Client& client, const std::string& id) {
  ReadBack back;
  pm::v1::StreamOutputRequest read;
  read.set_id(id);
  read.set_from_start(true);
  read.set_follow(true);  // to the end of the closed log
  auto stream = client.StreamOutput(read);
  pm::v1::OutputChunk chunk;
  uint64_t expected_offset = 0;
  while (stream->Next(&chunk)) {
    const uint64_t gap = chunk.offset() > expected_offset ? chunk.offset() - expected_offset : 0;
    back.dropped += std::max<uint64_t>(gap, chunk.dropped_before());
    expected_offset = chunk.offset() + chunk.data().size();
    back.bytes += chunk.data().size();
    for (char c : chunk.data()) back.nonzero += c != 0;
  }
  stream->Finish().IgnoreError();
  return back;
}

// The pm-shim processes of the stack on `runtime_dir` (each is started with
// --runtime_dir=<it>), idle spares included.
std::vector<pid_t> ShimPids(const std::string& runtime_dir) {
  std::vector<pid_t> pids;
  const std::string marker = absl::StrCat("--runtime_dir=", runtime_dir);
  DIR* proc = opendir("/proc");
  if (proc == nullptr) return pids;
  while (dirent* entry = readdir(proc)) {
    pid_t pid = 0;
    if (!absl::SimpleAtoi(entry->d_name, &pid)) continue;
    std::ifstream in(absl::StrCat("/proc/", pid, "/cmdline"));
    std::string cmdline((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::vector<absl::string_view> argv = absl::StrSplit(cmdline, '\0');
    if (argv.empty() || !absl::EndsWith(argv[0], "pm-shim")) continue;
    if (std::find(argv.begin(), argv.end(), marker) != argv.end()) pids.push_back(pid);
  }
  closedir(proc);
  return pids;
}

void MeasureCapture(pm::Client& client, uint64_t bytes, int rounds) {
  std::vector<double> raw, pm_rate, exit_share;
  int losing_rounds = 0;
  for (int i = 0; i < rounds; ++i) raw.push_back(bytes / RawPipeCaptureSeconds(bytes) / 1e9);
  for (int i = 0; i < rounds; ++i) {
    auto t0 = Clock::now();
    auto started = client.Start(Cmd({"head", absl::StrCat("-c", bytes), "/dev/zero"}));
    if (!started.ok()) continue;
    auto ended = client.Wait(started->id(), absl::Minutes(10));
    if (!ended.ok()) continue;
    const double exit_seconds = Ms(Clock::now() - t0) / 1000;
    // Retained and readable: the last byte can be read, and the log is
    // closed (the stream ends).
    pm::v1::StreamOutputRequest read;
    read.set_id(started->id());
    read.set_from_offset(ended->output_bytes() - 1);
    read.set_follow(true);
    auto stream = client.StreamOutput(read);
    pm::v1::OutputChunk chunk;
    uint64_t last = 0;
    while (stream->Next(&chunk)) last = chunk.offset() + chunk.data().size();
    const double seconds = Ms(Clock::now() - t0) / 1000;
    // Untimed: every byte is readable from the start (no segment dropped by
    // the cap) and is what the process wrote.
    const ReadBack back = ReadAllOutput(client, started->id());
    if (ended->output_bytes() != bytes || last != bytes || back.bytes != bytes ||
        back.dropped != 0 || back.nonzero != 0) {
      absl::PrintF(
          "capture round %d LOST BYTES: wrote %d, last readable offset %d, read back %d "
          "(%d reported dropped, %d not zero)\n",
          i, ended->output_bytes(), last, back.bytes, back.dropped, back.nonzero);
      ++losing_rounds;
    }
    pm_rate.push_back(bytes / seconds / 1e9);
    exit_share.push_back(exit_seconds / seconds);
  }
  Stats r = Summarize(raw), p = Summarize(pm_rate);
  g_raw_pipe_gbps = r.median;
  Report({absl::StrCat("Capture ", bytes >> 20, " MiB of head -c /dev/zero, until retained"),
          "GB/s", p.median, p.p99, "pipe -> epoll reader, discard", r.median,
          "(target >= 1 GB/s)", "capture", "pm",
          absl::StrFormat(
              "%s; the exit was reported at %.0f%% of the time (the rest: the last "
              "segment's fsync, the end readable)",
              losing_rounds > 0
                  ? absl::StrCat("lost bytes in ", losing_rounds, " of ", rounds, " rounds")
                  : absl::StrCat("no byte lost in ", rounds, " rounds"),
              100 * Summarize(exit_share).median)});
}

void MeasureFollowLatency(pm::Client& client, const std::string& dir, int followers,
                          int rounds) {
  // The process copies a fifo to stdout; the driver writes one line and
  // times until every follower has it.
  const std::string fifo = absl::StrCat(dir, "/latency_fifo_", followers);
  mkfifo(fifo.c_str(), 0600);
  auto started = client.Start(Cmd({"/bin/sh", "-c", absl::StrCat("exec cat ", fifo)}));
  if (!started.ok()) return;
  pm::Fd writer(open(fifo.c_str(), O_WRONLY | O_CLOEXEC));
  std::vector<std::unique_ptr<pm::OutputStream>> streams;
  for (int i = 0; i < followers; ++i) {
    pm::v1::StreamOutputRequest read;
    read.set_id(started->id());
    read.set_follow(true);
    streams.push_back(client.StreamOutput(read));
    streams.back()->WaitUntilAttached();
  }
  // Baseline: the same hop through cat over a raw pipe.
  std::vector<double> latencies, raw;
  for (int r = 0; r < rounds; ++r) {
    auto t0 = Clock::now();
    if (write(writer.get(), "x\n", 2) != 2) break;
    for (auto& s : streams) {
      pm::v1::OutputChunk chunk;
      s->Next(&chunk);
    }
    latencies.push_back(Ms(Clock::now() - t0));
  }
  {
    int in[2], out[2];
    if (pipe2(in, O_CLOEXEC) != 0 || pipe2(out, O_CLOEXEC) != 0) return;
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, in[0], 0);
    posix_spawn_file_actions_adddup2(&actions, out[1], 1);
    char* argv[] = {const_cast<char*>("cat"), nullptr};
    pid_t pid;
    posix_spawnp(&pid, "cat", &actions, nullptr, argv, environ);
    close(in[0]);
    close(out[1]);
    for (int r = 0; r < rounds; ++r) {
      char buf[16];
      auto t0 = Clock::now();
      if (write(in[1], "x\n", 2) != 2) break;
      if (read(out[0], buf, sizeof(buf)) <= 0) break;
      raw.push_back(Ms(Clock::now() - t0));
    }
    close(in[1]);
    close(out[0]);
    waitpid(pid, nullptr, 0);
    posix_spawn_file_actions_destroy(&actions);
  }
  writer.reset();
  for (auto& s : streams) {
    s->Cancel();
    s->Finish().IgnoreError();
  }
  Stats l = Summarize(latencies), b = Summarize(raw);
  Report({absl::StrCat("Follow latency, write -> ", followers, " follower(s) have it"),
          "ms", l.median, l.p99, "write -> read through cat on a pipe", b.median,
          "(target p50 < 1, p99 < 5)"});
}

struct ProcUsage {
  uint64_t rss_kib = 0;
  // Proportional: a page shared by n processes counts 1/n in each, so the
  // services' sum counts their shared libraries once (RSS counts them once
  // per service).
  uint64_t pss_kib = 0;
  uint64_t cpu_ticks = 0;
  // Of its reaped children (for the supervisor: the managed processes).
  uint64_t children_cpu_ticks = 0;
};
ProcUsage Usage(pid_t pid) {
  ProcUsage u;
  std::ifstream status(absl::StrCat("/proc/", pid, "/status"));
  std::string line;
  while (std::getline(status, line)) {
    if (absl::StartsWith(line, "VmRSS:")) {
      std::vector<std::string> parts = absl::StrSplit(line, ' ', absl::SkipEmpty());
      if (parts.size() < 2 || !absl::SimpleAtoi(parts[1], &u.rss_kib)) u.rss_kib = 0;
    }
  }
  std::ifstream rollup(absl::StrCat("/proc/", pid, "/smaps_rollup"));
  while (std::getline(rollup, line)) {
    if (absl::StartsWith(line, "Pss:")) {
      std::vector<std::string> parts = absl::StrSplit(line, ' ', absl::SkipEmpty());
      if (parts.size() < 2 || !absl::SimpleAtoi(parts[1], &u.pss_kib)) u.pss_kib = 0;
    }
  }
  std::string stat;
  std::getline(std::ifstream(absl::StrCat("/proc/", pid, "/stat")), stat);
  std::vector<std::string> f = absl::StrSplit(stat.substr(stat.rfind(')') + 2), ' ');
  uint64_t utime = 0, stime = 0, cutime = 0, cstime = 0;
  if (f.size() <= 14 || !absl::SimpleAtoi(f[11], &utime) || !absl::SimpleAtoi(f[12], &stime) ||
      !absl::SimpleAtoi(f[13], &cutime) || !absl::SimpleAtoi(f[14], &cstime)) {
    utime = stime = cutime = cstime = 0;  // not a stat line: no figures
  }
  u.cpu_ticks = utime + stime;
  u.children_cpu_ticks = cutime + cstime;
  return u;
}

ProcUsage StackUsage(const pm::stack::Stack& stack) {
  ProcUsage total;
  for (const auto& s : stack.services()) {
    ProcUsage u = Usage(s.pid);
    total.rss_kib += u.rss_kib;
    total.pss_kib += u.pss_kib;
    total.cpu_ticks += u.cpu_ticks;
  }
  return total;
}

// Nanoseconds on a CPU per thread of the services ("service/tid" ->
// (thread name, ns)), from /proc/PID/task/TID/schedstat: /proc/PID/stat
// counts whole 10 ms ticks, too coarse to say which thread woke at rest.
std::map<std::string, std::pair<std::string, uint64_t>> ThreadCpuNs(
    const pm::stack::Stack& stack) {
  std::map<std::string, std::pair<std::string, uint64_t>> threads;
  for (const auto& s : stack.services()) {
    const std::string task_dir = absl::StrCat("/proc/", s.pid, "/task");
    DIR* dir = opendir(task_dir.c_str());
    if (dir == nullptr) continue;
    while (dirent* entry = readdir(dir)) {
      if (entry->d_name[0] == '.') continue;
      const std::string t = absl::StrCat(task_dir, "/", entry->d_name);
      std::string comm, schedstat;
      std::getline(std::ifstream(t + "/comm"), comm);
      std::getline(std::ifstream(t + "/schedstat"), schedstat);
      uint64_t ns = 0;
      if (!absl::SimpleAtoi(schedstat.substr(0, schedstat.find(' ')), &ns)) continue;
      threads[absl::StrCat(s.name, "/", entry->d_name)] = {comm, ns};
    }
    closedir(dir);
  }
  return threads;
}

// pm's own threads are each service's main thread, named after it, and the
// supervisor's "pm-*" threads; every other thread is the gRPC library's (its
// pollers, timers and callback threads).
bool IsPmThread(const std::string& key, const std::string& name) {
  const std::string service = key.substr(0, key.find('/'));
  return name == service || absl::StartsWith(name, "pm-");
}

// Where CPU at rest went: pm's own threads against the gRPC library's, by
// thread name.
std::string IdleCpuByThread(
    const std::map<std::string, std::pair<std::string, uint64_t>>& before,
    const std::map<std::string, std::pair<std::string, uint64_t>>& after,
    int seconds) {
  uint64_t pm_ns = 0;
  std::map<std::string, uint64_t> grpc_ns;  // by thread name
  for (const auto& [key, thread] : after) {
    auto it = before.find(key);
    const uint64_t ns = thread.second - (it == before.end() ? 0 : it->second.second);
    if (IsPmThread(key, thread.first)) {
      pm_ns += ns;
    } else {
      grpc_ns[thread.first] += ns;
    }
  }
  auto pct = [seconds](uint64_t ns) { return 100.0 * ns / 1e9 / seconds; };
  std::vector<std::pair<uint64_t, std::string>> sorted;
  for (const auto& [name, ns] : grpc_ns) sorted.emplace_back(ns, name);
  std::sort(sorted.rbegin(), sorted.rend());
  std::vector<std::string> parts;
  for (const auto& [ns, name] : sorted) {
    if (pct(ns) >= 0.001) parts.push_back(absl::StrFormat("%s %.3f", name, pct(ns)));
  }
  return absl::StrFormat("(%%core by thread: pm's own %.3f; gRPC library's: %s)", pct(pm_ns),
                         absl::StrJoin(parts, ", "));
}

// Where the CPU of the rate measure went, per start, in microseconds: the
// managed processes themselves (the supervisor's reaped children), each
// service's own threads and its gRPC threads, the Library clients (this
// process), and the rest of the machine (kernel threads, softirqs), beside
// what the machine's cores allow per start at the target rate. The rate is
// CPU-bound on a small machine, so this says which part would have to shrink.
struct RateCpu {
  std::map<std::string, std::pair<std::string, uint64_t>> threads;
  uint64_t children_ticks = 0;
  uint64_t self_us = 0;
  MachineTicks machine;
};
RateCpu ReadRateCpu(const pm::stack::Stack& stack) {
  RateCpu cpu;
  cpu.threads = ThreadCpuNs(stack);
  for (const auto& s : stack.services()) {
    cpu.children_ticks += Usage(s.pid).children_cpu_ticks;
  }
  rusage self;
  getrusage(RUSAGE_SELF, &self);
  cpu.self_us = self.ru_utime.tv_sec * 1000000ull + self.ru_utime.tv_usec +
                self.ru_stime.tv_sec * 1000000ull + self.ru_stime.tv_usec;
  cpu.machine = ReadMachineTicks();
  return cpu;
}
std::string RateCpuPerStart(const RateCpu& before, const RateCpu& after, int starts,
                            double target_rate) {
  const double n = std::max(1, starts);
  const double tick_us = 1e6 / sysconf(_SC_CLK_TCK);
  std::map<std::string, double> own_us, grpc_us;  // by service
  std::map<std::string, std::map<std::string, double>> own_threads_us;  // by service, name
  double services_us = 0;
  for (const auto& [key, thread] : after.threads) {
    auto it = before.threads.find(key);
    const double us =
        (thread.second - (it == before.threads.end() ? 0 : it->second.second)) / 1e3;
    const std::string service = key.substr(0, key.find('/'));
    (IsPmThread(key, thread.first) ? own_us : grpc_us)[service] += us;
    if (IsPmThread(key, thread.first)) own_threads_us[service][thread.first] += us;
    services_us += us;
  }
  const double children_us = (after.children_ticks - before.children_ticks) * tick_us;
  const double client_us = static_cast<double>(after.self_us - before.self_us);
  const double machine_us = (after.machine.busy - before.machine.busy) * tick_us;
  std::vector<std::string> services;
  for (const auto& [service, us] : own_us) {
    const double grpc = grpc_us[service];
    if (us + grpc < n) continue;  // under 1 us a start: not part of a start
    std::vector<std::string> own_parts;
    for (const auto& [name, thread_us] : own_threads_us[service]) {
      if (thread_us >= n) own_parts.push_back(absl::StrFormat("%s %.0f", name, thread_us / n));
    }
    services.push_back(absl::StrFormat(
        "%s %.0f (own %.0f%s, gRPC %.0f)", service, (us + grpc) / n, us / n,
        own_parts.size() > 1 ? absl::StrCat(": ", absl::StrJoin(own_parts, ", ")) : "",
        grpc / n));
  }
  const double cores = sysconf(_SC_NPROCESSORS_ONLN);
  return absl::StrFormat(
      "CPU per start, us: the processes themselves %.0f; %s; Library clients %.0f; "
      "rest of the machine %.0f; all %.0f. At the target rate, %.0f cores leave %.0f per start; "
      "the machine was %.0f%% busy",
      children_us / n, absl::StrJoin(services, "; "), client_us / n,
      std::max(0.0, machine_us - children_us - services_us - client_us) / n,
      machine_us / n, cores, 1e6 * cores / std::max(1.0, target_rate),
      100.0 * (after.machine.busy - before.machine.busy) /
          std::max<uint64_t>(1, after.machine.total - before.machine.total));
}

void MeasureStartRate(const pm::stack::Stack& stack, const std::string& runtime_dir,
                      int rounds) {
  const int kClients = 8;
  const int per_client = std::max(1, rounds / 2);
  auto t0 = Clock::now();
  for (int i = 0; i < kClients * per_client; ++i) RawSpawnReapMs();
  const double raw_rate = kClients * per_client / (Ms(Clock::now() - t0) / 1000);
  std::vector<std::thread> threads;
  std::atomic<int> ok{0};
  const RateCpu cpu_before = ReadRateCpu(stack);
  t0 = Clock::now();
  for (int c = 0; c < kClients; ++c) {
    threads.emplace_back([&] {
      auto client = pm::Client::ConnectLocal(runtime_dir);
      for (int i = 0; i < per_client; ++i) {
        if ((*client)->Start(Cmd({"/bin/true"})).ok()) ++ok;
      }
    });
  }
  for (auto& t : threads) t.join();
  const double pm_rate = ok / (Ms(Clock::now() - t0) / 1000);
  const RateCpu cpu_after = ReadRateCpu(stack);
  Report({"Starts/s, 8 concurrent clients", "/s", pm_rate, pm_rate,
          "raw serial posix_spawn+reap rate", raw_rate, "(target >= 0.7)", "rate", "pm",
          RateCpuPerStart(cpu_before, cpu_after, ok.load(), 0.7 * raw_rate)});
}

void MeasureIdle(const pm::stack::Stack& stack, int seconds) {
  ProcUsage before = StackUsage(stack);
  const auto threads_before = ThreadCpuNs(stack);
  // Idle means nobody calls: the driver itself must not poke the services.
  std::this_thread::sleep_for(std::chrono::seconds(seconds));
  ProcUsage after = StackUsage(stack);
  const auto threads_after = ThreadCpuNs(stack);
  const double cpu_pct = 100.0 * (after.cpu_ticks - before.cpu_ticks) /
                         sysconf(_SC_CLK_TCK) / seconds;
  Report({"Services' RSS at rest (all together)", "MiB", after.rss_kib / 1024.0,
          after.rss_kib / 1024.0, "target", 48, "", "rss", "pm",
          "(shared libraries counted once per service)"});
  Report({"Services' PSS at rest (all together)", "MiB", after.pss_kib / 1024.0,
          after.pss_kib / 1024.0, "target", 48, "", "pss", "pm",
          "(each shared page counted once)"});
  Report({absl::StrCat("Services' CPU at rest over ", seconds, " s"), "%core", cpu_pct,
          cpu_pct, "target", 0.1, "", "cpu", "pm",
          IdleCpuByThread(threads_before, threads_after, seconds)});
}

// What a status and a stop of every process, all at once, came to.
struct StopAllResult {
  int running = 0;   // GetStatus answered RUNNING
  int stopped = 0;   // Stop answered stopped=true
  int failed = 0;    // a call failed or stopped=false
  double last_ms = 0;  // from t0 to the last stopped=true
  std::string first_error;
  // How the stopped processes ended, by state and end reason: a process
  // re-adopted without its pm-shim has no exit status to give.
  std::map<std::string, int> ends;
};

std::string EndsSummary(const std::map<std::string, int>& ends) {
  std::vector<std::string> parts;
  for (const auto& [end, n] : ends) parts.push_back(absl::StrCat(n, " ", end));
  return absl::StrJoin(parts, "; ");
}

// Asks every process for its status and, once it answered, stops it
// (SIGTERM, which ends a sleep at once): all N in flight together through
// the Library's callback calls on a fresh connection. Times from `t0` (the
// caller's start: a restart, or now) to the last stopped=true.
StopAllResult StatusAndStopAll(const std::string& runtime_dir,
                               const std::vector<std::string>& ids, Clock::time_point t0) {
  struct Call {
    grpc::ClientContext status_context, stop_context;
    pm::v1::GetStatusRequest status_request;
    pm::v1::ProcessStatus status;
    pm::v1::StopRequest stop_request;
    pm::v1::StopResponse stop;
  };
  StopAllResult result;
  auto client = pm::Client::ConnectLocal(runtime_dir);
  if (!client.ok()) {
    result.failed = ids.size();
    result.first_error = client.status().ToString();
    return result;
  }
  // Notified under the lock, so the waiter cannot return (and destroy
  // these) while the last callback still touches them.
  std::mutex mu;
  std::condition_variable all_done;
  size_t done = 0;
  Clock::time_point last = t0;
  auto finish = [&](bool stopped, const std::string& error) {
    std::lock_guard<std::mutex> lock(mu);
    ++done;
    if (done == ids.size()) all_done.notify_all();
    if (stopped) {
      ++result.stopped;
      last = std::max(last, Clock::now());
    } else {
      ++result.failed;
      if (result.first_error.empty()) result.first_error = error;
    }
  };
  std::vector<std::unique_ptr<Call>> calls;
  for (const std::string& id : ids) {
    calls.push_back(std::make_unique<Call>());
    Call* call = calls.back().get();
    const auto deadline = std::chrono::system_clock::now() + std::chrono::seconds(120);
    call->status_context.set_deadline(deadline);
    call->stop_context.set_deadline(deadline);
    call->status_request.set_id(id);
    call->stop_request.set_id(id);
    call->stop_request.set_grace_period_ms(5000);
    auto on_stop = [&, call](grpc::Status rpc) {
      if (rpc.ok()) {
        std::lock_guard<std::mutex> lock(mu);
        ++result.ends[absl::StrCat(
            pm::v1::ProcessStatus::State_Name(call->stop.status().state()), " (",
            call->stop.status().end_reason(), ")")];
      }
      finish(rpc.ok() && call->stop.stopped(),
             rpc.ok() ? "stopped=false" : absl::StrCat("Stop: ", rpc.error_message()));
    };
    auto on_status = [&, call, on_stop](grpc::Status rpc) {
      if (!rpc.ok()) {
        finish(false, absl::StrCat("GetStatus: ", rpc.error_message()));
        return;
      }
      if (call->status.state() == pm::v1::ProcessStatus::STATE_RUNNING) {
        std::lock_guard<std::mutex> lock(mu);
        ++result.running;
      }
      absl::Status sent = (*client)->StopAsync(&call->stop_context, &call->stop_request,
                                               &call->stop, on_stop);
      if (!sent.ok()) finish(false, sent.ToString());
    };
    absl::Status sent = (*client)->GetStatusAsync(
        &call->status_context, &call->status_request, &call->status, on_status);
    if (!sent.ok()) finish(false, sent.ToString());
  }
  std::unique_lock<std::mutex> lock(mu);
  all_done.wait(lock, [&] { return done >= ids.size(); });
  result.last_ms = Ms(last - t0);
  return result;
}

// The PSS of the processes given, summed (shared pages counted once).
uint64_t SumPssKib(const std::vector<pid_t>& pids) {
  uint64_t kib = 0;
  for (pid_t pid : pids) kib += Usage(pid).pss_kib;
  return kib;
}

// Starts `count` sleeps; returns their ids.
std::vector<std::string> StartSleepers(pm::Client& client, int count) {
  std::vector<std::string> ids;
  for (int i = 0; i < count; ++i) {
    auto started = client.Start(Cmd({"/bin/sleep", "1000"}));
    if (started.ok()) {
      ids.push_back(started->id());
    } else {
      absl::PrintF("start of sleeper %d failed: %s\n", i, started.status().ToString());
    }
  }
  return ids;
}

// What a managed process costs in memory beyond itself: its pm-shim (PSS,
// so the shims' shared text counts once over all of them) and what the
// services grow by (RSS with N sleeping processes minus RSS with none).
void MeasureSleepers(pm::Client& client, const pm::stack::Stack& stack,
                     const std::string& runtime_dir, int count) {
  const ProcUsage before = StackUsage(stack);
  const size_t spares = ShimPids(runtime_dir).size();
  const std::vector<std::string> ids = StartSleepers(client, count);
  // Let the last Starts' allocations settle (a shim drains, the registry
  // writes) before reading memory.
  absl::SleepFor(absl::Milliseconds(500));
  const ProcUsage after = StackUsage(stack);
  const std::vector<pid_t> shims = ShimPids(runtime_dir);
  const uint64_t shims_pss_kib = SumPssKib(shims);
  std::vector<double> list_ms;
  for (int i = 0; i < 20; ++i) {
    auto t0 = Clock::now();
    auto list = client.List();
    list_ms.push_back(Ms(Clock::now() - t0));
  }
  const double n = std::max<size_t>(1, ids.size());
  const double services_kib = (static_cast<double>(after.rss_kib) - before.rss_kib) / n;
  const double shim_kib = shims_pss_kib / n;
  Report({absl::StrCat("pm-shim PSS per sleeping process (", ids.size(), ")"), "KiB",
          shim_kib, shim_kib, "", 0, "", "shim_pss", "pm",
          absl::StrFormat("(%d shims, %d of them there before: idle spares, ending ones; %.1f MiB together)",
                          shims.size(), spares, shims_pss_kib / 1024.0)});
  Report({absl::StrCat("Service memory per sleeping process (", ids.size(), ")"), "KiB",
          services_kib, services_kib, "target", 64, "", "services_rss", "pm",
          absl::StrFormat("(services' RSS %.1f -> %.1f MiB)", before.rss_kib / 1024.0,
                          after.rss_kib / 1024.0)});
  Report({absl::StrCat("Memory per sleeping process, shim + services (", ids.size(), ")"),
          "KiB", shim_kib + services_kib, shim_kib + services_kib, "", 0, "",
          "per_process", "pm", "(the sleep itself not counted)"});
  Stats l = Summarize(list_ms);
  Report({absl::StrCat("List with ", ids.size(), " processes"), "ms", l.median, l.p99,
          "target", 20, ""});
  StatusAndStopAll(runtime_dir, ids, Clock::now());
}

// Re-adoption: with N sleeping processes, the supervisor is killed (SIGKILL,
// its shims carry on) and started again; timed from that start to the
// supervisor's health, and to every process having answered a status and a
// stop (all in flight at once). Baseline: the same status and stop of N
// processes on a supervisor that was never killed, in the same round.
void MeasureAdoption(pm::stack::Stack& stack, const std::string& runtime_dir, int count,
                     int rounds) {
  auto client = pm::Client::ConnectLocal(runtime_dir);
  if (!client.ok()) return;
  std::vector<double> baseline, healthy, adopted;
  std::map<std::string, int> base_ends, adopted_ends;
  int lost = 0;
  std::string first_error;
  auto tally = [&](const StopAllResult& r, size_t n) {
    if (r.stopped != static_cast<int>(n) || r.running != static_cast<int>(n)) {
      lost += n - std::min<int>(n, r.stopped);
      absl::PrintF("adoption: %d of %d running, %d stopped, %d failed%s%s\n", r.running, n,
                   r.stopped, r.failed, r.first_error.empty() ? "" : ": ", r.first_error);
      if (first_error.empty()) first_error = r.first_error;
    }
  };
  for (int round = 0; round < rounds; ++round) {
    std::vector<std::string> ids = StartSleepers(**client, count);
    StopAllResult base = StatusAndStopAll(runtime_dir, ids, Clock::now());
    tally(base, ids.size());
    baseline.push_back(base.last_ms);
    for (const auto& [end, n] : base.ends) base_ends[end] += n;

    ids = StartSleepers(**client, count);
    absl::Status killed = stack.KillService("supervisor", SIGKILL);
    const auto t0 = Clock::now();
    absl::Status restarted = killed.ok() ? stack.RestartService("supervisor") : killed;
    if (!restarted.ok()) {
      absl::PrintF("adoption: cannot restart the supervisor: %s\n", restarted.ToString());
      return;
    }
    healthy.push_back(Ms(Clock::now() - t0));
    StopAllResult after = StatusAndStopAll(runtime_dir, ids, t0);
    tally(after, ids.size());
    adopted.push_back(after.last_ms);
    for (const auto& [end, n] : after.ends) adopted_ends[end] += n;
    absl::PrintF("adoption round %d: healthy after %.0f ms, all stopped after %.0f ms; "
                 "ends: %s\n",
                 round, healthy.back(), after.last_ms, EndsSummary(after.ends));
  }
  // A process re-adopted without its pm-shim ends STATE_LOST: its output
  // after the restart was not captured. Said first, where it shows.
  int without_shim = 0;
  for (const auto& [end, n] : adopted_ends) {
    if (absl::StartsWith(end, "STATE_LOST")) without_shim += n;
  }
  Stats b = Summarize(baseline), h = Summarize(healthy), a = Summarize(adopted);
  const std::string rounds_note = absl::StrCat("(median of ", rounds, " round",
                                               rounds == 1 ? "" : "s", ")");
  Report({absl::StrCat("Supervisor kill -9 + restart -> healthy (", count, " processes)"),
          "ms", h.median, h.p99, "", 0, rounds_note, "adopt_healthy"});
  Report({absl::StrCat("kill -9 + restart -> all ", count, " answered status + stop"), "ms",
          a.median, a.p99, absl::StrCat("status + stop of ", count, ", no restart"), b.median,
          rounds_note, "adopt", "pm",
          absl::StrCat(
              without_shim > 0
                  ? absl::StrCat("RE-ADOPTED WITHOUT THEIR SHIM: ", without_shim, " of ",
                                 rounds * count, " (ended STATE_LOST); ")
                  : "",
              lost > 0 ? absl::StrCat("LOST PROCESSES: ", lost, " not stopped (", first_error, ")")
                       : "every process stopped",
              "; ends after the restart, all rounds: ", EndsSummary(adopted_ends),
              "; without it: ", EndsSummary(base_ends))});
}

// Memory at rest after many short processes came and went: the services
// keep only their capped records and logs, and give back what the churn
// left free (MemoryTrimmer, every 5 s; waited out here).
void MeasureChurn(const pm::stack::Stack& stack, const std::string& runtime_dir,
                  int count) {
  const ProcUsage before = StackUsage(stack);
  const int kClients = 8;
  std::vector<std::thread> threads;
  std::atomic<int> ok{0};
  for (int c = 0; c < kClients; ++c) {
    threads.emplace_back([&, c] {
      auto client = pm::Client::ConnectLocal(runtime_dir);
      std::string last;
      for (int i = c; i < count; i += kClients) {
        auto started = (*client)->Start(Cmd({"/bin/true"}));
        if (!started.ok()) continue;
        ++ok;
        last = started->id();
      }
      if (!last.empty()) (*client)->Wait(last, absl::Seconds(60)).IgnoreError();
    });
  }
  for (auto& t : threads) t.join();
  const ProcUsage busy = StackUsage(stack);
  absl::SleepFor(absl::Seconds(6));  // a trimmer period: the state at rest
  const ProcUsage after = StackUsage(stack);
  Report({absl::StrCat("Services' RSS at rest after ", ok.load(), " short processes"),
          "MiB", after.rss_kib / 1024.0, busy.rss_kib / 1024.0,
          "RSS before them", before.rss_kib / 1024.0, "",
          "churn", "pm",
          absl::StrFormat("(p99 column: right after the last; PSS %.1f MiB at rest)",
                          after.pss_kib / 1024.0)});
}

// The peers' names and versions, in the order they reported.
std::vector<std::pair<std::string, std::string>> g_peer_versions;

const Row* PmRow(const std::string& key) {
  for (const Row& r : g_rows) {
    if (r.who == "pm" && r.key == key) return &r;
  }
  return nullptr;
}

// One line of peers.sh: "version\tPEER\tVERSION" or
// "row\tPEER\tKEY\tMEASURE\tUNIT\tMEDIAN\tP99\tNOTE". A row is reported
// with the baseline of pm's row for the same key.
void TakePeerLine(absl::string_view line) {
  std::vector<std::string> f = absl::StrSplit(line, '\t');
  if (f.size() == 3 && f[0] == "version") {
    g_peer_versions.emplace_back(f[1], f[2]);
    return;
  }
  Row row;
  if (f.size() != 8 || f[0] != "row" || !absl::SimpleAtod(f[5], &row.median) ||
      !absl::SimpleAtod(f[6], &row.p99)) {
    absl::FPrintF(stderr, "peers: unexpected line: %s\n", line);
    return;
  }
  row.who = f[1];
  row.key = f[2];
  row.measure = f[3];
  row.unit = f[4];
  row.note = f[7];
  if (const Row* pm_row = PmRow(row.key)) {
    row.baseline = pm_row->baseline;
    row.base_median = pm_row->base_median;
  }
  Report(std::move(row));
}

// Runs peers/peers.sh from the runfiles with the sizes pm had; it installs,
// runs and cleans up the peers. Returns false if it could not run or a peer
// failed (its rows so far are reported all the same).
bool RunPeers(int rounds, uint64_t capture, int capture_rounds, int idle, int sleepers) {
  auto root = pm::stack::FindBinaryRoot();
  if (!root.ok()) {
    absl::FPrintF(stderr, "peers: %s\n", root.status().ToString());
    return false;
  }
  const std::string command = absl::StrCat(
      "'", *root, "/testing/bench/peers/peers.sh' --rounds=", rounds,
      " --capture_bytes=", capture, " --capture_rounds=", capture_rounds,
      " --idle_seconds=", idle, " --sleepers=", sleepers, " --only='", FLAGS_only, "'");
  absl::PrintF("\npeers (supervisord, PM2), same sizes; ratio = peer / pm's baseline\n");
  fflush(stdout);
  FILE* out = popen(command.c_str(), "r");
  if (out == nullptr) {
    absl::FPrintF(stderr, "peers: popen(%s): %s\n", command, strerror(errno));
    return false;
  }
  char* line = nullptr;
  size_t capacity = 0;
  while (getline(&line, &capacity, out) > 0) {
    TakePeerLine(absl::StripSuffix(line, "\n"));
  }
  free(line);
  const int status = pclose(out);
  if (status != 0) {
    absl::FPrintF(stderr, "peers: peers.sh failed (status %d); see its messages above\n",
                  status);
  }
  return status == 0;
}

// pm and the peers side by side: the medians of the measures they share.
void PrintComparison() {
  std::vector<std::string> columns = {"pm"};
  std::string header = absl::StrFormat("%-34s %-14s", "median", "pm");
  for (const auto& [peer, version] : g_peer_versions) {
    columns.push_back(peer);
    absl::StrAppendFormat(&header, " %-18s", absl::StrCat(peer, " ", version));
  }
  absl::PrintF("\nside by side (this run)\n%s\n", header);
  const struct {
    const char* key;
    const char* label;
  } kShared[] = {
      {"start", "Start, request -> running"},
      {"start_stop", "Start + Stop of sleep"},
      {"capture", "Capture until retained"},
      {"rss", "RSS at rest (services)"},
      {"cpu", "CPU at rest"},
      {"per_process", "Memory per sleeping process"},
  };
  for (const auto& [key, label] : kShared) {
    const Row* pm_row = PmRow(key);
    if (pm_row == nullptr) continue;
    std::string line = absl::StrFormat("%-34s", absl::StrCat(label, ", ", pm_row->unit));
    for (const std::string& who : columns) {
      std::string cell = "-";
      for (const Row& r : g_rows) {
        if (r.who == who && r.key == key) cell = absl::StrFormat("%.3f", r.median);
      }
      absl::StrAppendFormat(&line, " %-*s", who == "pm" ? 14 : 18, cell);
    }
    absl::PrintF("%s\n", line);
  }
  for (const Row& r : g_rows) {
    if (!r.note.empty() && (r.who != "pm" || r.key == "capture")) {
      absl::PrintF("  %s, %s: %s\n", r.who, r.key, r.note);
    }
  }
}

std::string JsonString(absl::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    if (static_cast<unsigned char>(c) < 0x20) {
      absl::StrAppendFormat(&out, "\\u%04x", c);
      continue;
    }
    out += c;
  }
  return out + "\"";
}

// Through the gateway as an external client would: mutual TLS and basic
// auth, one connection reused for every call.
void MeasureGateway(const pm::stack::DevCredentials& credentials, int port,
                    uint64_t bytes, int rounds) {
  pm::RemoteOptions remote_options;
  remote_options.target = absl::StrCat("localhost:", port);
  remote_options.ca_file = credentials.File("ca.pem");
  remote_options.cert_file = credentials.File("client.pem");
  remote_options.key_file = credentials.File("client.key");
  remote_options.user = credentials.user;
  remote_options.password_file = credentials.password_file;
  auto remote = pm::Client::ConnectRemote(remote_options);
  if (!remote.ok() || !(*remote)->List().ok()) {  // also warms the connection
    absl::PrintF("gateway: cannot connect: %s\n",
                 remote.ok() ? "List failed" : remote.status().ToString());
    return;
  }
  // The floor under a Start through the gateway: one call that does no work
  // behind it (a status of an id nobody has), with TLS and basic auth.
  std::vector<double> round_trip;
  for (int i = 0; i < rounds; ++i) {
    auto t0 = Clock::now();
    auto status = (*remote)->GetStatus("00000000-0000-4000-8000-000000000000");
    round_trip.push_back(Ms(Clock::now() - t0));
  }
  std::vector<double> start;
  for (int i = 0; i < rounds; ++i) {
    auto t0 = Clock::now();
    if ((*remote)->Start(Cmd({"/bin/true"})).ok()) start.push_back(Ms(Clock::now() - t0));
  }
  Stats rt = Summarize(round_trip);
  Report({"gRPC round trip through the gateway (GetStatus)", "ms", rt.median, rt.p99,
          "", 0, "(mTLS, basic auth, then the registry)"});
  Stats s = Summarize(start);
  // Run alone (--only=gateway), the baselines are measured here.
  if (g_raw_spawn_ms == 0) {
    std::vector<double> raw;
    for (int i = 0; i < rounds; ++i) raw.push_back(RawSpawnReapMs());
    g_raw_spawn_ms = Summarize(raw).median;
  }
  if (g_raw_pipe_gbps == 0) g_raw_pipe_gbps = bytes / RawPipeCaptureSeconds(bytes) / 1e9;
  Report({"Start /bin/true through the gateway (mTLS, reused)", "ms", s.median,
          s.p99, "posix_spawn+pidfd+reap /bin/true", g_raw_spawn_ms,
          "(target < 3 ms)"});

  auto started = (*remote)->Start(Cmd({"head", absl::StrCat("-c", bytes), "/dev/zero"}));
  if (!started.ok()) return;
  pm::v1::StreamOutputRequest read;
  read.set_id(started->id());
  read.set_from_start(true);
  read.set_follow(true);
  auto t0 = Clock::now();
  auto stream = (*remote)->StreamOutput(read);
  pm::v1::OutputChunk chunk;
  uint64_t got = 0;
  while (stream->Next(&chunk)) got += chunk.data().size();
  const double seconds = Ms(Clock::now() - t0) / 1000;
  absl::Status finished = stream->Finish();
  const double gbps = got / seconds / 1e9;
  Report({absl::StrCat("StreamOutput of ", bytes >> 20, " MiB through the gateway"),
          "GB/s", gbps, gbps, "pipe -> epoll reader, discard", g_raw_pipe_gbps,
          got == bytes && finished.ok() ? "(target >= 0.3 GB/s)"
                                        : "(BYTES MISSING)"});
}

void WriteJson(const std::string& path) {
  std::string json = "{\n  \"versions\": {";
  for (size_t i = 0; i < g_peer_versions.size(); ++i) {
    absl::StrAppend(&json, i > 0 ? ", " : "", JsonString(g_peer_versions[i].first), ": ",
                    JsonString(g_peer_versions[i].second));
  }
  json += "},\n  \"rows\": [\n";
  for (size_t i = 0; i < g_rows.size(); ++i) {
    const Row& r = g_rows[i];
    absl::StrAppendFormat(
        &json,
        "    {\"who\": %s, \"key\": %s, \"measure\": %s, \"unit\": %s, \"median\": %.4f, "
        "\"p99\": %.4f, \"baseline\": %s, \"baseline_median\": %.4f, \"target\": %s, "
        "\"note\": %s}%s\n",
        JsonString(r.who), JsonString(r.key), JsonString(r.measure), JsonString(r.unit),
        r.median, r.p99, JsonString(r.baseline), r.base_median, JsonString(r.ratio_note),
        JsonString(r.note),
        i + 1 < g_rows.size() ? "," : "");
  }
  json += "  ]\n}\n";
  std::ofstream(path) << json;
}

int Main() {
  const bool smoke = FLAGS_smoke;
  const int rounds = FLAGS_rounds > 0 ? FLAGS_rounds : smoke ? 5 : 200;
  const uint64_t capture = FLAGS_capture_bytes > 0 ? FLAGS_capture_bytes
                           : smoke                ? (4u << 20)
                                                  : (uint64_t{1} << 30);
  const int idle = FLAGS_idle_seconds > 0 ? FLAGS_idle_seconds : smoke ? 1 : 60;
  const int sleepers = FLAGS_sleepers > 0 ? FLAGS_sleepers : smoke ? 20 : 1000;
  const int capture_rounds = FLAGS_capture_rounds > 0 ? FLAGS_capture_rounds : smoke ? 1 : 5;

  std::string tmpl = absl::StrCat(FLAGS_tmp_dir, "/pm_bench.XXXXXX");
  if (mkdtemp(tmpl.data()) == nullptr) {
    absl::FPrintF(stderr, "mkdtemp(%s): %s\n", tmpl, strerror(errno));
    return 1;
  }
  const std::string dir = tmpl;
  pm::stack::StackOptions options;
  options.runtime_dir = dir + "/run";
  options.state_dir = dir + "/state";
  // The per-process cap is the supervisor's, given to each process's
  // pm-shim, which writes the output to disk itself: room for the whole
  // capture, so none of it is dropped. Segments keep their default size
  // (8 MiB).
  options.extra_args["log_store"] = {
      absl::StrCat("--max_total_bytes=", 2 * capture + (256 << 20))};
  options.extra_args["supervisor"] = {
      "--max_processes=100000",
      absl::StrCat("--max_output_bytes=", capture + (64 << 20))};
  for (absl::string_view flag :
       absl::StrSplit(FLAGS_supervisor_flags, ',', absl::SkipEmpty())) {
    options.extra_args["supervisor"].push_back(std::string(flag));
  }
  absl::optional<pm::stack::DevCredentials> credentials;
  if (FLAGS_gateway) {
    absl::StatusOr<std::string> root = pm::stack::FindBinaryRoot();
    absl::StatusOr<pm::stack::DevCredentials> made =
        root.ok() ? pm::stack::EnsureDevCredentials(
                        dir + "/certs", *root + "/certs/make_pki.sh")
                  : absl::StatusOr<pm::stack::DevCredentials>(root.status());
    if (made.ok()) {
      credentials = *made;
      options.gateway = credentials->GatewayFlags("127.0.0.1:0");
    } else {
      absl::FPrintF(stderr, "no gateway measures: %s\n", made.status().ToString());
    }
  }
  auto stack = pm::stack::Stack::Start(options);
  if (!stack.ok()) {
    absl::FPrintF(stderr, "cannot start the stack: %s\n", stack.status().ToString());
    return 1;
  }
  auto client = pm::Client::ConnectLocal(options.runtime_dir);
  absl::PrintF("pm benchmarks (%s), %d rounds; medians; ratio = pm / baseline\n",
               smoke ? "smoke" : "full", rounds);
  const std::vector<std::string> only = absl::StrSplit(FLAGS_only, ',', absl::SkipEmpty());
  auto run = [&only](absl::string_view measure) {
    return only.empty() || std::find(only.begin(), only.end(), measure) != only.end();
  };
  if (run("idle")) MeasureIdle(**stack, idle);
  if (run("start")) MeasureStart(**client, rounds);
  if (run("cli")) MeasureCli(options.runtime_dir, rounds);
  if (run("rate")) MeasureStartRate(**stack, options.runtime_dir, rounds);
  if (run("capture")) MeasureCapture(**client, capture, capture_rounds);
  if (run("tail")) MeasureTail(**client, options.runtime_dir, dir, capture, rounds);
  if (run("restart")) MeasureRestart(**client, rounds);
  if (run("follow")) {
    MeasureFollowLatency(**client, dir, 1, rounds);
    MeasureFollowLatency(**client, dir, smoke ? 5 : 100, rounds);
  }
  if (run("sleepers")) MeasureSleepers(**client, **stack, options.runtime_dir, sleepers);
  if (run("churn")) {
    MeasureChurn(**stack, options.runtime_dir,
                 FLAGS_churn_processes > 0 ? FLAGS_churn_processes : smoke ? 40 : 30000);
  }
  if (credentials && run("gateway")) {
    MeasureGateway(*credentials, (*stack)->gateway_port(), capture, rounds);
  }
  // Last: it kills the supervisor, whose old connections then reconnect.
  if (run("adopt")) {
    MeasureAdoption(**stack, options.runtime_dir, sleepers,
                    FLAGS_adopt_rounds > 0 ? FLAGS_adopt_rounds : smoke ? 1 : 3);
  }
  client->reset();
  absl::Status stopped = (*stack)->StopAll();
  if (FLAGS_keep_dir) {
    absl::PrintF("kept %s (the services' state: each process's output and shim.log)\n", dir);
  } else {
    std::string rm = "rm -rf " + dir;
    if (system(rm.c_str()) != 0) {}
  }
  // After pm's stack is down, so the peers have the machine to themselves.
  bool peers_ok = true;
  if (FLAGS_peers) {
    peers_ok = RunPeers(rounds, capture, capture_rounds, idle, sleepers);
    PrintComparison();
  }
  if (!FLAGS_json.empty()) WriteJson(FLAGS_json);
  return stopped.ok() && peers_ok ? 0 : 1;
}

}  // namespace
}  // namespace pm::bench

int main(int argc, char** argv) {
  signal(SIGPIPE, SIG_IGN);
  gflags::ParseCommandLineFlags(&argc, &argv, true);
  return pm::bench::Main();
}
