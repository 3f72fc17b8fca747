#include "supervisor/spares.h"

#include <algorithm>
#include <vector>

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"

namespace pm::supervisor {
namespace {

// Numbers made in order, and the ones discarded; `fail_from` makes the
// make fail from that number on.
struct Maker {
  absl::Mutex mu;
  int made ABSL_GUARDED_BY(mu) = 0;
  int fail_from = 1 << 30;
  std::vector<int> discarded;

  Spares<int>::Options Options(size_t count) {
    return {.thread_name = "test-spares",
            .what = "number",
            .count = count,
            .make = [this]() -> absl::StatusOr<int> {
              absl::MutexLock lock(&mu);
              if (made >= fail_from) return absl::InternalError("no more");
              return ++made;
            },
            .discard = [this](int n) { discarded.push_back(n); }};
  }
  void WaitForMade(int n) {
    absl::MutexLock lock(&mu);
    wanted = n;
    mu.Await(absl::Condition(this, &Maker::MadeEnough));
  }
  int wanted ABSL_GUARDED_BY(mu) = 0;
  bool MadeEnough() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    return made >= wanted;
  }
};

TEST(SparesTest, StartHasCountReadyAtOnce) {
  Maker maker;
  Spares<int>::Options options = maker.Options(2);
  // Held: no refill between the two takes (a slow run, under TSan, saw
  // the refill of the first, 3, come before the second take).
  options.max_hold = absl::Hours(1);
  Spares<int> spares(options);
  spares.Start();
  Spares<int>::Hold hold = spares.HoldRefills();
  EXPECT_EQ(spares.Take(), 2);
  EXPECT_EQ(spares.Take(), 1);
}

TEST(SparesTest, ATakenOneIsReplaced) {
  Maker maker;
  Spares<int> spares(maker.Options(2));
  spares.Start();
  ASSERT_EQ(spares.Take(), 2);
  maker.WaitForMade(3);
  spares.Stop();
  // 1 and the replacement 3 were ready, and are discarded.
  EXPECT_EQ(maker.discarded.size(), 2u);
  EXPECT_NE(std::find(maker.discarded.begin(), maker.discarded.end(), 3),
            maker.discarded.end());
}

TEST(SparesTest, StopDiscardsEveryOneNotTakenAndIsIdempotent) {
  Maker maker;
  Spares<int> spares(maker.Options(3));
  spares.Start();
  spares.Stop();
  spares.Stop();
  EXPECT_EQ(maker.discarded.size(), 3u);
  EXPECT_EQ(spares.Take(), std::nullopt);
}

TEST(SparesTest, AFailedMakeStopsMakingAndTakeFindsNone) {
  Maker maker;
  maker.fail_from = 1;  // the first is made, the second fails
  Spares<int> spares(maker.Options(2));
  spares.Start();
  EXPECT_EQ(spares.Take(), 1);
  EXPECT_EQ(spares.Take(), std::nullopt);
  spares.Stop();
  EXPECT_TRUE(maker.discarded.empty());
}

// A Start holds the refills while it runs: with some still ready, the one
// it took is remade only once the hold goes, or after max_hold.
TEST(SparesTest, WhileSomeAreReadyAHeldRefillWaitsForMaxHold) {
  Maker maker;
  Spares<int>::Options options = maker.Options(2);
  options.max_hold = absl::Milliseconds(100);
  Spares<int> spares(options);
  spares.Start();
  Spares<int>::Hold hold = spares.HoldRefills();
  const absl::Time taken = absl::Now();
  ASSERT_EQ(spares.Take(), 2);
  maker.WaitForMade(3);
  EXPECT_GE(absl::Now() - taken, absl::Milliseconds(100)) << "remade while held";
}

TEST(SparesTest, ARefillHeldBackIsMadeWhenTheLastHoldGoes) {
  Maker maker;
  Spares<int>::Options options = maker.Options(2);
  options.max_hold = absl::Hours(1);
  Spares<int> spares(options);
  spares.Start();
  Spares<int>::Hold first = spares.HoldRefills();
  Spares<int>::Hold second = spares.HoldRefills();
  ASSERT_EQ(spares.Take(), 2);
  first.Release();
  Spares<int>::Hold moved = std::move(second);
  moved.Release();
  maker.WaitForMade(3);  // an hour unless the release wakes the thread
}

TEST(SparesTest, WithNoneLeftTheRefillIsNotHeld) {
  Maker maker;
  Spares<int>::Options options = maker.Options(1);
  options.max_hold = absl::Hours(1);
  Spares<int> spares(options);
  spares.Start();
  Spares<int>::Hold hold = spares.HoldRefills();
  ASSERT_EQ(spares.Take(), 1);
  maker.WaitForMade(2);  // while still held
}

}  // namespace
}  // namespace pm::supervisor
