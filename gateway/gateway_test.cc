// The gateway in-process on 127.0.0.1 with a fresh PKI, in front of fake
// local services (supervisor, registry, log_store) on unix sockets, driven
// through the Library's remote client and raw stubs. Proves what only the
// gateway does: TLS and auth before any handler, the owner, cancellation
// and deadline propagation, one instance per port, certificate reload.
#include "gateway/gateway.h"

#include <stdlib.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <thread>

#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "client/client.h"
#include "common/raw_call_test_util.h"
#include "common/runtime_dir.h"
#include "gateway/basic_auth.h"
#include "gateway/tls_policy.h"
#include "gateway/users.h"
#include "gmock/gmock.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "gtest/gtest.h"
#include "pm/internal/v1/internal.grpc.pb.h"
#include "pm/v1/process_manager.grpc.pb.h"

namespace pm::gateway {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;

constexpr char kId[] = "0b5e7c4a-8a3f-4a57-9d5e-1f2a3b4c5d6e";   // demo's
constexpr char kBobsId[] = "7d1f0c2e-5b6a-4c3d-8e9f-a0b1c2d3e4f5";  // bob's
constexpr char kLocalId[] = "1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d";  // local
constexpr char kPassword[] = "correct horse battery staple";
constexpr char kBobsPassword[] = "bob's own password";
constexpr char kRootPassword[] = "root's own password";
constexpr absl::Duration kSafety = absl::Seconds(30);

// The fake local services: what reached them, and holds for the long calls.
struct Backend {
  absl::Mutex mu;
  std::vector<std::string> owners ABSL_GUARDED_BY(mu);       // per Start
  std::vector<std::string> owner_users ABSL_GUARDED_BY(mu);  // per Start
  std::vector<std::string> stopped ABSL_GUARDED_BY(mu);      // ids
  // The registry's records: id -> owner_user.
  std::map<std::string, std::string> records ABSL_GUARDED_BY(mu) = {
      {kId, "demo"}, {"short", "demo"}, {kBobsId, "bob"}, {kLocalId, ""}};
  // Not listed: the tests that count processes leave it out.
  std::map<std::string, std::string> unlisted ABSL_GUARDED_BY(mu) = {
      {"endable", "demo"}};
  std::atomic<int> calls{0};
  std::atomic<int> starts{0};
  std::atomic<bool> stream_cancel_seen{false};
  absl::Notification stream_cancelled;
  absl::Notification wait_cancelled;
  // GetStatus of "held" answers only once this many are waiting at once.
  int held_target = 0;
  std::vector<grpc::ServerUnaryReactor*> held ABSL_GUARDED_BY(mu);
  // StreamOutput of "endable": open until EndStreams().
  std::vector<class EndableOutput*> endable ABSL_GUARDED_BY(mu);
  void EndStreams();
};

// Metadata value of `key`, or "".
std::string MetadataOf(const grpc::CallbackServerContext& context,
                       const std::string& key) {
  auto it = context.client_metadata().find(key);
  return it == context.client_metadata().end()
             ? ""
             : std::string(it->second.data(), it->second.size());
}

class FakeSupervisor final : public pm::internal::v1::Supervisor::CallbackService {
 public:
  explicit FakeSupervisor(Backend* backend) : backend_(backend) {}
  grpc::ServerUnaryReactor* Start(grpc::CallbackServerContext* context,
                                  const pm::v1::StartRequest* request,
                                  pm::v1::StartResponse* response) override {
    ++backend_->calls;
    const std::string owner = MetadataOf(*context, "pm-owner");
    const std::string owner_user = MetadataOf(*context, "pm-owner-user");
    const std::string id = absl::StrCat("started-", backend_->starts++);
    {
      absl::MutexLock lock(&backend_->mu);
      backend_->owners.push_back(owner);
      backend_->owner_users.push_back(owner_user);
      backend_->records[id] = owner_user;
    }
    response->set_id(id);
    response->mutable_status()->set_id(id);
    response->mutable_status()->set_executable(request->executable());
    response->mutable_status()->set_owner(owner);
    response->mutable_status()->set_owner_user(owner_user);
    auto* reactor = context->DefaultReactor();
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }
  grpc::ServerUnaryReactor* Stop(grpc::CallbackServerContext* context,
                                 const pm::v1::StopRequest* request,
                                 pm::v1::StopResponse* response) override {
    ++backend_->calls;
    {
      absl::MutexLock lock(&backend_->mu);
      backend_->stopped.push_back(request->id());
    }
    response->set_stopped(true);
    response->mutable_status()->set_id(request->id());
    auto* reactor = context->DefaultReactor();
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }

 private:
  Backend* backend_;
};

// Wait never answers by itself: it ends when the caller cancels it.
class HeldWait final : public grpc::ServerUnaryReactor {
 public:
  explicit HeldWait(Backend* backend) : backend_(backend) {}
  void OnCancel() override {
    backend_->wait_cancelled.Notify();
    Finish(grpc::Status::CANCELLED);
  }
  void OnDone() override { delete this; }

 private:
  Backend* backend_;
};

class FakeRegistry final : public pm::internal::v1::Registry::CallbackService {
 public:
  explicit FakeRegistry(Backend* backend) : backend_(backend) {}
  // A cluster of one host, a: a Start that names no host runs here.
  grpc::ServerUnaryReactor* ListNodes(grpc::CallbackServerContext* context,
                                      const pm::internal::v1::ListNodesRequest*,
                                      pm::internal::v1::ListNodesResponse* response) override {
    response->set_self("a");
    response->add_nodes()->set_node("a");
    auto* reactor = context->DefaultReactor();
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }
  grpc::ServerUnaryReactor* GetStatus(grpc::CallbackServerContext* context,
                                      const pm::v1::GetStatusRequest* request,
                                      pm::v1::ProcessStatus* response) override {
    ++backend_->calls;
    auto* reactor = context->DefaultReactor();
    absl::MutexLock lock(&backend_->mu);
    if (request->id() == "held") {
      // Answered once held_target calls wait at once: a server that can
      // hold fewer calls than that never answers any.
      backend_->held.push_back(reactor);
      if (static_cast<int>(backend_->held.size()) == backend_->held_target) {
        for (grpc::ServerUnaryReactor* held : backend_->held) {
          held->Finish(grpc::Status::OK);
        }
      }
      return reactor;
    }
    if (request->id() == "evicted") {
      reactor->Finish(grpc::Status(grpc::StatusCode::NOT_FOUND,
                                   "process evicted ended and its record was "
                                   "evicted (--max_ended_records=10)"));
      return reactor;
    }
    if (request->id() == "lost") {
      response->set_id("lost");
      response->set_owner_user("demo");
      response->set_state(pm::v1::ProcessStatus::STATE_LOST);
      response->set_end_reason("lost: the host restarted while it ran");
      reactor->Finish(grpc::Status::OK);
      return reactor;
    }
    const std::map<std::string, std::string>* map = &backend_->records;
    if (map->count(request->id()) == 0) map = &backend_->unlisted;
    auto it = map->find(request->id());
    if (it == map->end()) {
      reactor->Finish(grpc::Status(grpc::StatusCode::NOT_FOUND,
                                   "no process with id " + request->id()));
    } else {
      response->set_id(it->first);
      response->set_owner_user(it->second);
      reactor->Finish(grpc::Status::OK);
    }
    return reactor;
  }
  // Every key of the fake's records is its own id (the tests name
  // processes "held", "short", ...); a user's scope hides the others'.
  grpc::ServerUnaryReactor* Resolve(grpc::CallbackServerContext* context,
                                    const pm::internal::v1::ResolveRequest* request,
                                    pm::internal::v1::ResolveResponse* response) override {
    auto* reactor = context->DefaultReactor();
    absl::MutexLock lock(&backend_->mu);
    std::optional<std::string> owner;
    for (const auto* map : {&backend_->records, &backend_->unlisted}) {
      if (auto it = map->find(request->ref()); it != map->end()) owner = it->second;
    }
    if (request->ref() == "held" || request->ref() == "evicted") owner = "";
    if (request->ref() == "lost") owner = "demo";
    if (!owner.has_value() ||
        (!request->owner_user().empty() && !owner->empty() &&
         *owner != request->owner_user())) {
      reactor->Finish(grpc::Status(grpc::StatusCode::NOT_FOUND,
                                   "no process has the id, name or id prefix \"" +
                                       request->ref() + "\""));
      return reactor;
    }
    response->set_id(request->ref());
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }
  grpc::ServerUnaryReactor* List(grpc::CallbackServerContext* context,
                                 const pm::v1::ListRequest*,
                                 pm::v1::ListResponse* response) override {
    ++backend_->calls;
    absl::MutexLock lock(&backend_->mu);
    for (const auto& [id, owner_user] : backend_->records) {
      pm::v1::ProcessStatus* process = response->add_processes();
      process->set_id(id);
      process->set_owner_user(owner_user);
    }
    auto* reactor = context->DefaultReactor();
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }
  grpc::ServerUnaryReactor* Wait(grpc::CallbackServerContext*,
                                 const pm::v1::WaitRequest*,
                                 pm::v1::ProcessStatus*) override {
    ++backend_->calls;
    return new HeldWait(backend_);
  }

 private:
  Backend* backend_;
};

// Writes three chunks, then holds the stream open (like a follower of a
// running process) until the caller cancels.
class HeldOutput final : public grpc::ServerWriteReactor<pm::v1::OutputChunk> {
 public:
  explicit HeldOutput(Backend* backend) : backend_(backend) { WriteNext(); }
  void OnWriteDone(bool ok) override {
    absl::MutexLock lock(&mu_);
    writing_ = false;
    if (!ok || cancelled_) {
      FinishOnce();
      return;
    }
    if (written_ < 3) WriteNextLocked();
  }
  void OnCancel() override {
    if (!backend_->stream_cancel_seen.exchange(true)) {
      backend_->stream_cancelled.Notify();
    }
    absl::MutexLock lock(&mu_);
    cancelled_ = true;
    if (!writing_) FinishOnce();
  }
  void OnDone() override { delete this; }

 private:
  void WriteNext() {
    absl::MutexLock lock(&mu_);
    WriteNextLocked();
  }
  void WriteNextLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    chunk_.set_offset(written_ * 6);
    chunk_.set_data(absl::StrCat("chunk", written_));
    chunk_.set_stream(pm::v1::OutputChunk::STREAM_STDOUT);
    ++written_;
    writing_ = true;
    StartWrite(&chunk_);
  }
  void FinishOnce() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (finished_) return;
    finished_ = true;
    Finish(grpc::Status::CANCELLED);
  }

  Backend* backend_;
  absl::Mutex mu_;
  pm::v1::OutputChunk chunk_;
  int written_ ABSL_GUARDED_BY(mu_) = 0;
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
};

// Writes `count` chunks and ends: the backend's end can overtake the
// gateway's write of the last chunk.
class ShortOutput final : public grpc::ServerWriteReactor<pm::v1::OutputChunk> {
 public:
  explicit ShortOutput(int count) : count_(count) { Next(); }
  void OnWriteDone(bool ok) override {
    if (!ok) {
      Finish(grpc::Status::CANCELLED);
      return;
    }
    Next();
  }
  void OnDone() override { delete this; }

 private:
  void Next() {
    if (written_ == count_) {
      Finish(grpc::Status::OK);
      return;
    }
    chunk_.set_data(absl::StrCat(written_++, ","));
    StartWrite(&chunk_);
  }
  const int count_;
  int written_ = 0;
  pm::v1::OutputChunk chunk_;
};

// Attached and silent until the test ends it (OK) or the caller cancels.
class EndableOutput final : public grpc::ServerWriteReactor<pm::v1::OutputChunk> {
 public:
  EndableOutput() { StartSendInitialMetadata(); }
  void End() { FinishOnce(grpc::Status::OK); }
  void OnCancel() override { FinishOnce(grpc::Status::CANCELLED); }
  void OnDone() override { delete this; }

 private:
  void FinishOnce(const grpc::Status& status) {
    if (!finished_.exchange(true)) Finish(status);
  }
  std::atomic<bool> finished_{false};
};

void Backend::EndStreams() {
  absl::MutexLock lock(&mu);
  for (EndableOutput* stream : endable) stream->End();
  endable.clear();
}

class Refused final : public grpc::ServerWriteReactor<pm::v1::OutputChunk> {
 public:
  explicit Refused(grpc::Status status) { Finish(std::move(status)); }
  void OnDone() override { delete this; }
};

class FakeLogStore final : public pm::internal::v1::LogStore::CallbackService {
 public:
  explicit FakeLogStore(Backend* backend) : backend_(backend) {}
  grpc::ServerWriteReactor<pm::v1::OutputChunk>* StreamOutput(
      grpc::CallbackServerContext*, const pm::v1::StreamOutputRequest* request) override {
    ++backend_->calls;
    if (request->id() == "short") return new ShortOutput(5);
    if (request->id() == "endable") {
      auto* stream = new EndableOutput();
      absl::MutexLock lock(&backend_->mu);
      backend_->endable.push_back(stream);
      return stream;
    }
    if (request->id() != kId) {
      return new Refused(grpc::Status(grpc::StatusCode::NOT_FOUND,
                                      "no output for process " + request->id()));
    }
    return new HeldOutput(backend_);
  }

 private:
  Backend* backend_;
};

std::string ReadAll(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// Runs certs/make_pki.sh (from the runfiles) into `dir`.
void MakePki(const std::string& dir) {
  const std::string script =
      absl::StrCat(getenv("TEST_SRCDIR"), "/pm/certs/make_pki.sh");
  // Host a's and b's own peer certificates too (peer-node-a.pem, ...).
  const std::string command =
      absl::StrCat("bash '", script, "' --node a --node b '", dir, "'");
  ASSERT_EQ(system(command.c_str()), 0) << command;
}

class GatewayTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(ApplyTlsPolicy().ok());
    char tmpl[] = "/tmp/pm_gw.XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    run_ = dir_ + "/run";
    ASSERT_TRUE(EnsureRuntimeDir(run_).ok());
    ASSERT_NO_FATAL_FAILURE(MakePki(dir_ + "/pki"));
    UserTable users;
    users["demo"].hash = *HashPassword(kPassword, 1000);
    users["bob"].hash = *HashPassword(kBobsPassword, 1000);
    users["root"].hash = *HashPassword(kRootPassword, 1000);
    users["root"].admin = true;
    ASSERT_TRUE(WriteUsersFile(dir_ + "/users", users).ok());

    StartBackend(Service::kSupervisor, &supervisor_);
    StartBackend(Service::kRegistry, &registry_);
    StartBackend(Service::kLogStore, &log_store_);

    ASSERT_NO_FATAL_FAILURE(StartGateway(Options(run_)));
  }

  void StartGateway(GatewayOptions options) {
    gateway_.reset();
    absl::StatusOr<std::unique_ptr<Gateway>> gateway = Gateway::Start(std::move(options));
    ASSERT_TRUE(gateway.ok()) << gateway.status();
    gateway_ = *std::move(gateway);
    target_ = absl::StrCat("localhost:", gateway_->port());
  }

  void TearDown() override {
    gateway_.reset();
    for (auto& server : servers_) server->Shutdown();
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
  }

  GatewayOptions Options(const std::string& runtime_dir) {
    GatewayOptions options;
    options.listen = "127.0.0.1:0";
    options.tls = {Pki("ca.pem"), Pki("server.pem"), Pki("server.key"), 1};
    options.users_file = dir_ + "/users";
    options.runtime_dir = runtime_dir;
    options.state_dir = dir_ + "/state";
    // The caps have tests of their own.
    options.quotas.starts_per_second = 0;
    options.quotas.max_calls = 0;
    return options;
  }

  void StartBackend(Service service, grpc::Service* impl) {
    grpc::ServerBuilder builder;
    builder.AddListeningPort(UnixAddress(SocketPath(run_, service)),
                             grpc::InsecureServerCredentials());
    builder.RegisterService(impl);
    servers_.push_back(builder.BuildAndStart());
    ASSERT_NE(servers_.back(), nullptr);
  }

  std::string Pki(const std::string& name) { return dir_ + "/pki/" + name; }

  pm::RemoteOptions Remote(const std::string& password = kPassword,
                           const std::string& user = "demo") {
    pm::RemoteOptions options;
    options.target = target_;
    options.ca_file = Pki("ca.pem");
    options.cert_file = Pki("client.pem");
    options.key_file = Pki("client.key");
    options.user = user;
    options.password = password;
    return options;
  }

  std::unique_ptr<pm::Client> Connect(const std::string& password = kPassword,
                                      const std::string& user = "demo") {
    absl::StatusOr<std::unique_ptr<pm::Client>> client =
        pm::Client::ConnectRemote(Remote(password, user));
    EXPECT_TRUE(client.ok()) << client.status();
    return client.ok() ? *std::move(client) : nullptr;
  }

  // A raw stub with a client certificate `cert` (or none) and no call creds.
  std::unique_ptr<pm::v1::ProcessManager::Stub> RawStub(const std::string& cert) {
    grpc::SslCredentialsOptions tls;
    tls.pem_root_certs = ReadAll(Pki("ca.pem"));
    if (!cert.empty()) {
      tls.pem_cert_chain = ReadAll(Pki(cert + ".pem"));
      tls.pem_private_key = ReadAll(Pki(cert + ".key"));
    }
    return pm::v1::ProcessManager::NewStub(
        grpc::CreateChannel(target_, grpc::SslCredentials(tls)));
  }

  std::vector<std::string> Owners() {
    absl::MutexLock lock(&backend_.mu);
    return backend_.owners;
  }
  std::vector<std::string> Stopped() {
    absl::MutexLock lock(&backend_.mu);
    return backend_.stopped;
  }

  Backend backend_;
  FakeSupervisor supervisor_{&backend_};
  FakeRegistry registry_{&backend_};
  FakeLogStore log_store_{&backend_};
  std::vector<std::unique_ptr<grpc::Server>> servers_;
  std::string dir_, run_, target_;
  std::unique_ptr<Gateway> gateway_;
};

grpc::Status CallList(pm::v1::ProcessManager::Stub& stub,
                      const std::multimap<std::string, std::string>& metadata) {
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + kSafety));
  for (const auto& [key, value] : metadata) context.AddMetadata(key, value);
  pm::v1::ListResponse response;
  return stub.List(&context, pm::v1::ListRequest(), &response);
}

TEST_F(GatewayTest, AuthenticatedCallsReachTheLibrary) {
  std::unique_ptr<pm::Client> client = Connect();
  absl::StatusOr<pm::v1::ListResponse> list = client->List();
  ASSERT_TRUE(list.ok()) << list.status();
  ASSERT_EQ(list->processes_size(), 2);  // demo's own: kId and "short"
  absl::StatusOr<pm::v1::ProcessStatus> missing = client->GetStatus("nope");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(missing.status().message(), HasSubstr("no process has the id, name or id prefix \"nope\""));
}

TEST_F(GatewayTest, ALostProcessIsPassedThroughAsLost) {
  std::unique_ptr<pm::Client> client = Connect();
  absl::StatusOr<pm::v1::ProcessStatus> lost = client->GetStatus("lost");
  ASSERT_TRUE(lost.ok()) << lost.status();
  EXPECT_EQ(lost->state(), pm::v1::ProcessStatus::STATE_LOST);
  EXPECT_EQ(lost->end_reason(), "lost: the host restarted while it ran");
}

TEST_F(GatewayTest, StartRecordsTheAuthenticatedOwnerNotAClaimedOne) {
  std::unique_ptr<pm::Client> client = Connect();
  pm::v1::StartRequest request;
  request.set_executable("true");
  absl::StatusOr<pm::v1::StartResponse> started = client->Start(request);
  ASSERT_TRUE(started.ok()) << started.status();

  // A client that claims an owner in metadata is ignored.
  auto stub = RawStub("client");
  grpc::ClientContext context;
  context.AddMetadata("authorization", BasicAuthHeader("demo", kPassword));
  context.AddMetadata("pm-owner", "root");
  pm::v1::StartResponse response;
  ASSERT_TRUE(stub->Start(&context, request, &response).ok());

  const std::string expected = "demo (CN=pm-client,O=pm dev)";
  EXPECT_THAT(Owners(), ElementsAre(expected, expected));
  EXPECT_EQ(started->status().owner(), expected);
  EXPECT_EQ(started->status().owner_user(), "demo");
  // The remote client refuses to claim one itself.
  pm::StartOptions claim;
  claim.owner = "root";
  EXPECT_EQ(client->StartWithOptions(request, claim).status().code(),
            absl::StatusCode::kInvalidArgument);
}

// A Start on `stub` as `user`, with `headers` added (a forwarded call's).
grpc::Status StartWith(pm::v1::ProcessManager::Stub& stub, const std::string& user,
                       const std::string& password,
                       const std::multimap<std::string, std::string>& headers) {
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + kSafety));
  context.AddMetadata("authorization", BasicAuthHeader(user, password));
  for (const auto& [key, value] : headers) context.AddMetadata(key, value);
  pm::v1::StartRequest request;
  request.set_executable("true");
  pm::v1::StartResponse response;
  return stub.Start(&context, request, &response);
}

// The headers of a call host b's gateway forwards for a caller whose
// certificate is `subject`.
std::multimap<std::string, std::string> ForwardedBy(const std::string& subject) {
  return {{"pm-forwarded-by", "b"},
          {"pm-forwarded-subject", subject},
          {"pm-forwarded-peer", "ipv4:10.0.0.9:4242"}};
}

TEST_F(GatewayTest, ASingleHostRefusesACallMarkedForwardedEvenFromAPeer) {
  // A certificate with the peers' OU from the CA this host trusts.
  auto peer = RawStub("user-ou-peer");
  grpc::Status refused = StartWith(*peer, "demo", kPassword, ForwardedBy("CN=laptop"));
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_THAT(refused.error_message(), HasSubstr("this gateway is in no cluster"));
  EXPECT_THAT(Owners(), IsEmpty());
}

// The gateway of host a of a cluster: calls other hosts' gateways forward
// come on connections with a peer certificate (OU=pm peer, from the peers'
// CA, peer-ca.pem, as make_pki.sh makes them).
class ClusterGatewayTest : public GatewayTest {
 protected:
  void SetUp() override {
    ASSERT_NO_FATAL_FAILURE(GatewayTest::SetUp());
    ASSERT_NO_FATAL_FAILURE(StartGateway(ClusterOptions("peer")));
  }
  // `peer_ca`: the gateway's --peer_ca_file; without it peers and users
  // are told apart by the OU alone.
  GatewayOptions ClusterOptions(const std::string& peer_cert, bool peer_ca = true) {
    GatewayOptions options = Options(run_);
    options.node = "a";
    options.peer_tls = {Pki("ca.pem"), Pki(peer_cert + ".pem"), Pki(peer_cert + ".key")};
    if (peer_ca) options.peer_ca_file = Pki("peer-ca.pem");
    return options;
  }
};

TEST_F(ClusterGatewayTest, AUsersCertificateThatSaysItIsAPeerCannotForward) {
  // user-ou-peer.pem: from the users' CA, with OU=pm peer in its subject,
  // which that CA may sign for anyone. Only the peers' CA makes a peer.
  auto user = RawStub("user-ou-peer");
  grpc::Status refused = StartWith(*user, "demo", kPassword, ForwardedBy("CN=root"));
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_THAT(refused.error_message(),
              HasSubstr("its client certificate (CN=pm-peer,OU=pm peer,O=pm dev) is no "
                        "gateway's of the cluster: only a certificate from the peers' CA "
                        "(the gateway's --peer_ca_file) may forward calls"));
  // The same certificate calls as its user, as any user's does.
  grpc::Status own = StartWith(*user, "demo", kPassword, {});
  EXPECT_TRUE(own.ok()) << own.error_message();
  EXPECT_THAT(Owners(), ElementsAre("demo (CN=pm-peer,OU=pm peer,O=pm dev)"));
}

TEST_F(ClusterGatewayTest, AGatewaysCertificateCannotCallAsAUser) {
  auto peer = RawStub("peer");
  grpc::Status refused = StartWith(*peer, "demo", kPassword, {});
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_THAT(refused.error_message(),
              HasSubstr("is one of the cluster's gateways' (from the peers' CA, the "
                        "gateway's --peer_ca_file), which may only forward calls"));
  EXPECT_EQ(backend_.calls.load(), 0);
  // A user's certificate still calls.
  grpc::Status user = StartWith(*RawStub("client"), "demo", kPassword, {});
  EXPECT_TRUE(user.ok()) << user.error_message();
  EXPECT_THAT(Owners(), ElementsAre("demo (CN=pm-client,O=pm dev)"));
}

TEST_F(ClusterGatewayTest, APeerCertificateNotFromThePeersCaIsRefusedAtStart) {
  absl::StatusOr<std::unique_ptr<Gateway>> wrong =
      Gateway::Start(ClusterOptions("user-ou-peer"));
  ASSERT_FALSE(wrong.ok());
  EXPECT_EQ(wrong.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(wrong.status().message(),
              HasSubstr("user-ou-peer.pem does not verify against --peer_ca_file"));
}

TEST_F(ClusterGatewayTest, ThePeersCaMustNotBeTheUsersCa) {
  GatewayOptions options = ClusterOptions("user-ou-peer");
  options.peer_ca_file = Pki("ca.pem");
  absl::StatusOr<std::unique_ptr<Gateway>> wrong = Gateway::Start(std::move(options));
  ASSERT_FALSE(wrong.ok());
  EXPECT_EQ(wrong.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(wrong.status().message(), HasSubstr("--peer_ca_file and --ca_file share a CA"));
}

TEST_F(ClusterGatewayTest, AHostsOwnCertificateForwardsOnlyAsThatHost) {
  auto b = RawStub("peer-node-b");  // CN=pm-node:b
  grpc::Status forwarded = StartWith(*b, "demo", kPassword, ForwardedBy("CN=laptop"));
  EXPECT_TRUE(forwarded.ok()) << forwarded.error_message();
  EXPECT_THAT(Owners(), ElementsAre("demo (CN=laptop)"));
  // b's certificate saying host c forwards the call: b posing as c.
  std::multimap<std::string, std::string> as_c = ForwardedBy("CN=laptop");
  as_c.erase("pm-forwarded-by");
  as_c.emplace("pm-forwarded-by", "c");
  grpc::Status posing = StartWith(*b, "demo", kPassword, as_c);
  EXPECT_EQ(posing.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_THAT(posing.error_message(),
              HasSubstr("the call is marked forwarded by host c (pm-forwarded-by), but its "
                        "client certificate (CN=pm-node:b,OU=pm peer,O=pm dev) is host b's: a "
                        "host's certificate forwards only that host's calls"));
  EXPECT_THAT(Owners(), ElementsAre("demo (CN=laptop)"));
}

TEST_F(ClusterGatewayTest, AGatewayStartsOnItsOwnHostsCertificateOnly) {
  absl::StatusOr<std::unique_ptr<Gateway>> wrong =
      Gateway::Start(ClusterOptions("peer-node-b"));  // host a's gateway
  ASSERT_FALSE(wrong.ok());
  EXPECT_EQ(wrong.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(wrong.status().message(),
              HasSubstr("peer-node-b.pem is host b's (CN=pm-node:b), not this host's "
                        "(--node a)"));
  ASSERT_NO_FATAL_FAILURE(StartGateway(ClusterOptions("peer-node-a")));
}

TEST_F(ClusterGatewayTest, WithoutAPeersCaTheUnitAloneMakesAPeer) {
  // The weaker setup (warned at start): a certificate of the users' CA
  // with OU=pm peer forwards calls, and a peer-CA certificate is not
  // trusted at all.
  ASSERT_NO_FATAL_FAILURE(StartGateway(ClusterOptions("user-ou-peer", /*peer_ca=*/false)));
  grpc::Status forwarded =
      StartWith(*RawStub("user-ou-peer"), "demo", kPassword, ForwardedBy("CN=laptop"));
  EXPECT_TRUE(forwarded.ok()) << forwarded.error_message();
  EXPECT_THAT(Owners(), ElementsAre("demo (CN=laptop)"));
  grpc::Status untrusted = StartWith(*RawStub("peer"), "demo", kPassword, ForwardedBy("CN=x"));
  EXPECT_EQ(untrusted.error_code(), grpc::StatusCode::UNAVAILABLE);
}

TEST_F(ClusterGatewayTest, AForwardedStartIsOwnedByTheCallersCertificateNotThePeers) {
  auto peer = RawStub("peer");
  grpc::Status started =
      StartWith(*peer, "demo", kPassword, ForwardedBy("CN=laptop,O=pm dev"));
  ASSERT_TRUE(started.ok()) << started.error_message();
  // As if the caller had called this host itself; never "CN=pm-peer".
  EXPECT_THAT(Owners(), ElementsAre("demo (CN=laptop,O=pm dev)"));
}

TEST_F(ClusterGatewayTest, AUsersCertificateCannotMarkACallForwarded) {
  // A user who says "host b forwards this for CN=root's laptop" is refused
  // before any handler, naming the certificate the call came with.
  auto user = RawStub("client");
  grpc::Status refused = StartWith(*user, "demo", kPassword, ForwardedBy("CN=root"));
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_THAT(refused.error_message(),
              HasSubstr("its client certificate (CN=pm-client,O=pm dev) is no gateway's of "
                        "the cluster: only a certificate with OU=pm peer may forward calls"));
  // A peer's call that lacks the caller's subject is malformed.
  auto peer = RawStub("peer");
  std::multimap<std::string, std::string> partial = ForwardedBy("CN=laptop");
  partial.erase("pm-forwarded-subject");
  grpc::Status malformed = StartWith(*peer, "demo", kPassword, partial);
  EXPECT_EQ(malformed.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_THAT(malformed.error_message(),
              HasSubstr("a call forwarded by host b without its pm-forwarded-subject header"));
  EXPECT_THAT(Owners(), IsEmpty());
}

TEST_F(ClusterGatewayTest, OneCallersWrongPasswordsDoNotBlockOthersForwardedByTheSameHost) {
  auto peer = RawStub("peer");
  for (int i = 0; i < 5; ++i) {
    grpc::Status wrong = StartWith(*peer, "demo", "a guess", ForwardedBy("CN=guesser"));
    ASSERT_EQ(wrong.error_code(), grpc::StatusCode::PERMISSION_DENIED);
    EXPECT_THAT(wrong.error_message(), HasSubstr("wrong user name or password"));
  }
  grpc::Status blocked = StartWith(*peer, "bob", kBobsPassword, ForwardedBy("CN=guesser"));
  EXPECT_THAT(blocked.error_message(), HasSubstr("too many failed logins"));
  // Another caller host b forwards for, through the same connection, is
  // not held for the guesser's failures (a password not checked lately).
  grpc::Status other = StartWith(*peer, "root", kRootPassword, ForwardedBy("CN=laptop"));
  EXPECT_TRUE(other.ok()) << other.error_message();
}

// A user's certificate that marks its calls forwarded is throttled as one
// that sends garbage credentials: after a few refusals it is blocked, and
// while blocked refused at once, with one log and audit line per block
// (not one per try).
TEST_F(ClusterGatewayTest, MarkedCallsFromAUsersCertificateAreThrottledAndLoggedOncePerBlock) {
  auto user = RawStub("client");
  std::string last;
  for (int i = 0; i < 105; ++i) {
    grpc::Status refused = StartWith(*user, "demo", "a guess", ForwardedBy("CN=root"));
    ASSERT_EQ(refused.error_code(), grpc::StatusCode::PERMISSION_DENIED);
    last = refused.error_message();
  }
  EXPECT_THAT(last, HasSubstr("too many failed logins"));
  const std::string audit = ReadAll(gateway_->audit_log_path());
  const size_t lines = std::count(audit.begin(), audit.end(), '\n');
  EXPECT_LE(lines, 6u) << lines << " audit lines";
  EXPECT_THAT(Owners(), IsEmpty());
}

TEST_F(ClusterGatewayTest, APeerCertificateWithoutThePeersUnitIsRefusedAtStart) {
  absl::StatusOr<std::unique_ptr<Gateway>> wrong = Gateway::Start(ClusterOptions("client"));
  ASSERT_FALSE(wrong.ok());
  EXPECT_EQ(wrong.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(wrong.status().message(),
              HasSubstr("client.pem: its subject has no OU=pm peer, so the other hosts' "
                        "gateways would refuse every call it forwards"));
}

TEST_F(GatewayTest, WrongPasswordIsPermissionDeniedBeforeAnyHandler) {
  std::unique_ptr<pm::Client> client = Connect("not the password");
  pm::v1::StartRequest request;
  request.set_executable("true");
  absl::StatusOr<pm::v1::StartResponse> started = client->Start(request);
  EXPECT_EQ(started.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(started.status().message(), Not(HasSubstr("not the password")));
  auto stream = client->StreamOutput(pm::v1::StreamOutputRequest());
  pm::v1::OutputChunk chunk;
  EXPECT_FALSE(stream->Next(&chunk));
  EXPECT_EQ(stream->Finish().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(client->Wait(kId, kSafety).status().code(),
            absl::StatusCode::kPermissionDenied);

  // An unknown user is refused the same way.
  auto stub = RawStub("client");
  EXPECT_EQ(CallList(*stub, {{"authorization", BasicAuthHeader("mallory", kPassword)}})
                .error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(backend_.calls.load(), 0);
  EXPECT_THAT(Owners(), IsEmpty());
}

TEST_F(GatewayTest, MissingOrMalformedHeaderIsUnauthenticated) {
  auto stub = RawStub("client");
  grpc::Status missing = CallList(*stub, {});
  EXPECT_EQ(missing.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_THAT(missing.error_message(), HasSubstr("authorization"));
  EXPECT_EQ(CallList(*stub, {{"authorization", "Bearer abc"}}).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(CallList(*stub, {{"authorization", "Basic %%%"}}).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(backend_.calls.load(), 0);
}

TEST_F(GatewayTest, ClientsWithoutATrustedCertificateAreRefusedAtTls) {
  const auto auth = std::multimap<std::string, std::string>{
      {"authorization", BasicAuthHeader("demo", kPassword)}};
  for (const std::string cert : {"", "untrusted-client"}) {
    auto stub = RawStub(cert);
    grpc::Status status = CallList(*stub, auth);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE) << cert;
  }
  EXPECT_EQ(backend_.calls.load(), 0);
}

TEST_F(GatewayTest, StreamOutputRelaysAndCancelReachesTheBackend) {
  std::unique_ptr<pm::Client> client = Connect();
  pm::v1::StreamOutputRequest request;
  request.set_id(kId);
  request.set_follow(true);
  std::unique_ptr<pm::OutputStream> stream = client->StreamOutput(request);
  stream->WaitUntilAttached();
  std::string seen;
  pm::v1::OutputChunk chunk;
  for (int i = 0; i < 3 && stream->Next(&chunk); ++i) seen += chunk.data();
  EXPECT_EQ(seen, "chunk0chunk1chunk2");
  stream->Cancel();
  EXPECT_FALSE(stream->Next(&chunk));
  EXPECT_EQ(stream->Finish().code(), absl::StatusCode::kCancelled);
  EXPECT_TRUE(backend_.stream_cancelled.WaitForNotificationWithTimeout(kSafety));

  request.set_id("missing");
  stream = client->StreamOutput(request);
  EXPECT_FALSE(stream->Next(&chunk));
  absl::Status status = stream->Finish();
  EXPECT_EQ(status.code(), absl::StatusCode::kNotFound);
  // Not the log_store's answer: the registry resolved the id first.
  EXPECT_THAT(status.message(),
              HasSubstr("no process has the id, name or id prefix \"missing\""));
}

// Regression: the backend's end arriving while the last chunk is still
// being written must not finish (or touch) the relay early.
TEST_F(GatewayTest, StreamsThatEndAtOnceDeliverEveryChunk) {
  std::unique_ptr<pm::Client> client = Connect();
  pm::v1::StreamOutputRequest request;
  request.set_id("short");
  for (int i = 0; i < 50; ++i) {
    std::unique_ptr<pm::OutputStream> stream = client->StreamOutput(request);
    std::string seen;
    pm::v1::OutputChunk chunk;
    while (stream->Next(&chunk)) seen += chunk.data();
    ASSERT_TRUE(stream->Finish().ok());
    ASSERT_EQ(seen, "0,1,2,3,4,");
  }
}

TEST_F(GatewayTest, ClientDeadlineEndsTheBackendWait) {
  std::unique_ptr<pm::Client> client = Connect();
  absl::StatusOr<pm::v1::ProcessStatus> waited =
      client->Wait(kId, absl::Milliseconds(500));
  EXPECT_EQ(waited.status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_TRUE(backend_.wait_cancelled.WaitForNotificationWithTimeout(kSafety));
}

TEST_F(GatewayTest, HealthAndReflectionAreServed) {
  grpc::SslCredentialsOptions tls;
  tls.pem_root_certs = ReadAll(Pki("ca.pem"));
  tls.pem_cert_chain = ReadAll(Pki("client.pem"));
  tls.pem_private_key = ReadAll(Pki("client.key"));
  auto channel = grpc::CreateChannel(target_, grpc::SslCredentials(tls));
  auto health = grpc::health::v1::Health::NewStub(channel);
  grpc::ClientContext context;
  context.AddMetadata("authorization", BasicAuthHeader("demo", kPassword));
  grpc::health::v1::HealthCheckResponse response;
  ASSERT_TRUE(health->Check(&context, grpc::health::v1::HealthCheckRequest(),
                            &response)
                  .ok());
  EXPECT_EQ(response.status(), grpc::health::v1::HealthCheckResponse::SERVING);
  // Reflection: ServerReflectionInfo with list_services (field 7, "")
  // hand-encoded, as a generic call: Debian ships no reflection.proto.
  grpc::GenericStub generic(channel);
  grpc::ClientContext reflect;
  reflect.AddMetadata("authorization", BasicAuthHeader("demo", kPassword));
  reflect.set_deadline(absl::ToChronoTime(absl::Now() + kSafety));
  grpc::CompletionQueue cq;
  auto call = generic.PrepareCall(
      &reflect, "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", &cq);
  // One operation at a time, each awaited.
  auto await = [&cq] {
    void* tag;
    bool ok = false;
    return cq.Next(&tag, &ok) && ok;
  };
  call->StartCall(nullptr);
  ASSERT_TRUE(await());
  const std::string list_services("\x3a\x00", 2);
  grpc::Slice slice(list_services);
  grpc::ByteBuffer request(&slice, 1);
  call->Write(request, nullptr);
  ASSERT_TRUE(await());
  call->WritesDone(nullptr);
  ASSERT_TRUE(await());
  grpc::ByteBuffer reply;
  call->Read(&reply, nullptr);
  ASSERT_TRUE(await());
  std::vector<grpc::Slice> slices;
  ASSERT_TRUE(reply.Dump(&slices).ok());
  std::string text;
  for (const grpc::Slice& s : slices) {
    text.append(reinterpret_cast<const char*>(s.begin()), s.size());
  }
  EXPECT_THAT(text, HasSubstr("pm.v1.ProcessManager"));
  EXPECT_THAT(text, HasSubstr("grpc.health.v1.Health"));
  grpc::Status finish;
  call->Finish(&finish, nullptr);
  EXPECT_TRUE(await());
  EXPECT_TRUE(finish.ok()) << finish.error_message();
  cq.Shutdown();
  void* tag;
  bool ok;
  while (cq.Next(&tag, &ok)) {
  }
}

TEST_F(GatewayTest, SecondInstanceOnThePortFailsLoudly) {
  GatewayOptions options = Options(dir_ + "/run2");
  options.listen = absl::StrCat("127.0.0.1:", gateway_->port());
  absl::StatusOr<std::unique_ptr<Gateway>> second = Gateway::Start(std::move(options));
  EXPECT_EQ(second.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(second.status().message(), HasSubstr(absl::StrCat(gateway_->port())));
}

TEST_F(GatewayTest, BadFilesFailAtStartNamingTheFile) {
  GatewayOptions options = Options(dir_ + "/run3");
  options.tls.key_file = Pki("client.key");  // not the server cert's key
  absl::StatusOr<std::unique_ptr<Gateway>> gateway = Gateway::Start(std::move(options));
  EXPECT_EQ(gateway.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(gateway.status().message(), HasSubstr("client.key"));

  options = Options(dir_ + "/run3");
  options.users_file = dir_ + "/no-such-users";
  gateway = Gateway::Start(std::move(options));
  EXPECT_EQ(gateway.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(gateway.status().message(), HasSubstr("no-such-users"));
}

// Replacing the server certificate on disk (atomically) takes effect for new
// connections without a restart: here the old CA stops verifying it.
TEST_F(GatewayTest, CertificateFilesAreReloadedWithoutRestart) {
  ASSERT_NO_FATAL_FAILURE(MakePki(dir_ + "/pki2"));
  ASSERT_TRUE(Connect()->List().ok());
  // Serve pki2's server cert and trust pki2's CA: clients of pki must fail,
  // clients of pki2 must get through. Each file swapped by rename.
  for (const std::string name : {"server.pem", "server.key", "ca.pem"}) {
    std::filesystem::copy_file(dir_ + "/pki2/" + name, Pki(name + ".new"));
    std::filesystem::rename(Pki(name + ".new"), Pki(name));
  }
  pm::RemoteOptions remote = Remote();
  remote.ca_file = dir_ + "/pki2/ca.pem";
  remote.cert_file = dir_ + "/pki2/client.pem";
  remote.key_file = dir_ + "/pki2/client.key";
  // The watcher re-reads every second (the test's refresh interval); each
  // try is a new connection. Bounded by the safety deadline.
  const absl::Time deadline = absl::Now() + kSafety;
  absl::Status status = absl::UnknownError("not tried");
  while (absl::Now() < deadline) {
    status = pm::Client::ConnectRemote(remote).value()->List().status();
    if (status.ok()) break;
    absl::SleepFor(absl::Milliseconds(50));  // poll interval, not a sync point
  }
  EXPECT_TRUE(status.ok()) << status;
}


std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> lines = absl::StrSplit(text, '\n', absl::SkipEmpty());
  return lines;
}

// The context of a call made as `user` on a raw stub: its credentials in
// the call's own metadata, so calls of several users can share a channel.
std::unique_ptr<grpc::ClientContext> As(const std::string& user,
                                        const std::string& password) {
  auto context = std::make_unique<grpc::ClientContext>();
  context->set_deadline(absl::ToChronoTime(absl::Now() + kSafety));
  context->AddMetadata("authorization", BasicAuthHeader(user, password));
  return context;
}

// Counts the answers of async calls and waits for all of them.
class Answers {
 public:
  explicit Answers(int expected) : expected_(expected) {}
  std::function<void(grpc::Status)> Callback() {
    return [this](grpc::Status status) {
      absl::MutexLock lock(&mu_);
      codes_[status.error_code()]++;
      if (status.error_code() != grpc::StatusCode::OK) last_error_ = status.error_message();
      ++done_;
    };
  }
  // False if not all have answered within the safety deadline.
  bool WaitAll() {
    absl::MutexLock lock(&mu_);
    return mu_.AwaitWithTimeout(
        absl::Condition(
            +[](Answers* a) ABSL_EXCLUSIVE_LOCKS_REQUIRED(a->mu_) {
              return a->done_ == a->expected_;
            },
            this),
        kSafety * 2);
  }
  int count(grpc::StatusCode code) {
    absl::MutexLock lock(&mu_);
    return codes_[code];
  }
  std::string last_error() {
    absl::MutexLock lock(&mu_);
    return last_error_;
  }

 private:
  const int expected_;
  absl::Mutex mu_;
  int done_ ABSL_GUARDED_BY(mu_) = 0;
  std::map<grpc::StatusCode, int> codes_ ABSL_GUARDED_BY(mu_);
  std::string last_error_ ABSL_GUARDED_BY(mu_);
};

// `count` GetStatus calls of `id` at once on `stub`, as `user`; `answers`
// counts their ends. Holds what the calls use until it is destroyed.
struct ConcurrentGetStatus {
  ConcurrentGetStatus(pm::v1::ProcessManager::Stub& stub, int count,
                      const std::string& user, const std::string& password,
                      const std::string& id, Answers& answers)
      : requests(count), responses(count) {
    for (int i = 0; i < count; ++i) {
      contexts.push_back(As(user, password));
      requests[i].set_id(id);
      stub.async()->GetStatus(contexts.back().get(), &requests[i], &responses[i],
                              answers.Callback());
    }
  }
  std::vector<std::unique_ptr<grpc::ClientContext>> contexts;
  std::vector<pm::v1::GetStatusRequest> requests;
  std::vector<pm::v1::ProcessStatus> responses;
};

// Regression: every call of a connection shares one AuthContext, and the
// processor used to add the user to it from several threads at once (a
// double free within half a second at 2,000 calls).
TEST_F(GatewayTest, ThousandsOfConcurrentCallsOnOneConnectionAllSucceed) {
  auto stub = RawStub("client");
  constexpr int kCalls = 2000;
  Answers answers(kCalls);
  ConcurrentGetStatus calls(*stub, kCalls, "demo", kPassword, kId, answers);
  ASSERT_TRUE(answers.WaitAll());
  EXPECT_EQ(answers.count(grpc::StatusCode::OK), kCalls) << answers.last_error();
  for (const auto& response : calls.responses) ASSERT_EQ(response.id(), kId);
}

// Regression: the owner was the user who authenticated first on the
// connection, whoever sent the call.
TEST_F(GatewayTest, CallsOfManyUsersOnOneConnectionEachActAsTheirOwnUser) {
  auto stub = RawStub("client");
  constexpr int kCalls = 400;
  Answers answers(kCalls);
  std::vector<std::unique_ptr<grpc::ClientContext>> contexts;
  std::vector<pm::v1::StartRequest> requests(kCalls);
  std::vector<pm::v1::StartResponse> responses(kCalls);
  for (int i = 0; i < kCalls; ++i) {
    const bool bob = i % 2 == 1;
    contexts.push_back(bob ? As("bob", kBobsPassword) : As("demo", kPassword));
    requests[i].set_executable(bob ? "bob" : "demo");
    stub->async()->Start(contexts.back().get(), &requests[i], &responses[i],
                         answers.Callback());
  }
  ASSERT_TRUE(answers.WaitAll());
  ASSERT_EQ(answers.count(grpc::StatusCode::OK), kCalls) << answers.last_error();
  for (int i = 0; i < kCalls; ++i) {
    const std::string user = requests[i].executable();
    EXPECT_EQ(responses[i].status().owner_user(), user) << i;
    EXPECT_EQ(responses[i].status().owner(), user + " (CN=pm-client,O=pm dev)") << i;
  }
}

TEST_F(GatewayTest, UsersSeeAndActOnOnlyTheirOwnProcesses) {
  std::unique_ptr<pm::Client> demo = Connect();
  absl::StatusOr<pm::v1::ListResponse> list = demo->List();
  ASSERT_TRUE(list.ok()) << list.status();
  std::vector<std::string> ids;
  for (const auto& process : list->processes()) ids.push_back(process.id());
  EXPECT_THAT(ids, ::testing::UnorderedElementsAre(kId, "short"));

  // Another user's id answers exactly as an id never used does.
  const std::string never = "ffffffff-ffff-4fff-bfff-ffffffffffff";
  absl::Status unknown = demo->GetStatus(never).status();
  ASSERT_EQ(unknown.code(), absl::StatusCode::kNotFound);
  auto same_as_unknown = [&](const absl::Status& status) {
    EXPECT_EQ(status.code(), absl::StatusCode::kNotFound) << status;
    EXPECT_EQ(absl::StrReplaceAll(status.message(),
                                  {{kBobsId, never}, {kLocalId, never}}),
              unknown.message());
  };
  same_as_unknown(demo->GetStatus(kBobsId).status());
  same_as_unknown(demo->GetStatus(kLocalId).status());
  pm::v1::StopRequest stop;
  stop.set_id(kBobsId);
  same_as_unknown(demo->Stop(stop).status());
  same_as_unknown(demo->Wait(kBobsId, kSafety).status());
  pm::v1::StreamOutputRequest read;
  read.set_id(kBobsId);
  std::unique_ptr<pm::OutputStream> stream = demo->StreamOutput(read);
  pm::v1::OutputChunk chunk;
  EXPECT_FALSE(stream->Next(&chunk));
  same_as_unknown(stream->Finish());
  EXPECT_THAT(Stopped(), IsEmpty());

  // Bob sees and stops his own.
  std::unique_ptr<pm::Client> bob = Connect(kBobsPassword, "bob");
  ASSERT_TRUE(bob->GetStatus(kBobsId).ok());
  ASSERT_TRUE(bob->Stop(stop).ok());
  EXPECT_THAT(Stopped(), ElementsAre(kBobsId));
  EXPECT_EQ(bob->GetStatus(kId).status().code(), absl::StatusCode::kNotFound);

  // An admin sees and acts on everything, local processes included.
  std::unique_ptr<pm::Client> root = Connect(kRootPassword, "root");
  list = root->List();
  ASSERT_TRUE(list.ok()) << list.status();
  EXPECT_EQ(list->processes_size(), 4);
  ASSERT_TRUE(root->GetStatus(kLocalId).ok());
  stop.set_id(kLocalId);
  ASSERT_TRUE(root->Stop(stop).ok());
  EXPECT_THAT(Stopped(), ElementsAre(kBobsId, kLocalId));

  // An evicted record says whose it was to nobody: to a user it is unknown
  // (it may have been another's), to an admin the registry's own answer.
  EXPECT_EQ(demo->GetStatus("evicted").status().message(),
            "no process has the id, name or id prefix \"evicted\"");
  EXPECT_EQ(demo->Wait("evicted", kSafety).status().message(),
            "no process has the id, name or id prefix \"evicted\"");
  EXPECT_THAT(root->GetStatus("evicted").status().message(), HasSubstr("evicted ("));

  // So does a caller on the gateway's unix socket (the runtime dir is 0700).
  auto local = pm::v1::ProcessManager::NewStub(grpc::CreateChannel(
      UnixAddress(gateway_->socket_path()), grpc::InsecureChannelCredentials()));
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + kSafety));
  pm::v1::ListResponse all;
  ASSERT_TRUE(local->List(&context, pm::v1::ListRequest(), &all).ok());
  EXPECT_EQ(all.processes_size(), 4);
}

// Regression: the synchronous calls ran on a pool of 64 threads, and the
// 65th call at once was refused ("Server Threadpool Exhausted").
TEST_F(GatewayTest, MoreConcurrentCallsThanAnyThreadPoolHoldsAreAllServed) {
  constexpr int kCalls = 300;
  backend_.held_target = kCalls;
  auto stub = RawStub("client");
  Answers answers(kCalls);
  ConcurrentGetStatus calls(*stub, kCalls, "root", kRootPassword, "held", answers);
  ASSERT_TRUE(answers.WaitAll());
  EXPECT_EQ(answers.count(grpc::StatusCode::OK), kCalls) << answers.last_error();
}

TEST_F(GatewayTest, PerUserCapsAnswerResourceExhaustedNamingTheFlag) {
  GatewayOptions options = Options(run_);
  options.quotas.max_streams = 2;
  options.quotas.starts_per_second = 0.001;  // no token comes back in the test
  options.quotas.start_burst = 2;
  ASSERT_NO_FATAL_FAILURE(StartGateway(std::move(options)));
  std::unique_ptr<pm::Client> demo = Connect();

  pm::v1::StreamOutputRequest follow;
  follow.set_id("endable");
  follow.set_follow(true);
  std::vector<std::unique_ptr<pm::OutputStream>> streams;
  for (int i = 0; i < 2; ++i) {
    streams.push_back(demo->StreamOutput(follow));
    streams.back()->WaitUntilAttached();
  }
  pm::v1::OutputChunk chunk;
  std::unique_ptr<pm::OutputStream> third = demo->StreamOutput(follow);
  EXPECT_FALSE(third->Next(&chunk));
  absl::Status refused = third->Finish();
  EXPECT_EQ(refused.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(refused.message(), HasSubstr("--max_streams_per_user=2"));
  // Wait holds a slot the same way.
  EXPECT_EQ(demo->Wait(kId, kSafety).status().code(),
            absl::StatusCode::kResourceExhausted);
  // The cap is per user.
  std::unique_ptr<pm::Client> bob = Connect(kBobsPassword, "bob");
  pm::v1::StreamOutputRequest bobs;
  bobs.set_id(kBobsId);
  bobs.set_follow(true);
  std::unique_ptr<pm::OutputStream> bob_stream = bob->StreamOutput(bobs);
  bob_stream->WaitUntilAttached();
  bob_stream->Cancel();
  // Streams that ended give their slots back: once a client has seen the
  // end, the slot is free.
  backend_.EndStreams();
  for (auto& stream : streams) {
    EXPECT_FALSE(stream->Next(&chunk));
    EXPECT_TRUE(stream->Finish().ok());
  }
  std::unique_ptr<pm::OutputStream> again = demo->StreamOutput(follow);
  again->WaitUntilAttached();
  backend_.EndStreams();
  EXPECT_FALSE(again->Next(&chunk));
  EXPECT_TRUE(again->Finish().ok());

  pm::v1::StartRequest start;
  start.set_executable("true");
  ASSERT_TRUE(demo->Start(start).ok());
  ASSERT_TRUE(demo->Start(start).ok());
  absl::Status too_fast = demo->Start(start).status();
  EXPECT_EQ(too_fast.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(too_fast.message(), HasSubstr("--max_starts_per_second_per_user"));
  EXPECT_TRUE(bob->Start(start).ok());
}

TEST_F(GatewayTest, RepeatedWrongPasswordsAreThrottledWithoutLockingOutKnownClients) {
  // demo's client has passed before: its password is in the cache.
  std::unique_ptr<pm::Client> demo = Connect();
  ASSERT_TRUE(demo->List().ok());
  std::unique_ptr<pm::Client> guesser = Connect("a guess");
  for (int i = 0; i < 5; ++i) {
    absl::Status status = guesser->List().status();
    ASSERT_EQ(status.code(), absl::StatusCode::kPermissionDenied);
    EXPECT_THAT(status.message(), HasSubstr("wrong user name or password"));
  }
  absl::Status blocked = guesser->List().status();
  EXPECT_EQ(blocked.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(blocked.message(), HasSubstr("too many failed logins"));
  // A password not verified lately is not even checked now (the client
  // certificate is blocked too)...
  EXPECT_THAT(Connect(kRootPassword, "root")->List().status().message(),
              HasSubstr("too many failed logins"));
  // ...but a client that proved its password before carries on, and its
  // success does not unblock the certificate for the guesser (it used to:
  // one cached login between guesses reset the count).
  EXPECT_TRUE(demo->List().ok());
  EXPECT_THAT(Connect("another guess", "nobody")->List().status().message(),
              HasSubstr("too many failed logins"));
  EXPECT_THAT(guesser->List().status().message(), HasSubstr("too many failed logins"));
}

// A blocked client hammering costs one log and audit line per block, not
// one per try; a long user name is clipped in them.
TEST_F(GatewayTest, RefusalsWhileBlockedAreCountedNotWrittenOneByOne) {
  const std::string long_name(10000, 'x');
  std::unique_ptr<pm::Client> guesser = Connect("a guess", long_name);
  for (int i = 0; i < 105; ++i) {
    ASSERT_EQ(guesser->List().status().code(), absl::StatusCode::kPermissionDenied);
  }
  const std::string audit = ReadAll(gateway_->audit_log_path());
  std::vector<std::string> lines = Lines(audit);
  // 5 checked and refused, then the first refusal of the block.
  EXPECT_EQ(lines.size(), 6u) << audit.substr(0, 2000);
  EXPECT_THAT(audit, HasSubstr("...(10000 bytes)"));
  EXPECT_LT(audit.size(), 6u * 1024);
}

// Adds `authorization: Basic ...` to every call of a channel.
class BasicAuthPluginForTest final : public grpc::MetadataCredentialsPlugin {
 public:
  BasicAuthPluginForTest(const std::string& user, const std::string& password)
      : header_(BasicAuthHeader(user, password)) {}
  bool IsBlocking() const override { return false; }
  grpc::Status GetMetadata(grpc::string_ref, grpc::string_ref, const grpc::AuthContext&,
                           std::multimap<std::string, std::string>* metadata) override {
    metadata->insert({"authorization", header_});
    return grpc::Status::OK;
  }

 private:
  const std::string header_;
};

// Regression: gRPC's own parsing answered a request that protobuf refuses
// (a string field that is not UTF-8) with a bare UNIMPLEMENTED, unaudited.
TEST_F(GatewayTest, ARequestThatIsNotUtf8IsInvalidArgumentNamingTheFieldAndAudited) {
  grpc::SslCredentialsOptions tls;
  tls.pem_root_certs = ReadAll(Pki("ca.pem"));
  tls.pem_cert_chain = ReadAll(Pki("client.pem"));
  tls.pem_private_key = ReadAll(Pki("client.key"));
  auto channel = grpc::CreateChannel(
      target_, grpc::CompositeChannelCredentials(
                   grpc::SslCredentials(tls),
                   grpc::MetadataCredentialsFromPlugin(
                       std::make_unique<BasicAuthPluginForTest>("demo", kPassword))));
  // StartRequest{executable: "/bin/true", args: ["caf\xe9"]}
  grpc::Status start = RawUnaryCall(channel, "/pm.v1.ProcessManager/Start",
                                    WireBytes(1, "/bin/true") + WireBytes(2, "caf\xe9"));
  EXPECT_EQ(start.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(start.error_message(),
            "args[0] is not valid UTF-8 (byte 0xe9 at 3); send it in args_bytes");
  for (const char* method : {"Stop", "GetStatus", "Wait"}) {
    grpc::Status status = RawUnaryCall(channel, absl::StrCat("/pm.v1.ProcessManager/", method),
                                       WireBytes(1, "\xff"));
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << method;
    EXPECT_EQ(status.error_message(), "id is not valid UTF-8 (byte 0xff at 0)") << method;
  }
  grpc::Status garbage =
      RawUnaryCall(channel, "/pm.v1.ProcessManager/List", std::string("\x0a\x7f", 2));
  EXPECT_EQ(garbage.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(garbage.error_message(), HasSubstr("malformed pm.v1.ListRequest"));
  // StreamOutput too (a stream: read until it ends).
  grpc::GenericStub generic(channel);
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + kSafety));
  grpc::CompletionQueue cq;
  auto call = generic.PrepareCall(&context, "/pm.v1.ProcessManager/StreamOutput", &cq);
  auto await = [&cq] {
    void* tag;
    bool ok = false;
    return cq.Next(&tag, &ok) && ok;
  };
  call->StartCall(nullptr);
  ASSERT_TRUE(await());
  grpc::Slice slice(WireBytes(1, "caf\xe9"));
  grpc::ByteBuffer request(&slice, 1);
  call->WriteLast(request, grpc::WriteOptions(), nullptr);
  await();
  grpc::ByteBuffer reply;
  call->Read(&reply, nullptr);
  EXPECT_FALSE(await());
  grpc::Status streamed;
  call->Finish(&streamed, nullptr);
  EXPECT_TRUE(await());
  EXPECT_EQ(streamed.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(streamed.error_message(), "id is not valid UTF-8 (byte 0xe9 at 3)");
  cq.Shutdown();
  void* tag;
  bool ok;
  while (cq.Next(&tag, &ok)) {
  }
  EXPECT_EQ(backend_.calls.load(), 0);
  const std::string audit = ReadAll(gateway_->audit_log_path());
  EXPECT_THAT(audit, HasSubstr(R"("method":"Start","id":"","code":"INVALID_ARGUMENT")"));
  EXPECT_THAT(audit, HasSubstr(R"("method":"StreamOutput","id":"","code":"INVALID_ARGUMENT")"));
}

TEST_F(GatewayTest, CallsInFlightAreCappedPerUser) {
  GatewayOptions options = Options(run_);
  options.quotas.max_calls = 4;
  ASSERT_NO_FATAL_FAILURE(StartGateway(std::move(options)));
  backend_.held_target = 1000;  // never: the held calls wait for the test
  auto stub = RawStub("client");
  constexpr int kHeld = 4;
  Answers held(kHeld);
  ConcurrentGetStatus calls(*stub, kHeld, "demo", kPassword, "held", held);
  // The fifth is refused once the four are in the backend.
  {
    absl::MutexLock lock(&backend_.mu);
    backend_.mu.Await(absl::Condition(
        +[](Backend* b) ABSL_EXCLUSIVE_LOCKS_REQUIRED(b->mu) {
          return b->held.size() == kHeld;
        },
        &backend_));
  }
  std::unique_ptr<pm::Client> demo = Connect();
  absl::Status refused = demo->List().status();
  EXPECT_EQ(refused.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(refused.message(), HasSubstr("--max_calls_per_user=4"));
  // Another user is not held up by it.
  EXPECT_TRUE(Connect(kBobsPassword, "bob")->List().ok());
  for (auto& context : calls.contexts) context->TryCancel();
  ASSERT_TRUE(held.WaitAll());
  {
    absl::MutexLock lock(&backend_.mu);
    for (grpc::ServerUnaryReactor* reactor : backend_.held) {
      reactor->Finish(grpc::Status::CANCELLED);
    }
    backend_.held.clear();
  }
}

// A backend that is down is UNAVAILABLE to a remote client, without the
// paths of pm's sockets.
TEST_F(GatewayTest, ABackendThatIsDownIsUnavailableWithoutItsSocketPath) {
  servers_[1]->Shutdown();  // the registry
  absl::Status down = Connect()->GetStatus(kId).status();
  EXPECT_EQ(down.code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(down.message(), HasSubstr("a pm service behind the gateway is unavailable"));
  EXPECT_THAT(down.message(), Not(HasSubstr(run_)));
}

TEST_F(GatewayTest, AnOversizedRequestIsRefusedByTheMessageCap) {
  GatewayOptions options = Options(run_);
  options.http2.max_receive_message_bytes = 64 << 10;
  ASSERT_NO_FATAL_FAILURE(StartGateway(std::move(options)));
  std::unique_ptr<pm::Client> demo = Connect();
  pm::v1::StartRequest start;
  start.set_executable("true");
  start.add_args(std::string(100 << 10, 'x'));
  absl::Status refused = demo->Start(start).status();
  EXPECT_EQ(refused.code(), absl::StatusCode::kResourceExhausted) << refused;
  EXPECT_EQ(backend_.calls.load(), 0);
  start.mutable_args()->Clear();
  EXPECT_TRUE(demo->Start(start).ok());
}

TEST_F(GatewayTest, EveryCallAndEveryRefusedAuthenticationIsAudited) {
  std::unique_ptr<pm::Client> demo = Connect();
  pm::v1::StartRequest start;
  start.set_executable("true");
  absl::StatusOr<pm::v1::StartResponse> started = demo->Start(start);
  ASSERT_TRUE(started.ok());
  EXPECT_EQ(demo->GetStatus(kBobsId).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(Connect("hunter2-not-it")->List().status().code(),
            absl::StatusCode::kPermissionDenied);

  // By default in the state dir, which outlives a reboot (the runtime dir
  // may not).
  const std::string path = gateway_->audit_log_path();
  EXPECT_EQ(path, dir_ + "/state/gateway-audit.jsonl");
  std::vector<std::string> lines = Lines(ReadAll(path));
  ASSERT_EQ(lines.size(), 3u) << ReadAll(path);
  EXPECT_THAT(lines[0], HasSubstr(absl::StrCat(
                            R"("user":"demo","subject":"CN=pm-client,O=pm dev",)"
                            R"("peer":"ipv)")));
  EXPECT_THAT(lines[0], HasSubstr(absl::StrCat(R"("method":"Start","id":")",
                                               started->id(), R"(","code":"OK")")));
  EXPECT_THAT(lines[0], ::testing::StartsWith(R"({"time":")"));
  EXPECT_THAT(lines[1], HasSubstr(absl::StrCat(R"("method":"GetStatus","id":")",
                                               kBobsId, R"(","code":"NOT_FOUND")")));
  EXPECT_THAT(lines[2], HasSubstr(R"("user":"demo")"));
  EXPECT_THAT(lines[2], HasSubstr(R"("method":"authenticate /pm.v1.ProcessManager/List")"));
  EXPECT_THAT(lines[2], HasSubstr(R"("code":"PERMISSION_DENIED")"));
  EXPECT_THAT(ReadAll(path), Not(HasSubstr("hunter2")));
}

}  // namespace
}  // namespace pm::gateway
