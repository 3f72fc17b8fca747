// The output arena: shared memory that carries large pieces of output from
// the supervisor to the log_store without passing them through a socket.
//
// The supervisor makes one arena (a memfd cut into equal slots) and reads a
// pipe straight into a free slot; the Append stream then carries only the
// slot's place (AppendRequest.Data.shared_offset/shared_length). The
// log_store maps the same memfd read-only, copies the piece into its store
// and acknowledges it; only then is the slot free again. Output is copied
// twice (pipe -> arena by read(2), arena -> store by memcpy) instead of five
// times through gRPC (serialize, send, receive, parse, store), and neither
// side frames or parses the bytes.
//
//   // supervisor (one thread at a time):
//   PM_ASSIGN_OR_RETURN(std::shared_ptr<OutputArena> arena,
//                       OutputArena::Create(1 << 20, 8));
//   std::optional<OutputArena::Slot> slot = arena->Take();  // or go inline
//   ssize_t n = read(pipe, slot->data(), slot->capacity());
//   request.set_shared_offset(slot->offset()); ...   // hold the slot until acked
//
//   // log_store, from AppendRequest.Open.shared_memory:
//   PM_ASSIGN_OR_RETURN(std::shared_ptr<const MappedArena> mapped,
//                       MappedArena::Open(open.shared_memory()));
//   PM_ASSIGN_OR_RETURN(absl::string_view bytes, mapped->Piece(offset, length));
//
// The name another process opens is /proc/<pid>/fd/<fd>: the kernel lets a
// process of the same user open it (as it lets it read /proc/<pid>/fd), and
// only files an opener could reach anyway are reachable that way.
#ifndef PM_COMMON_OUTPUT_ARENA_H_
#define PM_COMMON_OUTPUT_ARENA_H_

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "common/fd.h"

namespace pm {

class OutputArena : public std::enable_shared_from_this<OutputArena> {
 public:
  // A slot, taken until destroyed (then free again). Move-only; may
  // outlive nothing: it keeps its arena alive.
  class Slot {
   public:
    Slot(Slot&& other) noexcept;
    Slot& operator=(Slot&& other) noexcept;
    Slot(const Slot&) = delete;
    Slot& operator=(const Slot&) = delete;
    ~Slot();

    char* data() const;
    size_t capacity() const;
    // Where the slot starts in the arena (what the reader is told).
    uint64_t offset() const;

   private:
    friend class OutputArena;
    Slot(std::shared_ptr<OutputArena> arena, size_t index)
        : arena_(std::move(arena)), index_(index) {}
    std::shared_ptr<OutputArena> arena_;
    size_t index_ = 0;
  };

  // A memfd of `slots` x `slot_bytes`, mapped shared. Errors name the call
  // (memfd_create, ftruncate, mmap) and the OS reason. `memfd_name` is what
  // MappedArena checks for (tests pass another to be refused).
  static absl::StatusOr<std::shared_ptr<OutputArena>> Create(
      size_t slot_bytes, size_t slots, const char* memfd_name = kMemfdName);
  static constexpr char kMemfdName[] = "pm-output-arena";
  ~OutputArena();

  // A free slot, or nullopt when every slot is taken (send inline then).
  // Thread-safe.
  std::optional<Slot> Take();

  // "/proc/<our pid>/fd/<memfd>".
  const std::string& name() const { return name_; }
  size_t slot_bytes() const { return slot_bytes_; }
  size_t size() const { return size_; }
  size_t free_slots() const;

 private:
  OutputArena(Fd fd, char* base, size_t slot_bytes, size_t slots);
  void Give(size_t index);

  const Fd fd_;
  char* const base_;
  const size_t slot_bytes_;
  const size_t size_;
  const std::string name_;
  mutable absl::Mutex mu_;
  std::vector<size_t> free_ ABSL_GUARDED_BY(mu_);
};

// The reader's view of an arena: mapped read-only.
class MappedArena {
 public:
  // Opens and maps `name`, which must be /proc/<pid>/fd/<fd> and a memfd
  // (anything else is INVALID_ARGUMENT); errors name the call and path.
  static absl::StatusOr<std::shared_ptr<const MappedArena>> Open(
      const std::string& name);
  ~MappedArena();
  MappedArena(const MappedArena&) = delete;
  MappedArena& operator=(const MappedArena&) = delete;

  // [offset, offset + length) of the arena; INVALID_ARGUMENT when out of it.
  absl::StatusOr<absl::string_view> Piece(uint64_t offset, uint64_t length) const;
  // The file's identity (st_dev, st_ino): one mapping per arena.
  dev_t dev() const { return dev_; }
  ino_t ino() const { return ino_; }
  size_t size() const { return size_; }

 private:
  MappedArena(const char* base, size_t size, dev_t dev, ino_t ino)
      : base_(base), size_(size), dev_(dev), ino_(ino) {}
  const char* const base_;
  const size_t size_;
  const dev_t dev_;
  const ino_t ino_;
};

}  // namespace pm

#endif  // PM_COMMON_OUTPUT_ARENA_H_
