// pm's cluster benchmark (issue 17): one etcd (Debian's etcd-server) and
// three hosts a, b and c, each a real launcher with its services
// (testing/launcher_process.h) on its own dirs and gateway port, one set of
// certificates and users, all on loopback; driven through host a's gateway
// as a user would, with the Library.
//
//   bazel run -c opt //testing/bench:cluster            # full sizes
//   bazel run //testing/bench:cluster -- --smoke        # tiny sizes
//
// Measures, each beside its baseline from the same run, interleaved with it
// where both are per-call (ratio = measure / baseline):
//   start   Start of /bin/true on host b through a's gateway (forwarded to
//           b's gateway), against a Start on a itself through a's gateway.
//   list    List through a's gateway of every host's records (10,000 ended
//           processes, a third on each host), against a List of a's own
//           (node=a) through the same gateway.
//   events  A process on host c exits (it reads a FIFO that the driver
//           writes); the time from that write until a watcher on a's
//           gateway (an unfiltered Watch) has the process's end event,
//           against the same for a process on a itself. Where an
//           unfiltered Watch tells this host's events only (before issue
//           17's cluster events), a Watch of each process's id through a's
//           gateway (forwarded to c) instead, and the rows say so.
//
// Prints medians and p90. Never asserts a speed: the machines are noisy, so
// read the ratios to the baselines measured in the same run.
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <gflags/gflags.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "client/client.h"
#include "stack/stack.h"
#include "common/loopback_ports_test_util.h"
#include "testing/launcher_process.h"
#include "third_party/etcd/etcd_test_server.h"

DEFINE_bool(smoke, false, "Tiny sizes: proves the driver works, measures nothing");
DEFINE_string(only, "",
              "Run only these measures, comma-separated, of: start, list, events "
              "(default: all)");
DEFINE_int32(rounds, 0,
             "Start and event rounds, each for the measure and its baseline "
             "(0: 200, or 3 with --smoke)");
DEFINE_int32(list_records, 0,
             "Ended processes spread over the three hosts for the List measure "
             "(0: 10,000, or 30 with --smoke)");
DEFINE_int32(list_rounds, 0, "Lists of each kind (0: 50, or 3 with --smoke)");
DEFINE_bool(keep_dir, false, "Keep the hosts' and etcd's dirs at the end, for a look");

namespace pm::bench {
namespace {

using Clock = std::chrono::steady_clock;
using pm::testing::LauncherProcess;

constexpr char kUser[] = "demo";
// A safety net against a hung host, not an expectation of speed.
constexpr auto kEventTimeout = std::chrono::seconds(30);
// The gateway's default --max_starts_per_second_per_user is 50 (bursts of
// 100), counted by each gateway: host a's sees both Starts of a round. The
// start measure keeps a's rate below it, so that no Start is refused.
constexpr double kStartsPerSecond = 40;

double Ms(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

struct Stats {
  double median = 0, p90 = 0;
  size_t n = 0;
};
Stats Summarize(std::vector<double> v) {
  Stats s;
  s.n = v.size();
  if (v.empty()) return s;
  std::sort(v.begin(), v.end());
  s.median = v[v.size() / 2];
  s.p90 = v[std::min(v.size() - 1, static_cast<size_t>(v.size() * 0.9))];
  return s;
}

// One row: the measure and its baseline, with the ratio of their medians.
void Report(const std::string& measure, const Stats& m, const std::string& baseline,
            const Stats& b, const std::string& note = "") {
  absl::PrintF(
      "%-56s %9.3f ms p90 %9.3f (n=%d) | %-44s %9.3f ms p90 %9.3f (n=%d) | ratio %.2f%s%s\n",
      measure, m.median, m.p90, m.n, baseline, b.median, b.p90, b.n,
      b.median > 0 ? m.median / b.median : 0.0, note.empty() ? "" : " ", note);
  fflush(stdout);
}

pm::v1::StartRequest Command(std::vector<std::string> argv, const std::string& node = "") {
  pm::v1::StartRequest request;
  request.set_executable(argv[0]);
  for (size_t i = 1; i < argv.size(); ++i) request.add_args(argv[i]);
  request.set_node(node);
  return request;
}

// The three hosts on one etcd, each seeing the two others, with a client on
// a's gateway (as user demo) and one on each host's local socket.
class ThreeHosts {
 public:
  static constexpr const char* kNodes[] = {"a", "b", "c"};

  // Starts etcd and the three launchers under `dir`; null (having said why
  // on stderr) when one does not come up.
  static std::unique_ptr<ThreeHosts> Start(const std::string& dir) {
    std::unique_ptr<ThreeHosts> hosts(new ThreeHosts(dir));
    return hosts->BringUp() ? std::move(hosts) : nullptr;
  }

  ~ThreeHosts() {
    gateway_.reset();
    local_.clear();
    // The launchers before etcd: each registry lets go of its lease.
    launchers_.clear();
    etcd_.reset();
  }

  pm::Client& gateway() { return *gateway_; }
  // The local socket of host `i` (0: a, 1: b, 2: c): no gateway, no forwarding.
  pm::Client& local(int i) { return *local_[i]; }

 private:
  explicit ThreeHosts(std::string dir) : dir_(std::move(dir)) {}

  std::string certs() const { return dir_ + "/certs"; }

  bool BringUp() {
    std::filesystem::create_directories(dir_ + "/etcd");
    absl::StatusOr<std::unique_ptr<EtcdServer>> etcd = EtcdServer::Start(dir_ + "/etcd");
    if (!etcd.ok()) return Fail(etcd.status().ToString());
    etcd_ = *std::move(etcd);
    // One after the other: the first makes the shared certificates and
    // users, the others find them.
    // Every gateway's port at once, so that they differ.
    absl::StatusOr<std::vector<int>> ports = pm::FreeLoopbackPorts(std::size(kNodes));
    if (!ports.ok()) return Fail(ports.status().ToString());
    for (size_t i = 0; i < std::size(kNodes); ++i) {
      launchers_.push_back(StartHost(kNodes[i], (*ports)[i]));
      // A port free when picked may be taken before the gateway binds it
      // (any outgoing connection on this shared machine may get it): once
      // more on a port picked now.
      if (!launchers_.back()->ok() &&
          absl::StrContains(launchers_.back()->log(), "in use by another process")) {
        launchers_.pop_back();
        absl::StatusOr<std::vector<int>> again = pm::FreeLoopbackPorts(1);
        if (!again.ok()) return Fail(again.status().ToString());
        absl::PrintF("host %s: its gateway's port was taken meanwhile; again on %d\n",
                     kNodes[i], (*again)[0]);
        launchers_.push_back(StartHost(kNodes[i], (*again)[0]));
      }
      if (!launchers_.back()->ok()) {
        return Fail(
            absl::StrCat("host ", kNodes[i], " did not come up:\n", launchers_.back()->log()));
      }
    }
    // A Start placed on b needs a's view of b; every host's events of the
    // others need their records.
    for (size_t i = 0; i < launchers_.size(); ++i) {
      for (size_t j = 0; j < launchers_.size(); ++j) {
        if (j == i) continue;
        const std::string line = absl::StrCat("cluster: host \"", kNodes[j], "\" is up");
        if (!launchers_[i]->WaitForLines(line, 1)) {
          return Fail(absl::StrCat("host ", kNodes[i], " never saw ", kNodes[j], ":\n",
                                   launchers_[i]->log()));
        }
      }
    }
    pm::RemoteOptions remote;
    remote.target = launchers_[0]->gateway_target();
    remote.ca_file = certs() + "/ca.pem";
    remote.cert_file = certs() + "/client.pem";
    remote.key_file = certs() + "/client.key";
    remote.user = kUser;
    remote.password_file = certs() + "/demo.password";
    absl::StatusOr<std::unique_ptr<pm::Client>> gateway = pm::Client::ConnectRemote(remote);
    if (!gateway.ok()) return Fail(gateway.status().ToString());
    gateway_ = *std::move(gateway);
    for (const auto& launcher : launchers_) {
      absl::StatusOr<std::unique_ptr<pm::Client>> local =
          pm::Client::ConnectLocal(launcher->runtime_dir());
      if (!local.ok()) return Fail(local.status().ToString());
      local_.push_back(*std::move(local));
    }
    return true;
  }

  std::unique_ptr<LauncherProcess> StartHost(const char* node, int port) {
    return std::make_unique<LauncherProcess>(
        absl::StrCat(dir_, "/", node), port,
        std::vector<std::string>{"--certs_dir=" + certs(), "--etcd=" + etcd_->endpoint(),
                                 "--etcd_prefix=/pm/bench/", absl::StrCat("--node=", node),
                                 absl::StrCat("--gateway_advertise=127.0.0.1:", port)});
  }

  static bool Fail(const std::string& why) {
    absl::FPrintF(stderr, "cannot bring up the cluster: %s\n", why);
    return false;
  }

  const std::string dir_;
  std::unique_ptr<EtcdServer> etcd_;
  std::vector<std::unique_ptr<LauncherProcess>> launchers_;
  std::unique_ptr<pm::Client> gateway_;
  std::vector<std::unique_ptr<pm::Client>> local_;
};

// A Start through a local socket recorded as the gateway's user's, so that
// the user sees it through a gateway (a user who is not an admin sees only
// their own processes).
absl::StatusOr<pm::v1::StartResponse> StartAsUser(pm::Client& local,
                                                  const pm::v1::StartRequest& request) {
  pm::StartOptions options;
  options.owner = kUser;
  options.owner_user = kUser;
  return local.StartWithOptions(request, options);
}

// 1. Start forwarded to another host against a Start on the host itself,
// both through a's gateway, in alternating order.
void MeasureStart(ThreeHosts& hosts, int rounds) {
  // The first call to b's gateway opens a's channel to it.
  for (const char* node : {"a", "b"}) hosts.gateway().Start(Command({"/bin/true"}, node)).IgnoreError();
  std::vector<double> forwarded, local;
  int failed = 0;
  const auto round_time = std::chrono::duration_cast<Clock::duration>(
      std::chrono::duration<double>(2 / kStartsPerSecond));
  Clock::time_point next = Clock::now();
  for (int i = 0; i < rounds; ++i) {
    std::this_thread::sleep_until(next);
    next = Clock::now() + round_time;
    for (int j = 0; j < 2; ++j) {
      const bool on_b = (i + j) % 2 == 0;
      const auto t0 = Clock::now();
      absl::StatusOr<pm::v1::StartResponse> started =
          hosts.gateway().Start(Command({"/bin/true"}, on_b ? "b" : "a"));
      const double ms = Ms(Clock::now() - t0);
      if (!started.ok()) {
        if (++failed <= 3) absl::PrintF("start failed: %s\n", started.status().ToString());
        continue;
      }
      (on_b ? forwarded : local).push_back(ms);
    }
  }
  Report("Start /bin/true on host b through a's gateway", Summarize(forwarded),
         "Start /bin/true on host a through a's gateway", Summarize(local),
         failed > 0 ? absl::StrCat("(", failed, " STARTS FAILED)") : "");
}

// Starts `count` processes of /bin/true through a host's local socket from
// `threads` threads at once; how many failed.
int StartMany(pm::Client& local, int count, int threads) {
  std::atomic<int> next{0}, failed{0};
  std::vector<std::thread> workers;
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&] {
      while (next.fetch_add(1) < count) {
        if (!StartAsUser(local, Command({"/bin/true"})).ok()) failed.fetch_add(1);
      }
    });
  }
  for (std::thread& worker : workers) worker.join();
  return failed.load();
}

// Lists through a's gateway until it shows `want` processes, every one
// ended; false after `timeout`. The hosts' mirrors reach a through etcd.
bool WaitUntilListed(pm::Client& gateway, size_t want, std::chrono::seconds timeout) {
  const auto deadline = Clock::now() + timeout;
  while (Clock::now() < deadline) {
    absl::StatusOr<pm::v1::ListResponse> list = gateway.List();
    if (list.ok() && static_cast<size_t>(list->processes_size()) >= want &&
        std::all_of(list->processes().begin(), list->processes().end(),
                    [](const pm::v1::ProcessStatus& p) {
                      return p.state() == pm::v1::ProcessStatus::STATE_EXITED ||
                             p.state() == pm::v1::ProcessStatus::STATE_SIGNALED ||
                             p.state() == pm::v1::ProcessStatus::STATE_LOST;
                    })) {
      return true;
    }
    // A List of thousands is not free: poll gently.
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  return false;
}

// 2. List of every host's records through a's gateway, against a List of
// a's own through it.
void MeasureList(ThreeHosts& hosts, int records, int rounds) {
  absl::StatusOr<pm::v1::ListResponse> before = hosts.gateway().List();
  if (!before.ok()) {
    absl::PrintF("list: %s\n", before.status().ToString());
    return;
  }
  const auto t0 = Clock::now();
  std::vector<std::thread> spreaders;
  std::atomic<int> failed{0};
  for (int i = 0; i < 3; ++i) {
    const int share = records / 3 + (i < records % 3 ? 1 : 0);
    spreaders.emplace_back([&hosts, &failed, i, share] {
      failed.fetch_add(StartMany(hosts.local(i), share, 4));
    });
  }
  for (std::thread& spreader : spreaders) spreader.join();
  const double started_s = Ms(Clock::now() - t0) / 1000;
  const size_t want = before->processes_size() + records - failed.load();
  if (!WaitUntilListed(hosts.gateway(), want, std::chrono::minutes(10))) {
    absl::PrintF("list: a's gateway never listed %d processes, all ended\n", want);
    return;
  }
  absl::PrintF("list: %d processes of /bin/true started over 3 hosts in %.1f s, "
               "all listed as ended through a's gateway after %.1f s%s\n",
               records - failed.load(), started_s, Ms(Clock::now() - t0) / 1000,
               failed.load() > 0 ? absl::StrCat(" (", failed.load(), " STARTS FAILED)") : "");

  pm::v1::ListRequest own;
  own.set_node("a");
  // A List on a's local socket answers the same records from the same
  // registry without the gateway (TLS, auth, its filtering by user).
  std::vector<double> all_ms, own_ms, socket_ms;
  size_t all_count = 0, own_count = 0, socket_count = 0, all_bytes = 0;
  for (int i = 0; i < rounds; ++i) {
    auto t0 = Clock::now();
    absl::StatusOr<pm::v1::ListResponse> all = hosts.gateway().List();
    if (all.ok()) {
      all_ms.push_back(Ms(Clock::now() - t0));
      all_count = all->processes_size();
      all_bytes = all->ByteSizeLong();
    }
    t0 = Clock::now();
    absl::StatusOr<pm::v1::ListResponse> mine = hosts.gateway().List(own);
    if (mine.ok()) {
      own_ms.push_back(Ms(Clock::now() - t0));
      own_count = mine->processes_size();
    }
    t0 = Clock::now();
    absl::StatusOr<pm::v1::ListResponse> local = hosts.local(0).List();
    if (local.ok()) {
      socket_ms.push_back(Ms(Clock::now() - t0));
      socket_count = local->processes_size();
    }
  }
  const std::string all = absl::StrCat("List of ", all_count, " processes on 3 hosts");
  Report(all + " through a's gateway", Summarize(all_ms),
         absl::StrCat("List of a's ", own_count, " (node=a), same gateway"), Summarize(own_ms),
         absl::StrCat("(", all_bytes / 1024, " KiB answer)"));
  Report(all + " through a's gateway", Summarize(all_ms),
         absl::StrCat("List of ", socket_count, " on a's local socket"), Summarize(socket_ms),
         "(the gateway's share)");
}

// A watcher on a's gateway: which processes it has heard of, and when each
// one's end (EXITED or SIGNALED) arrived.
class EndWatcher {
 public:
  // Every process's events, or (with an id) that one's. From the first
  // retained event, not from now: nothing is missed however long the
  // stream takes to attach (a Watch of an id on another host is forwarded
  // to it), and the measure waits until the replay is behind it.
  explicit EndWatcher(pm::Client& gateway, const std::string& id = "") {
    pm::v1::WatchRequest request;
    request.set_id(id);
    request.set_after_sequence(0);
    stream_ = gateway.Watch(request);
    reader_ = std::thread([this] { Read(); });
  }
  ~EndWatcher() {
    stream_->Cancel();
    reader_.join();
    stream_->Finish().IgnoreError();
  }

  // Whether an event of `id` arrived within `timeout`.
  bool WaitForAny(const std::string& id, Clock::duration timeout) {
    std::unique_lock<std::mutex> lock(mu_);
    return changed_.wait_for(lock, timeout, [&] { return seen_.count(id) > 0 || done_; }) &&
           seen_.count(id) > 0;
  }

  // When the end of `id` arrived; nullopt after `timeout` without it.
  std::optional<Clock::time_point> WaitForEnd(const std::string& id, Clock::duration timeout) {
    std::unique_lock<std::mutex> lock(mu_);
    changed_.wait_for(lock, timeout, [&] { return ended_.count(id) > 0 || done_; });
    auto it = ended_.find(id);
    if (it == ended_.end()) return std::nullopt;
    return it->second;
  }

 private:
  void Read() {
    pm::v1::Event event;
    while (stream_->Next(&event)) {
      const auto at = Clock::now();
      const bool end = event.kind() == pm::v1::Event::KIND_EXITED ||
                       event.kind() == pm::v1::Event::KIND_SIGNALED;
      std::lock_guard<std::mutex> lock(mu_);
      seen_.insert(event.status().id());
      if (end) ended_.emplace(event.status().id(), at);
      changed_.notify_all();
    }
    std::lock_guard<std::mutex> lock(mu_);
    done_ = true;
    changed_.notify_all();
  }

  std::unique_ptr<pm::EventStream> stream_;
  std::thread reader_;
  std::mutex mu_;
  std::condition_variable changed_;
  std::set<std::string> seen_;
  std::map<std::string, Clock::time_point> ended_;
  bool done_ = false;
};

// A process on a host that exits when the driver writes a line to its FIFO.
struct FifoProcess {
  std::string id;
  std::string fifo;
};

// Starts it on host `i` and waits (its output) until it reads the FIFO,
// so that the write is all that is left before its exit.
std::optional<FifoProcess> StartFifoProcess(ThreeHosts& hosts, int i, const std::string& fifo) {
  if (mkfifo(fifo.c_str(), 0600) != 0) {
    absl::PrintF("mkfifo(%s): %s\n", fifo, strerror(errno));
    return std::nullopt;
  }
  // Opened read-write, so the open does not wait for a writer.
  absl::StatusOr<pm::v1::StartResponse> started = StartAsUser(
      hosts.local(i),
      Command({"/bin/sh", "-c", "exec 3<>\"$0\"; echo ready; read line <&3", fifo}));
  if (!started.ok()) {
    absl::PrintF("event: start failed: %s\n", started.status().ToString());
    return std::nullopt;
  }
  pm::v1::StreamOutputRequest read;
  read.set_id(started->id());
  read.set_from_start(true);
  read.set_follow(true);
  std::unique_ptr<pm::OutputStream> stream = hosts.local(i).StreamOutput(read);
  std::string seen;
  pm::v1::OutputChunk chunk;
  while (seen.find("ready") == std::string::npos && stream->Next(&chunk)) seen += chunk.data();
  stream->Cancel();
  stream->Finish().IgnoreError();
  if (seen.find("ready") == std::string::npos) {
    absl::PrintF("event: process %s never said ready\n", started->id());
    return std::nullopt;
  }
  return FifoProcess{started->id(), fifo};
}

// Writes the line that ends it; when the write was made, or nullopt (said
// why) when it could not be.
std::optional<Clock::time_point> Trigger(const FifoProcess& process) {
  // The process holds the FIFO open for reading: this open does not wait.
  const int fd = open(process.fifo.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) {
    absl::PrintF("events: open(%s): %s\n", process.fifo, strerror(errno));
    return std::nullopt;
  }
  const auto t0 = Clock::now();
  const bool written = write(fd, "go\n", 3) == 3;
  if (!written) absl::PrintF("events: write(%s): %s\n", process.fifo, strerror(errno));
  close(fd);
  unlink(process.fifo.c_str());
  return written ? std::optional<Clock::time_point>(t0) : std::nullopt;
}

// For a lost event: the process as its own host and as a answer for it.
void SayWhereItIs(ThreeHosts& hosts, int i, const std::string& id) {
  absl::StatusOr<pm::v1::ProcessStatus> there = hosts.local(i).GetStatus(id);
  absl::StatusOr<pm::v1::ProcessStatus> on_a = hosts.gateway().GetStatus(id);
  auto state = [](const absl::StatusOr<pm::v1::ProcessStatus>& s) {
    return s.ok() ? pm::v1::ProcessStatus::State_Name(s->state()) : s.status().ToString();
  };
  absl::PrintF("events: no end event of %s within %d s; its host says %s, a's gateway %s\n", id,
               std::chrono::duration_cast<std::chrono::seconds>(kEventTimeout).count(),
               state(there), state(on_a));
}

// How a's watcher learns of another host's ends.
enum class WatchKind {
  // One unfiltered Watch on a's gateway: other hosts' ends reach it through
  // etcd and a's registry (issue 17's cluster events).
  kUnfiltered,
  // A Watch of the one process through a's gateway, forwarded to its host's
  // gateway: for a tree whose unfiltered Watch holds this host's events only.
  kOfTheId,
};

// Ends a process on a and waits for the watcher to hear of it: its replay
// of the retained events is then behind it, and it hears events as they
// come.
bool CaughtUp(ThreeHosts& hosts, EndWatcher& watcher) {
  absl::StatusOr<pm::v1::StartResponse> marker =
      StartAsUser(hosts.local(0), Command({"/bin/true"}));
  if (!marker.ok()) {
    absl::PrintF("events: start failed: %s\n", marker.status().ToString());
    return false;
  }
  if (!watcher.WaitForEnd(marker->id(), kEventTimeout)) {
    absl::PrintF("events: the watcher on a's gateway never told a's own process's end\n");
    return false;
  }
  return true;
}

// Whether an unfiltered Watch on a's gateway tells the end of a process on
// c: one probe round.
bool UnfilteredWatchSeesOtherHosts(ThreeHosts& hosts, const std::string& dir) {
  EndWatcher watcher(hosts.gateway());
  if (!CaughtUp(hosts, watcher)) return false;
  std::optional<FifoProcess> probe = StartFifoProcess(hosts, 2, dir + "/probe.fifo");
  if (!probe || !Trigger(*probe)) return false;
  // Ended on c for sure, then a fair wait for its event to cross.
  hosts.local(2).Wait(probe->id, absl::Seconds(30)).IgnoreError();
  return watcher.WaitForEnd(probe->id, std::chrono::seconds(10)).has_value();
}

// 3. Event latency: a process on c exits, a watcher on a's gateway hears of
// it; against a process on a itself, interleaved.
void MeasureEvents(ThreeHosts& hosts, const std::string& dir, int rounds) {
  const WatchKind kind = UnfilteredWatchSeesOtherHosts(hosts, dir) ? WatchKind::kUnfiltered
                                                                    : WatchKind::kOfTheId;
  if (kind == WatchKind::kOfTheId) {
    absl::PrintF(
        "events: an unfiltered Watch on a's gateway did not tell the end of a process on c "
        "(no cluster events in this tree); measuring a Watch of each process's id through "
        "a's gateway instead (forwarded to c)\n");
  }
  std::unique_ptr<EndWatcher> unfiltered;
  if (kind == WatchKind::kUnfiltered) {
    unfiltered = std::make_unique<EndWatcher>(hosts.gateway());
    if (!CaughtUp(hosts, *unfiltered)) return;
  }
  std::vector<double> remote, local;
  int lost = 0;
  for (int i = 0; i < rounds; ++i) {
    for (int j = 0; j < 2; ++j) {
      const bool on_c = (i + j) % 2 == 0;
      std::optional<FifoProcess> process =
          StartFifoProcess(hosts, on_c ? 2 : 0, absl::StrCat(dir, "/", i, "_", j, ".fifo"));
      if (!process) {
        ++lost;
        continue;
      }
      std::unique_ptr<EndWatcher> of_the_id;
      if (kind == WatchKind::kOfTheId) {
        // Its start (replayed) says the stream is there.
        of_the_id = std::make_unique<EndWatcher>(hosts.gateway(), process->id);
        if (!of_the_id->WaitForAny(process->id, kEventTimeout)) {
          if (++lost <= 3) absl::PrintF("events: no event of %s\n", process->id);
          continue;
        }
      }
      EndWatcher& watcher = of_the_id ? *of_the_id : *unfiltered;
      const std::optional<Clock::time_point> t0 = Trigger(*process);
      if (!t0) {
        ++lost;
        continue;
      }
      std::optional<Clock::time_point> seen = watcher.WaitForEnd(process->id, kEventTimeout);
      if (!seen) {
        if (++lost <= 3) SayWhereItIs(hosts, on_c ? 2 : 0, process->id);
        continue;
      }
      (on_c ? remote : local).push_back(Ms(*seen - *t0));
    }
  }
  const std::string how = kind == WatchKind::kUnfiltered ? "unfiltered Watch"
                                                         : "Watch of the id";
  Report(absl::StrCat("Exit on host c -> a's gateway, ", how), Summarize(remote),
         absl::StrCat("Exit on host a -> a's gateway, ", how), Summarize(local),
         lost > 0 ? absl::StrCat("(", lost, " EVENTS LOST)") : "");
}

int Main() {
  const bool smoke = FLAGS_smoke;
  const int rounds = FLAGS_rounds > 0 ? FLAGS_rounds : smoke ? 3 : 200;
  const int records = FLAGS_list_records > 0 ? FLAGS_list_records : smoke ? 30 : 10000;
  const int list_rounds = FLAGS_list_rounds > 0 ? FLAGS_list_rounds : smoke ? 3 : 50;
  const std::vector<std::string> only = absl::StrSplit(FLAGS_only, ',', absl::SkipEmpty());
  auto run = [&only](const std::string& measure) {
    return only.empty() || std::find(only.begin(), only.end(), measure) != only.end();
  };

  // Short: the services' socket paths must fit in 108 bytes.
  char tmpl[] = "/tmp/pm_cbench.XXXXXX";
  if (mkdtemp(tmpl) == nullptr) {
    absl::FPrintF(stderr, "mkdtemp(%s): %s\n", tmpl, strerror(errno));
    return 1;
  }
  const std::string dir = tmpl;
  int code = 1;
  {
    std::unique_ptr<ThreeHosts> hosts = ThreeHosts::Start(dir);
    if (hosts != nullptr) {
      absl::PrintF(
          "pm cluster benchmarks (%s): etcd and hosts a, b, c on loopback; %d rounds; "
          "medians, p90; ratio = measure / baseline\n",
          smoke ? "smoke" : "full", rounds);
      if (run("start")) MeasureStart(*hosts, rounds);
      if (run("list")) MeasureList(*hosts, records, list_rounds);
      if (run("events")) MeasureEvents(*hosts, dir, rounds);
      code = 0;
    }
  }
  if (FLAGS_keep_dir) {
    absl::PrintF("kept %s\n", dir);
  } else {
    std::error_code ignored;
    std::filesystem::remove_all(dir, ignored);
  }
  return code;
}

}  // namespace
}  // namespace pm::bench

int main(int argc, char** argv) {
  signal(SIGPIPE, SIG_IGN);
  gflags::ParseCommandLineFlags(&argc, &argv, true);
  // `bazel run` names no runfiles dir in the environment; the launchers
  // (and their services) find their binaries and the PKI script through it.
  if (getenv("TEST_SRCDIR") == nullptr && getenv("RUNFILES_DIR") == nullptr) {
    absl::StatusOr<std::string> root = pm::stack::FindBinaryRoot();
    std::error_code error;
    const std::filesystem::path pm = root.ok() ? std::filesystem::canonical(*root, error) : "";
    if (!pm.empty()) setenv("RUNFILES_DIR", pm.parent_path().c_str(), 1);
  }
  return pm::bench::Main();
}
