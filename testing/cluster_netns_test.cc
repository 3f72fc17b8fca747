// Issue 17: three pm hosts, each in a network namespace of the test's own
// (testing/test_network.h: a bridge, veth pairs, 10.213.0.0/24) with its own
// state and runtime dirs, its real launcher and services, and one member of
// a three-member etcd cluster (Debian's etcd-server) beside it, run as
// Kubernetes runs etcd: TLS for clients and peers, client certificates
// required, from a CA of etcd's own (certs/make_pki.sh), the registries
// presenting etcd-client.pem; used only through the hosts' gateways with
// the Library, as a user elsewhere would:
//
//   - a Start placed on a chosen host through another host's gateway;
//   - a List through any gateway covers every host;
//   - the output of a process on c followed through a, and stopped through b;
//   - every pm service of c killed (its shims keep its processes): the
//     others report c's processes STATE_UNKNOWN, calls that need c are
//     refused naming it; c back on the same dirs: RUNNING again, and a
//     process that exited meanwhile is reported with its true exit code;
//   - one etcd member killed: nothing a user sees changes;
//   - all of etcd stopped: each host still starts, stops and lists its own
//     processes through its own gateway, calls that need the cluster are
//     UNAVAILABLE naming etcd; etcd back: what was done meanwhile shows on
//     the other hosts.
//
// Needs root (CI runs as root): the test moves itself into a network
// namespace of its own first (main below), so the machine's network is
// never touched. The waits are for events (each host's Watch of every
// process, a log line, a process's end) with a generous safety net, never
// for a time to pass.
#include <fcntl.h>
#include <poll.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/match.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "client/client.h"
#include "common/status_core.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "testing/cluster_fixture.h"
#include "testing/launcher_process.h"
#include "testing/test_network.h"
#include "testing/test_stack.h"
#include "third_party/etcd/etcd_test_server.h"

namespace pm::testing {
namespace {

using ::pm::v1::ProcessStatus;
using ::testing::HasSubstr;

// Set by main before any thread starts.
absl::Status private_network = absl::UnknownError("main did not run");

const std::vector<std::string> kNodes = {"a", "b", "c"};
// Each host has its addresses to itself: the same ports on each.
constexpr int kGatewayPort = 8443;
constexpr int kEtcdClientPort = 2379;
constexpr int kEtcdPeerPort = 2380;
// Short, so that a lost host shows soon; never waited out by the test.
constexpr int kLeaseSeconds = 3;
// A safety net against a hung cluster, not a claim about speed.
constexpr absl::Duration kSafetyNet = absl::Seconds(90);

std::string MakePkiScript() {
  const char* srcdir = getenv("TEST_SRCDIR");
  return absl::StrCat(srcdir != nullptr ? srcdir : ".", "/pm/certs/make_pki.sh");
}

std::string Describe(const ProcessStatus& status) {
  return absl::StrCat(ProcessStatus::State_Name(status.state()), " on ", status.node(), " (",
                      status.state_reason(), ")");
}

std::string Describe(const absl::StatusOr<ProcessStatus>& status) {
  if (!status.ok()) return status.status().ToString();
  return Describe(*status);
}

// What one host's gateway tells of every process of the cluster: its
// unfiltered Watch, from the first retained event, read on a thread of
// its own. The test waits on it for a state to be told, as a user would.
class EventLog {
 public:
  explicit EventLog(pm::Client& client) {
    pm::v1::WatchRequest request;
    request.set_after_sequence(0);
    stream_ = client.Watch(request);
    stream_->WaitUntilAttached();
    reader_ = std::thread([this] {
      pm::v1::Event event;
      while (stream_->Next(&event)) {
        absl::MutexLock lock(&mutex_);
        latest_[event.status().id()] = event.status();
      }
      const absl::Status end = stream_->Finish();
      absl::MutexLock lock(&mutex_);
      ended_ = end.ok() ? "the watch ended" : end.ToString();
    });
  }
  ~EventLog() {
    stream_->Cancel();
    reader_.join();
  }

  // Waits until the last event told of `id` says what `wanted` wants (or
  // the safety net); true if it did. `*seen`: the last one told.
  bool AwaitLatest(const std::string& id,
                   const std::function<bool(const ProcessStatus&)>& wanted,
                   std::string* seen) {
    absl::MutexLock lock(&mutex_);
    auto told = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_) {
      auto it = latest_.find(id);
      return !ended_.empty() || (it != latest_.end() && wanted(it->second));
    };
    mutex_.AwaitWithTimeout(absl::Condition(&told), kSafetyNet);
    auto it = latest_.find(id);
    *seen = it == latest_.end() ? "no event" : Describe(it->second);
    if (!ended_.empty()) absl::StrAppend(seen, "; ", ended_);
    return it != latest_.end() && wanted(it->second);
  }

 private:
  std::unique_ptr<pm::EventStream> stream_;
  std::thread reader_;
  absl::Mutex mutex_;
  std::map<std::string, ProcessStatus> latest_ ABSL_GUARDED_BY(mutex_);
  std::string ended_ ABSL_GUARDED_BY(mutex_);
};

std::function<bool(const ProcessStatus&)> InState(ProcessStatus::State state) {
  return [state](const ProcessStatus& status) { return status.state() == state; };
}

// The record of `id` in a List through `client`, if there is one.
absl::StatusOr<ProcessStatus> Listed(pm::Client& client, const std::string& id) {
  absl::StatusOr<pm::v1::ListResponse> listed = client.List();
  if (!listed.ok()) return listed.status();
  for (const ProcessStatus& status : listed->processes()) {
    if (status.id() == id) return status;
  }
  return absl::NotFoundError(absl::StrCat(id, " is not listed"));
}

// Whether the process behind `pidfd` has ended (it is not our child: its
// shim reaps it).
bool WaitForEnd(int pidfd) {
  pollfd p = {pidfd, POLLIN, 0};
  return poll(&p, 1, static_cast<int>(absl::ToInt64Milliseconds(kSafetyNet))) == 1;
}

class ClusterNetnsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(private_network.ok())
        << "the test needs a network namespace of its own (root, iproute2): "
        << private_network;
    // Short: the services' socket paths must fit in 108 bytes.
    char tmpl[] = "/tmp/pm_netns.XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr) << strerror(errno);
    dir_ = tmpl;
    absl::StatusOr<std::unique_ptr<TestNetwork>> network = TestNetwork::Create(kNodes);
    ASSERT_TRUE(network.ok()) << "cannot make the hosts' network namespaces: "
                              << network.status();
    network_ = *std::move(network);
    ASSERT_NO_FATAL_FAILURE(MakeCertificates());
    ASSERT_NO_FATAL_FAILURE(StartEtcdCluster());
    // One after the other: the first makes the users file, the others
    // find it.
    for (const std::string& node : kNodes) {
      ASSERT_NO_FATAL_FAILURE(StartHost(node));
    }
    // Each registry in etcd over TLS; a Start placed on another host needs
    // this host's view of it.
    for (const std::string& node : kNodes) {
      ASSERT_TRUE(hosts_[node]->WaitForLines(
          absl::StrCat("cluster: node \"", node, "\" joined through etcd at ",
                       etcd_endpoints(), " over TLS"),
          1))
          << hosts_[node]->log();
      for (const std::string& other : kNodes) {
        if (other == node) continue;
        ASSERT_TRUE(hosts_[node]->WaitForLines(
            absl::StrCat("cluster: host \"", other, "\" is up"), 1))
            << hosts_[node]->log();
      }
    }
    for (const std::string& node : kNodes) ASSERT_NO_FATAL_FAILURE(ConnectTo(node));
  }

  // The Library on `node`'s gateway, and that gateway's Watch.
  void ConnectTo(const std::string& node) {
    events_.erase(node);
    via_[node] = Connect(node);
    ASSERT_NE(via_[node], nullptr);
    events_[node] = std::make_unique<EventLog>(*via_[node]);
  }

  void TearDown() override {
    // Every process still running is stopped through its host.
    for (const auto& [id, node] : started_) {
      if (via_.count(node) == 0 || hosts_.count(node) == 0) continue;
      absl::StatusOr<ProcessStatus> status = via_[node]->GetStatus(id);
      if (!status.ok() || status->state() != ProcessStatus::STATE_RUNNING) continue;
      pm::v1::StopRequest stop;
      stop.set_id(id);
      stop.set_grace_period_ms(1000);
      via_[node]->Stop(stop).IgnoreError();
    }
    events_.clear();
    via_.clear();
    if (HasFailure()) {
      for (auto& [node, host] : hosts_) {
        const std::string log = host->log();
        std::cerr << "--- host " << node << "'s launcher log (last 20000 bytes) ---\n"
                  << log.substr(log.size() > 20000 ? log.size() - 20000 : 0) << "\n";
      }
    }
    hosts_.clear();
    etcd_.clear();
    network_.reset();
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
  }

  std::string certs() const { return dir_ + "/certs"; }
  std::string gateway(const std::string& node) const {
    return absl::StrCat(network_->address(node), ":", kGatewayPort);
  }
  std::string etcd_endpoints() const {
    std::vector<std::string> endpoints;
    for (const std::string& node : kNodes) {
      endpoints.push_back(absl::StrCat(network_->address(node), ":", kEtcdClientPort));
    }
    return absl::StrJoin(endpoints, ",");
  }

  // The dev PKI, its server certificates also valid for the hosts'
  // addresses (each gateway is reached at its own by the test and by the
  // other gateways; each etcd member's peers check its address).
  void MakeCertificates() {
    std::vector<std::string> command = {"/bin/bash", MakePkiScript(), certs()};
    for (const std::string& node : kNodes) command.push_back(network_->address(node));
    const absl::Status made = RunCommand(command);
    ASSERT_TRUE(made.ok()) << made;
  }

  // One member per host, in its namespace, over TLS for clients and
  // peers; all are launched before any is waited for (a member serves once
  // a majority is up).
  void StartEtcdCluster() {
    std::vector<std::string> peers;
    for (const std::string& node : kNodes) {
      peers.push_back(absl::StrCat(node, "=https://", network_->address(node), ":",
                                   kEtcdPeerPort));
    }
    for (const std::string& node : kNodes) {
      EtcdServer::Options options;
      options.dir = dir_ + "/" + node + "/etcd";
      std::filesystem::create_directories(options.dir);
      options.name = node;
      options.host = network_->address(node);
      options.client_port = kEtcdClientPort;
      options.peer_port = kEtcdPeerPort;
      options.initial_cluster = absl::StrJoin(peers, ",");
      options.prefix = network_->prefix(node);
      options.pki_dir = certs();
      absl::StatusOr<std::unique_ptr<EtcdServer>> member = EtcdServer::Launch(options);
      ASSERT_TRUE(member.ok()) << member.status();
      etcd_[node] = *std::move(member);
    }
    ASSERT_NO_FATAL_FAILURE(WaitForEtcd());
  }

  void WaitForEtcd() {
    for (const std::string& node : kNodes) {
      const absl::Status serving = etcd_[node]->WaitUntilServing();
      ASSERT_TRUE(serving.ok()) << "etcd member " << node << ": " << serving;
    }
  }

  // Host `node`'s launcher, in its namespace, on its own dirs (again, if
  // it ran before).
  void StartHost(const std::string& node) {
    LauncherProcess::Options options;
    options.dir = dir_ + "/" + node;
    options.gateway_host = network_->address(node);
    options.gateway_port = kGatewayPort;
    options.prefix = network_->prefix(node);
    options.extra_args = {"--certs_dir=" + certs(),
                          "--etcd=" + etcd_endpoints(),
                          "--etcd_prefix=/pm/netns/",
                          "--node=" + node,
                          "--gateway_advertise=" + gateway(node),
                          absl::StrCat("--etcd_lease_seconds=", kLeaseSeconds),
                          "--etcd_ca_file=" + certs() + "/etcd-ca.pem",
                          "--etcd_cert_file=" + certs() + "/etcd-client.pem",
                          "--etcd_key_file=" + certs() + "/etcd-client.key"};
    hosts_[node] = std::make_unique<LauncherProcess>(options);
    ASSERT_TRUE(hosts_[node]->ok()) << "host " << node << ":\n" << hosts_[node]->log();
  }

  std::unique_ptr<pm::Client> Connect(const std::string& node) {
    return ConnectAsDemo(certs(), gateway(node));
  }

  // Starts `request` on host `on` through host `through`'s gateway.
  std::string StartOn(const std::string& on, const std::string& through,
                      pm::v1::StartRequest request) {
    request.set_node(on);
    pm::v1::StartResponse started = MustStart(*via_[through], request);
    EXPECT_EQ(started.status().node(), on);
    EXPECT_EQ(started.status().state(), ProcessStatus::STATE_RUNNING);
    if (!started.id().empty()) started_[started.id()] = on;
    return started.id();
  }

  // Waits until host `through` tells `id` is in `state` (an event of its
  // Watch), then expects its List to say so too, on `node`.
  void ExpectListed(const std::string& through, const std::string& id,
                    const std::string& node, ProcessStatus::State state) {
    ExpectTold(through, id, state);
    absl::StatusOr<ProcessStatus> listed = Listed(*via_[through], id);
    EXPECT_TRUE(listed.ok() && listed->node() == node && listed->state() == state)
        << "through " << through << ", " << id << " listed " << Describe(listed)
        << ", not " << ProcessStatus::State_Name(state) << " on " << node;
  }

  // Waits until host `through` tells (its Watch) that `id` is in `state`;
  // returns the reason it gave.
  std::string ExpectTold(const std::string& through, const std::string& id,
                         ProcessStatus::State state) {
    std::string seen;
    EXPECT_TRUE(events_[through]->AwaitLatest(id, InState(state), &seen))
        << "through " << through << ", " << id << " never told "
        << ProcessStatus::State_Name(state) << "; last: " << seen;
    return seen;
  }

  // A fifo in the test's dir: a process blocks reading it until the test
  // writes a line.
  std::string MakeFifo(const std::string& name) {
    const std::string path = dir_ + "/" + name;
    EXPECT_EQ(mkfifo(path.c_str(), 0600), 0) << path << ": " << strerror(errno);
    return path;
  }
  // Opening waits for the reader (the process must be running).
  void WriteLine(const std::string& fifo, const std::string& line) {
    const int fd = open(fifo.c_str(), O_WRONLY | O_CLOEXEC);
    ASSERT_GE(fd, 0) << fifo << ": " << strerror(errno);
    const std::string text = line + "\n";
    EXPECT_EQ(write(fd, text.data(), text.size()), static_cast<ssize_t>(text.size()));
    close(fd);
  }

  // The steps of the test, in order.
  void StartOnChosenHostsThroughOthers();
  void ListAcrossHosts();
  void FollowOnCThroughAAndStopThroughB();
  void KillEveryServiceOfCAndBringItBack();
  void KillOneEtcdMember();
  void StopAllOfEtcdAndStartItAgain();

  std::string dir_;
  std::unique_ptr<TestNetwork> network_;
  std::map<std::string, std::unique_ptr<EtcdServer>> etcd_;
  std::map<std::string, std::unique_ptr<LauncherProcess>> hosts_;
  std::map<std::string, std::unique_ptr<pm::Client>> via_;
  std::map<std::string, std::unique_ptr<EventLog>> events_;
  // Every process the test started, and its host.
  std::map<std::string, std::string> started_;

  // Processes the steps share: one on each host, each started through
  // another host; web on c also prints a line when told (its fifo).
  std::map<std::string, std::string> sleeper_;  // node -> id
  std::string web_;
  std::string web_fifo_;
};

void ClusterNetnsTest::StartOnChosenHostsThroughOthers() {
  // a -> c (named), b -> a, c -> b.
  web_fifo_ = MakeFifo("web.fifo");
  pm::v1::StartRequest web = Shell(absl::StrCat(
      "echo hello from c; read line < ", web_fifo_, "; echo \"then: $line\"; exec sleep 1000"));
  web.set_name("web");
  web_ = StartOn("c", "a", web);
  ASSERT_FALSE(web_.empty());
  sleeper_["a"] = StartOn("a", "b", Shell("exec sleep 1000"));
  sleeper_["b"] = StartOn("b", "c", Shell("exec sleep 1000"));
  ASSERT_FALSE(sleeper_["a"].empty());
  ASSERT_FALSE(sleeper_["b"].empty());
  // Each host answers for it as its own: the live view is there.
  ProcessStatus on_c = MustGetStatus(*via_["c"], web_);
  EXPECT_EQ(on_c.node(), "c");
  EXPECT_FALSE(on_c.proc_status().empty());
  // By name, through a host it is not on.
  EXPECT_EQ(MustGetStatus(*via_["b"], "web").id(), web_);
}

void ClusterNetnsTest::ListAcrossHosts() {
  for (const std::string& through : kNodes) {
    ExpectListed(through, web_, "c", ProcessStatus::STATE_RUNNING);
    ExpectListed(through, sleeper_.at("a"), "a", ProcessStatus::STATE_RUNNING);
    ExpectListed(through, sleeper_.at("b"), "b", ProcessStatus::STATE_RUNNING);
  }
  // One host's only.
  pm::v1::ListRequest only_c;
  only_c.set_node("c");
  absl::StatusOr<pm::v1::ListResponse> listed = via_["a"]->List(only_c);
  ASSERT_TRUE(listed.ok()) << listed.status();
  for (const ProcessStatus& status : listed->processes()) EXPECT_EQ(status.node(), "c");
}

void ClusterNetnsTest::FollowOnCThroughAAndStopThroughB() {
  // Followed live: the second line is written only after the first was
  // seen through a.
  pm::v1::StreamOutputRequest request;
  request.set_id(web_);
  request.set_from_start(true);
  request.set_follow(true);
  std::unique_ptr<pm::OutputStream> stream = via_["a"]->StreamOutput(request);
  std::string seen;
  pm::v1::OutputChunk chunk;
  bool told = false;
  while (seen.find("then: go") == std::string::npos && stream->Next(&chunk)) {
    seen += chunk.data();
    if (!told && seen.find("hello from c\n") != std::string::npos) {
      ASSERT_NO_FATAL_FAILURE(WriteLine(web_fifo_, "go"));
      told = true;
    }
  }
  stream->Cancel();
  stream->Finish().IgnoreError();
  EXPECT_THAT(seen, HasSubstr("hello from c\nthen: go\n"));

  // Stopped through b: c's supervisor stops it; its end is seen through a
  // (c's answer) and in b's List (b's copy of c's record).
  MustStop(*via_["b"], web_, 1000);
  EXPECT_EQ(MustWait(*via_["a"], web_).state(), ProcessStatus::STATE_SIGNALED);
  ExpectListed("b", web_, "c", ProcessStatus::STATE_SIGNALED);
}

void ClusterNetnsTest::KillEveryServiceOfCAndBringItBack() {
  // Two more on c: one that keeps running, one that exits (code 3) when
  // told, which the test does while c's pm is down.
  const std::string keeper = StartOn("c", "a", Shell("exec sleep 1000"));
  const std::string fifo = MakeFifo("exiter.fifo");
  const std::string exiter =
      StartOn("c", "b", Shell(absl::StrCat("read line < ", fifo, "; exit 3")));
  ASSERT_FALSE(keeper.empty());
  ASSERT_FALSE(exiter.empty());
  for (std::string through : {"a", "b"}) {
    ExpectListed(through, keeper, "c", ProcessStatus::STATE_RUNNING);
    ExpectListed(through, exiter, "c", ProcessStatus::STATE_RUNNING);
  }
  const ProcessStatus keeper_before = MustGetStatus(*via_["c"], keeper);
  const ProcessStatus exiter_before = MustGetStatus(*via_["c"], exiter);
  const int exiter_pidfd = static_cast<int>(syscall(SYS_pidfd_open, exiter_before.pid(), 0));
  ASSERT_GE(exiter_pidfd, 0) << "pidfd_open(" << exiter_before.pid() << "): " << strerror(errno);

  ASSERT_TRUE(hosts_["c"]->KillWithServices());

  // The others see c go (its lease expires): its processes are not known.
  for (std::string through : {"a", "b"}) {
    ExpectTold(through, keeper, ProcessStatus::STATE_UNKNOWN);
    ExpectTold(through, exiter, ProcessStatus::STATE_UNKNOWN);
    const ProcessStatus unknown = MustGetStatus(*via_[through], keeper);
    EXPECT_EQ(unknown.last_known_state(), ProcessStatus::STATE_RUNNING);
    EXPECT_THAT(unknown.state_reason(), HasSubstr("host c unreachable"));
    // Listed too, as not known.
    absl::StatusOr<ProcessStatus> listed = Listed(*via_[through], exiter);
    ASSERT_TRUE(listed.ok()) << listed.status();
    EXPECT_EQ(listed->state(), ProcessStatus::STATE_UNKNOWN);
  }
  // Calls that must reach c are refused, naming it.
  pm::v1::StopRequest stop;
  stop.set_id(keeper);
  absl::StatusOr<pm::v1::StopResponse> refused = via_["a"]->Stop(stop);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kUnavailable) << refused.status();
  EXPECT_TRUE(IsClusterUnavailableMessage(refused.status().message())) << refused.status();
  EXPECT_THAT(std::string(refused.status().message()),
              HasSubstr("is on host c, which is unreachable"));
  pm::v1::StartRequest on_c = Shell("exec sleep 1000");
  on_c.set_node("c");
  absl::StatusOr<pm::v1::StartResponse> not_up = via_["b"]->Start(on_c);
  EXPECT_EQ(not_up.status().code(), absl::StatusCode::kFailedPrecondition) << not_up.status();
  EXPECT_THAT(std::string(not_up.status().message()), HasSubstr("host \"c\" is not up"));

  // The exiter ends while c's pm is down; its shim keeps its end.
  ASSERT_NO_FATAL_FAILURE(WriteLine(fifo, "exit"));
  EXPECT_TRUE(WaitForEnd(exiter_pidfd));
  close(exiter_pidfd);

  // c's pm again, on the same dirs: the records become true again.
  events_.erase("c");
  hosts_["c"].reset();
  ASSERT_NO_FATAL_FAILURE(StartHost("c"));
  ASSERT_NO_FATAL_FAILURE(ConnectTo("c"));
  for (std::string through : {"a", "b"}) {
    ExpectTold(through, keeper, ProcessStatus::STATE_RUNNING);
    EXPECT_EQ(MustGetStatus(*via_[through], keeper).pid(), keeper_before.pid());
    const ProcessStatus ended = MustWait(*via_[through], exiter);
    EXPECT_EQ(ended.state(), ProcessStatus::STATE_EXITED) << ended.ShortDebugString();
    EXPECT_EQ(ended.exit_code(), 3);
    // The others' copies too.
    ExpectListed(through, exiter, "c", ProcessStatus::STATE_EXITED);
    ExpectListed(through, keeper, "c", ProcessStatus::STATE_RUNNING);
  }
  MustStop(*via_["a"], keeper, 1000);
}

void ClusterNetnsTest::KillOneEtcdMember() {
  // a's member: every registry lists it first, so it is the one they are
  // connected to (gRPC's pick_first). Not the leader, though: while etcd
  // elects a new one it holds every write, and drops those made meanwhile
  // only after its request timeout (README, "Running on several hosts").
  const absl::Status stepped_down = etcd_["a"]->StepDownFor(*etcd_["b"]);
  ASSERT_TRUE(stepped_down.ok()) << stepped_down;
  absl::StatusOr<ExitStatus> killed = etcd_["a"]->Kill();
  ASSERT_TRUE(killed.ok()) << killed.status();
  // At once, nothing a user sees has changed: a named Start that claims
  // its name in etcd, on another host; the others' records as they are.
  pm::v1::StartRequest named = Shell("exec sleep 1000");
  named.set_name("after-a-member-died");
  const std::string id = StartOn("c", "b", named);
  ASSERT_FALSE(id.empty());
  for (const std::string& through : kNodes) {
    ProcessStatus status = MustGetStatus(*via_[through], sleeper_.at("b"));
    EXPECT_EQ(status.state(), ProcessStatus::STATE_RUNNING)
        << "through " << through << ": " << status.state_reason();
    ExpectListed(through, id, "c", ProcessStatus::STATE_RUNNING);
    absl::StatusOr<ProcessStatus> listed = Listed(*via_[through], sleeper_.at("a"));
    ASSERT_TRUE(listed.ok()) << listed.status();
    EXPECT_EQ(listed->state(), ProcessStatus::STATE_RUNNING)
        << "through " << through << ": " << listed->state_reason();
  }
  MustStop(*via_["a"], id, 1000);
  EXPECT_EQ(MustWait(*via_["b"], id).state(), ProcessStatus::STATE_SIGNALED);
}

// How many lines of `log` hold `needle`.
size_t CountLines(const std::string& log, absl::string_view needle) {
  size_t n = 0;
  for (absl::string_view line : absl::StrSplit(log, '\n')) n += absl::StrContains(line, needle);
  return n;
}

void ClusterNetnsTest::StopAllOfEtcdAndStartItAgain() {
  // a's registry says so once its writer hears from etcd again (its claims
  // are refused at once until then).
  constexpr absl::string_view kAnswersAgain = "cluster: etcd answers again";
  const size_t answered_before = CountLines(hosts_["a"]->log(), kAnswersAgain);
  for (std::string node : {"b", "c"}) {
    absl::StatusOr<ExitStatus> stopped = etcd_[node]->Stop();
    ASSERT_TRUE(stopped.ok()) << stopped.status();
  }
  // Each host sees etcd go: the others' records are not known.
  // Another host's process, for each host.
  const std::map<std::string, std::string> other = {{"a", "b"}, {"b", "a"}, {"c", "a"}};
  for (const std::string& node : kNodes) {
    EXPECT_THAT(ExpectTold(node, sleeper_.at(other.at(node)), ProcessStatus::STATE_UNKNOWN),
                HasSubstr("etcd"));
    absl::StatusOr<ProcessStatus> listed = Listed(*via_[node], sleeper_.at(other.at(node)));
    ASSERT_TRUE(listed.ok()) << listed.status();
    EXPECT_EQ(listed->state(), ProcessStatus::STATE_UNKNOWN) << Describe(listed);
  }

  // Each host manages its own processes through its own gateway: an
  // unnamed Start (without a node: it stays here), a Stop, a List.
  std::map<std::string, std::string> meanwhile;
  for (const std::string& node : kNodes) {
    pm::v1::StartResponse started = MustStart(*via_[node], Shell("exec sleep 1000"));
    ASSERT_FALSE(started.id().empty()) << "through " << node;
    EXPECT_EQ(started.status().node(), node);
    started_[started.id()] = node;
    meanwhile[node] = started.id();
    if (sleeper_.count(node) != 0) {
      MustStop(*via_[node], sleeper_.at(node), 1000);
      EXPECT_EQ(MustWait(*via_[node], sleeper_.at(node)).state(),
                ProcessStatus::STATE_SIGNALED);
    }
    absl::StatusOr<ProcessStatus> listed = Listed(*via_[node], started.id());
    ASSERT_TRUE(listed.ok()) << listed.status();
    EXPECT_EQ(listed->state(), ProcessStatus::STATE_RUNNING);
  }
  // What needs the cluster is refused, naming etcd: a name (it must be
  // free on every host), a Start on another host.
  pm::v1::StartRequest named = Shell("exec sleep 1000");
  named.set_name("while-etcd-is-down");
  absl::StatusOr<pm::v1::StartResponse> no_name = via_["a"]->Start(named);
  EXPECT_EQ(no_name.status().code(), absl::StatusCode::kUnavailable) << no_name.status();
  EXPECT_TRUE(IsClusterUnavailableMessage(no_name.status().message())) << no_name.status();
  EXPECT_THAT(std::string(no_name.status().message()),
              HasSubstr("a named process needs etcd"));
  EXPECT_THAT(std::string(no_name.status().message()), HasSubstr("etcd at "));
  pm::v1::StartRequest elsewhere = Shell("exec sleep 1000");
  elsewhere.set_node("b");
  absl::StatusOr<pm::v1::StartResponse> not_there = via_["a"]->Start(elsewhere);
  EXPECT_EQ(not_there.status().code(), absl::StatusCode::kUnavailable) << not_there.status();
  EXPECT_TRUE(IsClusterUnavailableMessage(not_there.status().message())) << not_there.status();
  EXPECT_THAT(std::string(not_there.status().message()),
              HasSubstr("host \"b\" cannot be reached from host a"));
  EXPECT_THAT(std::string(not_there.status().message()), HasSubstr("etcd"));

  // etcd again, every member on its data: each host writes its records
  // again, and the others see what was done meanwhile.
  for (const std::string& node : kNodes) {
    const absl::Status relaunched = etcd_[node]->Relaunch();
    ASSERT_TRUE(relaunched.ok()) << relaunched;
  }
  ASSERT_NO_FATAL_FAILURE(WaitForEtcd());
  for (const std::string& through : kNodes) {
    for (const std::string& node : kNodes) {
      ExpectListed(through, meanwhile[node], node, ProcessStatus::STATE_RUNNING);
      if (sleeper_.count(node) != 0) {
        ExpectListed(through, sleeper_.at(node), node, ProcessStatus::STATE_SIGNALED);
      }
    }
  }
  // And a name can be checked again, once a's registry has reached etcd
  // again.
  ASSERT_TRUE(hosts_["a"]->WaitForLines(std::string(kAnswersAgain), answered_before + 1))
      << hosts_["a"]->log();
  const std::string id = MustStart(*via_["a"], named).id();
  ASSERT_FALSE(id.empty());
  started_[id] = "a";
  MustStop(*via_["a"], id, 1000);
}

TEST_F(ClusterNetnsTest, ThreeHostsInNetworkNamespacesThroughHostLossAndEtcdLoss) {
  ASSERT_NO_FATAL_FAILURE(StartOnChosenHostsThroughOthers());
  ASSERT_NO_FATAL_FAILURE(ListAcrossHosts());
  ASSERT_NO_FATAL_FAILURE(FollowOnCThroughAAndStopThroughB());
  ASSERT_NO_FATAL_FAILURE(KillEveryServiceOfCAndBringItBack());
  ASSERT_NO_FATAL_FAILURE(KillOneEtcdMember());
  ASSERT_NO_FATAL_FAILURE(StopAllOfEtcdAndStartItAgain());
}

}  // namespace
}  // namespace pm::testing

int main(int argc, char** argv) {
  // First, while this is the only thread: gRPC's threads, and every
  // process the test starts, are then in the test's own network namespace.
  pm::testing::private_network = pm::testing::EnterPrivateNetwork();
  ::testing::InitGoogleMock(&argc, argv);
  return RUN_ALL_TESTS();
}
