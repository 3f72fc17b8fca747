#include "segment_log/test_util.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <poll.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <optional>

#include "absl/strings/str_cat.h"
#include "common/fd.h"
#include "gtest/gtest.h"

namespace pm::segment_log {

TempDir::TempDir() {
  const char* base = getenv("TEST_TMPDIR");
  std::string tmpl = absl::StrCat(base != nullptr ? base : "/tmp",
                                  "/segment_log.XXXXXX");
  if (mkdtemp(tmpl.data()) == nullptr) {
    ADD_FAILURE() << "mkdtemp(" << tmpl << ") failed";
  }
  path_ = tmpl;
}

TempDir::~TempDir() {
  nftw(
      path_.c_str(),
      [](const char* path, const struct stat*, int, struct FTW*) {
        remove(path);
        return 0;
      },
      16, FTW_DEPTH | FTW_PHYS);
}

std::string TempDir::Sub(const std::string& name) const {
  return absl::StrCat(path_, "/", name);
}

WriterOptions Sizes(uint64_t segment_bytes, uint64_t max_bytes) {
  WriterOptions options;
  options.segment_bytes = segment_bytes;
  options.max_bytes = max_bytes;
  return options;
}

std::unique_ptr<Writer> OpenWriter(const std::string& dir,
                                   WriterOptions options) {
  absl::StatusOr<std::unique_ptr<Writer>> writer = Writer::Open(dir, options);
  EXPECT_TRUE(writer.ok()) << writer.status();
  return writer.ok() ? std::move(*writer) : nullptr;
}

std::unique_ptr<Reader> OpenReader(const std::string& dir) {
  absl::StatusOr<std::unique_ptr<Reader>> reader = Reader::Open(dir);
  EXPECT_TRUE(reader.ok()) << reader.status();
  return reader.ok() ? std::move(*reader) : nullptr;
}

std::vector<Chunk> ReadChunks(Reader& reader, uint64_t cursor,
                              size_t max_bytes) {
  std::vector<Chunk> chunks;
  while (true) {
    absl::StatusOr<std::optional<Chunk>> chunk =
        reader.Read(cursor, max_bytes);
    if (!chunk.ok()) {
      ADD_FAILURE() << chunk.status();
      break;
    }
    if (!*chunk) break;
    EXPECT_EQ((*chunk)->offset, cursor + (*chunk)->dropped_before);
    EXPECT_LE((*chunk)->data.size(), max_bytes);
    cursor = (*chunk)->offset + (*chunk)->data.size();
    chunks.push_back(std::move(**chunk));
  }
  return chunks;
}

std::string DataOf(const std::vector<Chunk>& chunks) {
  std::string data;
  for (const Chunk& chunk : chunks) data += chunk.data;
  return data;
}

uint64_t DroppedIn(const std::vector<Chunk>& chunks) {
  uint64_t dropped = 0;
  for (const Chunk& chunk : chunks) dropped += chunk.dropped_before;
  return dropped;
}

std::vector<Record> RecordsOf(const std::string& segment_path) {
  std::vector<Record> records;
  absl::StatusOr<Fd> fd = Fd::Open(segment_path, O_RDONLY);
  if (!fd.ok()) {
    ADD_FAILURE() << fd.status();
    return records;
  }
  std::optional<uint64_t> first = ParseSegmentName(
      segment_path.substr(segment_path.find_last_of('/') + 1));
  if (!first) {
    ADD_FAILURE() << segment_path << " is not a segment name";
    return records;
  }
  RecordScanner scanner(fd->get(), segment_path, *first);
  absl::StatusOr<bool> has_header = scanner.Start();
  if (!has_header.ok() || !*has_header) {
    ADD_FAILURE() << segment_path << " has no valid file header";
    return records;
  }
  while (true) {
    absl::StatusOr<std::optional<Record>> record = scanner.Next();
    if (!record.ok()) {
      ADD_FAILURE() << record.status();
      break;
    }
    if (!*record) break;
    records.push_back(std::move(**record));
  }
  return records;
}

std::vector<std::string> SegmentPaths(const std::string& dir) {
  std::vector<std::string> paths;
  absl::StatusOr<std::vector<SegmentFile>> segments = ListSegments(dir);
  if (!segments.ok()) {
    ADD_FAILURE() << segments.status();
    return paths;
  }
  for (const SegmentFile& segment : *segments) paths.push_back(segment.path);
  return paths;
}

std::vector<Record> RecordsIn(const std::string& dir) {
  std::vector<Record> records;
  for (const std::string& path : SegmentPaths(dir)) {
    for (Record& record : RecordsOf(path)) records.push_back(std::move(record));
  }
  return records;
}

std::string TwoRecords(const std::string& dir) {
  std::unique_ptr<Writer> writer = OpenWriter(dir);
  EXPECT_TRUE(writer->Append(Stream::kStdout, "first", kT0).ok());
  EXPECT_TRUE(writer->Append(Stream::kStderr, "second", kT0).ok());
  return SegmentPaths(dir)[0];
}

uint64_t FileSize(const std::string& path) {
  struct stat st;
  if (stat(path.c_str(), &st) != 0) {
    ADD_FAILURE() << "stat(" << path << ") failed";
    return 0;
  }
  return st.st_size;
}

void TruncateFile(const std::string& path, uint64_t size) {
  ASSERT_EQ(truncate(path.c_str(), static_cast<off_t>(size)), 0) << path;
}

void CorruptByte(const std::string& path, uint64_t pos) {
  absl::StatusOr<Fd> fd = Fd::Open(path, O_RDWR);
  ASSERT_TRUE(fd.ok()) << fd.status();
  char byte;
  ASSERT_EQ(pread(fd->get(), &byte, 1, pos), 1);
  byte = static_cast<char>(~byte);
  ASSERT_EQ(pwrite(fd->get(), &byte, 1, pos), 1);
}

SmallTmpfs::SmallTmpfs(const std::string& path, uint64_t bytes) : path_(path) {
  if (mkdir(path.c_str(), 0700) != 0) {
    error_ = absl::StrCat("mkdir: ", strerror(errno));
    return;
  }
  if (unshare(CLONE_NEWNS) != 0) {
    error_ = absl::StrCat("unshare(CLONE_NEWNS): ", strerror(errno));
    return;
  }
  // Keep the mount below from propagating to the namespace we came from.
  if (mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) {
    error_ = absl::StrCat("mount(MS_PRIVATE): ", strerror(errno));
    return;
  }
  const std::string options = absl::StrCat("size=", bytes, ",mode=0700");
  if (mount("tmpfs", path.c_str(), "tmpfs", 0, options.c_str()) != 0) {
    error_ = absl::StrCat("mount(tmpfs): ", strerror(errno));
    return;
  }
  mounted_ = true;
}

SmallTmpfs::~SmallTmpfs() {
  if (mounted_) umount2(path_.c_str(), MNT_DETACH);
}

bool WaitForPath(const std::string& path) {
  for (;;) {
    Fd watch(inotify_init1(IN_CLOEXEC | IN_NONBLOCK));
    if (!watch) return false;
    for (std::string dir = path; dir.rfind('/') != std::string::npos && !dir.empty();) {
      dir.resize(dir.rfind('/'));
      if (!dir.empty()) inotify_add_watch(watch.get(), dir.c_str(), IN_CREATE | IN_MOVED_TO);
    }
    // Looked at after the watches are in place: a create in between wakes.
    if (access(path.c_str(), F_OK) == 0) return true;
    pollfd ready = {watch.get(), POLLIN, 0};
    if (poll(&ready, 1, 30000) != 1) return false;
  }
}

}  // namespace pm::segment_log
