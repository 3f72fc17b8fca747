// ThreadSanitizer annotations for Debian's abseil synchronisation, linked
// into every --config=tsan binary and test with bazel/sanitizer_defaults.cc.
//
// Debian's libabsl_synchronization is not built with TSan, so TSan cannot
// see absl::Mutex order anything: every field pm guards with an absl::Mutex
// (and gRPC's internal state behind grpc_core::Mutex, the same class) would
// be reported as racing in pm's own code, where no suppression may go. So
// this file interposes the library's lock, unlock and wait entry points
// with versions that tell TSan what they do, through its public annotation
// interface (<sanitizer/tsan_interface.h>, the calls abseil itself makes
// when it is built with TSan), and then call the library's own function
// (dlsym(RTLD_NEXT)). The executable's definition wins over the shared
// library's, for pm's calls and for the library's and gRPC's calls through
// the PLT alike.
//
// Only with TSan; elsewhere this file is empty. The symbol names are those
// of Debian 12's abseil 20220623 (inline namespace "debian3"): if one is
// missing the process aborts at its first use, naming it.
#if defined(__has_feature)
#if __has_feature(thread_sanitizer)

#include <sanitizer/tsan_interface.h>

#include "bazel/tsan_real.h"

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"

namespace {

void* Real(const char* symbol) {
  return pm_tsan::RealFunction(symbol, "the shared abseil (Debian 12's 20220623)");
}

// Calls of these functions the library makes from inside one of them (the
// timed waits call the deadline ones; a notification locks its own mutex)
// are part of the outer call, which tells TSan what the whole call does.
thread_local int depth = 0;

class Nested {
 public:
  Nested() { ++depth; }
  ~Nested() { --depth; }
  Nested(const Nested&) = delete;
  Nested& operator=(const Nested&) = delete;
};

// Looks the real function up once (`Fn` is its type as a plain function
// taking `this` first) and, from inside another of these calls, makes the
// call without a word to TSan. `call` is the call of `real` with the
// function's arguments.
#define PM_REAL(Fn, symbol, call)                                   \
  static const auto real = reinterpret_cast<Fn>(Real(symbol));     \
  if (depth > 0) return call;                                      \
  Nested nested

// The mutex this thread is unlocking (between the unlock's two
// annotations), with the unlock's flags: absl evaluates waiters' conditions
// on the unlocking thread.
thread_local void* unlocking = nullptr;
thread_local unsigned unlocking_flags = 0;

constexpr unsigned kRead = __tsan_mutex_read_lock;
constexpr unsigned kTry = __tsan_mutex_try_lock;
constexpr unsigned kTryFailed = __tsan_mutex_try_lock_failed;

// A wait that releases `mu` inside the library and holds it again on
// return: to TSan, an unlock before and a lock after.
void BeforeWait(void* mu, unsigned flags) {
  __tsan_mutex_pre_unlock(mu, flags);
  __tsan_mutex_post_unlock(mu, flags);
}
void AfterWait(void* mu, unsigned flags) {
  __tsan_mutex_pre_lock(mu, flags);
  __tsan_mutex_post_lock(mu, flags, 0);
}

// A Condition the library evaluates with the mutex held, at moments TSan
// otherwise takes for "not held" (inside a wait, or inside the unlock that
// wakes a waiter). As abseil's own TSan build does, the evaluation is
// annotated as a short critical section of its own, so what the condition
// reads is ordered with what other holders of the mutex wrote.
struct AnnotatedCondition {
  const absl::Condition* cond;
  void* mu;
  unsigned flags;  // the waiter's: read or write
};

bool EvalAnnotated(void* arg) {
  const auto* a = static_cast<const AnnotatedCondition*>(arg);
  bool result;
  if (unlocking == a->mu) {
    // Pretend the unlock is done, lock, evaluate, and start unlocking again.
    __tsan_mutex_post_unlock(a->mu, unlocking_flags);
    __tsan_mutex_pre_lock(a->mu, unlocking_flags);
    __tsan_mutex_post_lock(a->mu, unlocking_flags, 0);
    result = a->cond->Eval();
    __tsan_mutex_pre_unlock(a->mu, unlocking_flags);
  } else {
    __tsan_mutex_pre_lock(a->mu, a->flags);
    __tsan_mutex_post_lock(a->mu, a->flags, 0);
    result = a->cond->Eval();
    __tsan_mutex_pre_unlock(a->mu, a->flags);
    __tsan_mutex_post_unlock(a->mu, a->flags);
  }
  return result;
}

}  // namespace

namespace absl {
ABSL_NAMESPACE_BEGIN

using M = Mutex*;
using C = const Condition&;

void Mutex::Lock() {
  PM_REAL(void (*)(M), "_ZN4absl7debian35Mutex4LockEv",
          real(this));
  __tsan_mutex_pre_lock(this, 0);
  real(this);
  __tsan_mutex_post_lock(this, 0, 0);
}

void Mutex::ReaderLock() {
  PM_REAL(void (*)(M), "_ZN4absl7debian35Mutex10ReaderLockEv",
          real(this));
  __tsan_mutex_pre_lock(this, kRead);
  real(this);
  __tsan_mutex_post_lock(this, kRead, 0);
}

void Mutex::Unlock() {
  PM_REAL(void (*)(M), "_ZN4absl7debian35Mutex6UnlockEv",
          real(this));
  __tsan_mutex_pre_unlock(this, 0);
  unlocking = this;
  unlocking_flags = 0;
  real(this);
  unlocking = nullptr;
  __tsan_mutex_post_unlock(this, 0);
}

void Mutex::ReaderUnlock() {
  PM_REAL(void (*)(M), "_ZN4absl7debian35Mutex12ReaderUnlockEv",
          real(this));
  __tsan_mutex_pre_unlock(this, kRead);
  unlocking = this;
  unlocking_flags = kRead;
  real(this);
  unlocking = nullptr;
  __tsan_mutex_post_unlock(this, kRead);
}

bool Mutex::TryLock() {
  PM_REAL(bool (*)(M), "_ZN4absl7debian35Mutex7TryLockEv",
          real(this));
  __tsan_mutex_pre_lock(this, kTry);
  const bool locked = real(this);
  __tsan_mutex_post_lock(this, locked ? kTry : kTry | kTryFailed, 0);
  return locked;
}

bool Mutex::ReaderTryLock() {
  PM_REAL(bool (*)(M), "_ZN4absl7debian35Mutex13ReaderTryLockEv",
          real(this));
  __tsan_mutex_pre_lock(this, kRead | kTry);
  const bool locked = real(this);
  __tsan_mutex_post_lock(
      this, locked ? kRead | kTry : kRead | kTry | kTryFailed, 0);
  return locked;
}

void Mutex::LockWhen(C cond) {
  PM_REAL(void (*)(M, C), "_ZN4absl7debian35Mutex8LockWhenERKNS0_9ConditionE",
          real(this, cond));
  AnnotatedCondition annotated{&cond, this, 0};
  real(this, Condition(&EvalAnnotated, &annotated));
  __tsan_mutex_pre_lock(this, 0);
  __tsan_mutex_post_lock(this, 0, 0);
}

void Mutex::ReaderLockWhen(C cond) {
  PM_REAL(void (*)(M, C),
          "_ZN4absl7debian35Mutex14ReaderLockWhenERKNS0_9ConditionE",
          real(this, cond));
  AnnotatedCondition annotated{&cond, this, kRead};
  real(this, Condition(&EvalAnnotated, &annotated));
  __tsan_mutex_pre_lock(this, kRead);
  __tsan_mutex_post_lock(this, kRead, 0);
}

// The timed LockWhen variants hold the mutex on return whatever they
// return.
bool Mutex::LockWhenWithTimeout(C cond, absl::Duration timeout) {
  PM_REAL(bool (*)(M, C, absl::Duration),
          "_ZN4absl7debian35Mutex19LockWhenWithTimeoutERKNS0_9ConditionENS0_"
          "8DurationE",
          real(this, cond, timeout));
  AnnotatedCondition annotated{&cond, this, 0};
  const bool result = real(this, Condition(&EvalAnnotated, &annotated), timeout);
  __tsan_mutex_pre_lock(this, 0);
  __tsan_mutex_post_lock(this, 0, 0);
  return result;
}

bool Mutex::LockWhenWithDeadline(C cond, absl::Time deadline) {
  PM_REAL(bool (*)(M, C, absl::Time),
          "_ZN4absl7debian35Mutex20LockWhenWithDeadlineERKNS0_9ConditionENS0_"
          "4TimeE",
          real(this, cond, deadline));
  AnnotatedCondition annotated{&cond, this, 0};
  const bool result = real(this, Condition(&EvalAnnotated, &annotated), deadline);
  __tsan_mutex_pre_lock(this, 0);
  __tsan_mutex_post_lock(this, 0, 0);
  return result;
}

bool Mutex::ReaderLockWhenWithTimeout(C cond, absl::Duration timeout) {
  PM_REAL(bool (*)(M, C, absl::Duration),
          "_ZN4absl7debian35Mutex25ReaderLockWhenWithTimeoutERKNS0_"
          "9ConditionENS0_8DurationE",
          real(this, cond, timeout));
  AnnotatedCondition annotated{&cond, this, kRead};
  const bool result = real(this, Condition(&EvalAnnotated, &annotated), timeout);
  __tsan_mutex_pre_lock(this, kRead);
  __tsan_mutex_post_lock(this, kRead, 0);
  return result;
}

bool Mutex::ReaderLockWhenWithDeadline(C cond, absl::Time deadline) {
  PM_REAL(bool (*)(M, C, absl::Time),
          "_ZN4absl7debian35Mutex26ReaderLockWhenWithDeadlineERKNS0_"
          "9ConditionENS0_4TimeE",
          real(this, cond, deadline));
  AnnotatedCondition annotated{&cond, this, kRead};
  const bool result = real(this, Condition(&EvalAnnotated, &annotated), deadline);
  __tsan_mutex_pre_lock(this, kRead);
  __tsan_mutex_post_lock(this, kRead, 0);
  return result;
}

// Await releases the mutex while the condition is false. pm awaits only
// under writer locks (MutexLock), so the annotation says so.
void Mutex::Await(C cond) {
  PM_REAL(void (*)(M, C), "_ZN4absl7debian35Mutex5AwaitERKNS0_9ConditionE",
          real(this, cond));
  AnnotatedCondition annotated{&cond, this, 0};
  BeforeWait(this, 0);
  real(this, Condition(&EvalAnnotated, &annotated));
  AfterWait(this, 0);
}

bool Mutex::AwaitWithTimeout(C cond, absl::Duration timeout) {
  PM_REAL(bool (*)(M, C, absl::Duration),
          "_ZN4absl7debian35Mutex16AwaitWithTimeoutERKNS0_9ConditionENS0_"
          "8DurationE",
          real(this, cond, timeout));
  AnnotatedCondition annotated{&cond, this, 0};
  BeforeWait(this, 0);
  const bool result = real(this, Condition(&EvalAnnotated, &annotated), timeout);
  AfterWait(this, 0);
  return result;
}

bool Mutex::AwaitWithDeadline(C cond, absl::Time deadline) {
  PM_REAL(bool (*)(M, C, absl::Time),
          "_ZN4absl7debian35Mutex17AwaitWithDeadlineERKNS0_9ConditionENS0_"
          "4TimeE",
          real(this, cond, deadline));
  AnnotatedCondition annotated{&cond, this, 0};
  BeforeWait(this, 0);
  const bool result = real(this, Condition(&EvalAnnotated, &annotated), deadline);
  AfterWait(this, 0);
  return result;
}

void CondVar::Wait(Mutex* mu) {
  PM_REAL(void (*)(CondVar*, M),
          "_ZN4absl7debian37CondVar4WaitEPNS0_5MutexE",
          real(this, mu));
  BeforeWait(mu, 0);
  real(this, mu);
  AfterWait(mu, 0);
}

bool CondVar::WaitWithTimeout(Mutex* mu, absl::Duration timeout) {
  PM_REAL(bool (*)(CondVar*, M, absl::Duration),
          "_ZN4absl7debian37CondVar15WaitWithTimeoutEPNS0_5MutexENS0_"
          "8DurationE",
          real(this, mu, timeout));
  BeforeWait(mu, 0);
  const bool result = real(this, mu, timeout);
  AfterWait(mu, 0);
  return result;
}

bool CondVar::WaitWithDeadline(Mutex* mu, absl::Time deadline) {
  PM_REAL(bool (*)(CondVar*, M, absl::Time),
          "_ZN4absl7debian37CondVar16WaitWithDeadlineEPNS0_5MutexENS0_4TimeE",
          real(this, mu, deadline));
  BeforeWait(mu, 0);
  const bool result = real(this, mu, deadline);
  AfterWait(mu, 0);
  return result;
}

// A notification is a release by the notifier and an acquire by whoever
// sees it notified (the library's fast path checks an atomic TSan cannot
// see).
// HasBeenNotified() is inline: pm's own instrumented code loads the flag
// (an acquire TSan sees), so the notifier releases at the flag's address
// too. It follows the mutex in the class, which the assert pins down.
static_assert(sizeof(Notification) == sizeof(Mutex) + sizeof(void*),
              "absl::Notification is no longer {Mutex, atomic<bool>}");

void Notification::Notify() {
  PM_REAL(void (*)(Notification*),
          "_ZN4absl7debian312Notification6NotifyEv",
          real(this));
  __tsan_release(this);
  __tsan_release(reinterpret_cast<char*>(this) + sizeof(Mutex));
  real(this);
}

void Notification::WaitForNotification() const {
  PM_REAL(void (*)(const Notification*),
          "_ZNK4absl7debian312Notification19WaitForNotificationEv",
          real(this));
  real(this);
  __tsan_acquire(const_cast<Notification*>(this));
}

bool Notification::WaitForNotificationWithTimeout(
    absl::Duration timeout) const {
  PM_REAL(bool (*)(const Notification*, absl::Duration),
          "_ZNK4absl7debian312Notification30WaitForNotificationWithTimeoutENS0_"
          "8DurationE",
          real(this, timeout));
  const bool notified = real(this, timeout);
  if (notified) __tsan_acquire(const_cast<Notification*>(this));
  return notified;
}

bool Notification::WaitForNotificationWithDeadline(absl::Time deadline) const {
  PM_REAL(bool (*)(const Notification*, absl::Time),
          "_ZNK4absl7debian312Notification31WaitForNotificationWithDeadlineENS0_"
          "4TimeE",
          real(this, deadline));
  const bool notified = real(this, deadline);
  if (notified) __tsan_acquire(const_cast<Notification*>(this));
  return notified;
}

ABSL_NAMESPACE_END
}  // namespace absl

#endif  // __has_feature(thread_sanitizer)
#endif  // defined(__has_feature)
