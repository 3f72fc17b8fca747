// The LogStore service over a real unix socket: StreamOutput readers of
// output a shim writes (many followers, a stuck one, a cancelled one, a
// writer in another process, an output that ended and lost every segment,
// a removed directory, errors, shutdown).
#include "log_store/log_store_service.h"

#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
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
#include "common/server.h"
#include "common/state_layout.h"
#include "common/proto_time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "log_store/log_store.h"
#include "log_store/test_client.h"
#include "pm/internal/v1/internal.grpc.pb.h"
#include "segment_log/format.h"
#include "segment_log/test_util.h"
#include "segment_log/writer.h"

extern char** environ;

namespace pm::log_store {
namespace {

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

// A StreamOutput of `request` on `context`, with a deadline of 120 s (a
// safety net, not an expectation of speed).
std::unique_ptr<grpc::ClientReader<OutputChunk>> Follow(
    pm::internal::v1::LogStore::Stub* stub, grpc::ClientContext& context,
    const StreamOutputRequest& request) {
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(120));
  return stub->StreamOutput(&context, request);
}

// Reads a StreamOutput to its end, checking each chunk: the offset follows
// on from the previous one with nothing dropped, and bytes and streams match
// `expected`.
Followed ReadAndCheck(pm::internal::v1::LogStore::Stub* stub,
                      const StreamOutputRequest& request,
                      const Output& expected, uint64_t start) {
  grpc::ClientContext context;
  std::unique_ptr<grpc::ClientReader<OutputChunk>> reader =
      Follow(stub, context, request);
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
    StartServer(Options());
  }

  // The store's options in these tests: no periodic total cap (a test that
  // wants one runs it).
  static LogStore::Options Options() {
    LogStore::Options options;
    options.total_cap_interval = absl::InfiniteDuration();
    return options;
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

  // The shim's Writer of process `id`.
  std::unique_ptr<segment_log::Writer> Shim(
      const std::string& id, segment_log::WriterOptions options = {}) {
    return OpenShimWriter(state_dir_, id, options);
  }

  // Writes `output` as the shim of `id` would, and the end record if
  // `close`.
  static void WriteAll(segment_log::Writer& shim, const Output& output,
                       size_t first_piece = 0, bool close = true) {
    for (size_t i = first_piece; i < output.pieces.size(); ++i) {
      const Output::Piece& piece = output.pieces[i];
      ASSERT_TRUE(shim.Append(ToSegmentStream(piece.stream), piece.data,
                              absl::Now())
                      .ok());
    }
    if (close) {
      ASSERT_TRUE(shim.Close(absl::Now()).ok());
    }
  }

  static segment_log::Stream ToSegmentStream(OutputChunk::Stream stream) {
    return stream == kErr ? segment_log::Stream::kStderr
                          : segment_log::Stream::kStdout;
  }

  std::string dir_;
  std::string state_dir_;
  std::string address_;
  std::unique_ptr<LogStore> store_;
  std::unique_ptr<LogStoreService> service_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<pm::internal::v1::LogStore::Stub> stub_;
};


TEST_F(LogStoreServiceTest, FiftyFollowersGetIdenticalBytesWhileTheShimWrites) {
  const std::string id = Id(2);
  const Output output = Output::Make(1 << 20, 20000);
  std::unique_ptr<segment_log::Writer> shim =
      Shim(id, segment_log::Sizes(64 << 10));
  ASSERT_NE(shim, nullptr);

  constexpr int kFollowers = 50;
  std::vector<Followed> followed(kFollowers);
  std::vector<std::thread> threads;
  for (int i = 0; i < kFollowers; ++i) {
    threads.emplace_back([&, i] {
      followed[i] = ReadAndCheck(stub_.get(), OutputRequest(id, true, true),
                                 output, 0);
    });
  }
  WriteAll(*shim, output);
  for (std::thread& thread : threads) thread.join();

  for (int i = 0; i < kFollowers; ++i) {
    EXPECT_TRUE(followed[i].status.ok())
        << "follower " << i << ": " << followed[i].status.error_message();
    EXPECT_EQ(followed[i].mismatch, "") << "follower " << i;
    EXPECT_EQ(followed[i].bytes, output.data.size()) << "follower " << i;
  }
  EXPECT_TRUE(service_->WaitForOutputStreamCount(0, absl::Seconds(30)));
  EXPECT_EQ(store_->watched_dir_count(), 0u);
}

TEST_F(LogStoreServiceTest, FollowerAttachedBeforeAnyDataMissesNothing) {
  const std::string id = Id(3);
  std::unique_ptr<segment_log::Writer> shim = Shim(id);
  ASSERT_NE(shim, nullptr);

  // From "now" on an empty output: attached once the headers are in.
  grpc::ClientContext context;
  std::unique_ptr<grpc::ClientReader<OutputChunk>> reader =
      Follow(stub_.get(), context, OutputRequest(id, false, true));
  reader->WaitForInitialMetadata();

  const Output output = Output::Make(100000, 3000);
  WriteAll(*shim, output);

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
  std::unique_ptr<segment_log::Writer> shim = Shim(id);
  ASSERT_NE(shim, nullptr);
  ASSERT_TRUE(
      shim->Append(segment_log::Stream::kStdout, "before\n", absl::Now()).ok());

  grpc::ClientContext context;
  std::unique_ptr<grpc::ClientReader<OutputChunk>> reader =
      Follow(stub_.get(), context, OutputRequest(id, false, true));
  reader->WaitForInitialMetadata();
  ASSERT_TRUE(
      shim->Append(segment_log::Stream::kStderr, "after\n", absl::Now()).ok());
  ASSERT_TRUE(shim->Close(absl::Now()).ok());

  OutputChunk chunk;
  ASSERT_TRUE(reader->Read(&chunk));
  EXPECT_EQ(chunk.offset(), 7u);
  EXPECT_EQ(chunk.dropped_before(), 0u);
  EXPECT_EQ(chunk.stream(), kErr);
  EXPECT_EQ(chunk.data(), "after\n");
  EXPECT_FALSE(reader->Read(&chunk));
  EXPECT_TRUE(reader->Finish().ok());
}

TEST_F(LogStoreServiceTest, StuckFollowerHoldsBackNoOtherFollower) {
  const std::string id = Id(5);
  std::unique_ptr<segment_log::Writer> shim = Shim(id);
  ASSERT_NE(shim, nullptr);

  // A reader that never reads, with small flow-control windows so its
  // stream stalls after a few hundred KiB.
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_HTTP2_BDP_PROBE, 0);
  args.SetInt(GRPC_ARG_HTTP2_STREAM_LOOKAHEAD_BYTES, 64 << 10);
  std::unique_ptr<pm::internal::v1::LogStore::Stub> stuck_stub =
      SeparateStub(args);
  grpc::ClientContext stuck_context;
  std::unique_ptr<grpc::ClientReader<OutputChunk>> stuck =
      Follow(stuck_stub.get(), stuck_context, OutputRequest(id, true, true));
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
  WriteAll(*shim, output);
  for (std::thread& thread : threads) thread.join();
  for (int i = 0; i < kFollowers; ++i) {
    EXPECT_TRUE(followed[i].status.ok()) << followed[i].status.error_message();
    EXPECT_EQ(followed[i].mismatch, "");
    EXPECT_EQ(followed[i].bytes, output.data.size());
  }

  // The others are done; the stuck reader is still there, a write in
  // flight, until it goes.
  EXPECT_TRUE(service_->WaitForOutputStreamCount(1, absl::Seconds(30)));
  stuck_context.TryCancel();
  EXPECT_EQ(stuck->Finish().error_code(), grpc::StatusCode::CANCELLED);
  EXPECT_TRUE(service_->WaitForOutputStreamCount(0, absl::Seconds(30)));
}

TEST_F(LogStoreServiceTest, CancelledFollowerIsCleanedUp) {
  const std::string id = Id(6);
  std::unique_ptr<segment_log::Writer> shim = Shim(id);
  ASSERT_NE(shim, nullptr);
  ASSERT_TRUE(shim->Append(segment_log::Stream::kStdout, "x", absl::Now()).ok());
  std::shared_ptr<OutputLog> log = store_->Find(id).value();

  grpc::ClientContext context;
  std::unique_ptr<grpc::ClientReader<OutputChunk>> reader =
      Follow(stub_.get(), context, OutputRequest(id, true, true));
  OutputChunk chunk;
  ASSERT_TRUE(reader->Read(&chunk));
  EXPECT_EQ(chunk.data(), "x");
  EXPECT_TRUE(service_->WaitForOutputStreamCount(1, absl::Seconds(30)));
  EXPECT_EQ(store_->watched_dir_count(), 1u);

  context.TryCancel();
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::CANCELLED);
  ASSERT_TRUE(service_->WaitForOutputStreamCount(0, absl::Seconds(30)));
  EXPECT_EQ(log->watcher_count(), 0u);
  EXPECT_EQ(store_->watched_dir_count(), 0u);

  // The output goes on without it.
  ASSERT_TRUE(
      shim->Append(segment_log::Stream::kStdout, "yz", absl::Now()).ok());
  ASSERT_TRUE(shim->Close(absl::Now()).ok());
  EXPECT_EQ(ReadOutput(stub_.get(), OutputRequest(id, true, false)).Data(),
            "xyz");
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
  std::unique_ptr<segment_log::Writer> shim = Shim(Id(9));
  ASSERT_NE(shim, nullptr);
  WriteAll(*shim, output);
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
  std::unique_ptr<segment_log::Writer> shim = Shim(Id(10));
  ASSERT_NE(shim, nullptr);
  WriteAll(*shim, output);
  StreamOutputRequest resume = OutputRequest(Id(10), true, true);
  resume.set_from_offset(1234);
  Followed followed = ReadAndCheck(stub_.get(), resume, output, 1234);
  EXPECT_TRUE(followed.status.ok()) << followed.status.error_message();
  EXPECT_EQ(followed.mismatch, "");
  EXPECT_EQ(followed.bytes, output.data.size() - 1234);
}

TEST_F(LogStoreServiceTest, ReadWithoutFollowStopsAtTheEndAsOfTheCall) {
  const std::string id = Id(11);
  std::unique_ptr<segment_log::Writer> shim = Shim(id);
  ASSERT_NE(shim, nullptr);
  ASSERT_TRUE(
      shim->Append(segment_log::Stream::kStdout, "hello", absl::Now()).ok());
  OutputRead read = ReadOutput(stub_.get(), OutputRequest(id, true, false));
  EXPECT_TRUE(read.status.ok()) << read.status.error_message();
  EXPECT_EQ(read.Data(), "hello");
  // "now" without follow: nothing, at once.
  OutputRead now = ReadOutput(stub_.get(), OutputRequest(id, false, false));
  EXPECT_TRUE(now.status.ok());
  EXPECT_TRUE(now.chunks.empty());
}

// The start of each later run of a restarted process reaches readers as
// a chunk of its own, whatever the stream filter; a read without follow
// gets the marks at its end too (runs that wrote nothing yet).
TEST_F(LogStoreServiceTest, RunStartsReachReadersAsMarks) {
  const std::string id = Id(14);
  std::unique_ptr<segment_log::Writer> shim = Shim(id);
  ASSERT_NE(shim, nullptr);
  const absl::Time t0 = absl::FromUnixSeconds(1700000000);
  using segment_log::Stream;
  ASSERT_TRUE(shim->Append(Stream::kStdout, "one\n", t0).ok());
  ASSERT_TRUE(shim->AppendRunStart(2, t0 + absl::Seconds(1)).ok());
  ASSERT_TRUE(shim->Append(Stream::kStdout, "two\n", t0).ok());
  ASSERT_TRUE(shim->AppendRunStart(3, t0 + absl::Seconds(2)).ok());
  for (bool stderr_only : {false, true}) {
    StreamOutputRequest request = OutputRequest(id, true, false);
    if (stderr_only) request.add_streams(OutputChunk::STREAM_STDERR);
    OutputRead read = ReadOutput(stub_.get(), request);
    EXPECT_TRUE(read.status.ok()) << read.status.error_message();
    std::vector<std::pair<uint32_t, uint64_t>> marks;
    for (const OutputChunk& chunk : read.chunks) {
      if (chunk.run_started() == 0) continue;
      EXPECT_TRUE(chunk.data().empty());
      EXPECT_EQ(FromProtoTimestamp(chunk.time()),
                t0 + absl::Seconds(chunk.run_started() - 1));
      marks.push_back({chunk.run_started(), chunk.offset()});
    }
    EXPECT_EQ(marks, (std::vector<std::pair<uint32_t, uint64_t>>{{2, 4}, {3, 8}}))
        << "stderr only: " << stderr_only;
    EXPECT_EQ(read.Data(), stderr_only ? "" : "one\ntwo\n");
  }
  // From the offset after the last byte: the mark there, and no more.
  StreamOutputRequest request = OutputRequest(id, true, false);
  request.set_from_offset(8);
  OutputRead rest = ReadOutput(stub_.get(), request);
  ASSERT_EQ(rest.chunks.size(), 1u);
  EXPECT_EQ(rest.chunks[0].run_started(), 3u);
  // tail_lines counts lines, never marks: the last line, with the mark of
  // the run it began, and what follows.
  request = OutputRequest(id, true, false);
  request.set_tail_lines(1);
  OutputRead tail = ReadOutput(stub_.get(), request);
  ASSERT_EQ(tail.chunks.size(), 3u);
  EXPECT_EQ(tail.chunks[0].run_started(), 2u);
  EXPECT_EQ(tail.chunks[1].data(), "two\n");
  EXPECT_EQ(tail.chunks[2].run_started(), 3u);
}

// tail_lines, since, until and a stream filter, alone and together; each
// chunk carries the time its bytes were read.
TEST_F(LogStoreServiceTest, TailSinceUntilAndStreamsSelectTheOutput) {
  const std::string id = Id(13);
  std::unique_ptr<segment_log::Writer> shim = Shim(id);
  ASSERT_NE(shim, nullptr);
  const absl::Time t0 = absl::FromUnixSeconds(1700000000);
  using segment_log::Stream;
  // Second i: "outI\n" on stdout, then "errI\n" on stderr.
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE(shim->Append(Stream::kStdout, absl::StrCat("out", i, "\n"),
                             t0 + absl::Seconds(i)).ok());
    ASSERT_TRUE(shim->Append(Stream::kStderr, absl::StrCat("err", i, "\n"),
                             t0 + absl::Seconds(i) + absl::Milliseconds(500)).ok());
  }
  auto read = [&](std::function<void(StreamOutputRequest&)> adjust) {
    StreamOutputRequest request = OutputRequest(id, true, false);
    adjust(request);
    OutputRead got = ReadOutput(stub_.get(), request);
    EXPECT_TRUE(got.status.ok()) << got.status.error_message();
    return got;
  };
  EXPECT_EQ(read([](StreamOutputRequest& r) { r.set_tail_lines(3); }).Data(),
            "err3\nout4\nerr4\n");
  EXPECT_EQ(read([](StreamOutputRequest& r) {
              r.set_tail_lines(2);
              r.add_streams(OutputChunk::STREAM_STDOUT);
            }).Data(),
            "out3\nout4\n");
  EXPECT_EQ(read([&](StreamOutputRequest& r) {
              *r.mutable_since() = ToProtoTimestamp(t0 + absl::Seconds(3));
            }).Data(),
            "out3\nerr3\nout4\nerr4\n");
  EXPECT_EQ(read([&](StreamOutputRequest& r) {
              *r.mutable_until() = ToProtoTimestamp(t0 + absl::Seconds(1));
              r.add_streams(OutputChunk::STREAM_STDERR);
            }).Data(),
            "err0\n");
  // Both: the later start.
  EXPECT_EQ(read([&](StreamOutputRequest& r) {
              r.set_tail_lines(6);
              *r.mutable_since() = ToProtoTimestamp(t0 + absl::Seconds(4));
            }).Data(),
            "out4\nerr4\n");
  // The stderr filter skips stdout without counting it as dropped.
  OutputRead errors = read([](StreamOutputRequest& r) {
    r.add_streams(OutputChunk::STREAM_STDERR);
  });
  ASSERT_EQ(errors.chunks.size(), 5u);
  for (int i = 0; i < 5; ++i) {
    const OutputChunk& chunk = errors.chunks[i];
    EXPECT_EQ(chunk.data(), absl::StrCat("err", i, "\n"));
    EXPECT_EQ(chunk.dropped_before(), 0u);
    EXPECT_EQ(FromProtoTimestamp(chunk.time()),
              t0 + absl::Seconds(i) + absl::Milliseconds(500));
  }
  // Bad values are refused.
  StreamOutputRequest bad = OutputRequest(id, true, false);
  bad.add_streams(static_cast<OutputChunk::Stream>(7));
  EXPECT_EQ(ReadOutput(stub_.get(), bad).status.error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  StreamOutputRequest huge = OutputRequest(id, true, false);
  huge.set_tail_lines(1000001);
  EXPECT_EQ(ReadOutput(stub_.get(), huge).status.error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
}

TEST_F(LogStoreServiceTest, RetentionAndGapsReachReadersAsDroppedBefore) {
  const std::string id = Id(12);
  // The shim's per-process cap.
  std::unique_ptr<segment_log::Writer> shim =
      Shim(id, segment_log::Sizes(1000, 4000));
  ASSERT_NE(shim, nullptr);
  for (int i = 0; i < 30; ++i) {
    ASSERT_TRUE(shim->Append(segment_log::Stream::kStdout,
                             std::string(1000, 'a' + i % 26), absl::Now())
                    .ok());
  }
  ASSERT_TRUE(shim->AppendGap(1000, absl::Now()).ok());
  ASSERT_TRUE(shim->Close(absl::Now()).ok());

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

// The log_store stops (a kill -9 or a restart) while a process writes and a
// reader follows: the reader resumes with from_offset on the new log_store,
// with no byte twice and none missing; the shim never noticed.
TEST_F(LogStoreServiceTest, FollowAcrossARestartResumesWithFromOffset) {
  const std::string id = Id(30);
  const Output output = Output::Make(200000, 5000);
  const size_t half = output.pieces.size() / 2;
  std::unique_ptr<segment_log::Writer> shim = Shim(id);
  ASSERT_NE(shim, nullptr);
  std::string seen;
  {
    for (size_t i = 0; i < half; ++i) {
      const Output::Piece& piece = output.pieces[i];
      ASSERT_TRUE(shim->Append(ToSegmentStream(piece.stream), piece.data,
                               absl::Now())
                      .ok());
    }
    const uint64_t written = output.pieces[half].offset;
    grpc::ClientContext context;
    std::unique_ptr<grpc::ClientReader<OutputChunk>> follower =
        Follow(stub_.get(), context, OutputRequest(id, true, true));
    OutputChunk chunk;
    while (seen.size() < written && follower->Read(&chunk)) {
      ASSERT_EQ(chunk.offset(), seen.size());
      seen += chunk.data();
    }
    StopServer();
    EXPECT_EQ(follower->Finish().error_code(), grpc::StatusCode::UNAVAILABLE);
  }
  // Written while no log_store runs.
  const size_t more = half + (output.pieces.size() - half) / 2;
  for (size_t i = half; i < more; ++i) {
    const Output::Piece& piece = output.pieces[i];
    ASSERT_TRUE(
        shim->Append(ToSegmentStream(piece.stream), piece.data, absl::Now())
            .ok());
  }
  StartServer(Options());

  StreamOutputRequest resume = OutputRequest(id, false, true);
  resume.set_from_offset(seen.size());
  grpc::ClientContext context;
  std::unique_ptr<grpc::ClientReader<OutputChunk>> follower =
      Follow(stub_.get(), context, resume);
  follower->WaitForInitialMetadata();
  WriteAll(*shim, output, more);
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

// The test_shim_writer binary: a process's output written by another
// process, as its pm-shim does, driven line by line.
class ShimProcess {
 public:
  ShimProcess(const std::string& state_dir, const std::string& id,
              uint64_t segment_bytes) {
    const char* srcdir = getenv("TEST_SRCDIR");
    const char* workspace = getenv("TEST_WORKSPACE");
    std::string binary = std::string(srcdir ? srcdir : ".") + "/" +
                         (workspace ? workspace : "pm") +
                         "/log_store/test_shim_writer";
    std::vector<std::string> args = {binary, state_dir, id,
                                     std::to_string(segment_bytes),
                                     std::to_string(uint64_t{1} << 30)};
    std::vector<char*> argv;
    for (std::string& arg : args) argv.push_back(arg.data());
    argv.push_back(nullptr);
    int in[2];
    int out[2];
    if (pipe2(in, O_CLOEXEC) != 0 || pipe2(out, O_CLOEXEC) != 0) return;
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, in[0], 0);
    posix_spawn_file_actions_adddup2(&actions, out[1], 1);
    const int spawned =
        posix_spawn(&pid_, argv[0], &actions, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    close(in[0]);
    close(out[1]);
    to_ = fdopen(in[1], "w");
    from_ = fdopen(out[0], "r");
    if (spawned != 0) pid_ = -1;
  }
  ~ShimProcess() {
    if (to_ != nullptr) fclose(to_);
    if (from_ != nullptr) fclose(from_);
    if (pid_ > 0) waitpid(pid_, nullptr, 0);
  }

  // Sends one command line and returns the reply line ("ok" if it worked).
  std::string Send(const std::string& command) {
    fprintf(to_, "%s\n", command.c_str());
    fflush(to_);
    return Reply();
  }
  // The next line it wrote ("ready" first).
  std::string Reply() {
    char line[4096];
    if (from_ == nullptr || fgets(line, sizeof(line), from_) == nullptr) {
      return "(no reply)";
    }
    std::string reply(line);
    if (!reply.empty() && reply.back() == '\n') reply.pop_back();
    return reply;
  }
  bool started() const { return pid_ > 0 && to_ != nullptr && from_ != nullptr; }

 private:
  pid_t pid_ = -1;
  FILE* to_ = nullptr;
  FILE* from_ = nullptr;
};

// Output written by another process reaches a follower through the store's
// inotify watch: nothing polls, so without a wake-up at each append, at each
// new segment and at the end record the follower would wait forever.
TEST_F(LogStoreServiceTest, AWriterInAnotherProcessIsFollowedAcrossSegmentsToItsEnd) {
  const std::string id = Id(31);
  ShimProcess shim(state_dir_, id, /*segment_bytes=*/4096);
  ASSERT_TRUE(shim.started());
  ASSERT_EQ(shim.Reply(), "ready");

  grpc::ClientContext context;
  std::unique_ptr<grpc::ClientReader<OutputChunk>> follower =
      Follow(stub_.get(), context, OutputRequest(id, true, true));
  follower->WaitForInitialMetadata();
  ASSERT_TRUE(service_->WaitForOutputStreamCount(1, absl::Seconds(30)));

  std::string expected;
  for (int k = 0; k < 100; ++k) {
    expected += std::string(1000, static_cast<char>('a' + k % 26));
  }
  std::string data;
  OutputChunk chunk;
  // One piece at a time, each read before the next is written: every
  // append (and every fourth, a new segment) must wake the follower.
  for (int k = 0; k < 100; ++k) {
    ASSERT_EQ(shim.Send("data 1 1000"), "ok");
    while (data.size() < (k + 1) * 1000u) {
      ASSERT_TRUE(follower->Read(&chunk)) << "after piece " << k;
      EXPECT_EQ(chunk.offset(), data.size());
      EXPECT_EQ(chunk.dropped_before(), 0u);
      data += chunk.data();
    }
  }
  ASSERT_GT(segment_log::ListSegments(ProcessOutputDir(state_dir_, id))
                ->size(),
            20u);
  ASSERT_EQ(shim.Send("close"), "ok");
  EXPECT_FALSE(follower->Read(&chunk));
  grpc::Status status = follower->Finish();
  EXPECT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(data, expected);
  EXPECT_TRUE(service_->WaitForOutputStreamCount(0, absl::Seconds(30)));
  EXPECT_EQ(store_->watched_dir_count(), 0u);
}

// The output ended, and the total cap deleted every segment, the one with
// the end record too: followers end instead of waiting for an end record
// that is gone, the attached one and one that comes afterwards.
TEST_F(LogStoreServiceTest, FollowersEndWhenAnEndedOutputLostEverySegment) {
  RestartServer([] {
    LogStore::Options options = Options();
    options.max_total_bytes = 1;
    return options;
  }());
  const std::string id = Id(32);
  std::unique_ptr<segment_log::Writer> shim = Shim(id, segment_log::Sizes(1000));
  ASSERT_NE(shim, nullptr);
  ASSERT_TRUE(shim->Append(segment_log::Stream::kStdout,
                           std::string(3000, 'x'), absl::Now())
                  .ok());
  grpc::ClientContext context;
  std::unique_ptr<grpc::ClientReader<OutputChunk>> attached =
      Follow(stub_.get(), context, OutputRequest(id, false, true));
  attached->WaitForInitialMetadata();
  ASSERT_TRUE(service_->WaitForOutputStreamCount(1, absl::Seconds(30)));

  ASSERT_TRUE(shim->Close(absl::Now()).ok());
  ASSERT_TRUE(store_->EnforceTotalCap().ok());
  ASSERT_EQ(segment_log::ListSegments(ProcessOutputDir(state_dir_, id))
                ->size(),
            0u);
  OutputChunk chunk;
  uint64_t end = 3000;
  while (attached->Read(&chunk)) {
    // Nothing more was written: at most a report of what was lost.
    EXPECT_TRUE(chunk.data().empty());
    end = chunk.offset();
  }
  grpc::Status status = attached->Finish();
  EXPECT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(end, 3000u);

  OutputRead late = ReadOutput(stub_.get(), OutputRequest(id, true, true));
  EXPECT_TRUE(late.status.ok()) << late.status.error_message();
  EXPECT_EQ(late.Data(), "");
  EXPECT_TRUE(service_->WaitForOutputStreamCount(0, absl::Seconds(30)));
}

// The directory is removed (with the process's record) under a follower:
// it reports what it had not read as dropped and ends.
TEST_F(LogStoreServiceTest, AFollowerEndsWhenTheOutputDirectoryIsRemoved) {
  const std::string id = Id(33);
  std::unique_ptr<segment_log::Writer> shim = Shim(id);
  ASSERT_NE(shim, nullptr);
  ASSERT_TRUE(
      shim->Append(segment_log::Stream::kStdout, "read\n", absl::Now()).ok());
  grpc::ClientContext context;
  std::unique_ptr<grpc::ClientReader<OutputChunk>> follower =
      Follow(stub_.get(), context, OutputRequest(id, true, true));
  OutputChunk chunk;
  ASSERT_TRUE(follower->Read(&chunk));
  EXPECT_EQ(chunk.data(), "read\n");

  std::filesystem::remove_all(ProcessDir(state_dir_, id));
  while (follower->Read(&chunk)) {
    EXPECT_TRUE(chunk.data().empty());
  }
  grpc::Status status = follower->Finish();
  EXPECT_TRUE(status.ok()) << status.error_message();
  EXPECT_TRUE(service_->WaitForOutputStreamCount(0, absl::Seconds(30)));
}

// The store's inotify thread only wakes followers; each reads in its own
// reactor. Here one follower's read blocks (its next "segment" is a FIFO,
// whose open waits for a writer, as a read from a dead disk would): had the
// inotify thread done that read, no other follower would be woken again.
TEST_F(LogStoreServiceTest, AFollowerStuckInAReadHoldsBackNoOtherFollower) {
  const std::string stuck_id = Id(34);
  std::unique_ptr<segment_log::Writer> stuck_shim = Shim(stuck_id);
  ASSERT_NE(stuck_shim, nullptr);
  ASSERT_TRUE(stuck_shim->Append(segment_log::Stream::kStdout, "0123456789",
                                 absl::Now())
                  .ok());
  grpc::ClientContext stuck_context;
  std::unique_ptr<grpc::ClientReader<OutputChunk>> stuck =
      Follow(stub_.get(), stuck_context, OutputRequest(stuck_id, true, true));
  OutputChunk chunk;
  ASSERT_TRUE(stuck->Read(&chunk));
  ASSERT_EQ(chunk.data(), "0123456789");
  // The next segment, at offset 10: opening it blocks.
  const std::string fifo = ProcessOutputDir(state_dir_, stuck_id) + "/" +
                           segment_log::SegmentName(10);
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  // However the test ends, the stuck open returns (a FIFO is no segment:
  // that reader then fails), so the server can stop.
  struct Unblock {
    std::string fifo;
    ~Unblock() {
      const int writer = open(fifo.c_str(), O_WRONLY | O_NONBLOCK | O_CLOEXEC);
      if (writer >= 0) close(writer);
    }
  };

  Unblock unblock_at_exit{fifo};
  const std::string id = Id(35);
  std::unique_ptr<segment_log::Writer> shim = Shim(id);
  ASSERT_NE(shim, nullptr);
  grpc::ClientContext context;
  std::unique_ptr<grpc::ClientReader<OutputChunk>> follower =
      Follow(stub_.get(), context, OutputRequest(id, true, true));
  follower->WaitForInitialMetadata();
  ASSERT_TRUE(service_->WaitForOutputStreamCount(2, absl::Seconds(30)));
  ASSERT_TRUE(
      shim->Append(segment_log::Stream::kStdout, "hello", absl::Now()).ok());
  ASSERT_TRUE(follower->Read(&chunk));
  EXPECT_EQ(chunk.data(), "hello");
  ASSERT_TRUE(shim->Close(absl::Now()).ok());
  EXPECT_FALSE(follower->Read(&chunk));
  EXPECT_TRUE(follower->Finish().ok());

  { Unblock unblock{fifo}; }
  stuck_context.TryCancel();
  while (stuck->Read(&chunk)) {
  }
  stuck->Finish();
  EXPECT_TRUE(service_->WaitForOutputStreamCount(0, absl::Seconds(30)));
}

TEST_F(LogStoreServiceTest, ShutdownEndsOpenStreamsWithUnavailable) {
  const std::string id = Id(15);
  std::unique_ptr<segment_log::Writer> shim = Shim(id);
  ASSERT_NE(shim, nullptr);
  grpc::ClientContext context;
  std::unique_ptr<grpc::ClientReader<OutputChunk>> follower =
      Follow(stub_.get(), context, OutputRequest(id, true, true));
  follower->WaitForInitialMetadata();
  ASSERT_TRUE(service_->WaitForOutputStreamCount(1, absl::Seconds(30)));

  service_->Shutdown();
  OutputChunk chunk;
  EXPECT_FALSE(follower->Read(&chunk));
  grpc::Status status = follower->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_THAT(status.error_message(), HasSubstr("log_store shutting down"));
  EXPECT_TRUE(service_->WaitForOutputStreamCount(0, absl::Seconds(30)));

  // New streams are refused the same way.
  OutputRead late = ReadOutput(stub_.get(), OutputRequest(id, true, true));
  EXPECT_EQ(late.status.error_code(), grpc::StatusCode::UNAVAILABLE);
}

}  // namespace
}  // namespace pm::log_store
