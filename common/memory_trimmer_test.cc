#include "common/memory_trimmer.h"

#include <cstdlib>
#include <cstring>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/fd.h"
#include "gtest/gtest.h"

namespace pm {
namespace {

int64_t ResidentKib() {
  absl::StatusOr<std::string> status = ReadFile("/proc/self/status");
  if (!status.ok()) return -1;
  for (absl::string_view line : absl::StrSplit(*status, '\n')) {
    if (!absl::ConsumePrefix(&line, "VmRSS:")) continue;
    int64_t kib = -1;
    absl::SimpleAtoi(absl::StripSuffix(absl::StripAsciiWhitespace(line), " kB"), &kib);
    return kib;
  }
  return -1;
}

// A burst of small allocations, mostly freed: glibc keeps the memory in
// its free lists (the chunks are below the mmap threshold, and the few kept
// ones stop the heap's top from shrinking), and only a trim gives the pages
// back.
TEST(MemoryTrimmerTest, GivesBackWhatABurstLeftFree) {
  MemoryTrimmerOptions options;
  options.interval = absl::Hours(1);  // the test trims by hand
  options.threshold_bytes = 4 << 20;
  std::unique_ptr<MemoryTrimmer> trimmer = MemoryTrimmer::Start(options);

  std::vector<void*> blocks;
  for (int i = 0; i < 64 * 1024; ++i) {
    blocks.push_back(malloc(1024));
    memset(blocks.back(), 1, 1024);  // resident
  }
  for (size_t i = 0; i < blocks.size(); ++i) {
    if (i % 64 != 63) {
      free(blocks[i]);
      blocks[i] = nullptr;
    }
  }
  ASSERT_GT(MemoryTrimmer::FreeHeapBytes(), 32u << 20);
  const int64_t before = ResidentKib();
  EXPECT_TRUE(trimmer->TrimIfWorthIt());
  const int64_t after = ResidentKib();
  EXPECT_LT(after, before - 32 * 1024) << before << " KiB -> " << after << " KiB";
  for (void* block : blocks) free(block);
}

TEST(MemoryTrimmerTest, LeavesASmallHeapAlone) {
  MemoryTrimmerOptions options;
  options.interval = absl::Hours(1);
  options.threshold_bytes = size_t{1} << 40;
  EXPECT_FALSE(MemoryTrimmer::Start(options)->TrimIfWorthIt());
}

}  // namespace
}  // namespace pm
