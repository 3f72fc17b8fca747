// Defaults for the sanitizer runtimes (options, and the suppressions of
// bazel/lsan.supp and bazel/tsan.supp), compiled into every binary and test
// built with --config=asan, --config=tsan or --config=fuzz (linked through
// --custom_malloc; see .bazelrc). The runtimes call these weak hooks at
// startup; the environment (ASAN_OPTIONS, TSAN_OPTIONS) still overrides
// them, e.g. `TSAN_OPTIONS=halt_on_error=0 bazel-bin/...`.
//
// Compiled in rather than passed as --test_env: the integration tests start
// the services as child processes, with working directories and runfiles of
// their own, and every one of them must run with the same options and find
// the same suppressions.

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define PM_ASAN 1
#endif
#if __has_feature(thread_sanitizer)
#define PM_TSAN 1
#endif
#endif

#if defined(PM_ASAN)
extern "C" const char* __asan_default_options() {
  // Leaks are checked at exit (a service ends on SIGTERM through its
  // normal shutdown, so what it still holds then is a leak);
  // use-after-return and init-order bugs too.
  return "detect_leaks=1:detect_stack_use_after_return=1:"
         "check_initialization_order=1:strict_init_order=1:"
         "strict_string_checks=1:print_suppressions=0";
}

extern "C" const char* __lsan_default_suppressions() {
  // bazel/lsan.supp, turned into a string literal by a genrule.
  return
#include "bazel/lsan_suppressions.inc"
      ;
}
#endif

#if defined(PM_TSAN)
extern "C" const char* __tsan_default_options() {
  // halt_on_error: a service that races dies at once (exit code 66), so the
  // test that drove it fails instead of only printing a report nobody
  // reads. second_deadlock_stack: both stacks of a lock-order inversion.
  // ignore_noninstrumented_modules: memcpy, free and the other libc calls
  // that Debian's uninstrumented libraries (gRPC, protobuf, abseil) make
  // are not checked for races: TSan sees none of the atomics those
  // libraries order their own memory with (a refcount dropping to zero
  // before a free, a queue handing a buffer over), so it would report
  // their internal handoffs. pm's own code is instrumented and every access
  // of it is still checked, and the locks the libraries take are still
  // seen (see tsan_absl_sync.cc).
  return "halt_on_error=1:second_deadlock_stack=1:history_size=4:"
         "ignore_noninstrumented_modules=1:print_suppressions=0";
}

extern "C" const char* __tsan_default_suppressions() {
  // bazel/tsan.supp, turned into a string literal by a genrule.
  return
#include "bazel/tsan_suppressions.inc"
      ;
}
#endif
