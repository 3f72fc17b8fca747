// OutputLog on disk: what it takes in is in the segment files byte-exact
// (data, gaps, the end), a resend skips what is on disk, a reopened log
// resumes where the files end, the per-process cap, the start offsets, and
// the wake-ups of waiting readers.
#include "log_store/output_log.h"

#include <memory>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "segment_log/test_util.h"

namespace pm::log_store {
namespace {

using ::pm::segment_log::Chunk;
using ::pm::segment_log::DataOf;
using ::pm::segment_log::Reader;
using ::pm::segment_log::ReadChunks;
using ::pm::segment_log::RecordKind;
using ::pm::segment_log::RecordsIn;
using ::pm::segment_log::Stream;
using ::pm::segment_log::TempDir;
using ::testing::HasSubstr;

constexpr char kId[] = "0b7e3d1c-6a1f-4e8e-9f3c-2d6a5b4c3d2e";

class OutputLogTest : public ::testing::Test {
 protected:
  std::string Dir() const { return tmp_.Sub("procs/" + std::string(kId) + "/output"); }

  std::unique_ptr<OutputLog> MakeLog(segment_log::WriterOptions options = {}) {
    auto log = std::make_unique<OutputLog>(kId, Dir(), options);
    absl::Status opened = log->OpenForAppend();
    EXPECT_TRUE(opened.ok()) << opened;
    return log;
  }

  std::vector<Chunk> ReadAll(const OutputLog& log, uint64_t cursor = 0) {
    absl::StatusOr<std::unique_ptr<Reader>> reader = log.OpenReader();
    EXPECT_TRUE(reader.ok()) << reader.status();
    if (!reader.ok()) return {};
    return ReadChunks(**reader, cursor);
  }

  TempDir tmp_;
};

TEST_F(OutputLogTest, WhatItTakesInIsInTheFilesWithGapsAndTheEnd) {
  std::unique_ptr<OutputLog> log = MakeLog();
  ASSERT_TRUE(log->AppendData(0, Stream::kStdout, "out\n").ok());
  ASSERT_TRUE(log->AppendData(4, Stream::kStderr, "err\n").ok());
  absl::StatusOr<OutputLog::Update> gap = log->AppendGap(8, 100);
  ASSERT_TRUE(gap.ok()) << gap.status();
  EXPECT_EQ(gap->end_offset, 108u);
  ASSERT_TRUE(log->AppendData(108, Stream::kStdout, "tail").ok());
  absl::StatusOr<OutputLog::Update> closed = log->Close(120);  // 8 more lost
  ASSERT_TRUE(closed.ok()) << closed.status();
  EXPECT_TRUE(closed->closed_now);
  EXPECT_FALSE(log->appending());  // the Writer's fds are let go

  std::vector<segment_log::Record> records = RecordsIn(Dir());
  ASSERT_EQ(records.size(), 6u);
  EXPECT_EQ(records[0].payload, "out\n");
  EXPECT_EQ(records[1].stream, Stream::kStderr);
  EXPECT_EQ(records[2].kind, RecordKind::kGap);
  EXPECT_EQ(records[2].length, 100u);
  EXPECT_EQ(records[3].payload, "tail");
  EXPECT_EQ(records[4].kind, RecordKind::kGap);
  EXPECT_EQ(records[4].offset, 112u);
  EXPECT_EQ(records[5].kind, RecordKind::kEnd);
  EXPECT_EQ(records[5].offset, 120u);

  std::vector<Chunk> chunks = ReadAll(*log);
  ASSERT_EQ(chunks.size(), 4u);
  EXPECT_EQ(chunks[2].offset, 108u);
  EXPECT_EQ(chunks[2].dropped_before, 100u);
  EXPECT_EQ(chunks[3].offset, 120u);
  EXPECT_EQ(chunks[3].dropped_before, 8u);
}

TEST_F(OutputLogTest, AReopenedLogResumesAtTheEndOnDiskAndSkipsAResentPrefix) {
  {
    std::unique_ptr<OutputLog> first = MakeLog();
    ASSERT_TRUE(first->AppendData(0, Stream::kStdout, "0123456789").ok());
  }  // the log_store dies without a close
  std::unique_ptr<OutputLog> log = MakeLog();
  EXPECT_EQ(log->end_offset(), 10u);
  EXPECT_FALSE(log->closed());
  // The supervisor resends from its last acknowledged offset.
  absl::StatusOr<OutputLog::Update> update =
      log->AppendData(6, Stream::kStdout, "6789abc");
  ASSERT_TRUE(update.ok()) << update.status();
  EXPECT_EQ(update->end_offset, 13u);
  // Entirely on disk already: nothing is written.
  update = log->AppendData(0, Stream::kStdout, "0123");
  ASSERT_TRUE(update.ok());
  EXPECT_EQ(update->grown_bytes, 0u);
  // Past the end: the bytes in between never arrived.
  ASSERT_TRUE(log->AppendData(20, Stream::kStderr, "late").ok());

  std::vector<Chunk> chunks = ReadAll(*log);
  ASSERT_EQ(chunks.size(), 2u);
  EXPECT_EQ(chunks[0].data, "0123456789abc");
  EXPECT_EQ(chunks[1].offset, 20u);
  EXPECT_EQ(chunks[1].dropped_before, 7u);
  EXPECT_EQ(chunks[1].data, "late");
}

TEST_F(OutputLogTest, AClosedLogIsFoundClosedAndRefusesMore) {
  {
    std::unique_ptr<OutputLog> first = MakeLog();
    ASSERT_TRUE(first->AppendData(0, Stream::kStdout, "done").ok());
    ASSERT_TRUE(first->Close(4).ok());
  }
  std::unique_ptr<OutputLog> log = MakeLog();
  EXPECT_TRUE(log->closed());
  EXPECT_FALSE(log->appending());
  EXPECT_EQ(log->end_offset(), 4u);
  EXPECT_TRUE(log->Close(4).ok());  // a repeated close
  absl::StatusOr<OutputLog::Update> other = log->Close(5);
  EXPECT_EQ(other.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(other.status().message(), HasSubstr("closed at offset 4"));
  absl::StatusOr<OutputLog::Update> more =
      log->AppendData(4, Stream::kStdout, "x");
  EXPECT_EQ(more.status().code(), absl::StatusCode::kFailedPrecondition);
}

TEST_F(OutputLogTest, ProtocolErrors) {
  OutputLog unopened(kId, Dir(), {});
  absl::StatusOr<OutputLog::Update> early =
      unopened.AppendData(0, Stream::kStdout, "x");
  EXPECT_EQ(early.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(early.status().message(), HasSubstr("not open for appending"));

  std::unique_ptr<OutputLog> log = MakeLog();
  absl::StatusOr<OutputLog::Update> none =
      log->AppendData(0, static_cast<Stream>(0), "x");
  EXPECT_EQ(none.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(none.status().message(), HasSubstr("names no stream"));
  absl::StatusOr<OutputLog::Update> overflow =
      log->AppendGap(UINT64_MAX - 1, 10);
  EXPECT_EQ(overflow.status().code(), absl::StatusCode::kInvalidArgument);
  ASSERT_TRUE(log->AppendData(0, Stream::kStdout, "0123456789").ok());
  absl::StatusOr<OutputLog::Update> short_close = log->Close(4);
  EXPECT_EQ(short_close.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(short_close.status().message(), HasSubstr("close at offset 4"));
}

TEST_F(OutputLogTest, ThePerProcessCapDeletesTheOldestSegments) {
  segment_log::WriterOptions options;
  options.segment_bytes = 1000;
  options.max_bytes = 3000;
  std::unique_ptr<OutputLog> log = MakeLog(options);
  std::string all;
  for (int i = 0; i < 100; ++i) {
    const std::string piece(100, static_cast<char>('a' + i % 26));
    ASSERT_TRUE(log->AppendData(all.size(), Stream::kStdout, piece).ok());
    all += piece;
  }
  std::vector<Chunk> chunks = ReadAll(*log);
  ASSERT_FALSE(chunks.empty());
  const uint64_t first = chunks.front().offset;
  EXPECT_GT(first, 0u);
  EXPECT_EQ(chunks.front().dropped_before, first);
  EXPECT_LE(all.size() - first, 3000u);
  EXPECT_EQ(DataOf(chunks), all.substr(first));
}

TEST_F(OutputLogTest, APieceLargerThanASegmentIsSplitSoTheCapHolds) {
  segment_log::WriterOptions options;
  options.segment_bytes = 1000;
  options.max_bytes = 3000;
  std::unique_ptr<OutputLog> log = MakeLog(options);
  const std::string piece(10000, 'z');
  ASSERT_TRUE(log->AppendData(0, Stream::kStdout, piece).ok());
  std::vector<Chunk> chunks = ReadAll(*log);
  ASSERT_FALSE(chunks.empty());
  EXPECT_GE(chunks.front().offset, 7000u);
  EXPECT_EQ(DataOf(chunks), piece.substr(chunks.front().offset));
}

TEST_F(OutputLogTest, StartOffsets) {
  std::unique_ptr<OutputLog> log = MakeLog();
  ASSERT_TRUE(log->AppendData(0, Stream::kStdout, "hello").ok());
  std::unique_ptr<Reader> reader = *log->OpenReader();
  EXPECT_EQ(*log->StartOffset(*reader, std::nullopt, true), 0u);
  EXPECT_EQ(*log->StartOffset(*reader, std::nullopt, false), 5u);
  EXPECT_EQ(*log->StartOffset(*reader, 3, false), 3u);
  // A follower of a live log may wait past the end; a reader may not.
  EXPECT_EQ(*log->StartOffset(*reader, 9, false, /*follow=*/true), 9u);
  absl::StatusOr<uint64_t> past = log->StartOffset(*reader, 9, false);
  EXPECT_EQ(past.status().code(), absl::StatusCode::kOutOfRange);
  EXPECT_THAT(past.status().message(),
              HasSubstr("from_offset 9 is past the end"));
  EXPECT_THAT(past.status().message(), HasSubstr("(5 bytes so far)"));
  ASSERT_TRUE(log->Close(5).ok());
  EXPECT_EQ(log->StartOffset(*reader, 9, false, true).status().code(),
            absl::StatusCode::kOutOfRange);
}

class CountingWatcher : public OutputLog::Watcher {
 public:
  void OnLogChanged() override { ++calls; }
  int calls = 0;
};

TEST_F(OutputLogTest, WatchersAreWokenOnceByAnAppendAndByTheClose) {
  std::unique_ptr<OutputLog> log = MakeLog();
  auto watcher = std::make_shared<CountingWatcher>();
  log->Watch(watcher);
  log->Watch(watcher);  // again before the call: still one
  EXPECT_EQ(log->watcher_count(), 1u);
  ASSERT_TRUE(log->AppendData(0, Stream::kStdout, "x").ok());
  EXPECT_EQ(watcher->calls, 1);
  ASSERT_TRUE(log->AppendData(1, Stream::kStdout, "y").ok());
  EXPECT_EQ(watcher->calls, 1);  // one call per registration
  log->Watch(watcher);
  ASSERT_TRUE(log->Close(2).ok());
  EXPECT_EQ(watcher->calls, 2);
  log->Watch(watcher);
  log->Unwatch(watcher.get());
  log->Wake();
  EXPECT_EQ(watcher->calls, 2);
}

}  // namespace
}  // namespace pm::log_store
