#include "common/output_arena.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace pm {
namespace {

TEST(OutputArenaTest, SlotsAreTakenUntilDestroyedAndNeverOverlap) {
  absl::StatusOr<std::shared_ptr<OutputArena>> arena = OutputArena::Create(4096, 3);
  ASSERT_TRUE(arena.ok()) << arena.status();
  std::optional<OutputArena::Slot> a = (*arena)->Take();
  std::optional<OutputArena::Slot> b = (*arena)->Take();
  std::optional<OutputArena::Slot> c = (*arena)->Take();
  ASSERT_TRUE(a && b && c);
  EXPECT_FALSE((*arena)->Take().has_value());  // all taken: callers go inline
  EXPECT_NE(a->offset(), b->offset());
  EXPECT_NE(b->offset(), c->offset());
  EXPECT_EQ(a->data() + (b->offset() - a->offset()), b->data());
  b.reset();
  EXPECT_EQ((*arena)->free_slots(), 1u);
  std::optional<OutputArena::Slot> again = (*arena)->Take();
  ASSERT_TRUE(again.has_value());
  OutputArena::Slot moved = std::move(*again);
  again.reset();  // a moved-from slot gives nothing back
  EXPECT_EQ((*arena)->free_slots(), 0u);
}

TEST(OutputArenaTest, AnotherMappingSeesTheBytesByName) {
  absl::StatusOr<std::shared_ptr<OutputArena>> arena = OutputArena::Create(4096, 2);
  ASSERT_TRUE(arena.ok()) << arena.status();
  EXPECT_EQ((*arena)->name().rfind(absl::StrCat("/proc/", getpid(), "/fd/"), 0), 0u);
  absl::StatusOr<std::shared_ptr<const MappedArena>> mapped =
      MappedArena::Open((*arena)->name());
  ASSERT_TRUE(mapped.ok()) << mapped.status();
  EXPECT_EQ((*mapped)->size(), 8192u);

  std::optional<OutputArena::Slot> slot = (*arena)->Take();
  ASSERT_TRUE(slot.has_value());
  memcpy(slot->data(), "hello", 5);
  absl::StatusOr<absl::string_view> piece = (*mapped)->Piece(slot->offset(), 5);
  ASSERT_TRUE(piece.ok()) << piece.status();
  EXPECT_EQ(*piece, "hello");

  // Out of the arena: refused, naming the range.
  absl::StatusOr<absl::string_view> outside = (*mapped)->Piece(8000, 500);
  EXPECT_EQ(outside.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(outside.status().message().find("[8000, 8500)"), std::string::npos);
  EXPECT_FALSE((*mapped)->Piece(~uint64_t{0}, 2).ok());  // no wrap-around
}

TEST(OutputArenaTest, OnlyAPmArenaUnderProcFdIsMapped) {
  EXPECT_EQ(MappedArena::Open("/etc/passwd").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(MappedArena::Open("/proc/1/fd/../../self/mem").status().code(),
            absl::StatusCode::kInvalidArgument);
  // A real /proc/PID/fd name of something that is not an arena.
  const int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  absl::Status status =
      MappedArena::Open(absl::StrCat("/proc/", getpid(), "/fd/", fd)).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(status.message().find("/dev/null"), std::string::npos) << status;
  close(fd);
  // A pm arena name whose process is gone: the error names the call.
  status = MappedArena::Open("/proc/999999999/fd/3").status();
  EXPECT_NE(status.message().find("open"), std::string::npos) << status;
  // A fifo behind the name: refused at once, never waited on.
  const std::string fifo = absl::StrCat(getenv("TEST_TMPDIR") ? getenv("TEST_TMPDIR") : "/tmp",
                                        "/arena_fifo_", getpid());
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  const int fifo_fd = open(fifo.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  ASSERT_GE(fifo_fd, 0);
  status = MappedArena::Open(absl::StrCat("/proc/", getpid(), "/fd/", fifo_fd)).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
  close(fifo_fd);
  unlink(fifo.c_str());
}

TEST(OutputArenaTest, TheArenasSizeIsSealed) {
  absl::StatusOr<std::shared_ptr<OutputArena>> arena = OutputArena::Create(4096, 2);
  ASSERT_TRUE(arena.ok()) << arena.status();
  // Another opener (as a process of the same user could) cannot shrink it
  // under the log_store's mapping.
  const int fd = open((*arena)->name().c_str(), O_RDWR | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  EXPECT_NE(ftruncate(fd, 0), 0);
  EXPECT_EQ(errno, EPERM);
  close(fd);
}

}  // namespace
}  // namespace pm
