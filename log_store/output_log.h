// One process's output as the log_store retains it: the bytes in offset
// order tagged stdout/stderr, the gaps where bytes were lost, a closed flag,
// a retention cap, and a hook that wakes readers waiting for more.
//
//   OutputLog log("0b7e3d1c-6a1f-4e8e-9f3c-2d6a5b4c3d2e", {});
//   PM_ASSIGN_OR_RETURN(auto update,
//                       log.AppendData(0, OutputStream::kStdout, "hello\n"));
//   PM_ASSIGN_OR_RETURN(update, log.AppendGap(6, 100));  // 100 bytes lost
//   PM_ASSIGN_OR_RETURN(uint64_t cursor, log.StartOffset(std::nullopt, true));
//   while (std::optional<OutputLog::Chunk> chunk = log.Read(cursor)) {
//     // chunk->offset, chunk->dropped_before, chunk->stream, chunk->data
//     cursor = chunk->offset + chunk->data.size();
//   }
//
// Offsets are absolute in the process's combined output (stdout and stderr
// in arrival order) and count every byte the process wrote, retained or not.
// A reader holds nothing but its cursor: retention may drop bytes behind or
// ahead of it at any time, and its next Read reports them in dropped_before.
//
// Thread-safe. Watchers are called outside the log's lock, from the thread
// whose append woke them.
#ifndef PM_LOG_STORE_OUTPUT_LOG_H_
#define PM_LOG_STORE_OUTPUT_LOG_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <limits>
#include <memory>
#include <optional>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"

namespace pm::log_store {

// Which pipe a byte came from. kNone only tags the empty chunk that reports
// a trailing gap; appends must name stdout or stderr.
enum class OutputStream { kNone, kStdout, kStderr };

class OutputLog {
 public:
  struct Options {
    // Retention cap: the oldest whole chunks are dropped while the retained
    // bytes (data plus chunk_overhead_bytes per chunk) exceed it.
    uint64_t max_bytes = uint64_t{64} << 20;
    // Appended data is stored in chunks of at most this many bytes (and at
    // most a quarter of max_bytes, so one chunk never outgrows the cap).
    // Small consecutive appends of one stream share a chunk.
    size_t max_chunk_bytes = 64 << 10;
    // Bookkeeping counted per stored chunk, so many tiny chunks cannot hide
    // from the caps.
    size_t chunk_overhead_bytes = 64;
  };

  // One piece of output as a reader gets it.
  struct Chunk {
    // Absolute offset of data[0] (for an empty chunk: where the next byte
    // will be).
    uint64_t offset = 0;
    // Bytes between the reader's cursor and `offset` that it will never get.
    uint64_t dropped_before = 0;
    OutputStream stream = OutputStream::kNone;
    std::string data;
  };

  // The log after an append, a gap or a close.
  struct Update {
    uint64_t end_offset = 0;
    bool closed = false;
    // True only for the call that closed the log.
    bool closed_now = false;
    // Change of retained_bytes() made by the call (negative when the
    // retention cap dropped more than was added).
    int64_t retained_delta = 0;
  };

  // Something waiting for the log to grow past its cursor or close.
  class Watcher {
   public:
    virtual ~Watcher() = default;
    // Called once per WaitPast registration, outside the log's lock; the
    // watcher reads the log again from here.
    virtual void OnLogChanged() = 0;
  };

  enum class WaitResult {
    kRegistered,  // nothing past the cursor yet: OnLogChanged will follow
    kDataReady,   // bytes (or a gap) past the cursor: read again, no wait
    kClosed,      // closed and the cursor is at the end: nothing will come
  };

  // Reads return at most this many data bytes.
  static constexpr size_t kDefaultMaxReadBytes = 1 << 20;
  static constexpr uint64_t kNoLimit = std::numeric_limits<uint64_t>::max();

  OutputLog(std::string id, Options options);
  OutputLog(const OutputLog&) = delete;
  OutputLog& operator=(const OutputLog&) = delete;

  const std::string& id() const { return id_; }

  // Takes `data` written at `offset`. A prefix below end_offset() is already
  // held (a resend after a reconnect) and is skipped; if `offset` is past the
  // end, the bytes in between are recorded as lost. Wakes waiting readers.
  // INVALID_ARGUMENT for a stream other than stdout/stderr or an offset that
  // overflows; FAILED_PRECONDITION for new bytes after the close.
  absl::StatusOr<Update> AppendData(uint64_t offset, OutputStream stream,
                                    absl::string_view data);
  // AppendData for bytes the caller no longer needs: a large piece is kept
  // as it is, without a copy.
  absl::StatusOr<Update> AppendOwnedData(uint64_t offset, OutputStream stream,
                                         std::string&& data);

  // Records [offset, offset + length) as lost; the part below end_offset()
  // is ignored. INVALID_ARGUMENT if the range overflows; FAILED_PRECONDITION
  // if it reaches past the end of a closed log.
  absl::StatusOr<Update> AppendGap(uint64_t offset, uint64_t length);

  // Ends the output at `end_offset` (bytes between end_offset() and it are
  // lost) and wakes readers so they drain and finish. Repeating the close at
  // the same offset is OK. INVALID_ARGUMENT if the log already holds bytes
  // past `end_offset`; FAILED_PRECONDITION if it was closed at another
  // offset.
  absl::StatusOr<Update> Close(uint64_t end_offset);

  // Drops whole chunks, oldest first, until at least `bytes` retained bytes
  // are freed or nothing is retained. Returns the retained bytes freed. For
  // the store's total cap; readers see the drop in dropped_before.
  uint64_t DropOldest(uint64_t bytes);

  // The absolute offset a reader starts at: `from_offset` if set (it may lie
  // before the oldest retained byte: the first chunk then reports the drop),
  // else 0 for `from_start` (so the first chunk reports everything dropped
  // before the oldest retained byte), else the current end ("now").
  // `from_offset` past the end is OUT_OF_RANGE (naming both offsets), except
  // for a follower (`follow`) of a log still open: it waits there until the
  // output reaches it.
  absl::StatusOr<uint64_t> StartOffset(std::optional<uint64_t> from_offset,
                                       bool from_start,
                                       bool follow = false) const;

  // The output at `cursor` up to `limit` (exclusive), as one chunk of at
  // most `max_bytes` bytes: consecutive bytes of one stream with no gap in
  // between. When nothing is retained between the cursor and the end (or
  // limit), an empty chunk at that point reports the lost bytes. nullopt
  // when the cursor is at min(end_offset(), limit). The next cursor is
  // offset + data.size().
  std::optional<Chunk> Read(uint64_t cursor, uint64_t limit = kNoLimit,
                            size_t max_bytes = kDefaultMaxReadBytes) const;

  // Registers `watcher` for one OnLogChanged call when the log grows past
  // `cursor` or closes, unless that has happened already (see WaitResult).
  // The log keeps only a weak reference; registering again before the call
  // is a no-op.
  WaitResult WaitPast(uint64_t cursor, std::weak_ptr<Watcher> watcher);

  // Forgets a registration of `watcher`, if any. Call before destroying a
  // watcher that may still be registered.
  void Unwatch(const Watcher* watcher);

  // The offset after the last byte the process wrote (retained or not).
  uint64_t end_offset() const;
  // The offset of the oldest retained byte; end_offset() if none is.
  uint64_t first_retained_offset() const;
  // Retained data bytes plus the per-chunk overhead.
  uint64_t retained_bytes() const {
    return retained_bytes_.load(std::memory_order_relaxed);
  }
  bool closed() const;
  // Readers currently registered with WaitPast.
  size_t watcher_count() const;

 private:
  struct StoredChunk {
    uint64_t offset;
    OutputStream stream;
    std::string data;
    uint64_t end() const { return offset + data.size(); }
  };
  using Waiters = absl::flat_hash_map<const Watcher*, std::weak_ptr<Watcher>>;

  // Stores `data` at end_ (no gap), merging into the last chunk when it is
  // contiguous and of the same stream. Returns the retained bytes added.
  absl::StatusOr<Update> AppendDataImpl(uint64_t offset, OutputStream stream,
                                        absl::string_view data,
                                        std::string* owned);
  // Pieces at least this large are stored as handed over.
  static constexpr size_t kOwnedChunkMinBytes = 16 * 1024;
  uint64_t StoreOwnedLocked(OutputStream stream, std::string data)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  uint64_t StoreLocked(OutputStream stream, absl::string_view data)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Drops the oldest chunks while over max_bytes. Returns the bytes freed.
  uint64_t EnforceCapLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  uint64_t DropFrontLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The first chunk that ends after `cursor`, or chunks_.end().
  std::deque<StoredChunk>::const_iterator FirstEndingAfterLocked(
      uint64_t cursor) const ABSL_SHARED_LOCKS_REQUIRED(mu_);
  Update MakeUpdateLocked(int64_t retained_delta) const
      ABSL_SHARED_LOCKS_REQUIRED(mu_);
  // Takes the registered watchers out, to be woken once the lock is gone.
  Waiters TakeWaitersLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  static void Wake(Waiters waiters);

  const std::string id_;
  const uint64_t max_bytes_;
  const size_t max_chunk_bytes_;
  const size_t chunk_overhead_bytes_;

  mutable absl::Mutex mu_;
  // Sorted by offset, non-overlapping; holes between chunks are lost bytes.
  std::deque<StoredChunk> chunks_ ABSL_GUARDED_BY(mu_);
  uint64_t end_ ABSL_GUARDED_BY(mu_) = 0;
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
  Waiters waiters_ ABSL_GUARDED_BY(mu_);
  // Written under mu_; read without it by the store choosing what to drop.
  std::atomic<uint64_t> retained_bytes_{0};
};

}  // namespace pm::log_store

#endif  // PM_LOG_STORE_OUTPUT_LOG_H_
