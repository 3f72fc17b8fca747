#include "segment_log/format.h"

#include "gtest/gtest.h"

namespace pm::segment_log {
namespace {

TEST(SegmentNameTest, IsTwentyDigitsOfTheFirstOffsetAndParsesBack) {
  EXPECT_EQ(SegmentName(0), "00000000000000000000.seg");
  EXPECT_EQ(SegmentName(8388712), "00000000000008388712.seg");
  EXPECT_EQ(ParseSegmentName(SegmentName(UINT64_MAX)), UINT64_MAX);
  EXPECT_EQ(ParseSegmentName("00000000000000004096.seg"), 4096u);
}

TEST(SegmentNameTest, RefusesEveryOtherName) {
  EXPECT_EQ(ParseSegmentName("exit_status"), std::nullopt);
  EXPECT_EQ(ParseSegmentName("0000000000000000409.seg"), std::nullopt);
  EXPECT_EQ(ParseSegmentName("00000000000000004096.seg.tmp"), std::nullopt);
  EXPECT_EQ(ParseSegmentName("0000000000000000409x.seg"), std::nullopt);
  EXPECT_EQ(ParseSegmentName("-0000000000000000409.seg"), std::nullopt);
  // 2^64 does not fit.
  EXPECT_EQ(ParseSegmentName("18446744073709551616.seg"), std::nullopt);
}

TEST(FileHeaderTest, EncodedHeaderIsValidAndACorruptOneIsNot) {
  std::string header = EncodeFileHeader();
  ASSERT_EQ(header.size(), kFileHeaderBytes);
  EXPECT_TRUE(IsValidFileHeader(header));
  EXPECT_FALSE(IsValidFileHeader(header.substr(0, 15)));
  for (size_t i = 0; i < header.size(); ++i) {
    std::string bad = header;
    bad[i] ^= 1;
    EXPECT_FALSE(IsValidFileHeader(bad)) << "byte " << i;
  }
}

std::string Encode(const Record& record) {
  std::string payload = record.kind == RecordKind::kData ? record.payload : "";
  return EncodeRecordHeader(record, payload) + payload;
}

Record Data(uint64_t offset, Stream stream, std::string payload) {
  Record record;
  record.kind = RecordKind::kData;
  record.stream = stream;
  record.offset = offset;
  record.length = payload.size();
  record.time = absl::FromUnixNanos(1700000000123456789);
  record.payload = std::move(payload);
  return record;
}

TEST(RecordTest, DataGapAndEndRoundTrip) {
  Record gap;
  gap.kind = RecordKind::kGap;
  gap.offset = 5;
  gap.length = 1000;
  gap.time = absl::FromUnixNanos(-7);  // before 1970: the time is signed
  Record end;
  end.kind = RecordKind::kEnd;
  end.offset = 1005;
  end.time = absl::FromUnixSeconds(1);
  for (const Record& in : {Data(0, Stream::kStderr, std::string("a\0b", 3)),
                           gap, end}) {
    std::string bytes = Encode(in);
    EXPECT_EQ(bytes.size(), in.file_bytes());
    Record out;
    ASSERT_EQ(DecodeRecord(bytes + "trailing", &out), DecodeResult::kRecord);
    EXPECT_EQ(out.kind, in.kind);
    EXPECT_EQ(out.offset, in.offset);
    EXPECT_EQ(out.length, in.length);
    EXPECT_EQ(out.time, in.time);
    EXPECT_EQ(out.payload, in.payload);
    if (in.kind == RecordKind::kData) {
      EXPECT_EQ(out.stream, in.stream);
    }
  }
}

TEST(RecordTest, ARunStartRoundTripsWithItsRunAndCoversNoBytes) {
  Record mark;
  mark.kind = RecordKind::kRunStart;
  mark.offset = 77;
  mark.time = absl::FromUnixSeconds(1700000000);
  mark.run = 123456;
  const std::string bytes = Encode(mark);
  EXPECT_EQ(bytes.size(), kRecordHeaderBytes);
  Record out;
  ASSERT_EQ(DecodeRecord(bytes, &out), DecodeResult::kRecord);
  EXPECT_EQ(out.kind, RecordKind::kRunStart);
  EXPECT_EQ(out.offset, 77u);
  EXPECT_EQ(out.end(), 77u);
  EXPECT_EQ(out.run, 123456u);
  EXPECT_EQ(out.time, mark.time);
}

TEST(RecordTest, ARunStartOfTheFirstRunOrWithLengthIsInvalid) {
  Record mark;
  mark.kind = RecordKind::kRunStart;
  mark.run = 1;  // the first run's start is the output's: never marked
  Record out;
  EXPECT_EQ(DecodeRecord(Encode(mark), &out), DecodeResult::kInvalid);
  mark.run = 2;
  mark.length = 1;
  EXPECT_EQ(DecodeRecord(Encode(mark), &out), DecodeResult::kInvalid);
  // Only a run start carries a run: the encoder writes 0 for the others.
  Record end;
  end.kind = RecordKind::kEnd;
  end.run = 9;
  ASSERT_EQ(DecodeRecord(Encode(end), &out), DecodeResult::kRecord);
  EXPECT_EQ(out.run, 0u);
}

TEST(RecordTest, ARecordWithoutPayloadEncodedFromANullViewDecodes) {
  Record gap;
  gap.kind = RecordKind::kGap;
  gap.offset = 0;
  gap.length = 3;
  Record out;
  EXPECT_EQ(DecodeRecord(EncodeRecordHeader(gap, absl::string_view()), &out),
            DecodeResult::kRecord);
}

TEST(RecordTest, EveryPrefixIsIncomplete) {
  std::string bytes = Encode(Data(0, Stream::kStdout, "hello"));
  for (size_t n = 0; n < bytes.size(); ++n) {
    Record out;
    EXPECT_EQ(DecodeRecord(bytes.substr(0, n), &out), DecodeResult::kIncomplete)
        << n;
  }
}

TEST(RecordTest, EveryFlippedByteIsInvalidOrIncomplete) {
  std::string bytes = Encode(Data(0, Stream::kStdout, "hello"));
  for (size_t i = 0; i < bytes.size(); ++i) {
    std::string bad = bytes;
    bad[i] ^= 0x10;
    Record out;
    // A flipped length may claim more bytes than there are: incomplete.
    EXPECT_NE(DecodeRecord(bad, &out), DecodeResult::kRecord) << "byte " << i;
  }
}

TEST(RecordTest, RefusesAPayloadPastTheMaximumWhateverTheChecksum) {
  Record big = Data(0, Stream::kStdout, "");
  big.length = kMaxPayloadBytes + 1;
  std::string bytes = EncodeRecordHeader(big, "");
  bytes.resize(bytes.size() + kMaxPayloadBytes + 1);
  Record out;
  EXPECT_EQ(DecodeRecord(bytes, &out), DecodeResult::kInvalid);
}

}  // namespace
}  // namespace pm::segment_log
