// The on-disk format of a process's output: segment files of records. The
// Writer (writer.h) and the Reader (reader.h) are its only users; nothing
// else should parse a segment.
//
// A process's output directory (`<state_dir>/procs/<uuid>/`) holds
// append-only segment files, each named by the absolute offset of its first
// byte in 20 zero-padded decimal digits, `00000000000000000000.seg`,
// `00000000000008388712.seg`, ...; a segment is never renamed and never
// rewritten, only appended to (its torn tail cut), and deleted whole by
// retention. Other files in the directory (the shim's exit status) are
// ignored. The segment being written is mode 0600; once its writer is done
// with it (a newer one started, or it holds the end record) it is made
// read-only (0400, "sealed"), a fact about the file no output can forge:
// the total cap (retention.h) tells a live writer's segment by it without
// reading it.
//
// A segment is a 16-byte file header, then records:
//
//   file header   magic "PMSEGLOG" (8 bytes), format version (u32, 1),
//                 header size (u32, 16)
//   record        crc32    u32  zlib crc32 of the 28 header bytes after it
//                               and the payload
//                 kind     u8   1 data, 2 gap, 3 end, 4 run start
//                 stream   u8   1 stdout, 2 stderr (data); 0 otherwise
//                 reserved u16  0
//                 length   u32  data: payload bytes (1 to kMaxPayloadBytes);
//                               gap: bytes lost (1 to 2^32-1); end and
//                               run start: 0
//                 offset   u64  absolute offset of the record's first byte
//                 time_ns  i64  when it was read (CLOCK_REALTIME, Unix ns);
//                               for a run start, when the run started
//                 run      u32  run start: the run's number (2 or more:
//                               StartRequest.restart's later runs); 0
//                               otherwise
//                 payload       `length` bytes, data records only
//
// A run start record covers no bytes: it marks where the output of a
// restarted process's next run begins (its first byte, if any, is at its
// offset). Several may share an offset (runs that wrote nothing). Builds
// before run starts existed read one as the end of a segment's valid part.
//
// All integers little-endian. Offsets are absolute in the process's combined
// output (stdout and stderr share one offset space, in the order they were
// read), and records are contiguous: a segment's first record starts at the
// offset in its name and each record starts where the one before it ended.
// A record that is incomplete, fails its checksum, or breaks that chain ends
// the valid part of the segment: a reader stops there, and the writer, when
// it reopens the directory, truncates the segment there and continues.
// Nothing follows an end record.
#ifndef PM_SEGMENT_LOG_FORMAT_H_
#define PM_SEGMENT_LOG_FORMAT_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace pm::segment_log {

// Which pipe the bytes came from.
enum class Stream : uint8_t { kStdout = 1, kStderr = 2 };

enum class RecordKind : uint8_t { kData = 1, kGap = 2, kEnd = 3, kRunStart = 4 };

inline constexpr char kMagic[8] = {'P', 'M', 'S', 'E', 'G', 'L', 'O', 'G'};
inline constexpr uint32_t kFormatVersion = 1;
// The mode of the segment being written, and of one its writer is done with.
inline constexpr unsigned kOpenSegmentMode = 0600;
inline constexpr unsigned kSealedSegmentMode = 0400;
inline constexpr uint64_t kFileHeaderBytes = 16;
inline constexpr uint64_t kRecordHeaderBytes = 32;
// A data record carries at most this much; longer appends are split. Bounds
// what a reader allocates for one record, whatever the file says.
inline constexpr uint32_t kMaxPayloadBytes = 1 << 20;
// A gap record covers at most this much; longer losses take several.
inline constexpr uint64_t kMaxGapBytes = UINT32_MAX;

// One record as the format describes it.
struct Record {
  RecordKind kind = RecordKind::kData;
  Stream stream = Stream::kStdout;  // data records only
  uint64_t offset = 0;
  // Bytes of output the record covers: the payload's size for data, the
  // bytes lost for a gap, 0 for the end and a run start.
  uint64_t length = 0;
  absl::Time time;
  uint32_t run = 0;  // run start records only: the run's number
  std::string payload;  // data records only

  uint64_t end() const { return offset + length; }
  // Its size in the file, header and payload.
  uint64_t file_bytes() const {
    return kRecordHeaderBytes + (kind == RecordKind::kData ? length : 0);
  }
};

// "00000000000000004096.seg" for 4096.
std::string SegmentName(uint64_t first_offset);
// The first offset a segment file name stands for; nullopt for any other
// name (exactly 20 digits, then ".seg").
std::optional<uint64_t> ParseSegmentName(absl::string_view name);

// The 16 bytes every segment starts with.
std::string EncodeFileHeader();
// Whether `bytes` (at least kFileHeaderBytes) start with a valid header.
bool IsValidFileHeader(absl::string_view bytes);

// The header of `record` (with its checksum over `payload`), to be written
// followed by `payload`. `payload` is record.payload for data records and
// empty otherwise; the caller passes it separately so a large append is not
// copied.
std::string EncodeRecordHeader(const Record& record, absl::string_view payload);

// What DecodeRecord found at a position.
enum class DecodeResult {
  kRecord,      // a valid record
  kIncomplete,  // the bytes end inside a header or a payload
  kInvalid,     // a bad checksum, kind, stream, length or reserved field
};

// Decodes the record at the start of `bytes` (header and, for data, its
// payload) into `record`. `bytes` may hold more than one record.
DecodeResult DecodeRecord(absl::string_view bytes, Record* record);

// The segments in `dir`, oldest (lowest first offset) first. NOT_FOUND
// naming the directory if it does not exist; errors name opendir/readdir.
struct SegmentFile {
  uint64_t first_offset = 0;
  std::string path;
};
absl::StatusOr<std::vector<SegmentFile>> ListSegments(const std::string& dir);

// Reads the records of one segment in file order through a buffer, checking
// each one and the chain (each record starts where the last one ended, and
// nothing follows an end record). Does not own the fd. The file may grow
// while it is read (the writer appending): a record cut short is reported
// as the end of the valid part, and a later Next() reads it again.
//
//   RecordScanner scanner(fd.get(), path, first_offset);
//   PM_RETURN_IF_ERROR(scanner.Start());
//   while (true) {
//     PM_ASSIGN_OR_RETURN(std::optional<Record> record, scanner.Next());
//     if (!record) break;  // scanner.pos(): where the valid part ends
//   }
class RecordScanner {
 public:
  RecordScanner(int fd, std::string path, uint64_t first_offset);

  // Checks the file header. Returns false for a file too short to hold one
  // or with a bad one (such a segment holds no record); errors name pread.
  absl::StatusOr<bool> Start();

  // The record at pos(), if it is complete and valid; then pos() and
  // offset() move past it. nullopt at the end of the valid part
  // (stop_reason() says why); errors name pread and the path.
  absl::StatusOr<std::optional<Record>> Next();

  // Goes back to a record boundary Next() reported before (pos() and
  // offset() then), e.g. to read a record again.
  void Seek(uint64_t pos, uint64_t offset);

  // File position of the next record.
  uint64_t pos() const { return pos_; }
  // Absolute offset the next record must start at.
  uint64_t offset() const { return offset_; }
  // Whether the last record read was an end record.
  bool ended() const { return ended_; }
  // Why the last Next() returned nullopt.
  DecodeResult stop_reason() const { return stop_reason_; }

 private:
  // Makes buffer_ hold [pos, pos + bytes) if the file has it; returns the
  // bytes available from pos (may be fewer).
  absl::StatusOr<absl::string_view> Fill(uint64_t pos, uint64_t bytes);

  int fd_;
  std::string path_;
  uint64_t pos_ = kFileHeaderBytes;
  uint64_t offset_;
  bool ended_ = false;
  DecodeResult stop_reason_ = DecodeResult::kRecord;
  std::string buffer_;
  uint64_t buffer_pos_ = 0;
  // Whether the read that filled buffer_ met the end of the file.
  bool buffer_at_eof_ = false;
  // Whether the last Fill read the file (rather than serving the buffer).
  bool last_fill_read_ = false;
};

}  // namespace pm::segment_log

#endif  // PM_SEGMENT_LOG_FORMAT_H_
