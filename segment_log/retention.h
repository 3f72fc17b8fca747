// The total cap over the output of every process: the log_store calls
// DeleteOldestSegments with the output directories it knows, and the oldest
// whole segments go first until the total fits.
//
//   PM_ASSIGN_OR_RETURN(TotalCapResult result,
//                       DeleteOldestSegments(dirs, uint64_t{1} << 30));
//   // result.deleted_bytes freed; readers see the loss in dropped_before
//
// The rule:
//   - Every segment may go except the newest segment of a directory when it
//     is not sealed (read-only, format.h): that is the one its writer is
//     appending to (a writer seals its last segment when it writes the end
//     record; one that died without closing leaves it unsealed, kept until
//     the log_store removes the directory).
//     Deleting it would free nothing while the writer holds it open and
//     would lose what it is writing. So the total can stay above the cap by
//     up to one segment (WriterOptions::segment_bytes, plus one record) per
//     live process; those are bounded by the per-process cap instead.
//   - Oldest first across all directories, by when a segment was last
//     written (its mtime), so the output of ended processes and the old
//     output of live ones go before anything recent. Within one directory
//     segments always go in offset order (a segment is never older than one
//     before it), so a log loses only its oldest bytes, never a middle part.
//   - An ended output can lose every segment, the end record with the last
//     one; the log_store then removes its directory (it knows from the
//     registry that the process ended).
//
// Cost: one directory listing and one stat per segment (no segment is
// read): call it when the total is likely over the cap, not per append.
#ifndef PM_SEGMENT_LOG_RETENTION_H_
#define PM_SEGMENT_LOG_RETENTION_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace pm::segment_log {

struct TotalCapResult {
  // Bytes of the segment files that were there before the call.
  uint64_t total_bytes = 0;
  // Bytes and segments this call deleted (or found deleted by another
  // process, the writer's own cap, between its listing and the unlink).
  uint64_t deleted_bytes = 0;
  uint64_t deleted_segments = 0;
};

// Deletes the oldest segments of `dirs` (by the rule above) until their
// segments total at most `max_total_bytes`, or nothing more may go. A
// directory that does not exist is skipped. Errors name the call (opendir,
// stat, unlink) and the path; segments deleted before an error
// stay deleted.
absl::StatusOr<TotalCapResult> DeleteOldestSegments(
    const std::vector<std::string>& dirs, uint64_t max_total_bytes);

}  // namespace pm::segment_log

#endif  // PM_SEGMENT_LOG_RETENTION_H_
