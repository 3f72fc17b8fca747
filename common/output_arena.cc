#include "common/output_arena.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/status.h"

namespace pm {

// --- OutputArena::Slot -----------------------------------------------------------

OutputArena::Slot::Slot(Slot&& other) noexcept
    : arena_(std::move(other.arena_)), index_(other.index_) {}

OutputArena::Slot& OutputArena::Slot::operator=(Slot&& other) noexcept {
  if (this != &other) {
    if (arena_) arena_->Give(index_);
    arena_ = std::move(other.arena_);
    index_ = other.index_;
  }
  return *this;
}

OutputArena::Slot::~Slot() {
  if (arena_) arena_->Give(index_);
}

char* OutputArena::Slot::data() const {
  return arena_->base_ + index_ * arena_->slot_bytes_;
}
size_t OutputArena::Slot::capacity() const { return arena_->slot_bytes_; }
uint64_t OutputArena::Slot::offset() const {
  return static_cast<uint64_t>(index_) * arena_->slot_bytes_;
}

// --- OutputArena ------------------------------------------------------------------

absl::StatusOr<std::shared_ptr<OutputArena>> OutputArena::Create(
    size_t slot_bytes, size_t slots, const char* memfd_name) {
  if (slot_bytes == 0 || slots == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("output arena of ", slots, " x ", slot_bytes, " bytes"));
  }
  Fd fd(memfd_create(memfd_name, MFD_CLOEXEC | MFD_ALLOW_SEALING));
  if (!fd) return ErrnoError("memfd_create", memfd_name);
  const size_t size = slot_bytes * slots;
  if (ftruncate(fd.get(), static_cast<off_t>(size)) != 0) {
    return ErrnoError("ftruncate", absl::StrCat(memfd_name, ", ", size));
  }
  // Its size is fixed for good: nobody (a process of the same user that
  // opened it through /proc) can shrink it under the reader's mapping.
  if (fcntl(fd.get(), F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) != 0) {
    return ErrnoError("fcntl", absl::StrCat(memfd_name, ", F_ADD_SEALS"));
  }
  void* base = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd.get(), 0);
  if (base == MAP_FAILED) {
    return ErrnoError("mmap", absl::StrCat(memfd_name, ", ", size));
  }
  return std::shared_ptr<OutputArena>(
      new OutputArena(std::move(fd), static_cast<char*>(base), slot_bytes, slots));
}

OutputArena::OutputArena(Fd fd, char* base, size_t slot_bytes, size_t slots)
    : fd_(std::move(fd)),
      base_(base),
      slot_bytes_(slot_bytes),
      size_(slot_bytes * slots),
      name_(absl::StrCat("/proc/", getpid(), "/fd/", fd_.get())) {
  absl::MutexLock lock(&mu_);
  // Lowest first: the slots in use stay few and their pages warm.
  for (size_t i = slots; i-- > 0;) free_.push_back(i);
}

OutputArena::~OutputArena() { munmap(base_, size_); }

std::optional<OutputArena::Slot> OutputArena::Take() {
  absl::MutexLock lock(&mu_);
  if (free_.empty()) return std::nullopt;
  const size_t index = free_.back();
  free_.pop_back();
  return Slot(shared_from_this(), index);
}

size_t OutputArena::free_slots() const {
  absl::MutexLock lock(&mu_);
  return free_.size();
}

void OutputArena::Give(size_t index) {
  absl::MutexLock lock(&mu_);
  free_.push_back(index);
}

// --- MappedArena ------------------------------------------------------------------

namespace {

// "/proc/<digits>/fd/<digits>".
bool IsProcFdName(const std::string& name) {
  std::vector<absl::string_view> parts = absl::StrSplit(name, '/');
  uint64_t number = 0;
  return parts.size() == 5 && parts[0].empty() && parts[1] == "proc" &&
         absl::SimpleAtoi(parts[2], &number) && parts[3] == "fd" &&
         absl::SimpleAtoi(parts[4], &number);
}

}  // namespace

absl::StatusOr<std::shared_ptr<const MappedArena>> MappedArena::Open(
    const std::string& name) {
  if (!IsProcFdName(name)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "shared memory \"", name, "\" is not /proc/<pid>/fd/<fd>"));
  }
  // Non-blocking: whatever the name turns out to be (a fifo), opening it
  // never waits. What was opened is then checked, not what the name was.
  PM_ASSIGN_OR_RETURN(Fd fd, Fd::Open(name, O_RDONLY | O_CLOEXEC | O_NONBLOCK));
  // A memfd's link reads "/memfd:pm-output-arena (deleted)".
  const std::string self = absl::StrCat("/proc/self/fd/", fd.get());
  char target[256];
  const ssize_t length = readlink(self.c_str(), target, sizeof(target) - 1);
  if (length < 0) return ErrnoError("readlink", self);
  const absl::string_view what(target, static_cast<size_t>(length));
  struct stat st = {};
  if (fstat(fd.get(), &st) != 0) return ErrnoError("fstat", name);
  const int seals = fcntl(fd.get(), F_GET_SEALS);
  if (!absl::StartsWith(what, absl::StrCat("/memfd:", OutputArena::kMemfdName, " ")) ||
      !S_ISREG(st.st_mode) || seals < 0 || (seals & F_SEAL_SHRINK) == 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "shared memory ", name, " is ", what, ", not a pm output arena"));
  }
  if (st.st_size <= 0) {
    return absl::InvalidArgumentError(absl::StrCat("shared memory ", name, " is empty"));
  }
  const size_t size = static_cast<size_t>(st.st_size);
  void* base = mmap(nullptr, size, PROT_READ, MAP_SHARED, fd.get(), 0);
  if (base == MAP_FAILED) return ErrnoError("mmap", name);
  return std::shared_ptr<const MappedArena>(
      new MappedArena(static_cast<const char*>(base), size, st.st_dev, st.st_ino));
}

MappedArena::~MappedArena() { munmap(const_cast<char*>(base_), size_); }

absl::StatusOr<absl::string_view> MappedArena::Piece(uint64_t offset,
                                                     uint64_t length) const {
  if (offset > size_ || length > size_ - offset) {
    return absl::InvalidArgumentError(absl::StrCat(
        "shared piece [", offset, ", ", offset + length,
        ") is outside the arena of ", size_, " bytes"));
  }
  return absl::string_view(base_ + offset, static_cast<size_t>(length));
}

}  // namespace pm
