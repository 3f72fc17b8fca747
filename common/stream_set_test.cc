#include "common/stream_set.h"

#include <memory>
#include <thread>

#include "gtest/gtest.h"

namespace pm {
namespace {

// Removes itself when asked to end, as a reactor whose Finish leads
// straight to OnDone would.
class FakeReactor : public StreamReactor {
 public:
  explicit FakeReactor(StreamSet* set) : set_(set) {}
  void RequestShutdown() override {
    ++shutdown_requests;
    set_->Remove(this);
  }
  int shutdown_requests = 0;

 private:
  StreamSet* set_;
};

TEST(StreamSetTest, ShutdownEndsEveryLiveStreamAndRefusesNewOnes) {
  StreamSet set;
  auto a = std::make_shared<FakeReactor>(&set);
  auto b = std::make_shared<FakeReactor>(&set);
  ASSERT_TRUE(set.Add(a));
  ASSERT_TRUE(set.Add(b));
  EXPECT_EQ(set.size(), 2u);
  set.Remove(b.get());  // b ended on its own
  EXPECT_EQ(set.Shutdown(), 1u);
  EXPECT_EQ(a->shutdown_requests, 1);
  EXPECT_EQ(b->shutdown_requests, 0);
  EXPECT_EQ(set.size(), 0u);
  auto late = std::make_shared<FakeReactor>(&set);
  EXPECT_FALSE(set.Add(late));
  EXPECT_EQ(set.size(), 0u);
}

TEST(StreamSetTest, AReactorAlreadyGoneIsSkipped) {
  StreamSet set;
  auto gone = std::make_shared<FakeReactor>(&set);
  ASSERT_TRUE(set.Add(gone));
  gone.reset();  // destroyed without Remove: only a weak reference was held
  EXPECT_EQ(set.Shutdown(), 0u);
}

TEST(StreamSetTest, WaitForSizeWakesWhenTheLastStreamEnds) {
  StreamSet set;
  auto a = std::make_shared<FakeReactor>(&set);
  ASSERT_TRUE(set.Add(a));
  EXPECT_FALSE(set.WaitForSize(0, absl::ZeroDuration()));
  std::thread ender([&] { set.Remove(a.get()); });
  EXPECT_TRUE(set.WaitForSize(0, absl::Seconds(30)));
  ender.join();
}

}  // namespace
}  // namespace pm
