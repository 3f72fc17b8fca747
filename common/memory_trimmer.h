// MemoryTrimmer: gives the heap memory a burst left free back to the OS.
//
//   std::unique_ptr<pm::MemoryTrimmer> trimmer = pm::MemoryTrimmer::Start();
//   ...                      // serve
//   trimmer.reset();         // stops its thread
//
// glibc's malloc keeps freed memory in its arenas: after ten thousand
// streams come and go, a service held hundreds of MB it no longer used
// (the gateway 126 MB after a burst against 21 at rest, in the load test).
// malloc_trim(0) hands the free pages of every arena back (MADV_DONTNEED on
// whole free pages, not only the top of the main heap). Trimming costs time
// proportional to the heap, so it runs on a thread of its own, off every
// request path, and only when there is something to give back: every
// `interval` it asks mallinfo2() how much is free in the arenas and trims
// when that is over `threshold`. At rest that is one wake-up per interval
// and a walk of the arenas' bin heads: microseconds.
#ifndef PM_COMMON_MEMORY_TRIMMER_H_
#define PM_COMMON_MEMORY_TRIMMER_H_

#include <cstddef>
#include <memory>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace pm {

struct MemoryTrimmerOptions {
  absl::Duration interval = absl::Seconds(5);
  size_t threshold_bytes = 8 << 20;
};

class MemoryTrimmer {
 public:
  static std::unique_ptr<MemoryTrimmer> Start(MemoryTrimmerOptions options = {});
  ~MemoryTrimmer();

  // Bytes free in malloc's arenas now (mallinfo2's fordblks).
  static size_t FreeHeapBytes();
  // Trims now if over the threshold; true if it trimmed.
  bool TrimIfWorthIt();

 private:
  explicit MemoryTrimmer(MemoryTrimmerOptions options) : options_(options) {}
  void Run();

  const MemoryTrimmerOptions options_;
  absl::Mutex mu_;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace pm

#endif  // PM_COMMON_MEMORY_TRIMMER_H_
