// The Library finds a restarted service again before a call: a channel
// whose last attempt failed (the service was away) is not left failing
// every call at once until gRPC's backup poller gets to it.
#include <stdlib.h>
#include <unistd.h>

#include <memory>
#include <string>

#include <grpcpp/grpcpp.h>

#include "absl/status/status.h"
#include "client/client.h"
#include "common/channel.h"
#include "common/runtime_dir.h"
#include "common/server.h"
#include "gtest/gtest.h"
#include "registry/registry.h"
#include "registry/registry_service.h"

namespace pm {
namespace {

constexpr char kUnknownId[] = "00000000-0000-4000-8000-000000000000";

class ReconnectTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // Short: a socket path has room for 107 bytes, less than TEST_TMPDIR's.
    char dir[] = "/tmp/pm_reconnect.XXXXXX";
    ASSERT_NE(mkdtemp(dir), nullptr);
    dir_ = dir;
  }
  void TearDown() override {
    if (server_) {
      server_->Shutdown();
      server_->Wait();
    }
    unlink(SocketPath(dir_, Service::kRegistry).c_str());
    rmdir(dir_.c_str());
  }

  void ServeRegistry() {
    service_ = std::make_unique<registry::RegistryService>(&registry_);
    grpc::ServerBuilder builder;
    ConfigureServerBuilder(builder);
    builder.AddListeningPort(UnixAddress(SocketPath(dir_, Service::kRegistry)),
                             grpc::InsecureServerCredentials());
    builder.RegisterService(service_.get());
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
  }

  std::string dir_;
  registry::Registry registry_;
  std::unique_ptr<registry::RegistryService> service_;
  std::unique_ptr<grpc::Server> server_;
};

TEST_F(ReconnectTest, AStatusRightAfterTheRegistryIsBackReachesIt) {
  absl::StatusOr<std::unique_ptr<Client>> client = Client::ConnectLocal(dir_);
  ASSERT_TRUE(client.ok()) << client.status();
  // Away: the call fails, and the channel with it.
  EXPECT_EQ((*client)->GetStatus(kUnknownId).status().code(),
            absl::StatusCode::kUnavailable);

  ServeRegistry();

  // The registry answers (it knows no such process), not the channel's
  // last connection error.
  EXPECT_EQ((*client)->GetStatus(kUnknownId).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ((*client)->List().status().code(), absl::StatusCode::kOk);
}

}  // namespace
}  // namespace pm
