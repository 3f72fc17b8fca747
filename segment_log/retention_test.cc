#include "segment_log/retention.h"

#include <fcntl.h>
#include <sys/stat.h>

#include "gtest/gtest.h"
#include "segment_log/test_util.h"

namespace pm::segment_log {
namespace {

// Sets the mtime of `path` to `seconds` after the epoch.
void SetMtime(const std::string& path, int64_t seconds) {
  struct timespec times[2] = {{0, UTIME_OMIT}, {seconds, 0}};
  ASSERT_EQ(utimensat(AT_FDCWD, path.c_str(), times, 0), 0) << path;
}

// Appends `segments` segments of 140 bytes (two 30-byte records each) to a
// writer of `dir`; returns it, still open.
std::unique_ptr<Writer> Fill(const std::string& dir, int segments) {
  std::unique_ptr<Writer> writer = OpenWriter(dir, Sizes(100));
  for (int i = 0; i < 2 * segments; ++i) {
    EXPECT_TRUE(writer->Append(Stream::kStdout, std::string(30, 'x'), kT0).ok());
  }
  return writer;
}

TEST(DeleteOldestSegmentsTest, DeletesTheOldestAcrossDirectoriesUntilUnderTheCap) {
  TempDir tmp;
  std::unique_ptr<Writer> a = Fill(tmp.Sub("a"), 3);
  std::unique_ptr<Writer> b = Fill(tmp.Sub("b"), 3);
  std::vector<std::string> a_paths = SegmentPaths(tmp.Sub("a"));
  std::vector<std::string> b_paths = SegmentPaths(tmp.Sub("b"));
  ASSERT_EQ(a_paths.size(), 3u);
  ASSERT_EQ(b_paths.size(), 3u);
  // Interleaved ages: b0 oldest, then a0, b1, a1; the current ones newest.
  SetMtime(b_paths[0], 100);
  SetMtime(a_paths[0], 200);
  SetMtime(b_paths[1], 300);
  SetMtime(a_paths[1], 400);

  // 6 * 140 = 840 bytes; 600 allowed: two segments must go.
  absl::StatusOr<TotalCapResult> result = DeleteOldestSegments(
      {tmp.Sub("a"), tmp.Sub("b"), tmp.Sub("never-created")}, 600);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->total_bytes, 840u);
  EXPECT_EQ(result->deleted_segments, 2u);
  EXPECT_EQ(result->deleted_bytes, 280u);
  EXPECT_EQ(SegmentPaths(tmp.Sub("a")),
            (std::vector<std::string>{a_paths[1], a_paths[2]}));
  EXPECT_EQ(SegmentPaths(tmp.Sub("b")),
            (std::vector<std::string>{b_paths[1], b_paths[2]}));

  // The readers see the loss.
  std::vector<Chunk> chunks = ReadChunks(*OpenReader(tmp.Sub("a")), 0);
  ASSERT_FALSE(chunks.empty());
  EXPECT_EQ(chunks[0].dropped_before, 60u);

  // Nothing deleted when under the cap.
  result = DeleteOldestSegments({tmp.Sub("a"), tmp.Sub("b")}, 600);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->deleted_segments, 0u);
}

TEST(DeleteOldestSegmentsTest, NeverDeletesTheSegmentALiveWriterIsIn) {
  TempDir tmp;
  std::unique_ptr<Writer> live = Fill(tmp.Sub("live"), 2);
  std::unique_ptr<Writer> ended = Fill(tmp.Sub("ended"), 2);
  ASSERT_TRUE(ended->Close(kT0).ok());
  const std::string live_current = SegmentPaths(tmp.Sub("live")).back();
  SetMtime(live_current, 1);  // the oldest of all, yet it stays

  absl::StatusOr<TotalCapResult> result =
      DeleteOldestSegments({tmp.Sub("live"), tmp.Sub("ended")}, 0);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(SegmentPaths(tmp.Sub("live")),
            std::vector<std::string>{live_current});
  // An ended output may lose everything, its end record too (in a third
  // segment: the second was full when Close came).
  EXPECT_TRUE(SegmentPaths(tmp.Sub("ended")).empty());
  EXPECT_EQ(result->deleted_segments, 1u + 3u);
  // The live writer goes on.
  ASSERT_TRUE(live->Append(Stream::kStdout, "still here", kT0).ok());
  EXPECT_EQ(DataOf(ReadChunks(*OpenReader(tmp.Sub("live")), 120)),
            "still here");
}

TEST(DeleteOldestSegmentsTest, OutputThatLooksLikeAnEndRecordDoesNotEndIt) {
  TempDir tmp;
  std::unique_ptr<Writer> writer = Fill(tmp.Sub("live"), 1);
  // The process prints the bytes of a valid end record as its last output.
  Record end;
  end.kind = RecordKind::kEnd;
  end.offset = 60 + kRecordHeaderBytes + kRecordHeaderBytes;
  end.time = kT0;
  ASSERT_TRUE(
      writer->Append(Stream::kStdout, EncodeRecordHeader(end, ""), kT0).ok());
  absl::StatusOr<TotalCapResult> result =
      DeleteOldestSegments({tmp.Sub("live")}, 0);
  ASSERT_TRUE(result.ok()) << result.status();
  // Only the sealed first segment goes; the one being written stays.
  EXPECT_EQ(result->deleted_segments, 1u);
  EXPECT_EQ(SegmentPaths(tmp.Sub("live")).size(), 1u);
}

TEST(DeleteOldestSegmentsTest, KeepsOffsetOrderWithinADirectory) {
  TempDir tmp;
  std::unique_ptr<Writer> writer = Fill(tmp.Sub("a"), 3);
  std::vector<std::string> paths = SegmentPaths(tmp.Sub("a"));
  // The second segment looks older than the first (a clock step back).
  SetMtime(paths[0], 500);
  SetMtime(paths[1], 100);
  absl::StatusOr<TotalCapResult> result =
      DeleteOldestSegments({tmp.Sub("a")}, 300);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(SegmentPaths(tmp.Sub("a")),
            (std::vector<std::string>{paths[1], paths[2]}));
}

}  // namespace
}  // namespace pm::segment_log
