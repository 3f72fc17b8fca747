// Test helpers for segment_log: a temporary directory per test, and the
// records and raw bytes of segment files.
#ifndef PM_SEGMENT_LOG_TEST_UTIL_H_
#define PM_SEGMENT_LOG_TEST_UTIL_H_

#include <cstdint>
#include <string>
#include <vector>

#include "segment_log/format.h"

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

// The valid records of one segment file, in order (fails the test on an
// I/O error or a bad file header).
std::vector<Record> RecordsOf(const std::string& segment_path);
// The valid records of every segment of `dir`, oldest segment first.
std::vector<Record> RecordsIn(const std::string& dir);
// The paths of the segments of `dir`, oldest first.
std::vector<std::string> SegmentPaths(const std::string& dir);

uint64_t FileSize(const std::string& path);
void TruncateFile(const std::string& path, uint64_t size);
// Flips the bits of the byte at `pos`.
void CorruptByte(const std::string& path, uint64_t pos);

}  // namespace pm::segment_log

#endif  // PM_SEGMENT_LOG_TEST_UTIL_H_
