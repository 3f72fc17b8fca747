// RealFunction: the library's own definition of an interposed symbol, for
// bazel/tsan_absl_sync.cc and bazel/tsan_grpc_sync.cc (TSan builds only).
#ifndef PM_BAZEL_TSAN_REAL_H_
#define PM_BAZEL_TSAN_REAL_H_

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>

namespace pm_tsan {

// The next definition of `symbol` (a mangled name) after the executable's
// own. Aborts naming the symbol and `library` when there is none: the
// interposers name the symbols of Debian 12's libraries, and a build
// against others must fail loudly rather than run unannotated.
inline void* RealFunction(const char* symbol, const char* library) {
  void* function = dlsym(RTLD_NEXT, symbol);
  if (function == nullptr) {
    fprintf(stderr, "pm tsan interposer: %s not found in %s (%s)\n", symbol,
            library, dlerror());
    abort();
  }
  return function;
}

}  // namespace pm_tsan

#endif  // PM_BAZEL_TSAN_REAL_H_
