#include "common/memory_trimmer.h"

#include <cstdlib>
#include <cstring>
#include <vector>

#include <unistd.h>

#include "common/proc_test_util.h"
#include "gtest/gtest.h"

namespace pm {
namespace {

// A burst of small allocations, mostly freed: glibc keeps the memory in
// its free lists (the chunks are below the mmap threshold, and the few kept
// ones stop the heap's top from shrinking), and only a trim gives the pages
// back.
// Under a sanitizer, malloc is the sanitizer's, not glibc's: mallinfo2 and
// malloc_trim see nothing of it.
#if defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define PM_SANITIZED_MALLOC 1
#endif
#endif

TEST(MemoryTrimmerTest, GivesBackWhatABurstLeftFree) {
#ifdef PM_SANITIZED_MALLOC
  GTEST_SKIP() << "glibc's malloc is replaced by the sanitizer's";
#endif
  MemoryTrimmerOptions options;
  options.interval = absl::Hours(1);  // the test trims by hand
  options.threshold_bytes = 4 << 20;
  std::unique_ptr<MemoryTrimmer> trimmer = MemoryTrimmer::Start(options);

  struct Free {
    void operator()(void* block) const { free(block); }
  };
  std::vector<std::unique_ptr<void, Free>> blocks;
  for (int i = 0; i < 64 * 1024; ++i) {
    blocks.emplace_back(malloc(1024));
    memset(blocks.back().get(), 1, 1024);  // resident
  }
  for (size_t i = 0; i < blocks.size(); ++i) {
    if (i % 64 != 63) blocks[i].reset();
  }
  ASSERT_GT(MemoryTrimmer::FreeHeapBytes(), 32u << 20);
  const int64_t before = ResidentKib(getpid());
  EXPECT_TRUE(trimmer->TrimIfWorthIt());
  const int64_t after = ResidentKib(getpid());
  EXPECT_LT(after, before - 32 * 1024) << before << " KiB -> " << after << " KiB";
}

TEST(MemoryTrimmerTest, LeavesASmallHeapAlone) {
  MemoryTrimmerOptions options;
  options.interval = absl::Hours(1);
  options.threshold_bytes = size_t{1} << 40;
  EXPECT_FALSE(MemoryTrimmer::Start(options)->TrimIfWorthIt());
}

}  // namespace
}  // namespace pm
