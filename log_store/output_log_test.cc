// OutputLog: where a reader starts in output a shim wrote, and the
// wake-ups of waiting readers.
#include "log_store/output_log.h"

#include <memory>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "segment_log/test_util.h"

namespace pm::log_store {
namespace {

using ::pm::segment_log::Reader;
using ::pm::segment_log::Stream;
using ::pm::segment_log::TempDir;
using ::testing::HasSubstr;

constexpr char kId[] = "0b7e3d1c-6a1f-4e8e-9f3c-2d6a5b4c3d2e";

TEST(OutputLogTest, StartOffsets) {
  TempDir tmp;
  const std::string dir = tmp.Sub("output");
  std::unique_ptr<segment_log::Writer> writer = segment_log::OpenWriter(dir);
  ASSERT_NE(writer, nullptr);
  ASSERT_TRUE(writer->Append(Stream::kStdout, "hello", segment_log::kT0).ok());
  OutputLog log(kId, dir);
  std::unique_ptr<Reader> reader = *log.OpenReader();
  EXPECT_EQ(*log.StartOffset(*reader, std::nullopt, true), 0u);
  EXPECT_EQ(*log.StartOffset(*reader, std::nullopt, false), 5u);
  EXPECT_EQ(*log.StartOffset(*reader, 3, false), 3u);
  // A follower of a live output may wait past the end; a reader may not.
  EXPECT_EQ(*log.StartOffset(*reader, 9, false, /*follow=*/true), 9u);
  absl::StatusOr<uint64_t> past = log.StartOffset(*reader, 9, false);
  EXPECT_EQ(past.status().code(), absl::StatusCode::kOutOfRange);
  EXPECT_THAT(past.status().message(),
              HasSubstr("from_offset 9 is past the end"));
  EXPECT_THAT(past.status().message(), HasSubstr("(5 bytes so far)"));
  // Nor past the end of an output that ended.
  ASSERT_TRUE(writer->Close(segment_log::kT0).ok());
  reader = *log.OpenReader();
  EXPECT_EQ(log.StartOffset(*reader, 9, false, true).status().code(),
            absl::StatusCode::kOutOfRange);
}

TEST(OutputLogTest, OpenReaderOfAMissingDirectoryIsNotFound) {
  TempDir tmp;
  OutputLog log(kId, tmp.Sub("none"));
  EXPECT_EQ(log.OpenReader().status().code(), absl::StatusCode::kNotFound);
}

class CountingWatcher : public OutputLog::Watcher {
 public:
  void OnLogChanged() override { ++calls; }
  int calls = 0;
};

TEST(OutputLogTest, WatchersAreWokenOncePerRegistration) {
  TempDir tmp;
  OutputLog log(kId, tmp.path());
  auto watcher = std::make_shared<CountingWatcher>();
  log.Watch(watcher);
  log.Watch(watcher);  // again before the call: still one
  EXPECT_EQ(log.watcher_count(), 1u);
  log.Wake();
  EXPECT_EQ(watcher->calls, 1);
  log.Wake();
  EXPECT_EQ(watcher->calls, 1);  // one call per registration
  log.Watch(watcher);
  log.Unwatch(watcher.get());
  log.Wake();
  EXPECT_EQ(watcher->calls, 1);
  // A watcher that is gone is not called.
  log.Watch(watcher);
  std::weak_ptr<CountingWatcher> weak = watcher;
  watcher.reset();
  log.Wake();
  EXPECT_TRUE(weak.expired());
  EXPECT_EQ(log.watcher_count(), 0u);
}

}  // namespace
}  // namespace pm::log_store
