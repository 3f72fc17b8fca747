#include "segment_log/format.h"

#include <dirent.h>
#include <errno.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cstring>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/fd.h"
#include "common/status_core.h"

namespace pm::segment_log {
namespace {

constexpr size_t kNameDigits = 20;
constexpr absl::string_view kSuffix = ".seg";
// Bytes read from a segment at a time: records are small (a pipe read) or
// large (up to kMaxPayloadBytes); one read covers many small ones.
constexpr uint64_t kReadAheadBytes = 64 << 10;

void PutU16(char* p, uint16_t v) {
  for (int i = 0; i < 2; ++i) p[i] = static_cast<char>(v >> (8 * i));
}
void PutU32(char* p, uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<char>(v >> (8 * i));
}
void PutU64(char* p, uint64_t v) {
  for (int i = 0; i < 8; ++i) p[i] = static_cast<char>(v >> (8 * i));
}
uint64_t GetLe(const char* p, int bytes) {
  uint64_t v = 0;
  for (int i = bytes - 1; i >= 0; --i) {
    v = (v << 8) | static_cast<uint8_t>(p[i]);
  }
  return v;
}

uint32_t Checksum(absl::string_view header_after_crc,
                  absl::string_view payload) {
  uLong crc = crc32(0L, Z_NULL, 0);
  crc = crc32(crc, reinterpret_cast<const Bytef*>(header_after_crc.data()),
              header_after_crc.size());
  // zlib takes a uInt length (payloads are at most kMaxPayloadBytes), and a
  // null buffer restarts the checksum: an empty string_view may be one.
  if (payload.empty()) return static_cast<uint32_t>(crc);
  crc = crc32(crc, reinterpret_cast<const Bytef*>(payload.data()),
              static_cast<uInt>(payload.size()));
  return static_cast<uint32_t>(crc);
}

}  // namespace

std::string SegmentName(uint64_t first_offset) {
  return absl::StrFormat("%020u%s", first_offset, kSuffix);
}

std::optional<uint64_t> ParseSegmentName(absl::string_view name) {
  if (name.size() != kNameDigits + kSuffix.size() ||
      name.substr(kNameDigits) != kSuffix) {
    return std::nullopt;
  }
  uint64_t value = 0;
  for (char c : name.substr(0, kNameDigits)) {
    if (!absl::ascii_isdigit(static_cast<unsigned char>(c))) {
      return std::nullopt;
    }
    uint64_t digit = c - '0';
    if (value > (UINT64_MAX - digit) / 10) return std::nullopt;
    value = value * 10 + digit;
  }
  return value;
}

std::string EncodeFileHeader() {
  std::string header(kFileHeaderBytes, '\0');
  std::memcpy(header.data(), kMagic, sizeof(kMagic));
  PutU32(header.data() + 8, kFormatVersion);
  PutU32(header.data() + 12, kFileHeaderBytes);
  return header;
}

bool IsValidFileHeader(absl::string_view bytes) {
  return bytes.size() >= kFileHeaderBytes &&
         std::memcmp(bytes.data(), kMagic, sizeof(kMagic)) == 0 &&
         GetLe(bytes.data() + 8, 4) == kFormatVersion &&
         GetLe(bytes.data() + 12, 4) == kFileHeaderBytes;
}

std::string EncodeRecordHeader(const Record& record,
                               absl::string_view payload) {
  std::string header(kRecordHeaderBytes, '\0');
  char* p = header.data();
  p[4] = static_cast<char>(record.kind);
  p[5] = record.kind == RecordKind::kData ? static_cast<char>(record.stream)
                                          : 0;
  PutU16(p + 6, 0);
  PutU32(p + 8, static_cast<uint32_t>(record.length));
  PutU64(p + 12, record.offset);
  PutU64(p + 20, static_cast<uint64_t>(absl::ToUnixNanos(record.time)));
  PutU32(p + 28, record.kind == RecordKind::kRunStart ? record.run : 0);
  PutU32(p, Checksum(absl::string_view(p + 4, kRecordHeaderBytes - 4),
                     payload));
  return header;
}

DecodeResult DecodeRecord(absl::string_view bytes, Record* record) {
  if (bytes.size() < kRecordHeaderBytes) return DecodeResult::kIncomplete;
  const char* p = bytes.data();
  const uint8_t kind = static_cast<uint8_t>(p[4]);
  const uint8_t stream = static_cast<uint8_t>(p[5]);
  const uint64_t length = GetLe(p + 8, 4);
  const uint32_t run = static_cast<uint32_t>(GetLe(p + 28, 4));
  if (GetLe(p + 6, 2) != 0 ||
      (kind != static_cast<uint8_t>(RecordKind::kRunStart) && run != 0)) {
    return DecodeResult::kInvalid;
  }
  uint64_t payload_bytes = 0;
  switch (kind) {
    case static_cast<uint8_t>(RecordKind::kData):
      if (stream != static_cast<uint8_t>(Stream::kStdout) &&
          stream != static_cast<uint8_t>(Stream::kStderr)) {
        return DecodeResult::kInvalid;
      }
      if (length == 0 || length > kMaxPayloadBytes) {
        return DecodeResult::kInvalid;
      }
      payload_bytes = length;
      break;
    case static_cast<uint8_t>(RecordKind::kGap):
      if (stream != 0 || length == 0) return DecodeResult::kInvalid;
      break;
    case static_cast<uint8_t>(RecordKind::kEnd):
      if (stream != 0 || length != 0) return DecodeResult::kInvalid;
      break;
    case static_cast<uint8_t>(RecordKind::kRunStart):
      if (stream != 0 || length != 0 || run < 2) {
        return DecodeResult::kInvalid;
      }
      break;
    default:
      return DecodeResult::kInvalid;
  }
  const uint64_t offset = GetLe(p + 12, 8);
  if (offset > UINT64_MAX - length) return DecodeResult::kInvalid;
  if (bytes.size() - kRecordHeaderBytes < payload_bytes) {
    return DecodeResult::kIncomplete;
  }
  absl::string_view payload = bytes.substr(kRecordHeaderBytes, payload_bytes);
  if (Checksum(absl::string_view(p + 4, kRecordHeaderBytes - 4), payload) !=
      GetLe(p, 4)) {
    return DecodeResult::kInvalid;
  }
  record->kind = static_cast<RecordKind>(kind);
  record->stream = kind == static_cast<uint8_t>(RecordKind::kData)
                       ? static_cast<Stream>(stream)
                       : Stream::kStdout;
  record->offset = offset;
  record->length = length;
  record->run = run;
  record->time = absl::FromUnixNanos(static_cast<int64_t>(GetLe(p + 20, 8)));
  record->payload.assign(payload.data(), payload.size());
  return DecodeResult::kRecord;
}

absl::StatusOr<std::vector<SegmentFile>> ListSegments(const std::string& dir) {
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) return ErrnoError("opendir", dir);
  std::vector<SegmentFile> segments;
  while (true) {
    errno = 0;
    struct dirent* entry = readdir(d);
    if (entry == nullptr) {
      const int saved = errno;
      closedir(d);
      if (saved != 0) return ErrnoError("readdir", dir, saved);
      break;
    }
    std::optional<uint64_t> first = ParseSegmentName(entry->d_name);
    if (first) {
      segments.push_back({*first, absl::StrCat(dir, "/", entry->d_name)});
    }
  }
  std::sort(segments.begin(), segments.end(),
            [](const SegmentFile& a, const SegmentFile& b) {
              return a.first_offset < b.first_offset;
            });
  return segments;
}

RecordScanner::RecordScanner(int fd, std::string path, uint64_t first_offset)
    : fd_(fd), path_(std::move(path)), offset_(first_offset) {}

absl::StatusOr<bool> RecordScanner::Start() {
  PM_ASSIGN_OR_RETURN(absl::string_view header, Fill(0, kFileHeaderBytes));
  return IsValidFileHeader(header);
}

void RecordScanner::Seek(uint64_t pos, uint64_t offset) {
  pos_ = pos;
  offset_ = offset;
  ended_ = false;
}

absl::StatusOr<absl::string_view> RecordScanner::Fill(uint64_t pos,
                                                      uint64_t bytes) {
  last_fill_read_ = false;
  if (pos >= buffer_pos_ && pos + bytes <= buffer_pos_ + buffer_.size()) {
    return absl::string_view(buffer_).substr(pos - buffer_pos_, bytes);
  }
  last_fill_read_ = true;
  buffer_.resize(std::max(bytes, kReadAheadBytes));
  buffer_pos_ = pos;
  size_t got = 0;
  while (got < buffer_.size()) {
    ssize_t n = pread(fd_, buffer_.data() + got, buffer_.size() - got,
                      static_cast<off_t>(pos + got));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int saved = errno;
      buffer_.clear();
      return ErrnoError("pread", path_, saved);
    }
    if (n == 0) break;
    got += n;
  }
  buffer_at_eof_ = got < buffer_.size();
  buffer_.resize(got);
  return absl::string_view(buffer_).substr(0, std::min<uint64_t>(bytes, got));
}

absl::StatusOr<std::optional<Record>> RecordScanner::Next() {
  if (ended_) {
    stop_reason_ = DecodeResult::kInvalid;
    return std::nullopt;
  }
  PM_ASSIGN_OR_RETURN(absl::string_view header,
                      Fill(pos_, kRecordHeaderBytes));
  // The header says how long the payload is; a second Fill covers both,
  // unless the first one already met the end of the file.
  uint64_t want = kRecordHeaderBytes;
  if (header.size() == kRecordHeaderBytes &&
      static_cast<uint8_t>(header[4]) ==
          static_cast<uint8_t>(RecordKind::kData)) {
    want += std::min<uint64_t>(GetLe(header.data() + 8, 4), kMaxPayloadBytes);
  }
  absl::string_view bytes = header;
  // (Only a read made just now says where the end is: the file may have
  // grown since an older one.)
  const bool end_known = last_fill_read_ && buffer_at_eof_;
  if (want > header.size() &&
      !(end_known && pos_ + want > buffer_pos_ + buffer_.size())) {
    PM_ASSIGN_OR_RETURN(bytes, Fill(pos_, want));
  }
  Record record;
  stop_reason_ = DecodeRecord(bytes, &record);
  if (stop_reason_ == DecodeResult::kRecord && record.offset != offset_) {
    stop_reason_ = DecodeResult::kInvalid;
  }
  if (stop_reason_ != DecodeResult::kRecord) {
    // What lies past the valid part may be a record being written, or a
    // torn one the writer will cut and write over: read it afresh next time.
    // The memory goes too: a reader caught up with a live output (the
    // log_store may hold a thousand) keeps no buffer while it waits.
    std::string().swap(buffer_);
    return std::nullopt;
  }
  pos_ += record.file_bytes();
  offset_ = record.end();
  ended_ = record.kind == RecordKind::kEnd;
  return record;
}

}  // namespace pm::segment_log
