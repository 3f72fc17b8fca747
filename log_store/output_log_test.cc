// OutputLog without a server: offsets, streams, gaps, retention, resends,
// resumes and the wake-up hook.
#include "log_store/output_log.h"

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace pm::log_store {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr char kId[] = "0b7e3d1c-6a1f-4e8e-9f3c-2d6a5b4c3d2e";

// Small chunks and no overhead, so byte counts in the tests are exact.
OutputLog::Options SmallOptions(uint64_t max_bytes = 1 << 20) {
  OutputLog::Options options;
  options.max_bytes = max_bytes;
  options.max_chunk_bytes = 10;
  options.chunk_overhead_bytes = 0;
  return options;
}

// A chunk as the tests compare it.
struct Got {
  uint64_t offset;
  uint64_t dropped_before;
  OutputStream stream;
  std::string data;
  bool operator==(const Got& o) const {
    return offset == o.offset && dropped_before == o.dropped_before &&
           stream == o.stream && data == o.data;
  }
  friend std::ostream& operator<<(std::ostream& os, const Got& g) {
    return os << "{offset " << g.offset << ", dropped " << g.dropped_before
              << ", stream " << static_cast<int>(g.stream) << ", \"" << g.data
              << "\"}";
  }
};

// Reads from `cursor` up to the end (or `limit`) as a reader would.
std::vector<Got> ReadAll(const OutputLog& log, uint64_t cursor,
                         uint64_t limit = OutputLog::kNoLimit,
                         size_t max_bytes = OutputLog::kDefaultMaxReadBytes) {
  std::vector<Got> got;
  while (std::optional<OutputLog::Chunk> c =
             log.Read(cursor, limit, max_bytes)) {
    cursor = c->offset + c->data.size();
    got.push_back(Got{c->offset, c->dropped_before, c->stream, c->data});
  }
  return got;
}

std::string Concat(const std::vector<Got>& chunks) {
  std::string data;
  for (const Got& g : chunks) data += g.data;
  return data;
}

constexpr OutputStream kOut = OutputStream::kStdout;
constexpr OutputStream kErr = OutputStream::kStderr;
constexpr OutputStream kNone = OutputStream::kNone;

TEST(OutputLogTest, ReadsBytesBackWithOffsetsAndStreams) {
  OutputLog log(kId, OutputLog::Options());
  ASSERT_TRUE(log.AppendData(0, kOut, "hello ").ok());
  ASSERT_TRUE(log.AppendData(6, kOut, "there ").ok());
  ASSERT_TRUE(log.AppendData(12, kErr, "oops\n").ok());
  absl::StatusOr<OutputLog::Update> update = log.AppendData(17, kOut, "bye\n");
  ASSERT_TRUE(update.ok()) << update.status();
  EXPECT_EQ(update->end_offset, 21u);
  EXPECT_FALSE(update->closed);

  // Consecutive bytes of one stream come as one chunk; a stream change
  // starts a new one.
  EXPECT_THAT(ReadAll(log, 0), ElementsAre(Got{0, 0, kOut, "hello there "},
                                           Got{12, 0, kErr, "oops\n"},
                                           Got{17, 0, kOut, "bye\n"}));
  EXPECT_EQ(log.end_offset(), 21u);
  EXPECT_EQ(log.first_retained_offset(), 0u);
}

TEST(OutputLogTest, ReadsAtMostMaxBytesPerChunk) {
  OutputLog log(kId, SmallOptions());
  std::string data = "abcdefghijklmnopqrstuvwxyz";
  ASSERT_TRUE(log.AppendData(0, kOut, data).ok());
  EXPECT_THAT(ReadAll(log, 0, OutputLog::kNoLimit, 12),
              ElementsAre(Got{0, 0, kOut, "abcdefghijkl"},
                          Got{12, 0, kOut, "mnopqrstuvwx"},
                          Got{24, 0, kOut, "yz"}));
}

TEST(OutputLogTest, ResumesMidChunkWithoutDuplicateOrLoss) {
  OutputLog log(kId, OutputLog::Options());
  std::string data;
  for (int i = 0; i < 100; ++i) data.push_back(static_cast<char>('A' + i % 26));
  ASSERT_TRUE(log.AppendData(0, kOut, data).ok());

  absl::StatusOr<uint64_t> start = log.StartOffset(37, /*from_start=*/true);
  ASSERT_TRUE(start.ok()) << start.status();
  EXPECT_EQ(*start, 37u);  // from_offset wins over from_start
  EXPECT_THAT(ReadAll(log, *start),
              ElementsAre(Got{37, 0, kOut, data.substr(37)}));
}

TEST(OutputLogTest, OwnedDataIsStoredExactlyLikeCopiedData) {
  OutputLog log(kId, OutputLog::Options());
  std::string big(100000, 'b');
  ASSERT_TRUE(log.AppendData(0, kOut, "head").ok());
  ASSERT_TRUE(log.AppendOwnedData(4, kOut, std::string(big)).ok());
  // A resend overlapping what is held: only the new tail is taken.
  ASSERT_TRUE(log.AppendOwnedData(4 + 50000, kOut, std::string(60000, 'b')).ok());
  EXPECT_EQ(log.end_offset(), 4u + 50000 + 60000);
  std::string all;
  for (const Got& got : ReadAll(log, 0)) all += got.data;
  EXPECT_EQ(all, "head" + big + std::string(10000, 'b'));
}

TEST(OutputLogTest, FollowerOfAnOpenLogMayStartPastTheEnd) {
  OutputLog log(kId, OutputLog::Options());
  ASSERT_TRUE(log.AppendData(0, kOut, std::string(100, 'a')).ok());
  EXPECT_EQ(log.StartOffset(150, false, /*follow=*/true).value(), 150u);
  ASSERT_TRUE(log.Close(100).ok());
  EXPECT_EQ(log.StartOffset(150, false, /*follow=*/true).status().code(),
            absl::StatusCode::kOutOfRange);
}

TEST(OutputLogTest, StartOffsetPastTheEndIsOutOfRange) {
  OutputLog log(kId, OutputLog::Options());
  ASSERT_TRUE(log.AppendData(0, kOut, std::string(100, 'x')).ok());

  absl::StatusOr<uint64_t> past = log.StartOffset(150, false);
  EXPECT_EQ(past.status().code(), absl::StatusCode::kOutOfRange);
  EXPECT_THAT(past.status().message(), HasSubstr("from_offset 150"));
  EXPECT_THAT(past.status().message(), HasSubstr("(100 bytes so far)"));
  EXPECT_THAT(past.status().message(), HasSubstr(kId));

  EXPECT_EQ(log.StartOffset(100, false).value(), 100u);  // the end is fine
  EXPECT_EQ(log.StartOffset(std::nullopt, true).value(), 0u);
  EXPECT_EQ(log.StartOffset(std::nullopt, false).value(), 100u);  // "now"
  EXPECT_FALSE(log.Read(100).has_value());
}

TEST(OutputLogTest, ReadStopsAtTheLimit) {
  OutputLog log(kId, SmallOptions());
  ASSERT_TRUE(log.AppendData(0, kOut, "0123456789abcdef").ok());
  // Stored chunks of 10 bytes are read across; the limit cuts inside one.
  EXPECT_THAT(ReadAll(log, 4, /*limit=*/12),
              ElementsAre(Got{4, 0, kOut, "456789ab"}));
}

TEST(OutputLogTest, PerProcessCapDropsOldestChunksAndReadersSeeTheJump) {
  OutputLog log(kId, SmallOptions(/*max_bytes=*/100));
  std::string data;
  for (int i = 0; i < 150; ++i) data.push_back(static_cast<char>('a' + i % 26));
  for (uint64_t offset = 0; offset < 150; offset += 10) {
    ASSERT_TRUE(log.AppendData(offset, kOut, data.substr(offset, 10)).ok());
  }

  EXPECT_EQ(log.retained_bytes(), 100u);
  EXPECT_EQ(log.first_retained_offset(), 50u);
  EXPECT_EQ(log.end_offset(), 150u);
  // from_start: the first chunk is at the oldest retained byte and says how
  // much was dropped before it.
  std::vector<Got> got = ReadAll(log, log.StartOffset(std::nullopt, true).value());
  ASSERT_FALSE(got.empty());
  EXPECT_EQ(got[0].offset, 50u);
  EXPECT_EQ(got[0].dropped_before, 50u);
  for (size_t i = 1; i < got.size(); ++i) EXPECT_EQ(got[i].dropped_before, 0u);
  EXPECT_EQ(Concat(got), data.substr(50));
}

TEST(OutputLogTest, RetentionPastAReadersCursorIsReportedAtItsNextRead) {
  OutputLog log(kId, SmallOptions(/*max_bytes=*/40));
  for (uint64_t offset = 0; offset < 40; offset += 10) {
    ASSERT_TRUE(log.AppendData(offset, kOut, std::string(10, 'a')).ok());
  }
  // A reader has taken [0, 25) and holds only its cursor.
  const uint64_t cursor = 25;
  for (uint64_t offset = 40; offset < 80; offset += 10) {
    ASSERT_TRUE(log.AppendData(offset, kErr, std::string(10, 'b')).ok());
  }
  std::optional<OutputLog::Chunk> next = log.Read(cursor);
  ASSERT_TRUE(next.has_value());
  EXPECT_EQ(next->offset, 40u);
  EXPECT_EQ(next->dropped_before, 15u);
  EXPECT_EQ(next->stream, kErr);
}

TEST(OutputLogTest, CountsAnOverheadPerChunk) {
  OutputLog::Options options = SmallOptions();
  options.chunk_overhead_bytes = 16;
  OutputLog log(kId, options);
  // 25 bytes of one stream fill chunks of 10, 10 and 5.
  absl::StatusOr<OutputLog::Update> update =
      log.AppendData(0, kOut, std::string(25, 'x'));
  ASSERT_TRUE(update.ok());
  EXPECT_EQ(update->retained_delta, 25 + 3 * 16);
  // Small appends of the same stream fill the last chunk before a new one.
  update = log.AppendData(25, kOut, "abc");
  ASSERT_TRUE(update.ok());
  EXPECT_EQ(update->retained_delta, 3);
  EXPECT_EQ(log.retained_bytes(), 28u + 3 * 16);
}

TEST(OutputLogTest, RecordsGapsAndReportsThemInDroppedBefore) {
  OutputLog log(kId, OutputLog::Options());
  ASSERT_TRUE(log.AppendData(0, kOut, "12345").ok());
  absl::StatusOr<OutputLog::Update> gap = log.AppendGap(5, 10);
  ASSERT_TRUE(gap.ok()) << gap.status();
  EXPECT_EQ(gap->end_offset, 15u);
  ASSERT_TRUE(log.AppendData(15, kOut, "abc").ok());
  // Data past the end: the bytes in between were lost.
  ASSERT_TRUE(log.AppendData(30, kErr, "late").ok());

  EXPECT_THAT(ReadAll(log, 0), ElementsAre(Got{0, 0, kOut, "12345"},
                                           Got{15, 10, kOut, "abc"},
                                           Got{30, 12, kErr, "late"}));
  // A reader that starts inside a gap is told about the rest of it.
  EXPECT_THAT(ReadAll(log, 20), ElementsAre(Got{30, 10, kErr, "late"}));
}

TEST(OutputLogTest, TrailingGapIsAnEmptyChunk) {
  OutputLog log(kId, OutputLog::Options());
  ASSERT_TRUE(log.AppendData(0, kOut, "12345").ok());
  absl::StatusOr<OutputLog::Update> closed = log.Close(12);
  ASSERT_TRUE(closed.ok()) << closed.status();
  EXPECT_TRUE(closed->closed);
  EXPECT_TRUE(closed->closed_now);
  EXPECT_EQ(closed->end_offset, 12u);
  EXPECT_THAT(ReadAll(log, 0), ElementsAre(Got{0, 0, kOut, "12345"},
                                           Got{12, 7, kNone, ""}));
}

TEST(OutputLogTest, SkipsAResentPrefix) {
  OutputLog log(kId, SmallOptions());
  const std::string data = "the quick brown fox jumps";
  ASSERT_TRUE(log.AppendData(0, kOut, data.substr(0, 12)).ok());
  // A reconnect resends from an older ack: [5, 20) overlaps [5, 12).
  absl::StatusOr<OutputLog::Update> update =
      log.AppendData(5, kOut, data.substr(5, 15));
  ASSERT_TRUE(update.ok()) << update.status();
  EXPECT_EQ(update->end_offset, 20u);
  EXPECT_EQ(update->retained_delta, 8);
  // Entirely old data changes nothing.
  update = log.AppendData(0, kOut, data.substr(0, 20));
  ASSERT_TRUE(update.ok());
  EXPECT_EQ(update->end_offset, 20u);
  EXPECT_EQ(update->retained_delta, 0);
  ASSERT_TRUE(log.AppendData(20, kOut, data.substr(20)).ok());

  EXPECT_EQ(Concat(ReadAll(log, 0)), data);
  EXPECT_EQ(log.retained_bytes(), data.size());
}

TEST(OutputLogTest, RefusesBadAppends) {
  OutputLog log(kId, OutputLog::Options());
  absl::StatusOr<OutputLog::Update> no_stream = log.AppendData(0, kNone, "x");
  EXPECT_EQ(no_stream.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(no_stream.status().message(), HasSubstr("names no stream"));

  absl::StatusOr<OutputLog::Update> overflow =
      log.AppendData(~uint64_t{0} - 1, kOut, "xyz");
  EXPECT_EQ(overflow.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(overflow.status().message(), HasSubstr("overflows"));
  EXPECT_EQ(log.AppendGap(10, ~uint64_t{0}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(log.end_offset(), 0u);
}

TEST(OutputLogTest, CloseRules) {
  OutputLog log(kId, OutputLog::Options());
  ASSERT_TRUE(log.AppendData(0, kOut, "0123456789").ok());

  absl::StatusOr<OutputLog::Update> short_close = log.Close(4);
  EXPECT_EQ(short_close.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(short_close.status().message(),
              HasSubstr("close at offset 4 but output up to offset 10"));

  ASSERT_TRUE(log.Close(10).ok());
  // Repeating the close (a resend after a reconnect) is fine.
  absl::StatusOr<OutputLog::Update> again = log.Close(10);
  ASSERT_TRUE(again.ok());
  EXPECT_FALSE(again->closed_now);
  EXPECT_EQ(log.Close(11).status().code(),
            absl::StatusCode::kFailedPrecondition);
  // Resent old data is skipped; new data is refused.
  EXPECT_TRUE(log.AppendData(5, kOut, "56789").ok());
  absl::StatusOr<OutputLog::Update> late = log.AppendData(10, kOut, "x");
  EXPECT_EQ(late.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(late.status().message(), HasSubstr("was closed at offset 10"));
  EXPECT_EQ(log.AppendGap(10, 5).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST(OutputLogTest, DropOldestFreesWholeChunks) {
  OutputLog log(kId, SmallOptions());
  ASSERT_TRUE(log.AppendData(0, kOut, std::string(35, 'x')).ok());
  EXPECT_EQ(log.DropOldest(15), 20u);  // two chunks of 10
  EXPECT_EQ(log.first_retained_offset(), 20u);
  EXPECT_EQ(log.DropOldest(1000), 15u);
  EXPECT_EQ(log.retained_bytes(), 0u);
  EXPECT_EQ(log.first_retained_offset(), 35u);
  // Everything dropped: one empty chunk reports it.
  EXPECT_THAT(ReadAll(log, 0), ElementsAre(Got{35, 35, kNone, ""}));
}

class CountingWatcher : public OutputLog::Watcher {
 public:
  void OnLogChanged() override { ++calls; }
  int calls = 0;
};

TEST(OutputLogTest, WakesAWatcherOnceWhenTheLogGrowsOrCloses) {
  OutputLog log(kId, OutputLog::Options());
  auto watcher = std::make_shared<CountingWatcher>();

  EXPECT_EQ(log.WaitPast(0, watcher), OutputLog::WaitResult::kRegistered);
  EXPECT_EQ(log.WaitPast(0, watcher), OutputLog::WaitResult::kRegistered);
  EXPECT_EQ(log.watcher_count(), 1u);
  ASSERT_TRUE(log.AppendData(0, kOut, "a").ok());
  EXPECT_EQ(watcher->calls, 1);
  EXPECT_EQ(log.watcher_count(), 0u);
  ASSERT_TRUE(log.AppendData(1, kOut, "b").ok());
  EXPECT_EQ(watcher->calls, 1);  // one call per registration

  EXPECT_EQ(log.WaitPast(1, watcher), OutputLog::WaitResult::kDataReady);
  EXPECT_EQ(log.WaitPast(2, watcher), OutputLog::WaitResult::kRegistered);
  ASSERT_TRUE(log.AppendGap(2, 3).ok());  // a gap wakes too
  EXPECT_EQ(watcher->calls, 2);

  EXPECT_EQ(log.WaitPast(5, watcher), OutputLog::WaitResult::kRegistered);
  ASSERT_TRUE(log.Close(5).ok());
  EXPECT_EQ(watcher->calls, 3);
  EXPECT_EQ(log.WaitPast(5, watcher), OutputLog::WaitResult::kClosed);
}

TEST(OutputLogTest, UnwatchedAndDestroyedWatchersAreNotCalled) {
  OutputLog log(kId, OutputLog::Options());
  auto unwatched = std::make_shared<CountingWatcher>();
  auto destroyed = std::make_shared<CountingWatcher>();
  ASSERT_EQ(log.WaitPast(0, unwatched), OutputLog::WaitResult::kRegistered);
  ASSERT_EQ(log.WaitPast(0, destroyed), OutputLog::WaitResult::kRegistered);
  log.Unwatch(unwatched.get());
  destroyed.reset();  // the log held only a weak reference
  EXPECT_EQ(log.watcher_count(), 1u);
  ASSERT_TRUE(log.AppendData(0, kOut, "a").ok());
  EXPECT_EQ(unwatched->calls, 0);
  EXPECT_EQ(log.watcher_count(), 0u);
}

}  // namespace
}  // namespace pm::log_store
