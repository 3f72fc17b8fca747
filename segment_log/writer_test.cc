#include "segment_log/writer.h"

#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <string>

#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "gtest/gtest.h"
#include "segment_log/test_util.h"

namespace pm::segment_log {
namespace {

// The data payloads of `records` concatenated.
std::string DataOf(const std::vector<Record>& records) {
  std::string data;
  for (const Record& record : records) data += record.payload;
  return data;
}

// Checks the chain every reader relies on: each record starts where the one
// before it ended, across segments, and each segment at its name's offset.
void ExpectContiguous(const std::string& dir, uint64_t end_offset) {
  std::vector<std::string> paths = SegmentPaths(dir);
  ASSERT_FALSE(paths.empty());
  std::optional<uint64_t> next =
      ParseSegmentName(paths[0].substr(paths[0].rfind('/') + 1));
  for (const std::string& path : paths) {
    EXPECT_EQ(ParseSegmentName(path.substr(path.rfind('/') + 1)), next)
        << path;
    std::vector<Record> records = RecordsOf(path);
    for (const Record& record : records) {
      EXPECT_EQ(record.offset, *next) << path;
      next = record.end();
    }
    // Every byte of the file is a valid record (no torn tail left behind).
    uint64_t bytes = kFileHeaderBytes;
    for (const Record& record : records) bytes += record.file_bytes();
    EXPECT_EQ(FileSize(path), bytes) << path;
  }
  EXPECT_EQ(next, end_offset);
}

TEST(WriterTest, OpenCreatesThePrivateDirectoryAndTheFirstSegment) {
  TempDir tmp;
  const std::string dir = tmp.Sub("proc");
  std::unique_ptr<Writer> writer = OpenWriter(dir);
  ASSERT_NE(writer, nullptr);
  struct stat st;
  ASSERT_EQ(stat(dir.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  EXPECT_EQ(SegmentPaths(dir),
            std::vector<std::string>{dir + "/00000000000000000000.seg"});
  EXPECT_EQ(writer->end_offset(), 0u);
  EXPECT_EQ(writer->retained_bytes(), kFileHeaderBytes);
}

TEST(WriterTest, OpenNamesTheCallAndPathWhenTheParentIsMissing) {
  TempDir tmp;
  absl::StatusOr<std::unique_ptr<Writer>> writer =
      Writer::Open(tmp.Sub("missing/proc"), {});
  ASSERT_EQ(writer.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(writer.status().message().find("mkdir(\"" + tmp.Sub("missing/proc")),
            std::string::npos)
      << writer.status();
}

TEST(WriterTest, OpenRefusesZeroSizes) {
  TempDir tmp;
  EXPECT_EQ(Writer::Open(tmp.Sub("a"), Sizes(0)).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Writer::Open(tmp.Sub("a"), Sizes(100, 0)).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(WriterTest, BothStreamsAreRecordedByteExactWithAbsoluteOffsets) {
  TempDir tmp;
  std::unique_ptr<Writer> writer = OpenWriter(tmp.path());
  const std::string binary("\0\xff\n\x01", 4);
  ASSERT_TRUE(writer->Append(Stream::kStdout, "hello\n", kT0).ok());
  ASSERT_TRUE(writer->Append(Stream::kStderr, binary, kT0 + absl::Seconds(1))
                  .ok());
  ASSERT_TRUE(writer->Append(Stream::kStdout, "", kT0).ok());  // a no-op
  ASSERT_TRUE(writer->Append(Stream::kStdout, "x", kT0 + absl::Seconds(2))
                  .ok());
  EXPECT_EQ(writer->end_offset(), 11u);

  std::vector<Record> records = RecordsIn(tmp.path());
  ASSERT_EQ(records.size(), 3u);
  EXPECT_EQ(records[0].offset, 0u);
  EXPECT_EQ(records[0].stream, Stream::kStdout);
  EXPECT_EQ(records[0].payload, "hello\n");
  EXPECT_EQ(records[0].time, kT0);
  EXPECT_EQ(records[1].offset, 6u);
  EXPECT_EQ(records[1].stream, Stream::kStderr);
  EXPECT_EQ(records[1].payload, binary);
  EXPECT_EQ(records[1].time, kT0 + absl::Seconds(1));
  EXPECT_EQ(records[2].offset, 10u);
  EXPECT_EQ(records[2].payload, "x");
  EXPECT_EQ(writer->retained_bytes(), FileSize(SegmentPaths(tmp.path())[0]));
}

TEST(WriterTest, AnAppendLongerThanOneRecordIsSplit) {
  TempDir tmp;
  std::unique_ptr<Writer> writer = OpenWriter(tmp.path());
  std::string big(2 * kMaxPayloadBytes + 3, 'b');
  big[kMaxPayloadBytes] = 'c';
  ASSERT_TRUE(writer->Append(Stream::kStdout, big, kT0).ok());
  std::vector<Record> records = RecordsIn(tmp.path());
  ASSERT_EQ(records.size(), 3u);
  EXPECT_EQ(records[1].offset, kMaxPayloadBytes);
  EXPECT_EQ(records[2].length, 3u);
  EXPECT_EQ(DataOf(records), big);
}

TEST(WriterTest, ANewSegmentStartsPastSegmentBytesNamedByItsFirstOffset) {
  TempDir tmp;
  std::unique_ptr<Writer> writer =
      OpenWriter(tmp.path(), Sizes(100, 1 << 20));
  std::string all;
  for (int i = 0; i < 10; ++i) {
    std::string piece(30, static_cast<char>('a' + i));
    ASSERT_TRUE(writer->Append(Stream::kStdout, piece, kT0).ok());
    all += piece;
  }
  // Header 16 + two records of 62 = 140 >= 100: two records per segment.
  std::vector<std::string> paths = SegmentPaths(tmp.path());
  ASSERT_EQ(paths.size(), 5u);
  EXPECT_EQ(paths[1], tmp.Sub("00000000000000000060.seg"));
  EXPECT_EQ(paths[4], tmp.Sub("00000000000000000240.seg"));
  EXPECT_EQ(DataOf(RecordsIn(tmp.path())), all);
  ExpectContiguous(tmp.path(), 300);
}

unsigned ModeOf(const std::string& path) {
  struct stat st;
  EXPECT_EQ(stat(path.c_str(), &st), 0) << path;
  return st.st_mode & 0777;
}

TEST(WriterTest, ASegmentIsSealedReadOnlyOnceItsWriterIsDoneWithIt) {
  TempDir tmp;
  std::unique_ptr<Writer> writer = OpenWriter(tmp.path(), Sizes(100));
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE(writer->Append(Stream::kStdout, std::string(30, 'x'), kT0).ok());
  }
  std::vector<std::string> paths = SegmentPaths(tmp.path());
  ASSERT_EQ(paths.size(), 3u);
  EXPECT_EQ(ModeOf(paths[0]), kSealedSegmentMode);
  EXPECT_EQ(ModeOf(paths[1]), kSealedSegmentMode);
  EXPECT_EQ(ModeOf(paths[2]), kOpenSegmentMode);
  ASSERT_TRUE(writer->Close(kT0).ok());
  EXPECT_EQ(ModeOf(paths[2]), kSealedSegmentMode);

  // Reopened, a sealed output stays closed, and is not written.
  writer = OpenWriter(tmp.path(), Sizes(100));
  ASSERT_NE(writer, nullptr);
  EXPECT_TRUE(writer->closed());
  EXPECT_EQ(writer->end_offset(), 150u);
  EXPECT_EQ(SegmentPaths(tmp.path()), paths);
}

TEST(WriterTest, AfterASealedSegmentWithoutEndWritingGoesOnInANewOne) {
  TempDir tmp;
  {
    std::unique_ptr<Writer> writer = OpenWriter(tmp.path(), Sizes(100));
    for (int i = 0; i < 4; ++i) {
      ASSERT_TRUE(
          writer->Append(Stream::kStdout, std::string(30, 'x'), kT0).ok());
    }
  }
  // A crash right after sealing the second segment, before the third began.
  std::vector<std::string> paths = SegmentPaths(tmp.path());
  ASSERT_EQ(paths.size(), 2u);
  ASSERT_EQ(chmod(paths[1].c_str(), kSealedSegmentMode), 0);
  std::unique_ptr<Writer> writer = OpenWriter(tmp.path(), Sizes(100));
  ASSERT_NE(writer, nullptr);
  EXPECT_FALSE(writer->closed());
  EXPECT_EQ(writer->end_offset(), 120u);
  ASSERT_TRUE(writer->Append(Stream::kStdout, "more", kT0).ok());
  EXPECT_EQ(SegmentPaths(tmp.path()).back(),
            tmp.Sub("00000000000000000120.seg"));
  ExpectContiguous(tmp.path(), 124);
}

TEST(WriterTest, ASegmentOfOnlyRunStartsIsNeverLeftForOneOfTheSameName) {
  TempDir tmp;
  // 16 + 32 + 6: the first record fills a segment of 50 bytes; the next
  // segment starts at offset 6 and holds only marks until "later".
  std::unique_ptr<Writer> writer = OpenWriter(tmp.path(), Sizes(50));
  ASSERT_TRUE(writer->Append(Stream::kStdout, "first\n", kT0).ok());
  for (uint32_t run = 2; run <= 5; ++run) {
    ASSERT_TRUE(writer->AppendRunStart(run, kT0).ok());
  }
  ASSERT_TRUE(writer->Append(Stream::kStdout, "later\n", kT0).ok());
  ASSERT_TRUE(writer->AppendRunStart(6, kT0).ok());
  ASSERT_TRUE(writer->Close(kT0).ok());
  EXPECT_EQ(SegmentPaths(tmp.path()),
            (std::vector<std::string>{tmp.Sub("00000000000000000000.seg"),
                                      tmp.Sub("00000000000000000006.seg"),
                                      tmp.Sub("00000000000000000012.seg")}));
  std::vector<Record> records = RecordsIn(tmp.path());
  ASSERT_EQ(records.size(), 8u);
  EXPECT_EQ(records[4].run, 5u);
  EXPECT_EQ(records[5].payload, "later\n");
  EXPECT_EQ(records[6].run, 6u);
  EXPECT_EQ(records[7].kind, RecordKind::kEnd);
  ExpectContiguous(tmp.path(), 12);
}

TEST(WriterTest, RunStartsStayInTheSegmentOfTheRecordAfterThem) {
  TempDir tmp;
  std::unique_ptr<Writer> writer = OpenWriter(tmp.path(), Sizes(100));
  ASSERT_TRUE(writer->Append(Stream::kStdout, "first\n", kT0).ok());
  ASSERT_TRUE(writer->AppendRunStart(2, kT0).ok());
  ASSERT_TRUE(writer->AppendRunStart(3, kT0).ok());  // now past 100 bytes
  writer = OpenWriter(tmp.path(), Sizes(100));  // the rule survives a reopen
  ASSERT_TRUE(writer->Append(Stream::kStdout, "x", kT0).ok());
  ASSERT_TRUE(writer->Append(Stream::kStdout, "y", kT0).ok());
  EXPECT_EQ(SegmentPaths(tmp.path()),
            (std::vector<std::string>{tmp.Sub("00000000000000000000.seg"),
                                      tmp.Sub("00000000000000000007.seg")}));
  ExpectContiguous(tmp.path(), 8);
}

// Found by review: a crash loop that never writes marked every run, and
// its segment (the one being written, which no cap deletes) grew for ever.
TEST(WriterTest, RunStartsInARowWithoutOutputAreMarkedUpToACap) {
  TempDir tmp;
  std::unique_ptr<Writer> writer = OpenWriter(tmp.path(), Sizes(50));
  for (uint32_t run = 2; run < 2 + 3 * Writer::kMaxRunStartsInARow; ++run) {
    ASSERT_TRUE(writer->AppendRunStart(run, kT0).ok());
    if (run == 50) writer = OpenWriter(tmp.path(), Sizes(50));  // counted across a reopen
  }
  std::vector<Record> records = RecordsIn(tmp.path());
  ASSERT_EQ(records.size(), static_cast<size_t>(Writer::kMaxRunStartsInARow));
  EXPECT_EQ(records.back().run, 1u + Writer::kMaxRunStartsInARow);
  // Output starts the count again.
  ASSERT_TRUE(writer->Append(Stream::kStdout, "x", kT0).ok());
  ASSERT_TRUE(writer->AppendRunStart(1000, kT0).ok());
  records = RecordsIn(tmp.path());
  EXPECT_EQ(records.back().run, 1000u);
  EXPECT_EQ(records.back().offset, 1u);
}

TEST(WriterTest, ASealedSegmentOfOnlyRunStartsIsWrittenOnAfterACrash) {
  TempDir tmp;
  {
    std::unique_ptr<Writer> writer = OpenWriter(tmp.path(), Sizes(50));
    ASSERT_TRUE(writer->Append(Stream::kStdout, "first\n", kT0).ok());
    ASSERT_TRUE(writer->AppendRunStart(2, kT0).ok());
  }
  std::vector<std::string> paths = SegmentPaths(tmp.path());
  ASSERT_EQ(paths.size(), 2u);
  ASSERT_EQ(chmod(paths[1].c_str(), kSealedSegmentMode), 0);
  std::unique_ptr<Writer> writer = OpenWriter(tmp.path(), Sizes(50));
  ASSERT_NE(writer, nullptr);
  EXPECT_EQ(writer->end_offset(), 6u);
  ASSERT_TRUE(writer->Append(Stream::kStdout, "second\n", kT0).ok());
  EXPECT_EQ(SegmentPaths(tmp.path()), paths);
  std::vector<Record> records = RecordsIn(tmp.path());
  ASSERT_EQ(records.size(), 3u);
  EXPECT_EQ(records[1].run, 2u);
  EXPECT_EQ(records[2].payload, "second\n");
}

TEST(WriterTest, ThePerProcessCapDeletesTheOldestWholeSegments) {
  TempDir tmp;
  // Segments of 16 + 2 * 62 = 140 bytes; 300 bytes hold two of them.
  std::unique_ptr<Writer> writer =
      OpenWriter(tmp.path(), Sizes(100, 300));
  for (int i = 0; i < 10; ++i) {
    ASSERT_TRUE(
        writer->Append(Stream::kStdout, std::string(30, 'a' + i), kT0).ok());
    EXPECT_LE(writer->retained_bytes(), 300u);
  }
  std::vector<std::string> paths = SegmentPaths(tmp.path());
  ASSERT_EQ(paths.size(), 2u);
  EXPECT_EQ(paths[0], tmp.Sub("00000000000000000180.seg"));
  EXPECT_EQ(writer->retained_bytes(), FileSize(paths[0]) + FileSize(paths[1]));
  // What the cap dropped, in output bytes (the metrics' process_cap).
  EXPECT_EQ(writer->capped_bytes(), 180u);
  EXPECT_EQ(writer->lost_bytes(), 0u);
  EXPECT_EQ(DataOf(RecordsIn(tmp.path())),
            std::string(30, 'g') + std::string(30, 'h') +
                std::string(30, 'i') + std::string(30, 'j'));
  EXPECT_EQ(writer->end_offset(), 300u);
}

TEST(WriterTest, TheCapNeverDeletesTheSegmentBeingWritten) {
  TempDir tmp;
  std::unique_ptr<Writer> writer =
      OpenWriter(tmp.path(), Sizes(1 << 20, 10));
  ASSERT_TRUE(writer->Append(Stream::kStdout, "more than ten bytes", kT0).ok());
  EXPECT_EQ(DataOf(RecordsIn(tmp.path())), "more than ten bytes");
}

TEST(WriterTest, ACapDeletionByAnotherProcessIsTakenInStride) {
  TempDir tmp;
  std::unique_ptr<Writer> writer =
      OpenWriter(tmp.path(), Sizes(100, 300));
  for (int i = 0; i < 4; ++i) {
    ASSERT_TRUE(
        writer->Append(Stream::kStdout, std::string(30, 'a' + i), kT0).ok());
  }
  // The log_store's total cap takes the oldest segment first.
  ASSERT_EQ(unlink(SegmentPaths(tmp.path())[0].c_str()), 0);
  for (int i = 4; i < 8; ++i) {
    ASSERT_TRUE(
        writer->Append(Stream::kStdout, std::string(30, 'a' + i), kT0).ok());
  }
  EXPECT_EQ(SegmentPaths(tmp.path()).size(), 2u);
  EXPECT_EQ(writer->end_offset(), 240u);
  // The segment the other process deleted is its to count, not the cap's.
  EXPECT_EQ(writer->capped_bytes(), 60u);
}

TEST(WriterTest, ReopeningResumesAtTheEnd) {
  TempDir tmp;
  {
    std::unique_ptr<Writer> writer =
        OpenWriter(tmp.path(), Sizes(100));
    for (int i = 0; i < 3; ++i) {
      ASSERT_TRUE(writer->Append(Stream::kStdout, "0123456789", kT0).ok());
    }
  }
  std::unique_ptr<Writer> writer = OpenWriter(tmp.path(), Sizes(100));
  EXPECT_EQ(writer->end_offset(), 30u);
  ASSERT_TRUE(writer->Append(Stream::kStderr, "after", kT0).ok());
  EXPECT_EQ(writer->retained_bytes(),
            FileSize(SegmentPaths(tmp.path())[0]) +
                FileSize(SegmentPaths(tmp.path())[1]));
  EXPECT_EQ(DataOf(RecordsIn(tmp.path())),
            "012345678901234567890123456789after");
  ExpectContiguous(tmp.path(), 35);
}

void ExpectCutAfterFirstRecordAndResumed(const std::string& dir) {
  std::unique_ptr<Writer> writer = OpenWriter(dir);
  ASSERT_NE(writer, nullptr);
  EXPECT_EQ(writer->end_offset(), 5u);
  EXPECT_EQ(FileSize(SegmentPaths(dir)[0]), kSecondRecordPos);
  ASSERT_TRUE(writer->Append(Stream::kStdout, "again", kT0).ok());
  EXPECT_EQ(DataOf(RecordsIn(dir)), "firstagain");
  ExpectContiguous(dir, 10);
}

TEST(WriterTest, ATailTornInTheHeaderIsCutOnReopen) {
  TempDir tmp;
  const std::string path = TwoRecords(tmp.path());
  TruncateFile(path, kSecondRecordPos + 7);
  ExpectCutAfterFirstRecordAndResumed(tmp.path());
}

TEST(WriterTest, ATailTornInThePayloadIsCutOnReopen) {
  TempDir tmp;
  const std::string path = TwoRecords(tmp.path());
  TruncateFile(path, kSecondRecordPos + kRecordHeaderBytes + 3);
  ExpectCutAfterFirstRecordAndResumed(tmp.path());
}

TEST(WriterTest, ALastRecordWithABadChecksumIsCutOnReopen) {
  TempDir tmp;
  const std::string path = TwoRecords(tmp.path());
  CorruptByte(path, kSecondRecordPos + kRecordHeaderBytes + 1);
  ExpectCutAfterFirstRecordAndResumed(tmp.path());
}

TEST(WriterTest, ASegmentWithATornFileHeaderGetsANewOne) {
  TempDir tmp;
  {
    std::unique_ptr<Writer> writer =
        OpenWriter(tmp.path(), Sizes(50));
    ASSERT_TRUE(writer->Append(Stream::kStdout, "0123456789", kT0).ok());
    ASSERT_TRUE(writer->Append(Stream::kStdout, "abc", kT0).ok());
  }
  // A crash right after the second segment was created.
  const std::string second = SegmentPaths(tmp.path())[1];
  EXPECT_EQ(second, tmp.Sub("00000000000000000010.seg"));
  TruncateFile(second, 5);
  std::unique_ptr<Writer> writer = OpenWriter(tmp.path(), Sizes(50));
  EXPECT_EQ(writer->end_offset(), 10u);
  ASSERT_TRUE(writer->Append(Stream::kStdout, "xyz", kT0).ok());
  EXPECT_EQ(DataOf(RecordsIn(tmp.path())), "0123456789xyz");
  ExpectContiguous(tmp.path(), 13);
}

TEST(WriterTest, CloseWritesTheEndRecordAndRefusesLaterAppends) {
  TempDir tmp;
  std::unique_ptr<Writer> writer = OpenWriter(tmp.path());
  ASSERT_TRUE(writer->Append(Stream::kStdout, "bye", kT0).ok());
  ASSERT_TRUE(writer->Close(kT0 + absl::Seconds(3)).ok());
  EXPECT_TRUE(writer->closed());
  EXPECT_TRUE(writer->Close(kT0).ok());  // again: nothing more
  absl::Status status = writer->Append(Stream::kStdout, "late", kT0);
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition) << status;
  std::vector<Record> records = RecordsIn(tmp.path());
  ASSERT_EQ(records.size(), 2u);
  EXPECT_EQ(records[1].kind, RecordKind::kEnd);
  EXPECT_EQ(records[1].offset, 3u);
  EXPECT_EQ(records[1].time, kT0 + absl::Seconds(3));

  // Reopened, the output stays ended.
  writer = OpenWriter(tmp.path());
  EXPECT_TRUE(writer->closed());
  EXPECT_EQ(writer->Append(Stream::kStdout, "late", kT0).code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST(WriterTest, ARunStartIsARecordOfNoBytesAtTheEndAndSurvivesAReopen) {
  TempDir tmp;
  std::unique_ptr<Writer> writer = OpenWriter(tmp.path());
  ASSERT_TRUE(writer->Append(Stream::kStdout, "run 1\n", kT0).ok());
  ASSERT_TRUE(writer->AppendRunStart(2, kT0 + absl::Seconds(1)).ok());
  // A run that wrote nothing: the next mark shares the offset.
  ASSERT_TRUE(writer->AppendRunStart(3, kT0 + absl::Seconds(2)).ok());
  EXPECT_EQ(writer->end_offset(), 6u);
  EXPECT_EQ(writer->AppendRunStart(1, kT0).code(),
            absl::StatusCode::kInvalidArgument);
  writer = OpenWriter(tmp.path());  // resumes after the marks
  EXPECT_EQ(writer->end_offset(), 6u);
  ASSERT_TRUE(writer->Append(Stream::kStderr, "run 3\n", kT0).ok());
  ASSERT_TRUE(writer->Close(kT0).ok());
  EXPECT_EQ(writer->AppendRunStart(4, kT0).code(),
            absl::StatusCode::kFailedPrecondition);
  std::vector<Record> records = RecordsIn(tmp.path());
  ASSERT_EQ(records.size(), 5u);
  EXPECT_EQ(records[1].kind, RecordKind::kRunStart);
  EXPECT_EQ(records[1].run, 2u);
  EXPECT_EQ(records[1].offset, 6u);
  EXPECT_EQ(records[1].time, kT0 + absl::Seconds(1));
  EXPECT_EQ(records[2].run, 3u);
  EXPECT_EQ(records[2].offset, 6u);
  EXPECT_EQ(records[3].offset, 6u);
  EXPECT_EQ(records[3].payload, "run 3\n");
}

// Lowers RLIMIT_FSIZE (with SIGXFSZ ignored, a write past it fails with
// EFBIG, as on a full disk) until destroyed.
class FileSizeLimit {
 public:
  explicit FileSizeLimit(uint64_t bytes) {
    EXPECT_EQ(getrlimit(RLIMIT_FSIZE, &saved_), 0);
    old_handler_ = signal(SIGXFSZ, SIG_IGN);
    struct rlimit limit = saved_;
    limit.rlim_cur = bytes;
    EXPECT_EQ(setrlimit(RLIMIT_FSIZE, &limit), 0);
  }
  ~FileSizeLimit() {
    EXPECT_EQ(setrlimit(RLIMIT_FSIZE, &saved_), 0);
    signal(SIGXFSZ, old_handler_);
  }

 private:
  struct rlimit saved_;
  sighandler_t old_handler_;
};

TEST(WriterTest, BytesAWriteCouldNotStoreBecomeAGapAndWritingResumes) {
  TempDir tmp;
  std::unique_ptr<Writer> writer = OpenWriter(tmp.path());
  ASSERT_TRUE(writer->Append(Stream::kStdout, "kept", kT0).ok());
  const std::string path = SegmentPaths(tmp.path())[0];
  const uint64_t good_size = FileSize(path);
  {
    // Room for part of a record's header: a short write, then EFBIG.
    FileSizeLimit limit(good_size + 20);
    absl::Status status =
        writer->Append(Stream::kStdout, std::string(1000, 'x'), kT0);
    EXPECT_EQ(ErrnoOf(status), EFBIG) << status;
    EXPECT_NE(status.message().find("pwritev(\"" + path + "\")"),
              std::string::npos)
        << status;
    EXPECT_NE(status.message().find("1000 bytes of output at offset 4 lost"),
              std::string::npos)
        << status;
    status = writer->Append(Stream::kStderr, std::string(24, 'y'),
                            kT0 + absl::Seconds(1));
    EXPECT_EQ(ErrnoOf(status), EFBIG) << status;
  }
  // Nothing of the failed records is left in the file.
  EXPECT_EQ(FileSize(path), good_size);
  EXPECT_EQ(writer->end_offset(), 1028u);
  EXPECT_EQ(writer->pending_gap_bytes(), 1024u);
  EXPECT_EQ(writer->lost_bytes(), 1024u);
  EXPECT_EQ(writer->capped_bytes(), 0u);

  // Space is back: the gap goes first, then the new bytes.
  ASSERT_TRUE(writer->Append(Stream::kStdout, "back", kT0 + absl::Seconds(2))
                  .ok());
  EXPECT_EQ(writer->pending_gap_bytes(), 0u);
  std::vector<Record> records = RecordsIn(tmp.path());
  ASSERT_EQ(records.size(), 3u);
  EXPECT_EQ(records[1].kind, RecordKind::kGap);
  EXPECT_EQ(records[1].offset, 4u);
  EXPECT_EQ(records[1].length, 1024u);
  EXPECT_EQ(records[1].time, kT0);  // when the first lost bytes were read
  EXPECT_EQ(records[2].offset, 1028u);
  EXPECT_EQ(records[2].payload, "back");
  ExpectContiguous(tmp.path(), 1032);
}

TEST(WriterTest, AGapFromTheCallerIsAGapRecordAndAppendsFollowIt) {
  TempDir tmp;
  std::unique_ptr<Writer> writer = OpenWriter(tmp.path());
  ASSERT_TRUE(writer->Append(Stream::kStdout, "before", kT0).ok());
  ASSERT_TRUE(writer->AppendGap(0, kT0).ok());  // nothing lost: no record
  ASSERT_TRUE(writer->AppendGap(100, kT0 + absl::Seconds(1)).ok());
  EXPECT_EQ(writer->end_offset(), 106u);
  EXPECT_EQ(writer->pending_gap_bytes(), 0u);
  ASSERT_TRUE(writer->Append(Stream::kStderr, "after", kT0).ok());
  std::vector<Record> records = RecordsIn(tmp.path());
  ASSERT_EQ(records.size(), 3u);
  EXPECT_EQ(records[1].kind, RecordKind::kGap);
  EXPECT_EQ(records[1].offset, 6u);
  EXPECT_EQ(records[1].length, 100u);
  EXPECT_EQ(records[1].time, kT0 + absl::Seconds(1));
  EXPECT_EQ(records[2].offset, 106u);

  absl::Status overflow = writer->AppendGap(UINT64_MAX, kT0);
  EXPECT_EQ(overflow.code(), absl::StatusCode::kInvalidArgument) << overflow;
  ASSERT_TRUE(writer->Close(kT0).ok());
  absl::Status closed = writer->AppendGap(1, kT0);
  EXPECT_EQ(closed.code(), absl::StatusCode::kFailedPrecondition) << closed;
}

TEST(WriterTest, ABytesLostAtCloseAreAGapBeforeTheEnd) {
  TempDir tmp;
  std::unique_ptr<Writer> writer = OpenWriter(tmp.path());
  const uint64_t good_size = FileSize(SegmentPaths(tmp.path())[0]);
  {
    FileSizeLimit limit(good_size);
    EXPECT_FALSE(writer->Append(Stream::kStdout, "lost", kT0).ok());
  }
  ASSERT_TRUE(writer->Close(kT0).ok());
  std::vector<Record> records = RecordsIn(tmp.path());
  ASSERT_EQ(records.size(), 2u);
  EXPECT_EQ(records[0].kind, RecordKind::kGap);
  EXPECT_EQ(records[0].length, 4u);
  EXPECT_EQ(records[1].kind, RecordKind::kEnd);
  EXPECT_EQ(records[1].offset, 4u);
}

TEST(WriterTest, AFailedCloseCanBeRetried) {
  TempDir tmp;
  std::unique_ptr<Writer> writer = OpenWriter(tmp.path());
  ASSERT_TRUE(writer->Append(Stream::kStdout, "data", kT0).ok());
  {
    FileSizeLimit limit(FileSize(SegmentPaths(tmp.path())[0]));
    EXPECT_EQ(ErrnoOf(writer->Close(kT0)), EFBIG);
  }
  EXPECT_FALSE(writer->closed());
  EXPECT_EQ(writer->Append(Stream::kStdout, "late", kT0).code(),
            absl::StatusCode::kFailedPrecondition);
  ASSERT_TRUE(writer->Close(kT0).ok());
  EXPECT_EQ(RecordsIn(tmp.path()).back().kind, RecordKind::kEnd);
}

}  // namespace
}  // namespace pm::segment_log

namespace pm::segment_log {
namespace {

TEST(WriterTest, OnAFullDiskBytesBecomeAGapAndWritingResumesWhenSpaceIsBack) {
  TempDir tmp;
  SmallTmpfs disk(tmp.Sub("disk"), 64 << 10);
  if (!disk.ok()) GTEST_SKIP() << "no tmpfs to fill: " << disk.error();
  // Ballast to free later, as the log_store's total cap would.
  const std::string ballast = tmp.Sub("disk/ballast");
  {
    std::string bytes(32 << 10, 'B');
    FILE* f = fopen(ballast.c_str(), "w");
    ASSERT_NE(f, nullptr);
    ASSERT_EQ(fwrite(bytes.data(), 1, bytes.size(), f), bytes.size());
    ASSERT_EQ(fclose(f), 0);
  }
  const std::string dir = tmp.Sub("disk/proc");
  std::unique_ptr<Writer> writer = OpenWriter(dir);
  ASSERT_NE(writer, nullptr);
  uint64_t written = 0;
  absl::Status status;
  const std::string piece(4000, 'p');
  while (status.ok()) {
    ASSERT_LT(written, uint64_t{64} << 10) << "the disk never filled";
    status = writer->Append(Stream::kStdout, piece, kT0);
    if (status.ok()) written += piece.size();
  }
  EXPECT_EQ(ErrnoOf(status), ENOSPC) << status;
  EXPECT_EQ(status.code(), absl::StatusCode::kResourceExhausted) << status;
  const uint64_t lost = piece.size();
  EXPECT_EQ(writer->pending_gap_bytes(), lost);
  EXPECT_EQ(writer->end_offset(), written + lost);

  ASSERT_EQ(unlink(ballast.c_str()), 0);
  ASSERT_TRUE(writer->Append(Stream::kStdout, "space is back", kT0).ok());
  std::unique_ptr<Reader> reader = OpenReader(dir);
  std::vector<Chunk> chunks = ReadChunks(*reader, 0);
  ASSERT_EQ(chunks.size(), 2u);
  EXPECT_EQ(chunks[0].data, std::string(written, 'p'));
  EXPECT_EQ(chunks[1].offset, written + lost);
  EXPECT_EQ(chunks[1].dropped_before, lost);
  EXPECT_EQ(chunks[1].data, "space is back");
}

}  // namespace
}  // namespace pm::segment_log
