// etcd's v3 API through the C++ stubs of :etcd_cc_grpc, against a real
// single-member etcd from Debian's etcd-server package that each test starts
// on free loopback ports, with its data dir under $TEST_TMPDIR. These are
// the calls pm's records on etcd (issue 17) stand on: Put and Range, a
// compare-and-put Txn that creates a key only once (how a unique id is
// claimed), a lease whose revocation deletes its keys (how a host's records
// go when the host does), and a Watch that sees a Put.
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/exit_status.h"
#include "common/fd.h"
#include "common/status_core.h"
#include "etcd/etcdserver/etcdserverpb/rpc.grpc.pb.h"
#include "gtest/gtest.h"

extern char** environ;

namespace pm {
namespace {

using ::etcdserverpb::Compare;
using ::etcdserverpb::KV;
using ::etcdserverpb::Lease;
using ::etcdserverpb::Watch;

// Debian's etcd-server package.
constexpr char kEtcdBinary[] = "/usr/bin/etcd";
// Safety nets for a loaded machine, not claims about speed.
constexpr std::chrono::seconds kCallTimeout(60);
constexpr int kStopTimeoutMs = 60 * 1000;

int PidfdOpen(pid_t pid) {
  return static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
}

int PidfdSendSignal(int pidfd, int sig) {
  return static_cast<int>(
      syscall(SYS_pidfd_send_signal, pidfd, sig, nullptr, 0));
}

void SetCallDeadline(grpc::ClientContext& context) {
  context.set_deadline(std::chrono::system_clock::now() + kCallTimeout);
}

// The first key after every key that starts with `prefix`: [prefix, end)
// is a prefix scan (etcd's clientv3.GetPrefixRangeEnd). `prefix` must not
// end in 0xff.
std::string PrefixEnd(std::string prefix) {
  prefix.back() = static_cast<char>(prefix.back() + 1);
  return prefix;
}

// Two distinct TCP ports on 127.0.0.1 that were free a moment ago: both are
// bound to port 0 at once (so they differ) and released for etcd to bind.
absl::StatusOr<std::pair<int, int>> TwoFreeLoopbackPorts() {
  std::vector<Fd> sockets;
  std::vector<int> ports;
  for (int i = 0; i < 2; ++i) {
    Fd fd(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!fd) return ErrnoError("socket", "AF_INET");
    sockaddr_in address = {};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t length = sizeof(address);
    if (bind(fd.get(), reinterpret_cast<sockaddr*>(&address), length) != 0) {
      return ErrnoError("bind", "127.0.0.1:0");
    }
    if (getsockname(fd.get(), reinterpret_cast<sockaddr*>(&address),
                    &length) != 0) {
      return ErrnoError("getsockname", "127.0.0.1:0");
    }
    ports.push_back(ntohs(address.sin_port));
    sockets.push_back(std::move(fd));
  }
  return std::make_pair(ports[0], ports[1]);
}

// This environment without ETCD_* variables: etcd takes each ETCD_<FLAG>
// as a flag, so one left in a developer's shell would reshape the server.
std::vector<std::string> EnvironmentForEtcd() {
  std::vector<std::string> env;
  for (char** var = environ; *var != nullptr; ++var) {
    if (!absl::StartsWith(*var, "ETCD_")) env.emplace_back(*var);
  }
  return env;
}

std::vector<char*> NullTerminated(std::vector<std::string>& strings) {
  std::vector<char*> pointers;
  for (std::string& s : strings) pointers.push_back(s.data());
  pointers.push_back(nullptr);
  return pointers;
}

// One etcd member run by the test: `/usr/bin/etcd` on 127.0.0.1 (its client
// and peer ports picked free), its data in <dir>/data, its output in
// <dir>/etcd.log.
//
//   absl::StatusOr<std::unique_ptr<EtcdServer>> etcd = EtcdServer::Start(dir);
//   auto kv = etcdserverpb::KV::NewStub((*etcd)->channel());
//   absl::StatusOr<ExitStatus> end = (*etcd)->Stop();  // SIGTERM, then wait
class EtcdServer {
 public:
  // Spawns etcd and waits until it answers a Range. Errors name the step
  // that failed; when etcd ends first (a bad flag, a port taken meanwhile),
  // FAILED_PRECONDITION with its exit status and its log.
  static absl::StatusOr<std::unique_ptr<EtcdServer>> Start(
      const std::string& dir) {
    PM_ASSIGN_OR_RETURN(auto ports, TwoFreeLoopbackPorts());
    std::unique_ptr<EtcdServer> etcd(
        new EtcdServer(dir, ports.first, ports.second));
    PM_RETURN_IF_ERROR(etcd->Spawn());
    PM_RETURN_IF_ERROR(etcd->WaitUntilServing());
    return etcd;
  }

  // Stops etcd if the test did not.
  ~EtcdServer() {
    if (pid_ > 0) Stop().IgnoreError();
  }
  EtcdServer(const EtcdServer&) = delete;
  EtcdServer& operator=(const EtcdServer&) = delete;

  std::shared_ptr<grpc::Channel> channel() const { return channel_; }

  // What etcd printed so far (for failure messages).
  std::string log() const {
    absl::StatusOr<std::string> text = ReadFile(log_path());
    return text.ok() ? *text : text.status().ToString();
  }

  // SIGTERM; after kStopTimeoutMs without an exit, SIGKILL. Returns how etcd
  // ended: a clean stop is "killed by signal 15", as etcd re-raises the
  // signal once it has shut down. The test's channel is dropped first: etcd
  // waits for open streams before it exits.
  absl::StatusOr<ExitStatus> Stop() {
    channel_.reset();
    if (PidfdSendSignal(pidfd_.get(), SIGTERM) != 0 && errno != ESRCH) {
      return ErrnoError("pidfd_send_signal", "SIGTERM");
    }
    PM_ASSIGN_OR_RETURN(bool exited, WaitForExit(kStopTimeoutMs));
    if (!exited) {
      PidfdSendSignal(pidfd_.get(), SIGKILL);
      PM_RETURN_IF_ERROR(WaitForExit(-1).status());
    }
    return Reap();
  }

 private:
  EtcdServer(std::string dir, int client_port, int peer_port)
      : dir_(std::move(dir)),
        client_url_(absl::StrCat("http://127.0.0.1:", client_port)),
        peer_url_(absl::StrCat("http://127.0.0.1:", peer_port)) {
    grpc::ChannelArguments arguments;
    // A proxy in the environment must not stand between the test and a
    // server on loopback.
    arguments.SetInt(GRPC_ARG_ENABLE_HTTP_PROXY, 0);
    channel_ = grpc::CreateCustomChannel(
        absl::StrCat("127.0.0.1:", client_port),
        grpc::InsecureChannelCredentials(), arguments);
  }

  std::string log_path() const { return dir_ + "/etcd.log"; }

  std::vector<std::string> Argv() const {
    return {kEtcdBinary,
            "--name=pm-test",
            "--data-dir=" + dir_ + "/data",
            "--listen-client-urls=" + client_url_,
            "--advertise-client-urls=" + client_url_,
            "--listen-peer-urls=" + peer_url_,
            "--initial-advertise-peer-urls=" + peer_url_,
            "--initial-cluster=pm-test=" + peer_url_,
            "--initial-cluster-state=new",
            // capnslog, 3.4's default, is deprecated and says so at start.
            "--logger=zap",
            "--log-outputs=stderr"};
  }

  // Starts etcd with stdin on /dev/null and stdout and stderr in the log
  // file (a file, not a pipe: nobody has to drain it), then opens its
  // pidfd. It is the test's child and not reaped before Reap(), so its pid
  // cannot be reused in between.
  absl::Status Spawn() {
    PM_ASSIGN_OR_RETURN(
        Fd log, Fd::Open(log_path(), O_WRONLY | O_CREAT | O_TRUNC, 0644));
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null",
                                     O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&actions, log.get(), STDOUT_FILENO);
    posix_spawn_file_actions_adddup2(&actions, log.get(), STDERR_FILENO);
    std::vector<std::string> argv = Argv();
    std::vector<std::string> env = EnvironmentForEtcd();
    const int err =
        posix_spawn(&pid_, kEtcdBinary, &actions, nullptr,
                    NullTerminated(argv).data(), NullTerminated(env).data());
    posix_spawn_file_actions_destroy(&actions);
    if (err != 0) {
      pid_ = -1;
      const absl::Status status = ErrnoError("posix_spawn", kEtcdBinary, err);
      return absl::Status(
          status.code(), absl::StrCat(status.message(),
                                      " (Debian's etcd-server: make deps)"));
    }
    pidfd_.reset(PidfdOpen(pid_));
    if (!pidfd_) {
      const absl::Status status =
          ErrnoError("pidfd_open", absl::StrCat(pid_));
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
      pid_ = -1;
      return status;
    }
    return absl::OkStatus();
  }

  // Waits for whichever comes first: an answer to a Range that waits for
  // the server to be ready (etcd serves clients only once it leads its
  // one-member cluster), or etcd's end.
  absl::Status WaitUntilServing() {
    Fd answered(eventfd(0, EFD_CLOEXEC));
    if (!answered) return ErrnoError("eventfd");
    std::unique_ptr<KV::Stub> kv = KV::NewStub(channel_);
    grpc::ClientContext context;
    context.set_wait_for_ready(true);
    SetCallDeadline(context);
    etcdserverpb::RangeRequest request;
    request.set_key("pm-test/ready");
    etcdserverpb::RangeResponse response;
    grpc::Status rpc;
    kv->async()->Range(&context, &request, &response,
                       [&rpc, &answered](grpc::Status status) {
                         rpc = std::move(status);
                         const uint64_t one = 1;
                         (void)!write(answered.get(), &one, sizeof(one));
                       });
    pollfd fds[] = {{answered.get(), POLLIN, 0}, {pidfd_.get(), POLLIN, 0}};
    absl::Status polled = absl::OkStatus();
    while (poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      polled = ErrnoError("poll", "etcd's first Range");
      break;
    }
    const bool etcd_ended = (fds[1].revents & POLLIN) != 0;
    if (etcd_ended || !polled.ok()) context.TryCancel();
    // The callback writes `rpc` and `answered`: wait for it before
    // either goes out of scope (a blocking read of the eventfd).
    uint64_t count = 0;
    while (read(answered.get(), &count, sizeof(count)) < 0) {
      if (errno != EINTR) std::abort();  // the callback would outlive us
    }
    PM_RETURN_IF_ERROR(polled);
    if (etcd_ended) {
      PM_ASSIGN_OR_RETURN(ExitStatus end, Reap());
      return absl::FailedPreconditionError(
          absl::StrCat("etcd ", end.ToString(), " before serving; its log:\n",
                       log()));
    }
    if (!rpc.ok()) {
      return absl::UnavailableError(absl::StrCat(
          "etcd's first Range at ", client_url_, ": ", rpc.error_message(),
          "; its log:\n", log()));
    }
    return absl::OkStatus();
  }

  // True once etcd has exited (its pidfd is readable); false after
  // `timeout_ms` (-1: none) without.
  absl::StatusOr<bool> WaitForExit(int timeout_ms) {
    pollfd fd = {pidfd_.get(), POLLIN, 0};
    int ready;
    while ((ready = poll(&fd, 1, timeout_ms)) < 0) {
      if (errno != EINTR) return ErrnoError("poll", "etcd's pidfd");
    }
    return ready > 0;
  }

  absl::StatusOr<ExitStatus> Reap() {
    siginfo_t info = {};
    if (waitid(P_PID, static_cast<id_t>(pid_), &info, WEXITED) != 0) {
      return ErrnoError("waitid", absl::StrCat(pid_));
    }
    pid_ = -1;
    pidfd_.reset();
    return ExitStatus::FromSiginfo(info);
  }

  const std::string dir_;
  const std::string client_url_;
  const std::string peer_url_;
  std::shared_ptr<grpc::Channel> channel_;
  pid_t pid_ = -1;
  Fd pidfd_;
};

class EtcdClientTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string dir = absl::StrCat(
        getenv("TEST_TMPDIR"), "/",
        ::testing::UnitTest::GetInstance()->current_test_info()->name(),
        ".XXXXXX");
    ASSERT_NE(mkdtemp(dir.data()), nullptr) << dir << ": " << strerror(errno);
    absl::StatusOr<std::unique_ptr<EtcdServer>> etcd = EtcdServer::Start(dir);
    ASSERT_TRUE(etcd.ok()) << etcd.status();
    etcd_ = std::move(*etcd);
    kv_ = KV::NewStub(etcd_->channel());
    lease_ = Lease::NewStub(etcd_->channel());
    watch_ = Watch::NewStub(etcd_->channel());
  }

  // A clean stop is part of every test: SIGTERM ends etcd.
  void TearDown() override {
    if (etcd_ == nullptr) return;
    kv_.reset();
    lease_.reset();
    watch_.reset();
    absl::StatusOr<ExitStatus> end = etcd_->Stop();
    ASSERT_TRUE(end.ok()) << end.status();
    EXPECT_EQ(*end, ExitStatus::Signaled(SIGTERM)) << end->ToString();
    if (HasFailure()) ADD_FAILURE() << "etcd's log:\n" << etcd_->log();
  }

  // Put(key, value [, lease]); the revision the Put made.
  int64_t Put(const std::string& key, const std::string& value,
              int64_t lease = 0) {
    etcdserverpb::PutRequest request;
    request.set_key(key);
    request.set_value(value);
    request.set_lease(lease);
    etcdserverpb::PutResponse response;
    grpc::ClientContext context;
    SetCallDeadline(context);
    grpc::Status rpc = kv_->Put(&context, request, &response);
    EXPECT_TRUE(rpc.ok()) << "Put " << key << ": " << rpc.error_message();
    return response.header().revision();
  }

  // Range over [key, range_end), or of `key` alone.
  etcdserverpb::RangeResponse Range(const std::string& key,
                                    const std::string& range_end = "") {
    etcdserverpb::RangeRequest request;
    request.set_key(key);
    request.set_range_end(range_end);
    etcdserverpb::RangeResponse response;
    grpc::ClientContext context;
    SetCallDeadline(context);
    grpc::Status rpc = kv_->Range(&context, request, &response);
    EXPECT_TRUE(rpc.ok()) << "Range " << key << ": " << rpc.error_message();
    return response;
  }

  // If `key` does not exist, puts `value` there; else reads it. How pm
  // claims an id: exactly one of several racing claims succeeds, and the
  // others learn the winner's value in the same round trip.
  etcdserverpb::TxnResponse CreateIfAbsent(const std::string& key,
                                           const std::string& value) {
    etcdserverpb::TxnRequest request;
    Compare* absent = request.add_compare();
    absent->set_key(key);
    absent->set_target(Compare::CREATE);
    absent->set_result(Compare::EQUAL);
    absent->set_create_revision(0);  // never created, or deleted since
    etcdserverpb::PutRequest* put =
        request.add_success()->mutable_request_put();
    put->set_key(key);
    put->set_value(value);
    request.add_failure()->mutable_request_range()->set_key(key);
    etcdserverpb::TxnResponse response;
    grpc::ClientContext context;
    SetCallDeadline(context);
    grpc::Status rpc = kv_->Txn(&context, request, &response);
    EXPECT_TRUE(rpc.ok()) << "Txn on " << key << ": " << rpc.error_message();
    return response;
  }

  std::unique_ptr<EtcdServer> etcd_;
  std::unique_ptr<KV::Stub> kv_;
  std::unique_ptr<Lease::Stub> lease_;
  std::unique_ptr<Watch::Stub> watch_;
};

TEST_F(EtcdClientTest, RangeReadsBackWhatPutWrote) {
  const int64_t revision = Put("pm-test/records/1", "one");
  Put("pm-test/records/2", "two");
  Put("pm-test/recordsX", "outside the prefix");

  etcdserverpb::RangeResponse one = Range("pm-test/records/1");
  ASSERT_EQ(one.kvs_size(), 1);
  EXPECT_EQ(one.kvs(0).key(), "pm-test/records/1");
  EXPECT_EQ(one.kvs(0).value(), "one");
  EXPECT_EQ(one.kvs(0).create_revision(), revision);
  EXPECT_EQ(one.kvs(0).version(), 1);

  etcdserverpb::RangeResponse all =
      Range("pm-test/records/", PrefixEnd("pm-test/records/"));
  EXPECT_EQ(all.count(), 2);
  ASSERT_EQ(all.kvs_size(), 2);
  EXPECT_EQ(all.kvs(0).value(), "one");
  EXPECT_EQ(all.kvs(1).value(), "two");

  EXPECT_EQ(Range("pm-test/records/3").kvs_size(), 0);
}

TEST_F(EtcdClientTest, CompareAndPutCreatesAKeyOnlyOnce) {
  etcdserverpb::TxnResponse first = CreateIfAbsent("pm-test/ids/7", "host-a");
  EXPECT_TRUE(first.succeeded());
  ASSERT_EQ(first.responses_size(), 1);
  EXPECT_TRUE(first.responses(0).has_response_put());

  etcdserverpb::TxnResponse second = CreateIfAbsent("pm-test/ids/7", "host-b");
  EXPECT_FALSE(second.succeeded());
  ASSERT_EQ(second.responses_size(), 1);
  ASSERT_EQ(second.responses(0).response_range().kvs_size(), 1);
  EXPECT_EQ(second.responses(0).response_range().kvs(0).value(), "host-a");

  etcdserverpb::RangeResponse stored = Range("pm-test/ids/7");
  ASSERT_EQ(stored.kvs_size(), 1);
  EXPECT_EQ(stored.kvs(0).value(), "host-a");
  EXPECT_EQ(stored.kvs(0).version(), 1) << "the losing claim wrote";
}

TEST_F(EtcdClientTest, RevokingALeaseDeletesTheKeysPutWithIt) {
  etcdserverpb::LeaseGrantResponse granted;
  {
    etcdserverpb::LeaseGrantRequest request;
    // Long enough that only the revocation can delete the key.
    request.set_ttl(600);
    grpc::ClientContext context;
    SetCallDeadline(context);
    grpc::Status rpc = lease_->LeaseGrant(&context, request, &granted);
    ASSERT_TRUE(rpc.ok()) << rpc.error_message();
  }
  ASSERT_NE(granted.id(), 0) << granted.error();
  EXPECT_EQ(granted.ttl(), 600);

  Put("pm-test/hosts/b", "alive", granted.id());
  Put("pm-test/hosts/c", "not leased");
  etcdserverpb::RangeResponse leased = Range("pm-test/hosts/b");
  ASSERT_EQ(leased.kvs_size(), 1);
  EXPECT_EQ(leased.kvs(0).lease(), granted.id());
  {
    etcdserverpb::LeaseTimeToLiveRequest request;
    request.set_id(granted.id());
    request.set_keys(true);
    etcdserverpb::LeaseTimeToLiveResponse response;
    grpc::ClientContext context;
    SetCallDeadline(context);
    grpc::Status rpc = lease_->LeaseTimeToLive(&context, request, &response);
    ASSERT_TRUE(rpc.ok()) << rpc.error_message();
    ASSERT_EQ(response.keys_size(), 1);
    EXPECT_EQ(response.keys(0), "pm-test/hosts/b");
  }

  etcdserverpb::LeaseRevokeRequest revoke;
  revoke.set_id(granted.id());
  {
    etcdserverpb::LeaseRevokeResponse response;
    grpc::ClientContext context;
    SetCallDeadline(context);
    grpc::Status rpc = lease_->LeaseRevoke(&context, revoke, &response);
    ASSERT_TRUE(rpc.ok()) << rpc.error_message();
  }
  EXPECT_EQ(Range("pm-test/hosts/b").kvs_size(), 0);
  EXPECT_EQ(Range("pm-test/hosts/c").kvs_size(), 1);
  {
    etcdserverpb::LeaseRevokeResponse response;
    grpc::ClientContext context;
    SetCallDeadline(context);
    grpc::Status rpc = lease_->LeaseRevoke(&context, revoke, &response);
    EXPECT_EQ(rpc.error_code(), grpc::StatusCode::NOT_FOUND);
    EXPECT_TRUE(absl::StrContains(rpc.error_message(), "lease not found"))
        << rpc.error_message();
  }
}

TEST_F(EtcdClientTest, AWatchSeesAPutMadeAfterItWasCreated) {
  grpc::ClientContext context;
  SetCallDeadline(context);
  auto stream = watch_->Watch(&context);

  etcdserverpb::WatchRequest request;
  request.mutable_create_request()->set_key("pm-test/events/");
  request.mutable_create_request()->set_range_end(
      PrefixEnd("pm-test/events/"));
  ASSERT_TRUE(stream->Write(request));
  etcdserverpb::WatchResponse created;
  ASSERT_TRUE(stream->Read(&created)) << stream->Finish().error_message();
  ASSERT_TRUE(created.created());
  // Only now is a Put sure to come after the watch's start.
  const int64_t revision = Put("pm-test/events/exit-1", "exited with code 0");

  etcdserverpb::WatchResponse notified;
  ASSERT_TRUE(stream->Read(&notified)) << stream->Finish().error_message();
  EXPECT_EQ(notified.watch_id(), created.watch_id());
  ASSERT_EQ(notified.events_size(), 1);
  const mvccpb::Event& event = notified.events(0);
  EXPECT_EQ(event.type(), mvccpb::Event::PUT);
  EXPECT_EQ(event.kv().key(), "pm-test/events/exit-1");
  EXPECT_EQ(event.kv().value(), "exited with code 0");
  EXPECT_EQ(event.kv().mod_revision(), revision);

  // etcd keeps a watch stream open after the client's half-close; cancel.
  context.TryCancel();
  EXPECT_EQ(stream->Finish().error_code(), grpc::StatusCode::CANCELLED);
}

}  // namespace
}  // namespace pm
