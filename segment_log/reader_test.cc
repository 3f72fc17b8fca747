#include "segment_log/reader.h"

#include <sys/inotify.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/fd.h"
#include "gtest/gtest.h"
#include "segment_log/test_util.h"
#include "segment_log/writer.h"

namespace pm::segment_log {
namespace {

TEST(ReaderTest, OpenOfAMissingDirectoryIsNotFoundNamingIt) {
  TempDir tmp;
  absl::StatusOr<std::unique_ptr<Reader>> reader =
      Reader::Open(tmp.Sub("nope"));
  ASSERT_EQ(reader.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(reader.status().message().find("opendir(\"" + tmp.Sub("nope")),
            std::string::npos)
      << reader.status();
}

TEST(ReaderTest, ADirectoryWithoutSegmentsReadsAsEmptyAndOpen) {
  TempDir tmp;
  std::unique_ptr<Reader> reader = OpenReader(tmp.path());
  ASSERT_NE(reader, nullptr);
  EXPECT_TRUE(ReadChunks(*reader, 0).empty());
  EXPECT_EQ(reader->end_offset(), 0u);
  EXPECT_FALSE(reader->closed());
}

TEST(ReaderTest, ReadsBothStreamsByteExactWithOffsetsAndTimes) {
  TempDir tmp;
  std::unique_ptr<Writer> writer = OpenWriter(tmp.path());
  const std::string binary("\0\xff\r\n", 4);
  ASSERT_TRUE(writer->Append(Stream::kStdout, "one ", kT0).ok());
  ASSERT_TRUE(
      writer->Append(Stream::kStdout, "two\n", kT0 + absl::Seconds(1)).ok());
  ASSERT_TRUE(
      writer->Append(Stream::kStderr, binary, kT0 + absl::Seconds(2)).ok());
  ASSERT_TRUE(
      writer->Append(Stream::kStdout, "three", kT0 + absl::Seconds(3)).ok());

  std::unique_ptr<Reader> reader = OpenReader(tmp.path());
  EXPECT_EQ(reader->start_offset(), 0u);
  EXPECT_EQ(reader->end_offset(), 17u);
  EXPECT_FALSE(reader->closed());
  std::vector<Chunk> chunks = ReadChunks(*reader, 0);
  // Consecutive records of one stream come as one chunk.
  ASSERT_EQ(chunks.size(), 3u);
  EXPECT_EQ(chunks[0].offset, 0u);
  EXPECT_EQ(chunks[0].stream, Stream::kStdout);
  EXPECT_EQ(chunks[0].data, "one two\n");
  EXPECT_EQ(chunks[0].time, kT0);
  EXPECT_EQ(chunks[1].offset, 8u);
  EXPECT_EQ(chunks[1].stream, Stream::kStderr);
  EXPECT_EQ(chunks[1].data, binary);
  EXPECT_EQ(chunks[1].time, kT0 + absl::Seconds(2));
  EXPECT_EQ(chunks[2].offset, 12u);
  EXPECT_EQ(chunks[2].data, "three");
  EXPECT_EQ(DroppedIn(chunks), 0u);
}

TEST(ReaderTest, RefreshFollowsTheWriterAcrossAppendsRotationsAndTheEnd) {
  TempDir tmp;
  std::unique_ptr<Writer> writer = OpenWriter(tmp.path(), Sizes(100, 300));
  std::unique_ptr<Reader> reader = OpenReader(tmp.path());
  EXPECT_EQ(reader->end_offset(), 0u);
  for (int i = 1; i <= 12; ++i) {
    ASSERT_TRUE(writer->Append(Stream::kStdout, std::string(30, 'r'), kT0).ok());
    ASSERT_TRUE(reader->Refresh().ok());
    EXPECT_EQ(reader->end_offset(), 30u * i);
    EXPECT_FALSE(reader->closed());
  }
  EXPECT_EQ(reader->start_offset(), 240u);  // the cap kept the last 4 records
  ASSERT_TRUE(writer->Close(kT0).ok());
  ASSERT_TRUE(reader->Refresh().ok());
  EXPECT_TRUE(reader->closed());
  EXPECT_EQ(reader->end_offset(), 360u);
}

// Open files of this process whose name ends " (deleted)".
int DeletedFilesHeldOpen() {
  int held = 0;
  for (int fd = 0; fd < 1024; ++fd) {
    char link[4096];
    const ssize_t n = readlink(absl::StrCat("/proc/self/fd/", fd).c_str(),
                               link, sizeof(link) - 1);
    if (n <= 0) continue;
    if (absl::EndsWith(absl::string_view(link, n), " (deleted)")) ++held;
  }
  return held;
}

// A reader opened early keeps no fd on a segment it has read past, so the
// per-process cap's deletions free the disk while it follows.
TEST(ReaderTest, AReaderHoldsNoSegmentItHasReadPastOnceRetentionDeletesIt) {
  TempDir tmp;
  std::unique_ptr<Writer> writer = OpenWriter(tmp.path(), Sizes(64, 200));
  ASSERT_TRUE(writer->Append(Stream::kStdout, std::string(80, 'a'), kT0).ok());
  std::unique_ptr<Reader> reader = OpenReader(tmp.path());  // newest: the 1st
  for (char c : {'b', 'c', 'd', 'e'}) {
    ASSERT_TRUE(writer->Append(Stream::kStdout, std::string(80, c), kT0).ok());
  }
  std::vector<Chunk> chunks = ReadChunks(*reader, 80);
  EXPECT_EQ(DataOf(chunks).substr(DataOf(chunks).size() - 80),
            std::string(80, 'e'));
  EXPECT_EQ(DeletedFilesHeldOpen(), 0);
}

TEST(ReaderTest, ACursorInsideARecordAndASmallMaxSplitIt) {
  TempDir tmp;
  std::unique_ptr<Writer> writer = OpenWriter(tmp.path());
  ASSERT_TRUE(writer->Append(Stream::kStdout, "0123456789", kT0).ok());
  ASSERT_TRUE(writer->Append(Stream::kStdout, "abcdef", kT0).ok());
  std::unique_ptr<Reader> reader = OpenReader(tmp.path());
  std::vector<Chunk> chunks = ReadChunks(*reader, 3, 4);
  ASSERT_EQ(chunks.size(), 4u);
  EXPECT_EQ(chunks[0].offset, 3u);
  EXPECT_EQ(chunks[0].data, "3456");
  EXPECT_EQ(chunks[1].data, "789");  // a record is not split to fill a chunk
  EXPECT_EQ(chunks[2].data, "abcd");
  EXPECT_EQ(chunks[3].data, "ef");
  EXPECT_EQ(chunks[3].offset, 14u);
  // Going back is fine too.
  absl::StatusOr<std::optional<Chunk>> again = reader->Read(1, 2);
  ASSERT_TRUE(again.ok() && *again);
  EXPECT_EQ((*again)->data, "12");
}

TEST(ReaderTest, ReadsAcrossSegments) {
  TempDir tmp;
  std::unique_ptr<Writer> writer = OpenWriter(tmp.path(), Sizes(100));
  std::string all;
  for (int i = 0; i < 20; ++i) {
    std::string piece = absl::StrCat("line ", i, "\n");
    ASSERT_TRUE(writer
                    ->Append(i % 3 ? Stream::kStdout : Stream::kStderr, piece,
                             kT0)
                    .ok());
    all += piece;
  }
  ASSERT_GT(SegmentPaths(tmp.path()).size(), 5u);
  std::unique_ptr<Reader> reader = OpenReader(tmp.path());
  std::vector<Chunk> chunks = ReadChunks(*reader, 0);
  EXPECT_EQ(DataOf(chunks), all);
  EXPECT_EQ(DroppedIn(chunks), 0u);
  EXPECT_EQ(reader->end_offset(), all.size());
  // From an offset in a later segment.
  chunks = ReadChunks(*reader, 100);
  EXPECT_EQ(DataOf(chunks), all.substr(100));
}

TEST(ReaderTest, BytesDeletedByThePerProcessCapAreReportedAsDropped) {
  TempDir tmp;
  std::unique_ptr<Writer> writer = OpenWriter(tmp.path(), Sizes(100, 300));
  std::string all;
  for (int i = 0; i < 10; ++i) {
    std::string piece(30, static_cast<char>('a' + i));
    ASSERT_TRUE(writer->Append(Stream::kStdout, piece, kT0).ok());
    all += piece;
  }
  std::unique_ptr<Reader> reader = OpenReader(tmp.path());
  EXPECT_EQ(reader->start_offset(), 180u);
  std::vector<Chunk> chunks = ReadChunks(*reader, 0);
  ASSERT_FALSE(chunks.empty());
  EXPECT_EQ(chunks[0].offset, 180u);
  EXPECT_EQ(chunks[0].dropped_before, 180u);
  EXPECT_EQ(DataOf(chunks), all.substr(180));
}

TEST(ReaderTest, AGapIsReportedAsDroppedAndATrailingOneAsAnEmptyChunk) {
  TempDir tmp;
  // A gap record written by hand, as the writer does after a failed write.
  {
    std::unique_ptr<Writer> writer = OpenWriter(tmp.path());
    ASSERT_TRUE(writer->Append(Stream::kStdout, "before", kT0).ok());
  }
  const std::string path = SegmentPaths(tmp.path())[0];
  Record gap;
  gap.kind = RecordKind::kGap;
  gap.offset = 6;
  gap.length = 100;
  gap.time = kT0;
  {
    std::string bytes = EncodeRecordHeader(gap, "");
    FILE* f = fopen(path.c_str(), "a");
    ASSERT_NE(f, nullptr);
    ASSERT_EQ(fwrite(bytes.data(), 1, bytes.size(), f), bytes.size());
    fclose(f);
  }
  std::unique_ptr<Reader> reader = OpenReader(tmp.path());
  std::vector<Chunk> chunks = ReadChunks(*reader, 0);
  ASSERT_EQ(chunks.size(), 2u);
  EXPECT_EQ(chunks[0].data, "before");
  EXPECT_EQ(chunks[1].offset, 106u);
  EXPECT_EQ(chunks[1].dropped_before, 100u);
  EXPECT_TRUE(chunks[1].data.empty());
  // From inside the gap: only the rest of it is reported.
  chunks = ReadChunks(*reader, 50);
  ASSERT_EQ(chunks.size(), 1u);
  EXPECT_EQ(chunks[0].dropped_before, 56u);

  std::unique_ptr<Writer> writer = OpenWriter(tmp.path());
  EXPECT_EQ(writer->end_offset(), 106u);
  ASSERT_TRUE(writer->Append(Stream::kStderr, "after", kT0).ok());
  chunks = ReadChunks(*reader, 6);
  ASSERT_EQ(chunks.size(), 1u);
  EXPECT_EQ(chunks[0].offset, 106u);
  EXPECT_EQ(chunks[0].dropped_before, 100u);
  EXPECT_EQ(chunks[0].data, "after");
}

TEST(ReaderTest, RunStartsComeAsEmptyChunksEachOnceInOrder) {
  TempDir tmp;
  // Segments of 100 bytes: the marks end the first one, "third" follows
  // them there, and "fourth" starts the second.
  std::unique_ptr<Writer> writer = OpenWriter(tmp.path(), Sizes(100));
  ASSERT_TRUE(writer->Append(Stream::kStdout, "first\n", kT0).ok());
  ASSERT_TRUE(writer->AppendRunStart(2, kT0 + absl::Seconds(1)).ok());
  ASSERT_TRUE(writer->AppendRunStart(3, kT0 + absl::Seconds(2)).ok());
  ASSERT_TRUE(writer->Append(Stream::kStdout, "third\n", kT0).ok());
  ASSERT_TRUE(writer->Append(Stream::kStderr, "fourth\n", kT0).ok());
  ASSERT_EQ(SegmentPaths(tmp.path()).size(), 2u);
  std::unique_ptr<Reader> reader = OpenReader(tmp.path());
  std::vector<Chunk> chunks = ReadChunks(*reader, 0);
  ASSERT_EQ(chunks.size(), 5u);
  EXPECT_EQ(chunks[0].data, "first\n");
  EXPECT_EQ(chunks[0].run_start, 0u);
  EXPECT_EQ(chunks[1].run_start, 2u);
  EXPECT_EQ(chunks[1].offset, 6u);
  EXPECT_TRUE(chunks[1].data.empty());
  EXPECT_EQ(chunks[1].time, kT0 + absl::Seconds(1));
  EXPECT_EQ(chunks[2].run_start, 3u);
  EXPECT_EQ(chunks[2].offset, 6u);
  EXPECT_EQ(chunks[3].data, "third\n");
  EXPECT_EQ(chunks[4].data, "fourth\n");
  EXPECT_EQ(DroppedIn(chunks), 0u);
  // From the marks' offset they come again, to a fresh reader too (a
  // follower resuming there); from after it, not.
  chunks = ReadChunks(*reader, 6);
  ASSERT_EQ(chunks.size(), 4u);
  EXPECT_EQ(chunks[0].run_start, 2u);
  chunks = ReadChunks(*OpenReader(tmp.path()), 6);
  ASSERT_EQ(chunks.size(), 4u);
  EXPECT_EQ(chunks[1].run_start, 3u);
  chunks = ReadChunks(*reader, 7);
  ASSERT_EQ(chunks.size(), 2u);
  EXPECT_EQ(chunks[0].data, "hird\n");
  // A follower caught up at the end sees a mark written after that.
  std::unique_ptr<Reader> follower = OpenReader(tmp.path());
  EXPECT_EQ(DataOf(ReadChunks(*follower, 0)), "first\nthird\nfourth\n");
  ASSERT_TRUE(writer->AppendRunStart(4, kT0).ok());
  chunks = ReadChunks(*follower, 19);
  ASSERT_EQ(chunks.size(), 1u);
  EXPECT_EQ(chunks[0].run_start, 4u);
  EXPECT_EQ(chunks[0].offset, 19u);
}

TEST(ReaderTest, TheEndRecordClosesTheOutput) {
  TempDir tmp;
  std::unique_ptr<Writer> writer = OpenWriter(tmp.path());
  ASSERT_TRUE(writer->Append(Stream::kStdout, "last words", kT0).ok());
  std::unique_ptr<Reader> reader = OpenReader(tmp.path());
  EXPECT_EQ(DataOf(ReadChunks(*reader, 0)), "last words");
  EXPECT_FALSE(reader->closed());
  ASSERT_TRUE(writer->Close(kT0).ok());
  absl::StatusOr<std::optional<Chunk>> chunk = reader->Read(10);
  ASSERT_TRUE(chunk.ok()) << chunk.status();
  EXPECT_FALSE(*chunk);
  EXPECT_TRUE(reader->closed());
  EXPECT_EQ(reader->end_offset(), 10u);
  // A fresh reader sees it at once.
  EXPECT_TRUE(OpenReader(tmp.path())->closed());
}


// The reader stops before the torn record; once the writer has reopened
// (cutting it) and appended, the same reader continues.
void ExpectReaderStopsThenContinues(const std::string& dir) {
  std::unique_ptr<Reader> reader = OpenReader(dir);
  std::vector<Chunk> chunks = ReadChunks(*reader, 0);
  EXPECT_EQ(DataOf(chunks), "first");
  EXPECT_EQ(reader->end_offset(), 5u);
  std::unique_ptr<Writer> writer = OpenWriter(dir);
  ASSERT_TRUE(writer->Append(Stream::kStdout, "+more", kT0).ok());
  chunks = ReadChunks(*reader, 5);
  ASSERT_EQ(chunks.size(), 1u);
  EXPECT_EQ(chunks[0].offset, 5u);
  EXPECT_EQ(chunks[0].dropped_before, 0u);
  EXPECT_EQ(chunks[0].data, "+more");
}

TEST(ReaderTest, StopsAtATailTornInTheHeader) {
  TempDir tmp;
  TruncateFile(TwoRecords(tmp.path()), kSecondRecordPos + 7);
  ExpectReaderStopsThenContinues(tmp.path());
}

TEST(ReaderTest, StopsAtATailTornInThePayload) {
  TempDir tmp;
  TruncateFile(TwoRecords(tmp.path()), kSecondRecordPos + kRecordHeaderBytes + 2);
  ExpectReaderStopsThenContinues(tmp.path());
}

TEST(ReaderTest, StopsAtALastRecordWithABadChecksum) {
  TempDir tmp;
  CorruptByte(TwoRecords(tmp.path()), kSecondRecordPos + 14);  // its offset
  ExpectReaderStopsThenContinues(tmp.path());
}

TEST(ReaderTest, ACorruptRecordInAnOlderSegmentSkipsToTheNextOne) {
  TempDir tmp;
  std::unique_ptr<Writer> writer = OpenWriter(tmp.path(), Sizes(100));
  for (int i = 0; i < 6; ++i) {
    ASSERT_TRUE(
        writer->Append(Stream::kStdout, std::string(30, 'a' + i), kT0).ok());
  }
  // The first segment holds [0, 60): its second record goes bad.
  CorruptByte(SegmentPaths(tmp.path())[0],
              kFileHeaderBytes + kRecordHeaderBytes + 30 + kRecordHeaderBytes);
  std::unique_ptr<Reader> reader = OpenReader(tmp.path());
  std::vector<Chunk> chunks = ReadChunks(*reader, 0);
  ASSERT_GE(chunks.size(), 2u);
  EXPECT_EQ(chunks[0].data, std::string(30, 'a'));
  EXPECT_EQ(chunks[1].offset, 60u);
  EXPECT_EQ(chunks[1].dropped_before, 30u);
  EXPECT_EQ(DroppedIn(chunks), 30u);
  EXPECT_EQ(DataOf(chunks), std::string(30, 'a') + std::string(30, 'c') +
                                std::string(30, 'd') + std::string(30, 'e') +
                                std::string(30, 'f'));
}

TEST(ReaderTest, ASegmentDeletedUnderTheReaderIsReportedAsDropped) {
  TempDir tmp;
  std::unique_ptr<Writer> writer = OpenWriter(tmp.path(), Sizes(100));
  for (int i = 0; i < 6; ++i) {
    ASSERT_TRUE(
        writer->Append(Stream::kStdout, std::string(30, 'a' + i), kT0).ok());
  }
  std::unique_ptr<Reader> reader = OpenReader(tmp.path());
  // The reader is inside the first segment ([0, 60)) ...
  absl::StatusOr<std::optional<Chunk>> chunk = reader->Read(0, 10);
  ASSERT_TRUE(chunk.ok() && *chunk);
  EXPECT_EQ((*chunk)->data, "aaaaaaaaaa");
  // ... when retention deletes it and the next one.
  std::vector<std::string> paths = SegmentPaths(tmp.path());
  ASSERT_EQ(paths.size(), 3u);
  ASSERT_EQ(unlink(paths[0].c_str()), 0);
  ASSERT_EQ(unlink(paths[1].c_str()), 0);
  std::vector<Chunk> chunks = ReadChunks(*reader, 10);
  ASSERT_EQ(chunks.size(), 1u);
  EXPECT_EQ(chunks[0].offset, 120u);
  EXPECT_EQ(chunks[0].dropped_before, 110u);
  EXPECT_EQ(chunks[0].data, std::string(30, 'e') + std::string(30, 'f'));
  // Every segment gone: what was written is reported lost, nothing breaks.
  ASSERT_EQ(unlink(paths[2].c_str()), 0);
  EXPECT_TRUE(ReadChunks(*reader, 180).empty());
  chunks = ReadChunks(*reader, 150);
  ASSERT_EQ(chunks.size(), 1u);
  EXPECT_EQ(chunks[0].offset, 180u);
  EXPECT_EQ(chunks[0].dropped_before, 30u);
  EXPECT_TRUE(chunks[0].data.empty());
}

TEST(ReaderTest, OffsetAtFindsTheFirstRecordReadAtOrAfterATime) {
  TempDir tmp;
  std::unique_ptr<Writer> writer = OpenWriter(tmp.path(), Sizes(100));
  for (int i = 0; i < 10; ++i) {
    // Record i at offset 10 * i, read at kT0 + i s.
    ASSERT_TRUE(writer
                    ->Append(Stream::kStdout, "0123456789",
                             kT0 + absl::Seconds(i))
                    .ok());
  }
  std::unique_ptr<Reader> reader = OpenReader(tmp.path());
  EXPECT_EQ(*reader->OffsetAt(kT0 - absl::Hours(1)), 0u);
  EXPECT_EQ(*reader->OffsetAt(kT0), 0u);
  EXPECT_EQ(*reader->OffsetAt(kT0 + absl::Milliseconds(2500)), 30u);
  EXPECT_EQ(*reader->OffsetAt(kT0 + absl::Seconds(7)), 70u);
  EXPECT_EQ(*reader->OffsetAt(kT0 + absl::Seconds(9)), 90u);
  // After everything: the end, where the next byte will be.
  EXPECT_EQ(*reader->OffsetAt(kT0 + absl::Hours(1)), 100u);
}

TEST(ReaderTest, AChunkHoldsOnlyRecordsReadWithinTheMergeWindow) {
  TempDir tmp;
  std::unique_ptr<Writer> writer = OpenWriter(tmp.path(), Sizes(1000));
  ASSERT_TRUE(writer->Append(Stream::kStdout, "a", kT0).ok());
  ASSERT_TRUE(writer->Append(Stream::kStdout, "b", kT0 + absl::Microseconds(500)).ok());
  ASSERT_TRUE(writer->Append(Stream::kStdout, "c", kT0 + absl::Seconds(2)).ok());
  std::unique_ptr<Reader> reader = OpenReader(tmp.path());
  absl::StatusOr<std::optional<Chunk>> first = reader->Read(0, 100, absl::Milliseconds(1));
  ASSERT_TRUE(first.ok() && *first);
  EXPECT_EQ((*first)->data, "ab");
  EXPECT_EQ((*first)->time, kT0);
  absl::StatusOr<std::optional<Chunk>> second = reader->Read(2, 100, absl::Milliseconds(1));
  ASSERT_TRUE(second.ok() && *second);
  EXPECT_EQ((*second)->data, "c");
  EXPECT_EQ((*second)->time, kT0 + absl::Seconds(2));
  // Without a window, one chunk.
  EXPECT_EQ((*reader->Read(0, 100))->data, "abc");
}

// "a\nbb\nccc\n..." in 4-byte appends over segments of 16 bytes, so lines
// and records and segments cross each other.
TEST(ReaderTest, OffsetOfLastLinesCountsLinesAcrossRecordsAndSegments) {
  TempDir tmp;
  std::unique_ptr<Writer> writer = OpenWriter(tmp.path(), Sizes(16));
  std::string all;
  for (int i = 1; i <= 6; ++i) all += std::string(i, 'a' + i - 1) + "\n";
  for (size_t at = 0; at < all.size(); at += 4) {
    ASSERT_TRUE(writer->Append(Stream::kStdout, all.substr(at, 4), kT0).ok());
  }
  ASSERT_GT(SegmentPaths(tmp.path()).size(), 2u);
  std::unique_ptr<Reader> reader = OpenReader(tmp.path());
  auto tail = [&](uint64_t n) { return all.substr(*reader->OffsetOfLastLines(n)); };
  EXPECT_EQ(tail(0), "");
  EXPECT_EQ(tail(1), "ffffff\n");
  EXPECT_EQ(tail(2), "eeeee\nffffff\n");
  EXPECT_EQ(tail(5), all.substr(2));
  EXPECT_EQ(tail(6), all);
  EXPECT_EQ(tail(100), all);
  // A last line without its newline counts as a line.
  ASSERT_TRUE(writer->Append(Stream::kStdout, "gg", kT0).ok());
  all += "gg";
  EXPECT_EQ(tail(1), "gg");
  EXPECT_EQ(tail(2), "ffffff\ngg");
}

TEST(ReaderTest, OffsetOfLastLinesCountsOnlyTheStreamsAsked) {
  TempDir tmp;
  std::unique_ptr<Writer> writer = OpenWriter(tmp.path(), Sizes(1000));
  ASSERT_TRUE(writer->Append(Stream::kStderr, "e1\n", kT0).ok());  // 0
  ASSERT_TRUE(writer->Append(Stream::kStdout, "o1\n", kT0).ok());  // 3
  ASSERT_TRUE(writer->Append(Stream::kStderr, "e2\n", kT0).ok());  // 6
  ASSERT_TRUE(writer->Append(Stream::kStdout, "o2\n", kT0).ok());  // 9
  std::unique_ptr<Reader> reader = OpenReader(tmp.path());
  EXPECT_EQ(*reader->OffsetOfLastLines(2), 6u);
  // Just after the selected stream's newline before its last line: the
  // other stream's bytes in between are the caller's to skip.
  EXPECT_EQ(*reader->OffsetOfLastLines(1, StreamSet{true, false}), 6u);
  EXPECT_EQ(*reader->OffsetOfLastLines(1, StreamSet{false, true}), 3u);
  EXPECT_EQ(*reader->OffsetOfLastLines(2, StreamSet{false, true}), 0u);
}

// The writer appends in one thread (rotating, and with a cap) while a reader
// follows in another, waiting for the writer's progress, never sleeping.
// With `lag`, the reader reads only once the writer is that far ahead of its
// cursor (or done), so retention deletes segments under it.
void WriteAndFollow(WriterOptions options, uint64_t lag) {
  TempDir tmp;
  std::unique_ptr<Writer> writer = OpenWriter(tmp.path(), options);
  std::unique_ptr<Reader> reader = OpenReader(tmp.path());
  absl::Mutex mu;
  uint64_t published = 0;  // the writer's end_offset() after each append
  std::string expected;   // byte i was written at offset i
  const int kAppends = 3000;
  for (int i = 0; i < kAppends; ++i) {
    expected += std::string(1 + (i * 7919) % 200, static_cast<char>(i));
  }

  std::thread writer_thread([&] {
    size_t at = 0;
    for (int i = 0; i < kAppends; ++i) {
      const size_t n = 1 + (i * 7919) % 200;
      EXPECT_TRUE(writer
                      ->Append(i % 2 ? Stream::kStderr : Stream::kStdout,
                               absl::string_view(expected).substr(at, n), kT0)
                      .ok());
      at += n;
      absl::MutexLock lock(&mu);
      published = writer->end_offset();
    }
    EXPECT_TRUE(writer->Close(kT0).ok());
    absl::MutexLock lock(&mu);
    published = UINT64_MAX;  // closed
  });

  uint64_t cursor = 0;
  uint64_t dropped = 0;
  uint64_t received = 0;
  while (true) {
    absl::StatusOr<std::optional<Chunk>> chunk = reader->Read(cursor, 4096);
    ASSERT_TRUE(chunk.ok()) << chunk.status();
    if (*chunk) {
      const Chunk& c = **chunk;
      ASSERT_EQ(c.offset, cursor + c.dropped_before);
      ASSERT_LE(c.offset + c.data.size(), expected.size());
      ASSERT_EQ(c.data, expected.substr(c.offset, c.data.size()))
          << "at offset " << c.offset;
      dropped += c.dropped_before;
      received += c.data.size();
      cursor = c.offset + c.data.size();
      continue;
    }
    if (reader->closed()) break;
    // Wait until the writer is past the cursor (or closed).
    struct Past {
      const uint64_t* published;
      uint64_t cursor;
    } past{&published, cursor + lag};
    absl::MutexLock lock(&mu);
    mu.Await(absl::Condition(
        +[](Past* p) { return *p->published > p->cursor; }, &past));
  }
  writer_thread.join();
  EXPECT_EQ(cursor, expected.size());
  EXPECT_EQ(received + dropped, expected.size());
  if (lag == 0) {
    EXPECT_EQ(dropped, 0u);
  } else {
    EXPECT_GT(dropped, 0u);
  }
}

TEST(ReaderTest, FollowsAWriterAppendingConcurrently) {
  WriteAndFollow(Sizes(16 << 10), /*lag=*/0);
}

TEST(ReaderTest, FollowsAWriterWhoseCapDeletesSegmentsUnderIt) {
  WriteAndFollow(Sizes(4 << 10, 12 << 10), /*lag=*/24 << 10);
}

// The shim writes from another process; the log_store follows by watching
// the directory with inotify, as reader.h describes: the watch is made
// before the first Read, so an append between a Read and the wait is
// queued, never missed.
TEST(ReaderTest, FollowsAWriterInAnotherProcessWakingOnInotify) {
  TempDir tmp;
  std::string expected;
  const int kAppends = 2000;
  for (int i = 0; i < kAppends; ++i) {
    expected += std::string(1 + (i * 7919) % 300, static_cast<char>(i));
  }
  ASSERT_NE(OpenWriter(tmp.path()), nullptr);  // the directory exists
  Fd watch(inotify_init1(IN_CLOEXEC));
  ASSERT_TRUE(watch.valid());
  ASSERT_GE(inotify_add_watch(watch.get(), tmp.path().c_str(),
                              IN_MODIFY | IN_CREATE | IN_DELETE),
            0);
  std::unique_ptr<Reader> reader = OpenReader(tmp.path());
  // The writer waits for a byte here: the reader has caught up with the
  // empty output first, so it waits on inotify at least once (on a busy
  // machine the writer could otherwise finish before the first Read).
  int go[2];
  ASSERT_EQ(pipe(go), 0);

  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    close(go[1]);
    char byte;
    if (read(go[0], &byte, 1) != 1) _exit(4);
    absl::StatusOr<std::unique_ptr<Writer>> writer =
        Writer::Open(tmp.path(), Sizes(32 << 10));
    if (!writer.ok()) _exit(1);
    size_t at = 0;
    for (int i = 0; i < kAppends; ++i) {
      const size_t n = 1 + (i * 7919) % 300;
      if (!(*writer)
               ->Append(i % 3 ? Stream::kStdout : Stream::kStderr,
                        absl::string_view(expected).substr(at, n), kT0)
               .ok()) {
        _exit(2);
      }
      at += n;
    }
    _exit((*writer)->Close(kT0).ok() ? 0 : 3);
  }

  uint64_t cursor = 0;
  int waits = 0;
  while (true) {
    absl::StatusOr<std::optional<Chunk>> chunk = reader->Read(cursor);
    ASSERT_TRUE(chunk.ok()) << chunk.status();
    if (*chunk) {
      ASSERT_EQ((*chunk)->dropped_before, 0u);
      ASSERT_EQ((*chunk)->data,
                expected.substr((*chunk)->offset, (*chunk)->data.size()));
      cursor = (*chunk)->offset + (*chunk)->data.size();
      continue;
    }
    if (reader->closed()) break;
    if (go[1] >= 0) {
      ASSERT_EQ(write(go[1], "g", 1), 1);
      close(go[1]);
      go[1] = -1;
    }
    char events[4096];
    ASSERT_GT(read(watch.get(), events, sizeof(events)), 0);
    ++waits;
  }
  close(go[0]);
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  EXPECT_EQ(cursor, expected.size());
  EXPECT_EQ(reader->end_offset(), expected.size());
  EXPECT_GT(waits, 0);
}

}  // namespace
}  // namespace pm::segment_log
