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
#include <thread>

#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "client/client.h"
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

constexpr char kId[] = "0b5e7c4a-8a3f-4a57-9d5e-1f2a3b4c5d6e";
constexpr char kPassword[] = "correct horse battery staple";
constexpr absl::Duration kSafety = absl::Seconds(30);

// The fake local services: what reached them, and holds for the long calls.
struct Backend {
  absl::Mutex mu;
  std::vector<std::string> owners ABSL_GUARDED_BY(mu);  // per Start
  std::atomic<int> calls{0};
  absl::Notification stream_cancelled;
  absl::Notification wait_cancelled;
};

class FakeSupervisor final : public pm::internal::v1::Supervisor::CallbackService {
 public:
  explicit FakeSupervisor(Backend* backend) : backend_(backend) {}
  grpc::ServerUnaryReactor* Start(grpc::CallbackServerContext* context,
                                  const pm::v1::StartRequest* request,
                                  pm::v1::StartResponse* response) override {
    ++backend_->calls;
    std::string owner;
    auto it = context->client_metadata().find("pm-owner");
    if (it != context->client_metadata().end()) {
      owner = std::string(it->second.data(), it->second.size());
    }
    {
      absl::MutexLock lock(&backend_->mu);
      backend_->owners.push_back(owner);
    }
    response->set_id(kId);
    response->mutable_status()->set_executable(request->executable());
    response->mutable_status()->set_owner(owner);
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
  grpc::ServerUnaryReactor* GetStatus(grpc::CallbackServerContext* context,
                                      const pm::v1::GetStatusRequest* request,
                                      pm::v1::ProcessStatus* response) override {
    ++backend_->calls;
    auto* reactor = context->DefaultReactor();
    if (request->id() != kId) {
      reactor->Finish(grpc::Status(grpc::StatusCode::NOT_FOUND,
                                   "no process " + request->id()));
    } else {
      response->set_id(kId);
      reactor->Finish(grpc::Status::OK);
    }
    return reactor;
  }
  grpc::ServerUnaryReactor* List(grpc::CallbackServerContext* context,
                                 const pm::v1::ListRequest*,
                                 pm::v1::ListResponse* response) override {
    ++backend_->calls;
    response->add_processes()->set_id(kId);
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
    backend_->stream_cancelled.Notify();
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
  const std::string command = absl::StrCat("bash '", script, "' '", dir, "'");
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
    users["demo"] = *HashPassword(kPassword, 1000);
    ASSERT_TRUE(WriteUsersFile(dir_ + "/users", users).ok());

    StartBackend(Service::kSupervisor, &supervisor_);
    StartBackend(Service::kRegistry, &registry_);
    StartBackend(Service::kLogStore, &log_store_);

    absl::StatusOr<std::unique_ptr<Gateway>> gateway = Gateway::Start(Options(run_));
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

  pm::RemoteOptions Remote(const std::string& password = kPassword) {
    pm::RemoteOptions options;
    options.target = target_;
    options.ca_file = Pki("ca.pem");
    options.cert_file = Pki("client.pem");
    options.key_file = Pki("client.key");
    options.user = "demo";
    options.password = password;
    return options;
  }

  std::unique_ptr<pm::Client> Connect(const std::string& password = kPassword) {
    absl::StatusOr<std::unique_ptr<pm::Client>> client =
        pm::Client::ConnectRemote(Remote(password));
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
  ASSERT_EQ(list->processes_size(), 1);
  EXPECT_EQ(list->processes(0).id(), kId);
  absl::StatusOr<pm::v1::ProcessStatus> missing = client->GetStatus("nope");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(missing.status().message(), HasSubstr("no process nope"));
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
  // The remote client refuses to claim one itself.
  pm::StartOptions claim;
  claim.owner = "root";
  EXPECT_EQ(client->StartWithOptions(request, claim).status().code(),
            absl::StatusCode::kInvalidArgument);
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
  EXPECT_THAT(status.message(), HasSubstr("no output for process missing"));
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

}  // namespace
}  // namespace pm::gateway
