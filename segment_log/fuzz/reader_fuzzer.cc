// Fuzzes the segment_log Reader (and the Writer's resume) on segment files
// made from the input: whatever a crash, a full disk or a bad disk may leave
// in a process's output directory. Checks:
//   - Reader::Open, Read, Refresh and OffsetAt never fail on the contents
//     (only I/O errors are errors), never crash, never loop: each chunk
//     moves the cursor on (a run start, empty, leaves it and comes once),
//     starts at cursor + dropped_before, holds at most max_bytes of data,
//     and the reads end;
//   - in structured mode, every byte read is the byte the input put at that
//     offset (the model), whatever corruption follows it;
//   - Writer::Open resumes on any contents: a byte appended then reads back
//     at the writer's end offset with nothing dropped before it, and the end
//     record it writes closes the output.
//
// Encoding: the first byte picks the mode.
//   - Even: raw. The rest is the bytes of segment 00000000000000000000.seg,
//     after a valid file header if bit 1 is set.
//   - Odd: structured. Then ops until the input ends, each a byte `op`:
//       op & 3: 0 stdout data, 1 stderr data, 2 gap, 3 end record (a run
//       start of run 2 + n when op & 0x20)
//       then a length byte n (0 reads as 1); data takes the next n bytes as
//       its payload; op & 0x40 starts a new segment (named at the current
//       offset) first; op & 0x80 breaks the chain (the record claims one
//       byte further than it is).
//     The last byte of the input, if the mode byte has bit 1 set, cuts that
//     many bytes off the last segment (a torn tail).
#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "segment_log/format.h"
#include "segment_log/reader.h"
#include "segment_log/writer.h"
#include "testing/fuzz/fuzz_check.h"

namespace {

using pm::segment_log::Chunk;
using pm::segment_log::Reader;
using pm::segment_log::Record;
using pm::segment_log::RecordKind;
using pm::segment_log::Stream;
using pm::segment_log::Writer;

// The directory every input is written to, emptied before each one.
const std::string& Dir() {
  static const std::string* dir = [] {
    const char* base = getenv("TMPDIR");
    std::string tmpl =
        absl::StrCat(base != nullptr ? base : "/tmp", "/segfuzz.XXXXXX");
    PM_FUZZ_CHECK(mkdtemp(tmpl.data()) != nullptr) << "mkdtemp " << tmpl;
    return new std::string(tmpl + "/proc");
  }();
  return *dir;
}

// Empties the directory but for the first segment, which is truncated:
// creating and deleting inodes costs ext4 more than everything the harness
// checks.
void ResetDir() {
  const std::string& dir = Dir();
  if (mkdir(dir.c_str(), 0700) != 0) {
    PM_FUZZ_CHECK(errno == EEXIST) << "mkdir " << dir;
  }
  const std::string first = pm::segment_log::SegmentName(0);
  DIR* d = opendir(dir.c_str());
  PM_FUZZ_CHECK(d != nullptr) << "opendir " << dir;
  while (struct dirent* entry = readdir(d)) {
    const std::string name = entry->d_name;
    if (name == "." || name == "..") continue;
    if (name == first) {
      PM_FUZZ_CHECK(truncate((dir + "/" + name).c_str(), 0) == 0);
    } else {
      unlink((dir + "/" + name).c_str());
    }
  }
  closedir(d);
}

void WriteFile(uint64_t first_offset, const std::string& bytes) {
  std::ofstream out(Dir() + "/" + pm::segment_log::SegmentName(first_offset),
                    std::ios::binary);
  out.write(bytes.data(), bytes.size());
  PM_FUZZ_CHECK(out.good()) << "writing a segment";
}

// Bytes known at each offset (structured mode); nullopt in raw mode.
using Model = std::optional<std::map<uint64_t, char>>;

Model WriteStructured(const uint8_t* data, size_t size, bool cut_tail) {
  std::map<uint64_t, char> model;
  std::vector<std::pair<uint64_t, std::string>> segments = {
      {0, pm::segment_log::EncodeFileHeader()}};
  uint64_t offset = 0;
  size_t end = cut_tail && size > 0 ? size - 1 : size;
  size_t pos = 0;
  while (pos < end) {
    const uint8_t op = data[pos++];
    uint64_t n = pos < end ? data[pos++] : 0;
    if (n == 0) n = 1;
    if (op & 0x40) {
      segments.push_back({offset, pm::segment_log::EncodeFileHeader()});
    }
    Record record;
    record.offset = offset + ((op & 0x80) ? 1 : 0);
    record.time = absl::FromUnixNanos(pos);
    switch (op & 3) {
      case 0:
      case 1:
        record.kind = RecordKind::kData;
        record.stream = (op & 3) == 0 ? Stream::kStdout : Stream::kStderr;
        while (record.payload.size() < n && pos < end) {
          record.payload.push_back(static_cast<char>(data[pos++]));
        }
        if (record.payload.empty()) record.payload = "?";
        record.length = record.payload.size();
        break;
      case 2:
        record.kind = RecordKind::kGap;
        record.length = n;
        break;
      default:
        // 0x20: a run start (run 2 + n), else the end.
        record.kind = (op & 0x20) ? RecordKind::kRunStart : RecordKind::kEnd;
        record.length = 0;
        if (op & 0x20) record.run = static_cast<uint32_t>(2 + n);
        break;
    }
    const std::string payload =
        record.kind == RecordKind::kData ? record.payload : "";
    segments.back().second +=
        pm::segment_log::EncodeRecordHeader(record, payload) + payload;
    for (size_t i = 0; i < payload.size(); ++i) {
      // Bytes a broken chain or a later overlapping record puts elsewhere
      // are not the model's: keep the first claim, as the reader does.
      model.emplace(record.offset + i, payload[i]);
    }
    offset = record.end();
  }
  if (cut_tail && size > 0) {
    std::string& last = segments.back().second;
    last.resize(last.size() - std::min<size_t>(last.size(), data[size - 1]));
  }
  // Two segments named alike: the later one wins, like a file rewritten.
  for (const auto& [first, bytes] : segments) WriteFile(first, bytes);
  return model;
}

// Reads everything from `cursor`, checking the chunk invariants.
void ReadAll(Reader& reader, uint64_t cursor, size_t max_bytes,
             const Model& model) {
  for (int i = 0; i < 1 << 20; ++i) {
    absl::StatusOr<std::optional<Chunk>> chunk = reader.Read(cursor, max_bytes);
    PM_FUZZ_CHECK(chunk.ok()) << chunk.status();
    if (!*chunk) return;
    const Chunk& c = **chunk;
    PM_FUZZ_CHECK(c.offset == cursor + c.dropped_before)
        << c.offset << " != " << cursor << " + " << c.dropped_before;
    PM_FUZZ_CHECK(c.data.size() <= max_bytes) << c.data.size();
    PM_FUZZ_CHECK(!c.data.empty() || c.dropped_before > 0 || c.run_start != 0)
        << "an empty chunk reporting nothing at " << cursor;
    PM_FUZZ_CHECK(c.run_start == 0 || (c.data.empty() && c.run_start >= 2))
        << "a run start " << c.run_start << " with " << c.data.size() << " bytes";
    if (model) {
      for (size_t k = 0; k < c.data.size(); ++k) {
        auto it = model->find(c.offset + k);
        // Only bytes of a well-chained record can be read; the model holds
        // all that were written, so a byte read must be there.
        PM_FUZZ_CHECK(it != model->end()) << "byte at " << c.offset + k;
        PM_FUZZ_CHECK(it->second == c.data[k]) << "byte at " << c.offset + k;
      }
    }
    cursor = c.offset + c.data.size();
  }
  PM_FUZZ_CHECK(false) << "the reads did not end";
}

void ResumeAndAppend() {
  absl::StatusOr<std::unique_ptr<Writer>> writer =
      Writer::Open(Dir(), pm::segment_log::WriterOptions{});
  PM_FUZZ_CHECK(writer.ok()) << writer.status();
  if ((*writer)->closed()) return;
  const uint64_t at = (*writer)->end_offset();
  PM_FUZZ_CHECK((*writer)->Append(Stream::kStderr, "Z", absl::Now()).ok());
  PM_FUZZ_CHECK((*writer)->Close(absl::Now()).ok());
  absl::StatusOr<std::unique_ptr<Reader>> reader = Reader::Open(Dir());
  PM_FUZZ_CHECK(reader.ok()) << reader.status();
  absl::StatusOr<std::optional<Chunk>> chunk = (*reader)->Read(at);
  // Run starts at that offset come first, once each.
  for (int marks = 0; chunk.ok() && *chunk && (*chunk)->run_start != 0; ++marks) {
    PM_FUZZ_CHECK(marks < 1 << 20) << "run starts at " << at << " without end";
    chunk = (*reader)->Read(at);
  }
  PM_FUZZ_CHECK(chunk.ok() && *chunk) << "nothing at the resumed end " << at;
  PM_FUZZ_CHECK((*chunk)->offset == at && (*chunk)->data == "Z")
      << "at " << (*chunk)->offset << ": " << (*chunk)->data.size() << " bytes";
  PM_FUZZ_CHECK((*reader)->closed()) << "the end record is not seen";
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  ResetDir();
  const uint8_t mode = data[0];
  Model model;
  if (mode & 1) {
    model = WriteStructured(data + 1, size - 1, mode & 2);
  } else {
    std::string bytes =
        (mode & 2) ? pm::segment_log::EncodeFileHeader() : std::string();
    bytes.append(reinterpret_cast<const char*>(data + 1), size - 1);
    WriteFile(0, bytes);
  }
  absl::StatusOr<std::unique_ptr<Reader>> reader = Reader::Open(Dir());
  PM_FUZZ_CHECK(reader.ok()) << reader.status();
  const size_t max_bytes = 1 + (mode >> 2);
  ReadAll(**reader, 0, max_bytes, model);
  PM_FUZZ_CHECK((*reader)->Refresh().ok());
  ReadAll(**reader, (*reader)->end_offset() / 2, max_bytes, model);
  absl::StatusOr<uint64_t> at = (*reader)->OffsetAt(absl::FromUnixNanos(size / 2));
  PM_FUZZ_CHECK(at.ok()) << at.status();
  PM_FUZZ_CHECK(*at <= (*reader)->end_offset())
      << *at << " > " << (*reader)->end_offset();
  ResumeAndAppend();
  return 0;
}
