#include "common/memory_trimmer.h"

#include <malloc.h>
#include <pthread.h>

namespace pm {

std::unique_ptr<MemoryTrimmer> MemoryTrimmer::Start(MemoryTrimmerOptions options) {
  std::unique_ptr<MemoryTrimmer> trimmer(new MemoryTrimmer(options));
  trimmer->thread_ = std::thread([t = trimmer.get()] { t->Run(); });
  pthread_setname_np(trimmer->thread_.native_handle(), "pm-trim");
  return trimmer;
}

MemoryTrimmer::~MemoryTrimmer() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  if (thread_.joinable()) thread_.join();
}

size_t MemoryTrimmer::FreeHeapBytes() { return mallinfo2().fordblks; }

bool MemoryTrimmer::TrimIfWorthIt() {
  if (FreeHeapBytes() < options_.threshold_bytes) return false;
  malloc_trim(0);
  return true;
}

void MemoryTrimmer::Run() {
  absl::MutexLock lock(&mu_);
  while (!mu_.AwaitWithTimeout(absl::Condition(&stop_), options_.interval)) {
    mu_.Unlock();
    TrimIfWorthIt();
    mu_.Lock();
  }
}

}  // namespace pm
