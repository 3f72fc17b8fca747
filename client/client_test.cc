// The Library refuses what a service could not parse before sending it. No
// service runs here: a request that got through would fail UNAVAILABLE.
#include <google/protobuf/stubs/logging.h>
#include <stdlib.h>
#include <unistd.h>

#include <atomic>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "client/client.h"
#include "gmock/gmock.h"
#include "absl/synchronization/notification.h"
#include "gtest/gtest.h"

namespace pm {
namespace {

using ::testing::HasSubstr;

std::atomic<int> protobuf_log_lines{0};
void CountProtobufLog(google::protobuf::LogLevel, const char*, int,
                      const std::string&) {
  ++protobuf_log_lines;
}

class ClientChecksTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // Short: a socket path has room for 107 bytes, less than TEST_TMPDIR's.
    char dir[] = "/tmp/pm_client.XXXXXX";
    ASSERT_NE(mkdtemp(dir), nullptr);
    dir_ = dir;
    absl::StatusOr<std::unique_ptr<Client>> client = Client::ConnectLocal(dir_);
    ASSERT_TRUE(client.ok()) << client.status();
    client_ = *std::move(client);
    previous_ = google::protobuf::SetLogHandler(CountProtobufLog);
    protobuf_log_lines = 0;
  }
  void TearDown() override {
    google::protobuf::SetLogHandler(previous_);
    EXPECT_EQ(rmdir(dir_.c_str()), 0);
    // Refused before serializing: protobuf had nothing to complain about.
    EXPECT_EQ(protobuf_log_lines.load(), 0);
  }

  static void ExpectRefused(const absl::Status& status,
                            const std::string& message) {
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
    EXPECT_EQ(status.message(), message);
  }

  std::string dir_;  // no services in it
  std::unique_ptr<Client> client_;
  google::protobuf::LogHandler* previous_ = nullptr;
};

constexpr char kLatin1Id[] = "caf\xe9";

TEST_F(ClientChecksTest, AnIdThatIsNotUtf8IsRefusedBeforeSending) {
  const std::string why = "id is not valid UTF-8 (byte 0xe9 at 3)";
  ExpectRefused(client_->GetStatus(kLatin1Id).status(), why);
  ExpectRefused(client_->Wait(kLatin1Id, absl::Seconds(5)).status(), why);
  pm::v1::StopRequest stop;
  stop.set_id(kLatin1Id);
  ExpectRefused(client_->Stop(stop).status(), why);
  pm::v1::StreamOutputRequest read;
  read.set_id(kLatin1Id);
  std::unique_ptr<OutputStream> stream = client_->StreamOutput(read);
  pm::v1::OutputChunk chunk;
  EXPECT_FALSE(stream->Next(&chunk));
  ExpectRefused(stream->Finish(), why);

  // The callback forms (the gateway's) refuse without starting a call.
  grpc::ClientContext context;
  pm::v1::WaitRequest wait;
  wait.set_id(kLatin1Id);
  pm::v1::ProcessStatus response;
  bool called = false;
  ExpectRefused(client_->WaitAsync(&context, &wait, &response,
                                   [&](grpc::Status) { called = true; }),
                why);
  ExpectRefused(client_->StreamOutputAsync(&context, &read, nullptr), why);
  EXPECT_FALSE(called);
}

TEST_F(ClientChecksTest, AStartWithTextThatIsNotUtf8IsRefusedNamingTheBytesForm) {
  pm::v1::StartRequest start;
  start.set_executable("printf");
  start.add_args("%s");
  start.add_args("caf\xe9");
  ExpectRefused(client_->Start(start).status(),
                "args[1] is not valid UTF-8 (byte 0xe9 at 3); send it in "
                "args_bytes");
  start.clear_args();
  (*start.mutable_env())["NOM"] = "caf\xe9";
  ExpectRefused(client_->StartWithOptions(start, StartOptions()).status(),
                "env[\"NOM\"] is not valid UTF-8 (byte 0xe9 at 3); send it in "
                "env_bytes");
  start.clear_env();
  start.set_working_dir("/tmp/caf\xe9");
  grpc::ClientContext context;
  pm::v1::StartResponse response;
  ExpectRefused(client_->StartAsync(&context, &start, StartOptions(), &response,
                                    [](grpc::Status) {}),
                "working_dir is not valid UTF-8 (byte 0xe9 at 8); send it in "
                "working_dir_bytes");
}

// The callback forms the gateway serves every call with: checked, and
// passed on (with no service there, they end UNAVAILABLE, not UNIMPLEMENTED).
TEST_F(ClientChecksTest, TheCallbackFormsAreCheckedAndPassedOn) {
  pm::v1::StopRequest stop;
  stop.set_id("caf\xe9");
  pm::v1::StopResponse stopped;
  grpc::ClientContext stop_context;
  ExpectRefused(client_->StopAsync(&stop_context, &stop, &stopped, [](grpc::Status) {}),
                "id is not valid UTF-8 (byte 0xe9 at 3)");
  pm::v1::GetStatusRequest get;
  get.set_id("caf\xe9");
  pm::v1::ProcessStatus status;
  grpc::ClientContext get_context;
  ExpectRefused(client_->GetStatusAsync(&get_context, &get, &status, [](grpc::Status) {}),
                "id is not valid UTF-8 (byte 0xe9 at 3)");

  absl::Notification listed;
  grpc::Status list_status;
  pm::v1::ListRequest list;
  pm::v1::ListResponse listing;
  grpc::ClientContext list_context;
  ASSERT_TRUE(client_
                  ->ListAsync(&list_context, &list, &listing,
                              [&](grpc::Status s) {
                                list_status = s;
                                listed.Notify();
                              })
                  .ok());
  ASSERT_TRUE(listed.WaitForNotificationWithTimeout(absl::Seconds(30)));
  EXPECT_EQ(list_status.error_code(), grpc::StatusCode::UNAVAILABLE)
      << list_status.error_message();
}

TEST_F(ClientChecksTest, WhatIsValidIsSent) {
  // The bytes forms carry anything: the request goes out (and, with no
  // supervisor, fails as unreachable).
  pm::v1::StartRequest start;
  start.set_executable("printf");
  start.add_args_bytes("caf\xe9");
  start.set_working_dir_bytes("/tmp/caf\xe9");
  absl::Status sent = client_->Start(start).status();
  EXPECT_EQ(sent.code(), absl::StatusCode::kUnavailable) << sent;
  EXPECT_THAT(sent.message(), HasSubstr("supervisor is unavailable"));
  absl::Status status =
      client_->GetStatus("00000000-0000-4000-8000-000000000000").status();
  EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable) << status;
  EXPECT_THAT(status.message(), HasSubstr("registry is unavailable"));
}

}  // namespace
}  // namespace pm
