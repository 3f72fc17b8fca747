#include "segment_log/retention.h"

#include <errno.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <memory>
#include <tuple>

#include "absl/time/time.h"
#include "common/status_core.h"
#include "segment_log/format.h"
#include "segment_log/reader.h"

namespace pm::segment_log {
namespace {

struct Candidate {
  // Never earlier than the key of a segment before it in its directory, so
  // sorting by it keeps each directory's offset order.
  absl::Time key;
  size_t dir_index;
  uint64_t first_offset;
  std::string path;
  uint64_t bytes;
};

// The segments of `dir` that may be deleted, with their keys, added to
// `candidates`; their bytes and those of the kept one to `total`.
absl::Status CollectCandidates(const std::string& dir, size_t dir_index,
                               std::vector<Candidate>& candidates,
                               uint64_t& total) {
  absl::StatusOr<std::vector<SegmentFile>> files = ListSegments(dir);
  if (!files.ok() && ErrnoOf(files.status()) == ENOENT) {
    return absl::OkStatus();
  }
  PM_RETURN_IF_ERROR(files.status());
  std::vector<Candidate> found;
  for (SegmentFile& file : *files) {
    struct stat st;
    if (stat(file.path.c_str(), &st) != 0) {
      if (errno == ENOENT) continue;  // the writer's own cap got there first
      return ErrnoError("stat", file.path);
    }
    total += st.st_size;
    found.push_back({absl::TimeFromTimespec(st.st_mtim), dir_index,
                     file.first_offset, std::move(file.path),
                     static_cast<uint64_t>(st.st_size)});
  }
  if (found.empty()) return absl::OkStatus();
  absl::StatusOr<std::unique_ptr<Reader>> reader = Reader::Open(dir);
  if (!reader.ok() && ErrnoOf(reader.status()) == ENOENT) {
    return absl::OkStatus();  // removed since the listing
  }
  PM_RETURN_IF_ERROR(reader.status());
  if (!(*reader)->closed()) found.pop_back();  // its writer's current segment
  for (size_t i = found.size(); i-- > 1;) {
    found[i - 1].key = std::min(found[i - 1].key, found[i].key);
  }
  for (Candidate& candidate : found) candidates.push_back(std::move(candidate));
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<TotalCapResult> DeleteOldestSegments(
    const std::vector<std::string>& dirs, uint64_t max_total_bytes) {
  TotalCapResult result;
  std::vector<Candidate> candidates;
  for (size_t i = 0; i < dirs.size(); ++i) {
    PM_RETURN_IF_ERROR(
        CollectCandidates(dirs[i], i, candidates, result.total_bytes));
  }
  std::sort(candidates.begin(), candidates.end(),
            [](const Candidate& a, const Candidate& b) {
              return std::tie(a.key, a.dir_index, a.first_offset) <
                     std::tie(b.key, b.dir_index, b.first_offset);
            });
  uint64_t total = result.total_bytes;
  for (const Candidate& candidate : candidates) {
    if (total <= max_total_bytes) break;
    if (unlink(candidate.path.c_str()) != 0 && errno != ENOENT) {
      return ErrnoError("unlink", candidate.path);
    }
    total -= candidate.bytes;
    result.deleted_bytes += candidate.bytes;
    ++result.deleted_segments;
  }
  return result;
}

}  // namespace pm::segment_log
