// Test helpers for segment_log: a temporary directory per test, and the
// records and raw bytes of segment files.
#ifndef PM_SEGMENT_LOG_TEST_UTIL_H_
#define PM_SEGMENT_LOG_TEST_UTIL_H_

#include <cstdint>
#include <string>
#include <vector>

#include "segment_log/format.h"
#include "segment_log/reader.h"
#include "segment_log/writer.h"

namespace pm::segment_log {

// A fresh directory under TEST_TMPDIR, removed with everything in it when
// destroyed.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  // path()/name
  std::string Sub(const std::string& name) const;

 private:
  std::string path_;
};

// A time to stamp test output with.
inline const absl::Time kT0 = absl::FromUnixSeconds(1700000000);

WriterOptions Sizes(uint64_t segment_bytes, uint64_t max_bytes = 256 << 20);
// Writer::Open, failing the test (and returning null) on an error.
std::unique_ptr<Writer> OpenWriter(const std::string& dir,
                                   WriterOptions options = {});
std::unique_ptr<Reader> OpenReader(const std::string& dir);

// Every chunk a reader gives from `cursor` until Read returns nullopt.
std::vector<Chunk> ReadChunks(Reader& reader, uint64_t cursor,
                              size_t max_bytes = Reader::kDefaultMaxReadBytes);
// The data of `chunks` concatenated, and their dropped_before summed.
std::string DataOf(const std::vector<Chunk>& chunks);
uint64_t DroppedIn(const std::vector<Chunk>& chunks);

// The valid records of one segment file, in order (fails the test on an
// I/O error or a bad file header).
std::vector<Record> RecordsOf(const std::string& segment_path);
// The valid records of every segment of `dir`, oldest segment first.
std::vector<Record> RecordsIn(const std::string& dir);
// The paths of the segments of `dir`, oldest first.
std::vector<std::string> SegmentPaths(const std::string& dir);

// Waits (inotify on each of its ancestors that exists) until `path` exists;
// false after 30 s.
bool WaitForPath(const std::string& path);

// Writes "first" (stdout) and "second" (stderr), one segment, and returns
// its path: the torn-tail tests break the second record.
std::string TwoRecords(const std::string& dir);
// Where the second record of TwoRecords starts in its file.
inline constexpr uint64_t kSecondRecordPos =
    kFileHeaderBytes + kRecordHeaderBytes + 5;

uint64_t FileSize(const std::string& path);
void TruncateFile(const std::string& path, uint64_t size);
// Flips the bits of the byte at `pos`.
void CorruptByte(const std::string& path, uint64_t pos);

// A tmpfs of `bytes` mounted at `path` (created) in a mount namespace of
// this process (so nothing shows outside it; the whole process moves into
// it), unmounted when destroyed: a small disk to fill. Needs CAP_SYS_ADMIN:
// ok() is false, and error() says why, where the test cannot have it.
class SmallTmpfs {
 public:
  SmallTmpfs(const std::string& path, uint64_t bytes);
  ~SmallTmpfs();
  SmallTmpfs(const SmallTmpfs&) = delete;
  SmallTmpfs& operator=(const SmallTmpfs&) = delete;
  bool ok() const { return mounted_; }
  const std::string& error() const { return error_; }

 private:
  std::string path_;
  std::string error_;
  bool mounted_ = false;
};

}  // namespace pm::segment_log

#endif  // PM_SEGMENT_LOG_TEST_UTIL_H_
