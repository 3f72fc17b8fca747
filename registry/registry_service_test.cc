// The real RegistryService on a unix socket, called through a stub.
#include "registry/registry_service.h"

#include <stdlib.h>
#include <unistd.h>

#include <memory>
#include <string>

#include <grpcpp/grpcpp.h>

#include "common/raw_call_test_util.h"
#include "common/runtime_dir.h"
#include "common/server.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "pm/internal/v1/internal.grpc.pb.h"

namespace pm::registry {
namespace {

using ::pm::internal::v1::CreateRecordRequest;
using ::pm::internal::v1::UpdateRecordRequest;
using ::pm::v1::ProcessStatus;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr char kUnknownId[] = "0b7e3d1c-6a1f-4e8e-9f3c-2d6a5b4c3d2e";

class RegistryServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // Under /tmp, not $TEST_TMPDIR: a unix socket path must fit in 108 bytes.
    char dir_template[] = "/tmp/pm_registry.XXXXXX";
    ASSERT_NE(mkdtemp(dir_template), nullptr);
    dir_ = dir_template;
    socket_path_ = SocketPath(dir_, Service::kRegistry);

    RegistryOptions options;
    options.proc_root = ::testing::TempDir() + "/no_proc_here";
    registry_ = std::make_unique<Registry>(options);
    service_ = std::make_unique<RegistryService>(registry_.get());
    absl::StatusOr<std::unique_ptr<grpc::Server>> server =
        StartUnixServer(socket_path_, {service_.get()});
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
    stub_ = pm::internal::v1::Registry::NewStub(grpc::CreateChannel(
        UnixAddress(socket_path_), grpc::InsecureChannelCredentials()));
  }

  void TearDown() override {
    if (server_ != nullptr) server_->Shutdown();
    unlink(socket_path_.c_str());
    rmdir(dir_.c_str());
  }

  grpc::Status Create(const CreateRecordRequest& request,
                      ProcessStatus* status) {
    grpc::ClientContext context;
    return stub_->CreateRecord(&context, request, status);
  }
  grpc::Status Update(const UpdateRecordRequest& request,
                      ProcessStatus* status) {
    grpc::ClientContext context;
    return stub_->UpdateRecord(&context, request, status);
  }
  grpc::Status Get(const std::string& id, ProcessStatus* status) {
    grpc::ClientContext context;
    pm::v1::GetStatusRequest request;
    request.set_id(id);
    return stub_->GetStatus(&context, request, status);
  }
  grpc::Status List(pm::v1::ListResponse* response) {
    grpc::ClientContext context;
    return stub_->List(&context, pm::v1::ListRequest(), response);
  }

  std::string dir_;
  std::string socket_path_;
  std::unique_ptr<Registry> registry_;
  std::unique_ptr<RegistryService> service_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<pm::internal::v1::Registry::Stub> stub_;
};

CreateRecordRequest SleepRecord() {
  CreateRecordRequest request;
  request.mutable_spec()->set_executable("sleep");
  request.mutable_spec()->add_args("1000");
  (*request.mutable_spec()->mutable_env())["TOKEN"] = "secret";
  request.set_pid(4242);
  request.set_start_ticks(1);
  return request;
}

TEST_F(RegistryServiceTest, AnIdThatIsNotUtf8IsInvalidArgumentNamingIt) {
  auto channel = grpc::CreateChannel(UnixAddress(socket_path_),
                                     grpc::InsecureChannelCredentials());
  // GetStatusRequest{id: "caf\xe9"}, as a client that checks nothing sends it.
  for (const char* method : {"/pm.internal.v1.Registry/GetStatus",
                             "/pm.internal.v1.Registry/Wait"}) {
    grpc::Status status =
        RawUnaryCall(channel, method, WireBytes(1, "caf\xe9"));
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << method;
    EXPECT_EQ(status.error_message(), "id is not valid UTF-8 (byte 0xe9 at 3)");
  }
}

TEST_F(RegistryServiceTest, GetStatusAndWaitAnswerOverTheRawMethods) {
  CreateRecordRequest record = SleepRecord();
  record.mutable_spec()->clear_args();
  record.mutable_spec()->add_args_bytes("caf\xe9");
  ProcessStatus created;
  ASSERT_TRUE(Create(record, &created).ok());
  ProcessStatus got;
  grpc::Status rpc = Get(created.id(), &got);
  ASSERT_TRUE(rpc.ok()) << rpc.error_message();
  EXPECT_THAT(got.args_bytes(), ElementsAre("caf\xe9"));
  EXPECT_EQ(Get(kUnknownId, &got).error_code(), grpc::StatusCode::NOT_FOUND);

  UpdateRecordRequest exited;
  exited.set_id(created.id());
  exited.set_state(ProcessStatus::STATE_EXITED);
  exited.mutable_end()->set_exit_code(3);
  ProcessStatus updated;
  ASSERT_TRUE(Update(exited, &updated).ok());
  grpc::ClientContext context;
  pm::v1::WaitRequest wait;
  wait.set_id(created.id());
  ProcessStatus ended;
  rpc = stub_->Wait(&context, wait, &ended);
  ASSERT_TRUE(rpc.ok()) << rpc.error_message();
  EXPECT_EQ(ended.exit_code(), 3);
  EXPECT_THAT(ended.args_bytes(), ElementsAre("caf\xe9"));
}

TEST_F(RegistryServiceTest, CreateGetListUpdateOverTheSocket) {
  ProcessStatus created;
  grpc::Status rpc = Create(SleepRecord(), &created);
  ASSERT_TRUE(rpc.ok()) << rpc.error_message();
  EXPECT_EQ(created.state(), ProcessStatus::STATE_RUNNING);
  EXPECT_EQ(created.executable(), "sleep");
  EXPECT_THAT(created.args(), ElementsAre("1000"));

  ProcessStatus got;
  rpc = Get(created.id(), &got);
  ASSERT_TRUE(rpc.ok()) << rpc.error_message();
  EXPECT_EQ(got.id(), created.id());
  EXPECT_EQ(got.pid(), 4242);

  ProcessStatus second;
  ASSERT_TRUE(Create(SleepRecord(), &second).ok());
  pm::v1::ListResponse list;
  rpc = List(&list);
  ASSERT_TRUE(rpc.ok()) << rpc.error_message();
  ASSERT_EQ(list.processes_size(), 2);
  EXPECT_EQ(list.processes(0).id(), second.id());
  EXPECT_EQ(list.processes(1).id(), created.id());

  UpdateRecordRequest exited;
  exited.set_id(created.id());
  exited.set_state(ProcessStatus::STATE_EXITED);
  exited.mutable_end()->set_exit_code(3);
  ProcessStatus ended;
  rpc = Update(exited, &ended);
  ASSERT_TRUE(rpc.ok()) << rpc.error_message();
  EXPECT_EQ(ended.state(), ProcessStatus::STATE_EXITED);
  EXPECT_EQ(ended.exit_code(), 3);

  rpc = Get(created.id(), &got);
  ASSERT_TRUE(rpc.ok()) << rpc.error_message();
  EXPECT_EQ(got.state(), ProcessStatus::STATE_EXITED);
  EXPECT_EQ(got.exit_code(), 3);
}

TEST_F(RegistryServiceTest, AnUnknownIdIsNotFound) {
  ProcessStatus status;
  grpc::Status rpc = Get(kUnknownId, &status);
  EXPECT_EQ(rpc.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_THAT(rpc.error_message(),
              HasSubstr(std::string("no process with id ") + kUnknownId));

  UpdateRecordRequest stop;
  stop.set_id(kUnknownId);
  stop.set_state(ProcessStatus::STATE_STOPPING);
  rpc = Update(stop, &status);
  EXPECT_EQ(rpc.error_code(), grpc::StatusCode::NOT_FOUND);
}

TEST_F(RegistryServiceTest, ErrorsKeepTheirCodeAndMessage) {
  ProcessStatus status;
  grpc::Status rpc = Get("not-a-uuid", &status);
  EXPECT_EQ(rpc.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(rpc.error_message(), HasSubstr("malformed process id"));

  CreateRecordRequest no_pid = SleepRecord();
  no_pid.set_pid(0);
  rpc = Create(no_pid, &status);
  EXPECT_EQ(rpc.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(rpc.error_message(), HasSubstr("pid must be > 0"));

  ProcessStatus created;
  ASSERT_TRUE(Create(SleepRecord(), &created).ok());
  UpdateRecordRequest exited;
  exited.set_id(created.id());
  exited.set_state(ProcessStatus::STATE_EXITED);
  ASSERT_TRUE(Update(exited, &status).ok());
  UpdateRecordRequest revive = exited;
  revive.set_state(ProcessStatus::STATE_RUNNING);
  rpc = Update(revive, &status);
  EXPECT_EQ(rpc.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(rpc.error_message(), HasSubstr("cannot become RUNNING"));
}

TEST_F(RegistryServiceTest, TheEnvDoesNotCrossTheWire) {
  ProcessStatus created;
  ASSERT_TRUE(Create(SleepRecord(), &created).ok());
  pm::v1::ListResponse list;
  ASSERT_TRUE(List(&list).ok());
  EXPECT_THAT(created.SerializeAsString(), testing::Not(HasSubstr("secret")));
  EXPECT_THAT(list.SerializeAsString(), testing::Not(HasSubstr("secret")));
}

}  // namespace
}  // namespace pm::registry

namespace pm::registry {
namespace {

using ::pm::internal::v1::RecordOp;
using ::pm::internal::v1::RecordOpResult;

// Creates and updates on one SyncRecords stream are applied in order and
// answered by tag with what the unary calls would return, errors included;
// the stream ends cleanly when the sender half-closes.
TEST_F(RegistryServiceTest, SyncRecordsAppliesOpsInOrderAndAnswersEachByTag) {
  grpc::ClientContext context;
  auto stream = stub_->SyncRecords(&context);
  RecordOp create;
  create.set_tag(7);
  *create.mutable_create() = SleepRecord();
  create.mutable_create()->set_id("3b0f6a8e-1c2d-4e5f-8a9b-0c1d2e3f4a5b");
  RecordOp update;
  update.set_tag(8);
  update.mutable_update()->set_id(create.create().id());
  update.mutable_update()->set_state(ProcessStatus::STATE_EXITED);
  update.mutable_update()->mutable_end()->set_exit_code(3);
  RecordOp unknown;
  unknown.set_tag(9);
  unknown.mutable_update()->set_id(kUnknownId);
  unknown.mutable_update()->set_state(ProcessStatus::STATE_EXITED);
  RecordOp empty;
  empty.set_tag(10);
  // All sent before any answer is read: the registry does not wait for the
  // sender to read.
  ASSERT_TRUE(stream->Write(create));
  ASSERT_TRUE(stream->Write(update));
  ASSERT_TRUE(stream->Write(unknown));
  ASSERT_TRUE(stream->Write(empty));
  ASSERT_TRUE(stream->WritesDone());

  RecordOpResult result;
  ASSERT_TRUE(stream->Read(&result));
  EXPECT_EQ(result.tag(), 7u);
  EXPECT_EQ(result.code(), 0);
  EXPECT_EQ(result.record().id(), create.create().id());
  EXPECT_EQ(result.record().state(), ProcessStatus::STATE_RUNNING);
  ASSERT_TRUE(stream->Read(&result));
  EXPECT_EQ(result.tag(), 8u);
  EXPECT_EQ(result.code(), 0);
  EXPECT_EQ(result.record().state(), ProcessStatus::STATE_EXITED);
  EXPECT_EQ(result.record().exit_code(), 3);
  ASSERT_TRUE(stream->Read(&result));
  EXPECT_EQ(result.tag(), 9u);
  EXPECT_EQ(result.code(), static_cast<int>(grpc::StatusCode::NOT_FOUND));
  EXPECT_THAT(result.message(), HasSubstr(kUnknownId));
  ASSERT_TRUE(stream->Read(&result));
  EXPECT_EQ(result.tag(), 10u);
  EXPECT_EQ(result.code(), static_cast<int>(grpc::StatusCode::INVALID_ARGUMENT));
  EXPECT_FALSE(stream->Read(&result));
  grpc::Status finished = stream->Finish();
  EXPECT_TRUE(finished.ok()) << finished.error_message();

  ProcessStatus got;
  ASSERT_TRUE(Get(create.create().id(), &got).ok());
  EXPECT_EQ(got.exit_code(), 3);
  EXPECT_TRUE(service_->WaitForSyncStreams(0, absl::Seconds(30)));
}

// Shutdown ends an open stream with UNAVAILABLE (the server's own shutdown
// would otherwise wait for it) and refuses new ones.
TEST_F(RegistryServiceTest, ShutdownEndsOpenSyncStreams) {
  grpc::ClientContext context;
  auto stream = stub_->SyncRecords(&context);
  RecordOp create;
  create.set_tag(1);
  *create.mutable_create() = SleepRecord();
  ASSERT_TRUE(stream->Write(create));
  RecordOpResult result;
  ASSERT_TRUE(stream->Read(&result));  // the stream is up and tracked
  EXPECT_EQ(service_->sync_stream_count(), 1u);
  service_->Shutdown();
  EXPECT_FALSE(stream->Read(&result));
  grpc::Status finished = stream->Finish();
  EXPECT_EQ(finished.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_THAT(finished.error_message(), HasSubstr("shutting down"));

  grpc::ClientContext late_context;
  auto late = stub_->SyncRecords(&late_context);
  EXPECT_FALSE(late->Read(&result));
  EXPECT_EQ(late->Finish().error_code(), grpc::StatusCode::UNAVAILABLE);
}

// A watcher gets the events of what happens after it began; one that
// reconnects with the last sequence it saw gets what it missed meanwhile,
// with no gap and no repeat.
TEST_F(RegistryServiceTest, WatchStreamsEventsAndResumesAfterADisconnect) {
  ProcessStatus first;
  ASSERT_TRUE(Create(SleepRecord(), &first).ok());
  auto context = std::make_unique<grpc::ClientContext>();
  // From the newest event on (a watch without after_sequence would begin
  // wherever the registry is when it attaches).
  pm::v1::WatchRequest from_now;
  from_now.set_after_sequence(registry_->last_event_sequence());
  auto watch = stub_->Watch(context.get(), from_now);
  ProcessStatus second;
  ASSERT_TRUE(Create(SleepRecord(), &second).ok());
  ProcessStatus extra;
  ASSERT_TRUE(Create(SleepRecord(), &extra).ok());
  pm::v1::Event event;
  ASSERT_TRUE(watch->Read(&event));
  EXPECT_EQ(event.status().id(), second.id());
  ASSERT_TRUE(watch->Read(&event));
  EXPECT_EQ(event.status().id(), extra.id());
  EXPECT_EQ(event.kind(), pm::v1::Event::KIND_STARTED);
  EXPECT_EQ(event.missed_before(), 0u);
  EXPECT_TRUE(event.status().has_started_at());
  const uint64_t seen = event.sequence();
  context->TryCancel();
  while (watch->Read(&event)) {
  }
  watch->Finish();

  // While no one watches: an end and a new start.
  UpdateRecordRequest exited;
  exited.set_id(first.id());
  exited.set_state(ProcessStatus::STATE_EXITED);
  ASSERT_TRUE(Update(exited, &first).ok());
  ProcessStatus third;
  ASSERT_TRUE(Create(SleepRecord(), &third).ok());

  grpc::ClientContext resumed_context;
  pm::v1::WatchRequest resume;
  resume.set_after_sequence(seen);
  auto resumed = stub_->Watch(&resumed_context, resume);
  ASSERT_TRUE(resumed->Read(&event));
  EXPECT_EQ(event.sequence(), seen + 1);
  EXPECT_EQ(event.kind(), pm::v1::Event::KIND_EXITED);
  EXPECT_EQ(event.status().id(), first.id());
  ASSERT_TRUE(resumed->Read(&event));
  EXPECT_EQ(event.sequence(), seen + 2);
  EXPECT_EQ(event.kind(), pm::v1::Event::KIND_STARTED);
  EXPECT_EQ(event.status().id(), third.id());
  // And then live.
  UpdateRecordRequest stopping;
  stopping.set_id(third.id());
  stopping.set_state(ProcessStatus::STATE_STOPPING);
  ASSERT_TRUE(Update(stopping, &third).ok());
  ASSERT_TRUE(resumed->Read(&event));
  EXPECT_EQ(event.sequence(), seen + 3);
  EXPECT_EQ(event.kind(), pm::v1::Event::KIND_STOPPING);

  // Shutdown ends it.
  service_->Shutdown();
  EXPECT_FALSE(resumed->Read(&event));
  EXPECT_EQ(resumed->Finish().error_code(), grpc::StatusCode::UNAVAILABLE);
}

TEST_F(RegistryServiceTest, AWatchWithABadFilterIsRefused) {
  grpc::ClientContext context;
  pm::v1::WatchRequest bad;
  bad.set_id("not-an-id");
  auto watch = stub_->Watch(&context, bad);
  pm::v1::Event event;
  EXPECT_FALSE(watch->Read(&event));
  EXPECT_EQ(watch->Finish().error_code(), grpc::StatusCode::INVALID_ARGUMENT);
}

}  // namespace
}  // namespace pm::registry
