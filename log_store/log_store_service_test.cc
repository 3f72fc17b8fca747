// The LogStore service over a real unix socket: the Append protocol (acks,
// reconnects, errors) and StreamOutput readers (many followers, a stuck
// one, a cancelled one, errors, shutdown).
#include "log_store/log_store_service.h"

#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <grpc/grpc.h>
#include <grpcpp/grpcpp.h>

#include "absl/strings/str_format.h"
#include "common/output_arena.h"
#include "common/server.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "log_store/log_store.h"
#include "log_store/test_client.h"
#include "pm/internal/v1/internal.grpc.pb.h"
#include "segment_log/writer.h"

namespace pm::log_store {
namespace {

using ::pm::internal::v1::AppendResponse;
using ::pm::v1::OutputChunk;
using ::pm::v1::StreamOutputRequest;
using ::testing::HasSubstr;

constexpr OutputChunk::Stream kOut = OutputChunk::STREAM_STDOUT;
constexpr OutputChunk::Stream kErr = OutputChunk::STREAM_STDERR;

std::string Id(int n) {
  return absl::StrFormat("00000000-0000-4000-8000-%012d", n);
}

// What a process wrote: its bytes and, per byte, the stream it came from.
struct Output {
  struct Piece {
    uint64_t offset;
    OutputChunk::Stream stream;
    std::string data;
  };
  std::vector<Piece> pieces;
  std::string data;
  std::string streams;

  // About `total` bytes in pieces of pseudo-random sizes up to `max_piece`,
  // alternating stdout and stderr now and then.
  static Output Make(size_t total, size_t max_piece) {
    Output out;
    uint32_t seed = 12345;
    auto next = [&seed] { return seed = seed * 1103515245u + 12345u; };
    while (out.data.size() < total) {
      const size_t size = 1 + next() % max_piece;
      const OutputChunk::Stream stream = (next() >> 8) % 3 == 0 ? kErr : kOut;
      std::string piece(size, '\0');
      for (char& c : piece) c = static_cast<char>(next() >> 16);
      out.pieces.push_back({out.data.size(), stream, piece});
      out.data += piece;
      out.streams.append(size, static_cast<char>(stream));
    }
    return out;
  }
};

// What one follower saw, checked against the output as it went.
struct Followed {
  grpc::Status status;
  uint64_t bytes = 0;
  std::string mismatch;  // empty if every chunk was right
};

// Reads a StreamOutput to its end, checking each chunk: the offset follows
// on from the previous one with nothing dropped, and bytes and streams match
// `expected`.
Followed ReadAndCheck(pm::internal::v1::LogStore::Stub* stub,
                      const StreamOutputRequest& request,
                      const Output& expected, uint64_t start) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() +
                       std::chrono::seconds(120));
  std::unique_ptr<grpc::ClientReader<OutputChunk>> reader =
      stub->StreamOutput(&context, request);
  Followed followed;
  uint64_t cursor = start;
  OutputChunk chunk;
  while (reader->Read(&chunk)) {
    const size_t size = chunk.data().size();
    if (followed.mismatch.empty() &&
        (chunk.offset() != cursor || chunk.dropped_before() != 0 ||
         chunk.offset() + size > expected.data.size() ||
         chunk.data() != expected.data.substr(chunk.offset(), size) ||
         expected.streams.substr(chunk.offset(), size) !=
             std::string(size, static_cast<char>(chunk.stream())))) {
      followed.mismatch = absl::StrFormat(
          "chunk at offset %d (%d bytes, dropped_before %d) where %d was due",
          chunk.offset(), size, chunk.dropped_before(), cursor);
    }
    cursor = chunk.offset() + size;
    followed.bytes += size;
  }
  followed.status = reader->Finish();
  return followed;
}

// Keeps gRPC initialized for the whole binary. Otherwise the library shuts
// down whenever a test drops its last server and channel, and that shutdown
// can wait 10 s for gRPC's own I/O objects to go.
class GrpcEnvironment : public ::testing::Environment {
 public:
  void SetUp() override { grpc_init(); }
};
::testing::Environment* const grpc_environment =
    ::testing::AddGlobalTestEnvironment(new GrpcEnvironment);

class LogStoreServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char dir_template[] = "/tmp/pm_ls.XXXXXX";
    ASSERT_NE(mkdtemp(dir_template), nullptr);
    dir_ = dir_template;
    state_dir_ = dir_ + "/state";
    ASSERT_EQ(mkdir(state_dir_.c_str(), 0700), 0);
    StartServer(LogStore::Options{});
  }

  void TearDown() override {
    StopServer();
    std::filesystem::remove_all(dir_);
  }

  // Serves the test's state dir with `options` (its state_dir is set here).
  void StartServer(LogStore::Options options) {
    address_ = "unix:" + dir_ + "/log_store.sock";
    options.state_dir = state_dir_;
    absl::StatusOr<std::unique_ptr<LogStore>> store = LogStore::Create(options);
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = *std::move(store);
    service_ = std::make_unique<LogStoreService>(store_.get());
    grpc::ServerBuilder builder;
    ConfigureServerBuilder(builder);
    builder.AddListeningPort(address_, grpc::InsecureServerCredentials());
    builder.RegisterService(service_.get());
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    stub_ = pm::internal::v1::LogStore::NewStub(
        grpc::CreateChannel(address_, grpc::InsecureChannelCredentials()));
  }

  void StopServer() {
    if (server_ == nullptr) return;
    service_->Shutdown();
    server_->Shutdown();
    server_->Wait();
    server_.reset();
    service_.reset();
    store_.reset();
    unlink((dir_ + "/log_store.sock").c_str());
  }

  void RestartServer(const LogStore::Options& options) {
    StopServer();
    StartServer(options);
  }

  // A client on its own connection, so its flow control is its own.
  std::unique_ptr<pm::internal::v1::LogStore::Stub> SeparateStub(
      grpc::ChannelArguments args = {}) {
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    return pm::internal::v1::LogStore::NewStub(grpc::CreateCustomChannel(
        address_, grpc::InsecureChannelCredentials(), args));
  }

  // Opens `id`, appends `output` and closes it, checking the acks.
  void AppendAll(const std::string& id, const Output& output) {
    AppendClient append(stub_.get());
    ASSERT_TRUE(append.Open(id));
    for (const Output::Piece& piece : output.pieces) {
      ASSERT_TRUE(append.Data(piece.offset, piece.stream, piece.data));
    }
    ASSERT_TRUE(append.Close(output.data.size()));
    ASSERT_TRUE(append.WaitForAck(output.data.size(), /*closed=*/true));
    grpc::Status status = append.Finish();
    EXPECT_TRUE(status.ok()) << status.error_message();
  }

  std::string dir_;
  std::string state_dir_;
  std::string address_;
  std::unique_ptr<LogStore> store_;
  std::unique_ptr<LogStoreService> service_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<pm::internal::v1::LogStore::Stub> stub_;
};

TEST_F(LogStoreServiceTest, AcksArriveWithIncreasingEndOffsets) {
  AppendClient append(stub_.get());
  ASSERT_TRUE(append.Open(Id(1)));
  ASSERT_TRUE(append.WaitForAck(0));
  for (int i = 0; i < 200; ++i) {
    ASSERT_TRUE(append.Data(i * 1000, kOut, std::string(1000, 'a' + i % 26)));
  }
  ASSERT_TRUE(append.Close(200000));
  ASSERT_TRUE(append.WaitForAck(200000, /*closed=*/true));
  grpc::Status status = append.Finish();
  EXPECT_TRUE(status.ok()) << status.error_message();

  std::vector<AppendResponse> acks = append.acks();
  ASSERT_GE(acks.size(), 2u);
  EXPECT_EQ(acks.front().end_offset(), 0u);  // the answer to Open
  EXPECT_FALSE(acks.front().closed());
  for (size_t i = 1; i < acks.size(); ++i) {
    EXPECT_GE(acks[i].end_offset(), acks[i - 1].end_offset()) << "ack " << i;
    EXPECT_EQ(acks[i].end_offset() % 1000, 0u);  // whole messages only
  }
  EXPECT_EQ(acks.back().end_offset(), 200000u);
  EXPECT_TRUE(acks.back().closed());
}

TEST_F(LogStoreServiceTest, FiftyFollowersGetIdenticalBytesWhileDataArrives) {
  const std::string id = Id(2);
  const Output output = Output::Make(1 << 20, 20000);
  AppendClient append(stub_.get());
  ASSERT_TRUE(append.Open(id));
  ASSERT_TRUE(append.WaitForAck(0));

  constexpr int kFollowers = 50;
  std::vector<Followed> followed(kFollowers);
  std::vector<std::thread> threads;
  for (int i = 0; i < kFollowers; ++i) {
    threads.emplace_back([&, i] {
      followed[i] = ReadAndCheck(stub_.get(), OutputRequest(id, true, true),
                                 output, 0);
    });
  }
  for (const Output::Piece& piece : output.pieces) {
    ASSERT_TRUE(append.Data(piece.offset, piece.stream, piece.data));
  }
  ASSERT_TRUE(append.Close(output.data.size()));
  ASSERT_TRUE(append.WaitForAck(output.data.size(), /*closed=*/true));
  grpc::Status status = append.Finish();
  EXPECT_TRUE(status.ok()) << status.error_message();
  for (std::thread& thread : threads) thread.join();

  for (int i = 0; i < kFollowers; ++i) {
    EXPECT_TRUE(followed[i].status.ok())
        << "follower " << i << ": " << followed[i].status.error_message();
    EXPECT_EQ(followed[i].mismatch, "") << "follower " << i;
    EXPECT_EQ(followed[i].bytes, output.data.size()) << "follower " << i;
  }
  EXPECT_TRUE(service_->WaitForStreamCounts(0, 0, absl::Seconds(30)));
}

TEST_F(LogStoreServiceTest, FollowerAttachedBeforeAnyDataMissesNothing) {
  const std::string id = Id(3);
  AppendClient append(stub_.get());
  ASSERT_TRUE(append.Open(id));
  ASSERT_TRUE(append.WaitForAck(0));

  // From "now" on an empty log: attached once the headers are in.
  grpc::ClientContext context;
  std::unique_ptr<grpc::ClientReader<OutputChunk>> reader =
      stub_->StreamOutput(&context, OutputRequest(id, false, true));
  reader->WaitForInitialMetadata();

  const Output output = Output::Make(100000, 3000);
  for (const Output::Piece& piece : output.pieces) {
    ASSERT_TRUE(append.Data(piece.offset, piece.stream, piece.data));
  }
  ASSERT_TRUE(append.Close(output.data.size()));
  ASSERT_TRUE(append.WaitForAck(output.data.size(), true));
  EXPECT_TRUE(append.Finish().ok());

  std::string data;
  std::string streams;
  OutputChunk chunk;
  while (reader->Read(&chunk)) {
    EXPECT_EQ(chunk.offset(), data.size());
    EXPECT_EQ(chunk.dropped_before(), 0u);
    data += chunk.data();
    streams.append(chunk.data().size(), static_cast<char>(chunk.stream()));
  }
  grpc::Status status = reader->Finish();
  EXPECT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(data, output.data);
  EXPECT_EQ(streams, output.streams);
}

TEST_F(LogStoreServiceTest, FollowFromNowSkipsWhatWasWrittenBefore) {
  const std::string id = Id(4);
  AppendClient append(stub_.get());
  ASSERT_TRUE(append.Open(id));
  ASSERT_TRUE(append.Data(0, kOut, "before\n"));
  ASSERT_TRUE(append.WaitForAck(7));

  grpc::ClientContext context;
  std::unique_ptr<grpc::ClientReader<OutputChunk>> reader =
      stub_->StreamOutput(&context, OutputRequest(id, false, true));
  reader->WaitForInitialMetadata();
  ASSERT_TRUE(append.Data(7, kErr, "after\n"));
  ASSERT_TRUE(append.Close(13));
  EXPECT_TRUE(append.WaitForAck(13, true));

  OutputChunk chunk;
  ASSERT_TRUE(reader->Read(&chunk));
  EXPECT_EQ(chunk.offset(), 7u);
  EXPECT_EQ(chunk.dropped_before(), 0u);
  EXPECT_EQ(chunk.stream(), kErr);
  EXPECT_EQ(chunk.data(), "after\n");
  EXPECT_FALSE(reader->Read(&chunk));
  EXPECT_TRUE(reader->Finish().ok());
  EXPECT_TRUE(append.Finish().ok());
}

TEST_F(LogStoreServiceTest, StuckFollowerHoldsBackNeitherAppendNorOthers) {
  const std::string id = Id(5);
  AppendClient append(stub_.get());
  ASSERT_TRUE(append.Open(id));
  ASSERT_TRUE(append.WaitForAck(0));

  // A reader that never reads, with small flow-control windows so its
  // stream stalls after a few hundred KiB.
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_HTTP2_BDP_PROBE, 0);
  args.SetInt(GRPC_ARG_HTTP2_STREAM_LOOKAHEAD_BYTES, 64 << 10);
  std::unique_ptr<pm::internal::v1::LogStore::Stub> stuck_stub =
      SeparateStub(args);
  grpc::ClientContext stuck_context;
  std::unique_ptr<grpc::ClientReader<OutputChunk>> stuck =
      stuck_stub->StreamOutput(&stuck_context, OutputRequest(id, true, true));
  stuck->WaitForInitialMetadata();

  const Output output = Output::Make(16 << 20, 64 << 10);
  constexpr int kFollowers = 3;
  std::vector<Followed> followed(kFollowers);
  std::vector<std::thread> threads;
  for (int i = 0; i < kFollowers; ++i) {
    threads.emplace_back([&, i] {
      followed[i] = ReadAndCheck(stub_.get(), OutputRequest(id, true, true),
                                 output, 0);
    });
  }
  for (const Output::Piece& piece : output.pieces) {
    ASSERT_TRUE(append.Data(piece.offset, piece.stream, piece.data));
  }
  ASSERT_TRUE(append.Close(output.data.size()));
  ASSERT_TRUE(append.WaitForAck(output.data.size(), /*closed=*/true));
  grpc::Status status = append.Finish();
  EXPECT_TRUE(status.ok()) << status.error_message();
  for (std::thread& thread : threads) thread.join();
  for (int i = 0; i < kFollowers; ++i) {
    EXPECT_TRUE(followed[i].status.ok()) << followed[i].status.error_message();
    EXPECT_EQ(followed[i].mismatch, "");
    EXPECT_EQ(followed[i].bytes, output.data.size());
  }

  // The others are done; the stuck reader is still there, a write in
  // flight, until it goes.
  EXPECT_TRUE(service_->WaitForStreamCounts(0, 1, absl::Seconds(30)));
  stuck_context.TryCancel();
  EXPECT_EQ(stuck->Finish().error_code(), grpc::StatusCode::CANCELLED);
  EXPECT_TRUE(service_->WaitForStreamCounts(0, 0, absl::Seconds(30)));
}

TEST_F(LogStoreServiceTest, CancelledFollowerIsCleanedUp) {
  const std::string id = Id(6);
  AppendClient append(stub_.get());
  ASSERT_TRUE(append.Open(id));
  ASSERT_TRUE(append.Data(0, kOut, "x"));
  ASSERT_TRUE(append.WaitForAck(1));
  std::shared_ptr<OutputLog> log = store_->Find(id).value();

  grpc::ClientContext context;
  std::unique_ptr<grpc::ClientReader<OutputChunk>> reader =
      stub_->StreamOutput(&context, OutputRequest(id, true, true));
  OutputChunk chunk;
  ASSERT_TRUE(reader->Read(&chunk));
  EXPECT_EQ(chunk.data(), "x");
  EXPECT_TRUE(service_->WaitForStreamCounts(1, 1, absl::Seconds(30)));

  context.TryCancel();
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::CANCELLED);
  ASSERT_TRUE(service_->WaitForStreamCounts(1, 0, absl::Seconds(30)));
  EXPECT_EQ(log->watcher_count(), 0u);

  // The log goes on without it.
  ASSERT_TRUE(append.Data(1, kOut, "yz"));
  ASSERT_TRUE(append.Close(3));
  EXPECT_TRUE(append.WaitForAck(3, true));
  EXPECT_TRUE(append.Finish().ok());
  EXPECT_EQ(ReadOutput(stub_.get(), OutputRequest(id, true, false)).Data(),
            "xyz");
}

TEST_F(LogStoreServiceTest, ReconnectGetsTheEndAndResentDataIsDeduped) {
  const std::string id = Id(7);
  const Output output = Output::Make(3000, 500);
  {
    AppendClient first(stub_.get());
    ASSERT_TRUE(first.Open(id));
    ASSERT_TRUE(first.Data(0, kOut, output.data.substr(0, 1000)));
    ASSERT_TRUE(first.WaitForAck(1000));
    // The supervisor's connection breaks without a Close.
    first.Cancel();
  }
  ASSERT_TRUE(service_->WaitForStreamCounts(0, 0, absl::Seconds(30)));
  EXPECT_FALSE(store_->Find(id).value()->closed());

  AppendClient second(stub_.get());
  ASSERT_TRUE(second.Open(id));
  ASSERT_TRUE(second.WaitForAck(0));
  EXPECT_EQ(second.acks().front().end_offset(), 1000u);
  // Resent from an older offset, overlapping what the store holds.
  ASSERT_TRUE(second.Data(600, kOut, output.data.substr(600, 1400)));
  ASSERT_TRUE(second.Data(2000, kErr, output.data.substr(2000)));
  ASSERT_TRUE(second.Close(output.data.size()));
  ASSERT_TRUE(second.WaitForAck(output.data.size(), true));
  EXPECT_TRUE(second.Finish().ok());

  OutputRead read = ReadOutput(stub_.get(), OutputRequest(id, true, false));
  EXPECT_TRUE(read.status.ok()) << read.status.error_message();
  EXPECT_EQ(read.Data(), output.data);
  for (const OutputChunk& chunk : read.chunks) {
    EXPECT_EQ(chunk.dropped_before(), 0u);
  }
}

TEST_F(LogStoreServiceTest, StreamOutputErrors) {
  OutputRead malformed =
      ReadOutput(stub_.get(), OutputRequest("not-a-uuid", true, false));
  EXPECT_EQ(malformed.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(malformed.status.error_message(),
              HasSubstr("malformed process id"));

  OutputRead unknown = ReadOutput(stub_.get(), OutputRequest(Id(8), true, true));
  EXPECT_EQ(unknown.status.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_THAT(unknown.status.error_message(),
              HasSubstr("no output for process " + Id(8)));

  const Output output = Output::Make(100, 10);
  AppendAll(Id(9), output);
  StreamOutputRequest past = OutputRequest(Id(9), false, false);
  past.set_from_offset(1000);
  OutputRead out_of_range = ReadOutput(stub_.get(), past);
  EXPECT_EQ(out_of_range.status.error_code(), grpc::StatusCode::OUT_OF_RANGE);
  EXPECT_THAT(out_of_range.status.error_message(),
              HasSubstr("from_offset 1000 is past the end"));
  EXPECT_THAT(out_of_range.status.error_message(),
              HasSubstr(absl::StrFormat("(%d bytes so far)", output.data.size())));
}

TEST_F(LogStoreServiceTest, ResumeFromAnOffsetMidChunk) {
  const Output output = Output::Make(5000, 5000);
  AppendAll(Id(10), output);
  StreamOutputRequest resume = OutputRequest(Id(10), true, true);
  resume.set_from_offset(1234);
  Followed followed = ReadAndCheck(stub_.get(), resume, output, 1234);
  EXPECT_TRUE(followed.status.ok()) << followed.status.error_message();
  EXPECT_EQ(followed.mismatch, "");
  EXPECT_EQ(followed.bytes, output.data.size() - 1234);
}

TEST_F(LogStoreServiceTest, ReadWithoutFollowStopsAtTheEndAsOfTheCall) {
  const std::string id = Id(11);
  AppendClient append(stub_.get());
  ASSERT_TRUE(append.Open(id));
  ASSERT_TRUE(append.Data(0, kOut, "hello"));
  ASSERT_TRUE(append.WaitForAck(5));
  OutputRead read = ReadOutput(stub_.get(), OutputRequest(id, true, false));
  EXPECT_TRUE(read.status.ok()) << read.status.error_message();
  EXPECT_EQ(read.Data(), "hello");
  // "now" without follow: nothing, at once.
  OutputRead now = ReadOutput(stub_.get(), OutputRequest(id, false, false));
  EXPECT_TRUE(now.status.ok());
  EXPECT_TRUE(now.chunks.empty());
  EXPECT_TRUE(append.Finish().ok());
}

TEST_F(LogStoreServiceTest, RetentionAndGapsReachReadersAsDroppedBefore) {
  LogStore::Options options;
  options.max_bytes_per_process = 4000;
  options.segment_bytes = 1000;
  RestartServer(options);

  const std::string id = Id(12);
  AppendClient append(stub_.get());
  ASSERT_TRUE(append.Open(id));
  for (int i = 0; i < 30; ++i) {
    ASSERT_TRUE(append.Data(i * 1000, kOut, std::string(1000, 'a' + i % 26)));
  }
  ASSERT_TRUE(append.Gap(30000, 500));
  ASSERT_TRUE(append.Close(31000));  // short: 500 more lost
  ASSERT_TRUE(append.WaitForAck(31000, true));
  EXPECT_TRUE(append.Finish().ok());

  OutputRead read = ReadOutput(stub_.get(), OutputRequest(id, true, true));
  EXPECT_TRUE(read.status.ok()) << read.status.error_message();
  ASSERT_GE(read.chunks.size(), 2u);
  // The per-process cap kept the last few thousand bytes, in whole records.
  const uint64_t first = read.chunks.front().offset();
  EXPECT_GE(first, 26000u);
  EXPECT_EQ(first % 1000, 0u);
  EXPECT_EQ(read.chunks.front().dropped_before(), first);
  EXPECT_EQ(read.Data().size(), 30000u - first);
  const OutputChunk& last = read.chunks.back();
  EXPECT_EQ(last.offset(), 31000u);
  EXPECT_EQ(last.dropped_before(), 1000u);
  EXPECT_TRUE(last.data().empty());
}

// The log_store stops (a kill -9 or a restart: either way only what is on
// disk is left) while a process writes and a reader follows: the reader
// resumes with from_offset on the new log_store, with no byte twice and
// none missing, while the supervisor's stream resends from its last ack.
TEST_F(LogStoreServiceTest, FollowAcrossARestartResumesWithFromOffset) {
  const std::string id = Id(30);
  const Output output = Output::Make(200000, 5000);
  const size_t half = output.pieces.size() / 2;
  std::string seen;
  {
    AppendClient append(stub_.get());
    ASSERT_TRUE(append.Open(id));
    for (size_t i = 0; i < half; ++i) {
      const Output::Piece& piece = output.pieces[i];
      ASSERT_TRUE(append.Data(piece.offset, piece.stream, piece.data));
    }
    const uint64_t acked = output.pieces[half].offset;
    ASSERT_TRUE(append.WaitForAck(acked));
    grpc::ClientContext context;
    std::unique_ptr<grpc::ClientReader<OutputChunk>> follower =
        stub_->StreamOutput(&context, OutputRequest(id, true, true));
    OutputChunk chunk;
    while (seen.size() < acked && follower->Read(&chunk)) {
      ASSERT_EQ(chunk.offset(), seen.size());
      seen += chunk.data();
    }
    StopServer();
    EXPECT_EQ(follower->Finish().error_code(), grpc::StatusCode::UNAVAILABLE);
    append.Cancel();
  }
  StartServer(LogStore::Options{});

  // The follower comes back first, waiting at the offset after its last
  // byte; then the supervisor resends from an older ack.
  StreamOutputRequest resume = OutputRequest(id, false, true);
  resume.set_from_offset(seen.size());
  grpc::ClientContext context;
  std::unique_ptr<grpc::ClientReader<OutputChunk>> follower =
      stub_->StreamOutput(&context, resume);
  follower->WaitForInitialMetadata();
  AppendClient append(stub_.get());
  ASSERT_TRUE(append.Open(id));
  ASSERT_TRUE(append.WaitForAck(0));
  EXPECT_EQ(append.acks().front().end_offset(), output.pieces[half].offset);
  for (size_t i = half / 2; i < output.pieces.size(); ++i) {
    const Output::Piece& piece = output.pieces[i];
    ASSERT_TRUE(append.Data(piece.offset, piece.stream, piece.data));
  }
  ASSERT_TRUE(append.Close(output.data.size()));
  ASSERT_TRUE(append.WaitForAck(output.data.size(), /*closed=*/true));
  EXPECT_TRUE(append.Finish().ok());
  OutputChunk chunk;
  while (follower->Read(&chunk)) {
    EXPECT_EQ(chunk.offset(), seen.size());
    EXPECT_EQ(chunk.dropped_before(), 0u);
    seen += chunk.data();
  }
  grpc::Status status = follower->Finish();
  EXPECT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(seen, output.data);
}

// Output written by another process (the shim, through segment_log::Writer)
// reaches a follower through the store's inotify watch: nothing polls, so
// without the wake-up the follower would wait forever.
TEST_F(LogStoreServiceTest, OutputAnotherWriterAppendsIsFollowedThroughInotify) {
  const std::string id = Id(31);
  const std::string proc_dir = state_dir_ + "/procs/" + id;
  ASSERT_EQ(mkdir(proc_dir.c_str(), 0700), 0);
  absl::StatusOr<std::unique_ptr<segment_log::Writer>> writer =
      segment_log::Writer::Open(proc_dir + "/output", {});
  ASSERT_TRUE(writer.ok()) << writer.status();

  grpc::ClientContext context;
  std::unique_ptr<grpc::ClientReader<OutputChunk>> follower =
      stub_->StreamOutput(&context, OutputRequest(id, true, true));
  follower->WaitForInitialMetadata();
  ASSERT_TRUE(service_->WaitForStreamCounts(0, 1, absl::Seconds(30)));

  const Output output = Output::Make(300000, 7000);
  std::thread shim([&] {
    for (const Output::Piece& piece : output.pieces) {
      const segment_log::Stream stream = piece.stream == kErr
                                             ? segment_log::Stream::kStderr
                                             : segment_log::Stream::kStdout;
      ASSERT_TRUE((*writer)->Append(stream, piece.data, absl::Now()).ok());
    }
    ASSERT_TRUE((*writer)->Close(absl::Now()).ok());
  });
  std::string data;
  std::string streams;
  OutputChunk chunk;
  while (follower->Read(&chunk)) {
    EXPECT_EQ(chunk.offset(), data.size());
    EXPECT_EQ(chunk.dropped_before(), 0u);
    data += chunk.data();
    streams.append(chunk.data().size(), static_cast<char>(chunk.stream()));
  }
  shim.join();
  grpc::Status status = follower->Finish();
  EXPECT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(data, output.data);
  EXPECT_EQ(streams, output.streams);
  EXPECT_TRUE(service_->WaitForStreamCounts(0, 0, absl::Seconds(30)));
  EXPECT_EQ(store_->watched_dir_count(), 0u);
}

TEST_F(LogStoreServiceTest, AppendProtocolErrorsEndTheStream) {
  {
    AppendClient append(stub_.get());
    ASSERT_TRUE(append.Data(0, kOut, "x"));
    grpc::Status status = append.Finish();
    EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
    EXPECT_THAT(status.error_message(), HasSubstr("Data before Open"));
  }
  {
    AppendClient append(stub_.get());
    ASSERT_TRUE(append.Open("nope"));
    grpc::Status status = append.Finish();
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_THAT(status.error_message(), HasSubstr("malformed process id"));
  }
  {
    AppendClient append(stub_.get());
    ASSERT_TRUE(append.Open(Id(13)));
    ASSERT_TRUE(append.Data(0, kOut, "0123456789"));
    ASSERT_TRUE(append.Close(4));
    grpc::Status status = append.Finish();
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_THAT(status.error_message(), HasSubstr("close at offset 4"));
    // The acks before the error still came.
    EXPECT_EQ(append.acks().back().end_offset(), 10u);
  }
  {
    AppendClient append(stub_.get());
    ASSERT_TRUE(append.Open(Id(14)));
    ASSERT_TRUE(append.Data(0, OutputChunk::STREAM_UNSPECIFIED, "x"));
    grpc::Status status = append.Finish();
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_THAT(status.error_message(), HasSubstr("names no stream"));
  }
}

// Large pieces arrive as places in the supervisor's shared arena: the store
// says it mapped the arena and copies the bytes from there.
TEST_F(LogStoreServiceTest, DataInTheSharedArenaIsCopiedFromIt) {
  absl::StatusOr<std::shared_ptr<OutputArena>> arena = OutputArena::Create(4096, 4);
  ASSERT_TRUE(arena.ok()) << arena.status();
  std::optional<OutputArena::Slot> a = (*arena)->Take();
  std::optional<OutputArena::Slot> b = (*arena)->Take();
  ASSERT_TRUE(a && b);
  memset(a->data(), 'a', 4096);
  memcpy(b->data(), "tail\n", 5);

  AppendClient append(stub_.get());
  ASSERT_TRUE(append.OpenShared(Id(20), (*arena)->name()));
  ASSERT_TRUE(append.WaitForAck(0));
  EXPECT_TRUE(append.acks().front().shared_memory());
  ASSERT_TRUE(append.SharedData(0, kOut, a->offset(), 4096));
  ASSERT_TRUE(append.Data(4096, kErr, "inline\n"));  // both ways mix
  ASSERT_TRUE(append.SharedData(4103, kOut, b->offset(), 5));
  ASSERT_TRUE(append.Close(4108));
  ASSERT_TRUE(append.WaitForAck(4108, /*closed=*/true));
  EXPECT_TRUE(append.Finish().ok());
  // The slots may be reused now: what the store holds is in its files.
  memset(a->data(), 'X', 4096);

  OutputRead read = ReadOutput(stub_.get(), OutputRequest(Id(20), true, false));
  ASSERT_TRUE(read.status.ok()) << read.status.error_message();
  EXPECT_EQ(read.Data(), std::string(4096, 'a') + "inline\ntail\n");
  ASSERT_EQ(read.chunks.size(), 3u);
  EXPECT_EQ(read.chunks[1].stream(), kErr);
}

TEST_F(LogStoreServiceTest, AnArenaThatCannotBeMappedMeansInlineOnly) {
  AppendClient append(stub_.get());
  ASSERT_TRUE(append.OpenShared(Id(21), "/etc/passwd"));
  ASSERT_TRUE(append.WaitForAck(0));
  EXPECT_FALSE(append.acks().front().shared_memory());
  // Inline data is taken all the same...
  ASSERT_TRUE(append.Data(0, kOut, "fine\n"));
  ASSERT_TRUE(append.WaitForAck(5));
  // ...but a reference into an arena it does not have ends the stream.
  ASSERT_TRUE(append.SharedData(5, kOut, 0, 10));
  grpc::Status status = append.Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(status.error_message(), HasSubstr("no arena mapped"));
}

TEST_F(LogStoreServiceTest, APieceOutsideTheArenaEndsTheStream) {
  absl::StatusOr<std::shared_ptr<OutputArena>> arena = OutputArena::Create(4096, 1);
  ASSERT_TRUE(arena.ok()) << arena.status();
  AppendClient append(stub_.get());
  ASSERT_TRUE(append.OpenShared(Id(22), (*arena)->name()));
  ASSERT_TRUE(append.SharedData(0, kOut, 4000, 200));
  grpc::Status status = append.Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("outside the arena of 4096 bytes"));
}

TEST_F(LogStoreServiceTest, ShutdownEndsOpenStreamsWithUnavailable) {
  const std::string id = Id(15);
  AppendClient append(stub_.get());
  ASSERT_TRUE(append.Open(id));
  ASSERT_TRUE(append.WaitForAck(0));
  grpc::ClientContext context;
  std::unique_ptr<grpc::ClientReader<OutputChunk>> follower =
      stub_->StreamOutput(&context, OutputRequest(id, true, true));
  follower->WaitForInitialMetadata();
  ASSERT_TRUE(service_->WaitForStreamCounts(1, 1, absl::Seconds(30)));

  service_->Shutdown();
  OutputChunk chunk;
  EXPECT_FALSE(follower->Read(&chunk));
  grpc::Status status = follower->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_THAT(status.error_message(), HasSubstr("log_store shutting down"));
  status = append.Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_TRUE(service_->WaitForStreamCounts(0, 0, absl::Seconds(30)));

  // New streams are refused the same way.
  OutputRead late = ReadOutput(stub_.get(), OutputRequest(id, true, true));
  EXPECT_EQ(late.status.error_code(), grpc::StatusCode::UNAVAILABLE);
  AppendClient late_append(stub_.get());
  EXPECT_EQ(late_append.Finish().error_code(), grpc::StatusCode::UNAVAILABLE);
}

}  // namespace
}  // namespace pm::log_store
