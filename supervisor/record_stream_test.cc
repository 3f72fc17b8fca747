// RecordStream against a real registry service over a unix socket, and
// against one that reads ops and never answers: answers come back by tag
// with the registry's own errors, a silent registry costs an op its
// timeout (and the next op gets a new stream), and a registry that goes
// away fails what is in flight and is used again once it is back.
#include "supervisor/record_stream.h"

#include <stdlib.h>
#include <unistd.h>

#include <memory>
#include <string>
#include <thread>

#include <grpc/grpc.h>
#include <grpcpp/grpcpp.h>

#include "absl/synchronization/notification.h"
#include "common/channel.h"
#include "common/runtime_dir.h"
#include "common/server.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "registry/registry.h"
#include "registry/registry_service.h"
#include "supervisor/event_loop.h"

namespace pm::supervisor {
namespace {

using ::pm::internal::v1::CreateRecordRequest;
using ::pm::internal::v1::RecordOp;
using ::pm::internal::v1::RecordOpResult;
using ::pm::internal::v1::UpdateRecordRequest;
using ::pm::v1::ProcessStatus;

constexpr char kId[] = "5c1e2d3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f";

CreateRecordRequest Record(const std::string& id) {
  CreateRecordRequest request;
  request.set_id(id);
  request.mutable_spec()->set_executable("/bin/sleep");
  request.set_pid(4242);
  request.set_start_ticks(1);
  return request;
}

// Reads every op and answers none, nor ends the stream when the sender
// half-closes: a registry that is stuck.
class SilentRegistry final : public pm::internal::v1::Registry::CallbackService {
 public:
  grpc::ServerBidiReactor<RecordOp, RecordOpResult>* SyncRecords(
      grpc::CallbackServerContext*) override {
    class Reactor final : public grpc::ServerBidiReactor<RecordOp, RecordOpResult> {
     public:
      explicit Reactor(SilentRegistry* owner) : owner_(owner) { StartRead(&op_); }
      void OnReadDone(bool ok) override {
        if (ok) {
          owner_->ops_read.fetch_add(1);
          if (!owner_->op_read.HasBeenNotified()) owner_->op_read.Notify();
          StartRead(&op_);
        }
        // A half-close is not answered either: only a cancellation (the
        // sender's, or the server's at shutdown) ends the stream.
      }
      void OnCancel() override {
        owner_->cancelled.fetch_add(1);
        Finish(grpc::Status(grpc::StatusCode::CANCELLED, "cancelled"));
      }
      void OnDone() override { delete this; }

     private:
      SilentRegistry* owner_;
      RecordOp op_;
    };
    streams.fetch_add(1);
    return new Reactor(this);
  }
  std::atomic<int> streams{0}, ops_read{0}, cancelled{0};
  absl::Notification op_read;  // the first
};

class RecordStreamTest : public ::testing::Test {
 protected:
  void SetUp() override {
    grpc_init();
    char dir_template[] = "/tmp/pm_rs.XXXXXX";
    ASSERT_NE(mkdtemp(dir_template), nullptr);
    dir_ = dir_template;
    socket_ = SocketPath(dir_, Service::kRegistry);
    ASSERT_TRUE(loop_.Init().ok());
    thread_ = std::thread([this] { loop_.Run(); });
    stub_ = pm::internal::v1::Registry::NewStub(UnixChannel(socket_));
  }

  void TearDown() override {
    if (records_) records_->Close();
    StopServer();
    loop_.Quit();
    thread_.join();
    records_.reset();  // after the loop: its timer refers to it
    std::string rm = "rm -rf " + dir_;
    EXPECT_EQ(system(rm.c_str()), 0);
    grpc_shutdown();
  }

  void ServeRegistry() {
    registry_ = std::make_unique<registry::Registry>();
    service_ = std::make_unique<registry::RegistryService>(registry_.get());
    Serve(service_.get());
  }
  void Serve(grpc::Service* service) {
    grpc::ServerBuilder builder;
    ConfigureServerBuilder(builder);
    builder.AddListeningPort(UnixAddress(socket_), grpc::InsecureServerCredentials());
    builder.RegisterService(service);
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
  }
  void StopServer() {
    if (server_ == nullptr) return;
    if (service_) service_->Shutdown();
    server_->Shutdown(std::chrono::system_clock::now());
    server_->Wait();
    server_.reset();
    unlink(socket_.c_str());
  }

  void MakeStream(absl::Duration timeout) {
    records_ = std::make_unique<RecordStream>(&loop_, stub_.get(), timeout);
  }

  // Sends on the loop thread, waits for the answer.
  absl::StatusOr<ProcessStatus> Create(CreateRecordRequest request) {
    return Await([this, request](RecordStream::Done done) {
      records_->Create(request, std::move(done));
    });
  }
  absl::StatusOr<ProcessStatus> Update(UpdateRecordRequest request) {
    return Await([this, request](RecordStream::Done done) {
      records_->Update(request, std::move(done));
    });
  }
  absl::StatusOr<ProcessStatus> Await(
      std::function<void(RecordStream::Done)> send) {
    auto done = std::make_shared<absl::Notification>();
    auto result = std::make_shared<absl::StatusOr<ProcessStatus>>();
    loop_.Post([send = std::move(send), done, result] {
      send([done, result](absl::StatusOr<ProcessStatus> r) {
        *result = std::move(r);
        done->Notify();
      });
    });
    EXPECT_TRUE(done->WaitForNotificationWithTimeout(absl::Seconds(30)));
    return *result;
  }

  std::string dir_, socket_;
  EventLoop loop_;
  std::thread thread_;
  std::unique_ptr<pm::internal::v1::Registry::Stub> stub_;
  std::unique_ptr<registry::Registry> registry_;
  std::unique_ptr<registry::RegistryService> service_;
  SilentRegistry silent_;  // outlives the server: TearDown stops it first
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<RecordStream> records_;
};

TEST_F(RecordStreamTest, CreatesAndUpdatesShareOneStreamAndKeepTheRegistrysErrors) {
  ServeRegistry();
  MakeStream(absl::Seconds(30));
  absl::StatusOr<ProcessStatus> created = Create(Record(kId));
  ASSERT_TRUE(created.ok()) << created.status();
  EXPECT_EQ(created->id(), kId);
  EXPECT_EQ(created->state(), ProcessStatus::STATE_RUNNING);

  UpdateRecordRequest exited;
  exited.set_id(kId);
  exited.set_state(ProcessStatus::STATE_EXITED);
  exited.mutable_end()->set_exit_code(5);
  absl::StatusOr<ProcessStatus> ended = Update(exited);
  ASSERT_TRUE(ended.ok()) << ended.status();
  EXPECT_EQ(ended->exit_code(), 5);

  absl::StatusOr<ProcessStatus> again = Create(Record(kId));
  EXPECT_EQ(again.status().code(), absl::StatusCode::kAlreadyExists) << again.status();
  EXPECT_EQ(service_->sync_stream_count(), 1u);  // one stream for all three

  records_->Close();  // half-closed: the registry ends the stream
  EXPECT_TRUE(service_->WaitForSyncStreams(0, absl::Seconds(30)));
  EXPECT_EQ(Create(Record(kId)).status().code(), absl::StatusCode::kUnavailable);
}

TEST_F(RecordStreamTest, ASilentRegistryCostsAnOpItsTimeoutAndTheStream) {
  SilentRegistry& silent = silent_;
  Serve(&silent);
  MakeStream(absl::Milliseconds(200));
  absl::StatusOr<ProcessStatus> created = Create(Record(kId));
  EXPECT_EQ(created.status().code(), absl::StatusCode::kDeadlineExceeded)
      << created.status();
  EXPECT_THAT(created.status().message(), ::testing::HasSubstr("did not answer within"));
  // The next op goes out on a new stream.
  EXPECT_EQ(Create(Record(kId)).status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_EQ(silent.streams.load(), 2);
  EXPECT_EQ(silent.ops_read.load(), 2);
}

// A shutdown closes the stream, which waits for the registry's answers; a
// stuck registry would hold the shutdown, so Cancel ends it and fails what
// is unanswered at once.
TEST_F(RecordStreamTest, CancelEndsAClosedStreamThatAStuckRegistryNeverEnds) {
  SilentRegistry& silent = silent_;
  Serve(&silent);
  MakeStream(absl::Hours(1));
  auto done = std::make_shared<absl::Notification>();
  auto result = std::make_shared<absl::StatusOr<ProcessStatus>>();
  loop_.Post([this, done, result] {
    records_->Create(Record(kId), [done, result](absl::StatusOr<ProcessStatus> r) {
      *result = std::move(r);
      done->Notify();
    });
  });
  ASSERT_TRUE(silent.op_read.WaitForNotificationWithTimeout(absl::Seconds(30)));
  records_->Close();
  EXPECT_FALSE(done->HasBeenNotified());
  records_->Cancel();
  ASSERT_TRUE(done->WaitForNotificationWithTimeout(absl::Seconds(30)));
  EXPECT_EQ(result->status().code(), absl::StatusCode::kUnavailable) << result->status();
}

TEST_F(RecordStreamTest, ARegistryThatGoesAwayFailsOpsAndIsUsedAgainWhenBack) {
  ServeRegistry();
  MakeStream(absl::Seconds(30));
  ASSERT_TRUE(Create(Record(kId)).ok());
  StopServer();  // ends the stream with UNAVAILABLE
  absl::StatusOr<ProcessStatus> meanwhile =
      Create(Record("6d2f3e4a-5b6c-4d7e-8f9a-0b1c2d3e4f5a"));
  EXPECT_EQ(meanwhile.status().code(), absl::StatusCode::kUnavailable)
      << meanwhile.status();
  ServeRegistry();  // a new registry, empty
  // The channel reconnects within its backoff (at most a second here);
  // until then an op fails fast.
  absl::StatusOr<ProcessStatus> back;
  for (int i = 0; i < 100; ++i) {
    back = Create(Record(kId));
    if (back.ok()) break;
    ASSERT_EQ(back.status().code(), absl::StatusCode::kUnavailable) << back.status();
    ASSERT_TRUE(stub_ != nullptr);
    grpc::ClientContext context;  // wait for the channel, not for time
    context.set_wait_for_ready(true);
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    pm::v1::ListResponse list;
    stub_->List(&context, pm::v1::ListRequest(), &list);
  }
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->id(), kId);
}

}  // namespace
}  // namespace pm::supervisor
