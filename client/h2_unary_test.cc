// H2Unary against a real gRPC server (the registry's service, faked) on a
// unix socket, and against a socket that does not speak gRPC.
#include "client/h2_unary.h"

#include <stdlib.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <filesystem>
#include <memory>
#include <utility>
#include <string>
#include <thread>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/fd.h"
#include "common/server.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "pm/internal/v1/internal.grpc.pb.h"

namespace pm {
namespace {

using ::testing::HasSubstr;

constexpr absl::Duration kSafety = absl::Seconds(60);

class FakeRegistry final : public pm::internal::v1::Registry::CallbackService {
 public:
  grpc::ServerUnaryReactor* GetStatus(grpc::CallbackServerContext* context,
                                      const pm::v1::GetStatusRequest* request,
                                      pm::v1::ProcessStatus* response) override {
    auto* reactor = context->DefaultReactor();
    if (request->id() == "fail") {
      reactor->Finish(grpc::Status(grpc::StatusCode::NOT_FOUND,
                                   "process \"fail%20\" has no record: ünïcode\nline two"));
    } else if (request->id() == "hold") {
      absl::MutexLock lock(&mu_);
      held_.push_back(reactor);  // answered at the end of the test
    } else {
      response->set_id(request->id());
      auto owner = context->client_metadata().find("pm-owner");
      if (owner != context->client_metadata().end()) {
        response->set_owner(std::string(owner->second.data(), owner->second.size()));
      }
      reactor->Finish(grpc::Status::OK);
    }
    return reactor;
  }

  grpc::ServerUnaryReactor* List(grpc::CallbackServerContext* context,
                                 const pm::v1::ListRequest*,
                                 pm::v1::ListResponse* response) override {
    // About 3 MiB: many DATA frames, beyond HTTP/2's default windows.
    for (int i = 0; i < 30000; ++i) {
      response->add_processes()->set_id(absl::StrCat(std::string(90, 'x'), i));
    }
    auto* reactor = context->DefaultReactor();
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }

  void ReleaseHeld() {
    absl::MutexLock lock(&mu_);
    for (grpc::ServerUnaryReactor* reactor : held_) reactor->Finish(grpc::Status::CANCELLED);
    held_.clear();
  }

 private:
  absl::Mutex mu_;
  std::vector<grpc::ServerUnaryReactor*> held_ ABSL_GUARDED_BY(mu_);
};

class H2UnaryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // /tmp, not TEST_TMPDIR: a unix socket path has at most 107 bytes.
    std::string tmpl = "/tmp/pm_h2.XXXXXX";
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    socket_ = dir_ + "/registry.sock";
    absl::StatusOr<std::unique_ptr<grpc::Server>> server =
        StartUnixServer(socket_, {&registry_});
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
  }
  void TearDown() override {
    registry_.ReleaseHeld();
    server_->Shutdown();
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
  }

  H2UnaryCall Call(const std::string& method) {
    return {socket_, "/pm.internal.v1.Registry/" + method, {}, absl::Now() + kSafety};
  }

  std::string dir_;
  std::string socket_;
  FakeRegistry registry_;
  std::unique_ptr<grpc::Server> server_;
};

TEST_F(H2UnaryTest, AnAnswerComesBackAsTheMessage) {
  pm::v1::GetStatusRequest request;
  request.set_id("web");
  pm::v1::ProcessStatus status;
  absl::Status called = H2Unary(Call("GetStatus"), request, &status);
  ASSERT_TRUE(called.ok()) << called;
  EXPECT_EQ(status.id(), "web");
  // Calls one after another, each on a connection of its own.
  for (int i = 0; i < 20; ++i) {
    request.set_id(absl::StrCat("p", i));
    ASSERT_TRUE(H2Unary(Call("GetStatus"), request, &status).ok());
    EXPECT_EQ(status.id(), absl::StrCat("p", i));
  }
}

TEST_F(H2UnaryTest, TheServersStatusComesBackWithItsCodeAndWholeMessage) {
  pm::v1::GetStatusRequest request;
  request.set_id("fail");
  pm::v1::ProcessStatus status;
  absl::Status called = H2Unary(Call("GetStatus"), request, &status);
  EXPECT_EQ(called.code(), absl::StatusCode::kNotFound);
  // grpc-message is percent-encoded on the wire; it comes back as sent.
  EXPECT_EQ(called.message(), "process \"fail%20\" has no record: ünïcode\nline two");

  absl::Status unknown = H2Unary(Call("NoSuchMethod"), request, &status);
  EXPECT_EQ(unknown.code(), absl::StatusCode::kUnimplemented) << unknown;
}

TEST_F(H2UnaryTest, ALargeAnswerComesWhole) {
  pm::v1::ListResponse list;
  absl::Status called = H2Unary(Call("List"), pm::v1::ListRequest(), &list);
  ASSERT_TRUE(called.ok()) << called;
  ASSERT_EQ(list.processes_size(), 30000);
  EXPECT_EQ(list.processes(29999).id(), std::string(90, 'x') + "29999");
}

TEST_F(H2UnaryTest, MetadataReachesTheServer) {
  H2UnaryCall call = Call("GetStatus");
  call.metadata.emplace_back("pm-owner", "demo (CN=laptop)");
  pm::v1::GetStatusRequest request;
  request.set_id("meta");
  pm::v1::ProcessStatus status;
  ASSERT_TRUE(H2Unary(call, request, &status).ok());
  EXPECT_EQ(status.owner(), "demo (CN=laptop)");
}

TEST_F(H2UnaryTest, ACallPastItsDeadlineEndsThere) {
  H2UnaryCall call = Call("GetStatus");
  call.deadline = absl::Now() + absl::Milliseconds(200);
  pm::v1::GetStatusRequest request;
  request.set_id("hold");  // the server never answers it
  pm::v1::ProcessStatus status;
  absl::Status called = H2Unary(call, request, &status);
  EXPECT_EQ(called.code(), absl::StatusCode::kDeadlineExceeded) << called;
}

TEST_F(H2UnaryTest, NoServiceIsUnavailableSayingWhy) {
  H2UnaryCall call = Call("GetStatus");
  call.socket = dir_ + "/nobody.sock";
  pm::v1::ProcessStatus status;
  absl::Status called = H2Unary(call, pm::v1::GetStatusRequest(), &status);
  EXPECT_EQ(called.code(), absl::StatusCode::kUnavailable);
  // The caller names the service and its socket (LocalClient: "registry
  // is unavailable at ...").
  EXPECT_THAT(called.message(), HasSubstr("connect(): No such file or directory"));

  call.socket = dir_ + "/" + std::string(120, 'x');
  EXPECT_EQ(H2Unary(call, pm::v1::GetStatusRequest(), &status).code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(H2UnaryTest, ACallWithoutADeadlineWaitsForItsAnswer) {
  H2UnaryCall call = Call("GetStatus");
  call.deadline = absl::InfiniteFuture();
  pm::v1::GetStatusRequest request;
  request.set_id("web");
  pm::v1::ProcessStatus status;
  absl::Status called = H2Unary(call, request, &status);
  ASSERT_TRUE(called.ok()) << called;
  EXPECT_EQ(status.id(), "web");
}

TEST_F(H2UnaryTest, MetadataThatIsNoHeaderIsRefusedBeforeSending) {
  for (const auto& [key, value] :
       std::vector<std::pair<std::string, std::string>>{{"Pm-Owner", "x"},
                                                        {"pm-owner", "a\r\nb: c"},
                                                        {":path", "/x"},
                                                        {"", "x"}}) {
    H2UnaryCall call = Call("GetStatus");
    call.metadata.emplace_back(key, value);
    pm::v1::ProcessStatus status;
    EXPECT_EQ(H2Unary(call, pm::v1::GetStatusRequest(), &status).code(),
              absl::StatusCode::kInvalidArgument)
        << key;
  }
}

// An HTTP/2 server of the test's own, answering the first call with
// `answer` (frames) and closing the connection.
class RawServer {
 public:
  RawServer(const std::string& path, std::string answer) : path_(path) {
    listener_.reset(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_un address = {};
    address.sun_family = AF_UNIX;
    memcpy(address.sun_path, path.data(), path.size());
    EXPECT_EQ(bind(listener_.get(), reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
    EXPECT_EQ(listen(listener_.get(), 1), 0);
    thread_ = std::thread([this, answer = std::move(answer)] {
      Fd client(accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC));
      char request[65536];
      // The whole request comes in one send (the preface, SETTINGS,
      // HEADERS and DATA).
      EXPECT_GT(read(client.get(), request, sizeof(request)), 24);
      EXPECT_EQ(write(client.get(), answer.data(), answer.size()),
                static_cast<ssize_t>(answer.size()));
    });
  }
  ~RawServer() { thread_.join(); }

  static std::string Frame(uint8_t type, uint8_t flags, uint32_t stream, std::string payload) {
    std::string frame;
    for (int shift : {16, 8, 0}) frame.push_back(static_cast<char>(payload.size() >> shift));
    frame.push_back(static_cast<char>(type));
    frame.push_back(static_cast<char>(flags));
    for (int shift : {24, 16, 8, 0}) frame.push_back(static_cast<char>(stream >> shift));
    return frame + payload;
  }
  // An HPACK literal header, not indexed.
  static std::string Header(const std::string& name, const std::string& value) {
    return std::string(1, '\0') + static_cast<char>(name.size()) + name +
           static_cast<char>(value.size()) + value;
  }
  // SETTINGS (MAX_CONCURRENT_STREAMS 100): the client owes an ACK.
  static std::string Settings() { return Frame(4, 0, 0, std::string("\0\3\0\0\0\x64", 6)); }
  static std::string Ok() { return "\x88" + Header("content-type", "application/grpc"); }

 private:
  std::string path_;
  Fd listener_;
  std::thread thread_;
};

TEST_F(H2UnaryTest, AnAnswerIsTakenEvenWhenTheServiceClosesRightAfterIt) {
  // A service that answers and exits at once: the acknowledgement the
  // client owes cannot be sent, and the call has still been answered.
  const std::string message = std::string("\0\0\0\0\5", 5) + "hello";
  RawServer server(dir_ + "/closes.sock",
                   RawServer::Settings() + RawServer::Frame(1, 4, 1, RawServer::Ok()) +
                       RawServer::Frame(0, 0, 1, message) +
                       RawServer::Frame(1, 5, 1, RawServer::Header("grpc-status", "0")));
  H2UnaryCall call = Call("Anything");
  call.socket = dir_ + "/closes.sock";
  absl::StatusOr<std::string> answer = H2Unary(call, "request");
  ASSERT_TRUE(answer.ok()) << answer.status();
  EXPECT_EQ(*answer, "hello");
}

TEST_F(H2UnaryTest, ResetsAndHttpAnswersAreMappedAsGrpcMapsThem) {
  struct Case {
    std::string name;
    std::string answer;
    absl::StatusCode code;
  };
  const std::vector<Case> cases = {
      {"cancel", RawServer::Frame(3, 0, 1, std::string("\0\0\0\x08", 4)),
       absl::StatusCode::kCancelled},
      {"refused", RawServer::Frame(7, 0, 0, std::string(8, '\0')),  // GOAWAY, none taken
       absl::StatusCode::kUnavailable},
      {"http503", RawServer::Frame(1, 5, 1, RawServer::Header(":status", "503")),
       absl::StatusCode::kUnavailable},
      {"status99",
       RawServer::Frame(1, 5, 1, RawServer::Ok() + RawServer::Header("grpc-status", "99")),
       absl::StatusCode::kUnknown},
  };
  for (const Case& c : cases) {
    const std::string path = dir_ + "/" + c.name + ".sock";
    RawServer server(path, RawServer::Settings() + c.answer);
    H2UnaryCall call = Call("Anything");
    call.socket = path;
    absl::StatusOr<std::string> answer = H2Unary(call, "request");
    EXPECT_EQ(answer.status().code(), c.code) << c.name << ": " << answer.status();
  }
}

TEST_F(H2UnaryTest, ASocketThatDoesNotSpeakGrpcIsAnErrorNotAHang) {
  // A listener that answers as an HTTP/1 server would, then closes.
  const std::string path = dir_ + "/http1.sock";
  Fd listener(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_un address = {};
  address.sun_family = AF_UNIX;
  memcpy(address.sun_path, path.data(), path.size());
  ASSERT_EQ(bind(listener.get(), reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
  ASSERT_EQ(listen(listener.get(), 1), 0);
  std::thread server([&] {
    Fd client(accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
    const char answer[] = "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n";
    ASSERT_GT(write(client.get(), answer, sizeof(answer) - 1), 0);
  });
  H2UnaryCall call = Call("GetStatus");
  call.socket = path;
  pm::v1::ProcessStatus status;
  absl::Status called = H2Unary(call, pm::v1::GetStatusRequest(), &status);
  server.join();
  EXPECT_FALSE(called.ok());
  EXPECT_TRUE(absl::IsInternal(called) || absl::IsUnavailable(called)) << called;
}

}  // namespace
}  // namespace pm
