// LogStore without a server: where it finds output on disk (written by
// another writer, as the shim does), ids, output from before a restart, the
// total cap across processes (at Create, periodically, never a live
// output's newest segment), the logs held in memory, and inotify wake-ups.
#include "log_store/log_store.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "common/state_dir.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "log_store/metrics.h"
#include "segment_log/test_util.h"

namespace pm::log_store {
namespace {

using ::pm::segment_log::Chunk;
using ::pm::segment_log::DataOf;
using ::pm::segment_log::ReadChunks;
using ::pm::segment_log::SegmentPaths;
using ::pm::segment_log::Stream;
using ::pm::segment_log::TempDir;
using ::testing::HasSubstr;

constexpr Stream kOut = Stream::kStdout;

// The n-th test process id.
std::string Id(int n) {
  return absl::StrFormat("00000000-0000-4000-8000-%012d", n);
}

class LogStoreTest : public ::testing::Test {
 protected:
  LogStore::Options OptionsFor(const std::string& state_dir) {
    LogStore::Options options;
    options.state_dir = state_dir;
    // Only where a test asks for it: a run at an unknown moment would make
    // the others depend on timing.
    options.total_cap_interval = absl::InfiniteDuration();
    return options;
  }

  std::unique_ptr<LogStore> MakeStore(const LogStore::Options& options) {
    absl::StatusOr<std::unique_ptr<LogStore>> store = LogStore::Create(options);
    EXPECT_TRUE(store.ok()) << store.status();
    return store.ok() ? *std::move(store) : nullptr;
  }

  // The Writer of process `n`'s output, as its shim has it.
  std::unique_ptr<segment_log::Writer> ShimWriter(
      int n, segment_log::WriterOptions options = {}) {
    const std::string process_dir = ProcessDir(tmp_.path(), Id(n));
    mkdir(ProcsDir(tmp_.path()).c_str(), 0700);
    mkdir(process_dir.c_str(), 0700);
    return segment_log::OpenWriter(ProcessOutputDir(tmp_.path(), Id(n)),
                                   options);
  }

  // Process `n`'s shim writes `pieces` pieces of `bytes` bytes, and the end
  // record if `close`.
  void Write(int n, int pieces, uint64_t bytes, bool close,
             segment_log::WriterOptions options = {}) {
    std::unique_ptr<segment_log::Writer> writer = ShimWriter(n, options);
    ASSERT_NE(writer, nullptr);
    for (int i = 0; i < pieces; ++i) {
      ASSERT_TRUE(
          writer->Append(kOut, std::string(bytes, 'x'), segment_log::kT0).ok());
    }
    if (close) {
      ASSERT_TRUE(writer->Close(segment_log::kT0).ok());
    }
  }

  std::vector<Chunk> ReadAll(LogStore& store, int n) {
    std::shared_ptr<OutputLog> log = store.Find(Id(n)).value();
    std::unique_ptr<segment_log::Reader> reader = log->OpenReader().value();
    return ReadChunks(*reader, 0);
  }

  uint64_t BytesOnDisk(const std::vector<int>& processes) {
    uint64_t total = 0;
    for (int n : processes) {
      for (const std::string& path :
           SegmentPaths(ProcessOutputDir(tmp_.path(), Id(n)))) {
        total += segment_log::FileSize(path);
      }
    }
    return total;
  }

  TempDir tmp_;
};

TEST_F(LogStoreTest, FindsTheOutputTheShimWritesInTheStateDir) {
  std::unique_ptr<LogStore> store = MakeStore(OptionsFor(tmp_.path()));
  const std::string id = "0B7E3D1C-6A1F-4E8E-9F3C-2D6A5B4C3D2E";
  const std::string lower = absl::AsciiStrToLower(id);
  mkdir(ProcessDir(tmp_.path(), lower).c_str(), 0700);
  std::unique_ptr<segment_log::Writer> writer =
      segment_log::OpenWriter(ProcessOutputDir(tmp_.path(), lower));
  ASSERT_NE(writer, nullptr);
  ASSERT_TRUE(writer->Append(kOut, "hi", segment_log::kT0).ok());
  // The shim's directory: procs/<id>/output, the id in lower case.
  std::shared_ptr<OutputLog> log = store->Find(id).value();
  EXPECT_EQ(log->dir(), ProcessOutputDir(tmp_.path(), lower));
  EXPECT_EQ(store->Find(lower).value(), log);
  EXPECT_EQ(store->log_count(), 1u);
  std::unique_ptr<segment_log::Reader> reader = log->OpenReader().value();
  EXPECT_EQ(DataOf(ReadChunks(*reader, 0)), "hi");
}

TEST_F(LogStoreTest, MalformedAndUnknownIds) {
  std::unique_ptr<LogStore> store = MakeStore(OptionsFor(tmp_.path()));
  absl::StatusOr<std::shared_ptr<OutputLog>> bad = store->Find("42");
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(bad.status().message(), HasSubstr("malformed process id"));
  EXPECT_EQ(store->Find("../etc").status().code(),
            absl::StatusCode::kInvalidArgument);

  absl::StatusOr<std::shared_ptr<OutputLog>> unknown = store->Find(Id(7));
  EXPECT_EQ(unknown.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(unknown.status().message(),
              HasSubstr("no output for process " + Id(7)));
  EXPECT_EQ(store->log_count(), 0u);
}

TEST_F(LogStoreTest, ARemovedProcessIsNotServedFromTheCache) {
  std::unique_ptr<LogStore> store = MakeStore(OptionsFor(tmp_.path()));
  Write(3, 1, 10, /*close=*/true);
  ASSERT_TRUE(store->Find(Id(3)).ok());
  EXPECT_EQ(store->log_count(), 1u);
  // pm rm: the supervisor deletes the process's directory.
  std::error_code ignored;
  std::filesystem::remove_all(ProcessDir(tmp_.path(), Id(3)), ignored);
  absl::StatusOr<std::shared_ptr<OutputLog>> gone = store->Find(Id(3));
  EXPECT_EQ(gone.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(store->log_count(), 0u);
}

TEST_F(LogStoreTest, CreateRefusesWhatCannotWork) {
  LogStore::Options options;
  EXPECT_EQ(LogStore::Create(options).status().code(),
            absl::StatusCode::kInvalidArgument);
  options = OptionsFor(tmp_.path());
  options.max_total_bytes = 0;
  EXPECT_EQ(LogStore::Create(options).status().code(),
            absl::StatusCode::kInvalidArgument);
  options = OptionsFor(tmp_.path());
  options.total_cap_interval = absl::ZeroDuration();
  absl::StatusOr<std::unique_ptr<LogStore>> zero = LogStore::Create(options);
  EXPECT_EQ(zero.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(zero.status().message(), HasSubstr("total_cap_interval"));
}

TEST_F(LogStoreTest, ARestartedStoreServesWhatWasWrittenWhileItWasDown) {
  { std::unique_ptr<LogStore> store = MakeStore(OptionsFor(tmp_.path())); }
  Write(1, 3, 100, /*close=*/true);
  Write(2, 2, 100, /*close=*/false);
  std::unique_ptr<LogStore> store = MakeStore(OptionsFor(tmp_.path()));
  EXPECT_EQ(store->log_count(), 0u);  // nothing held until asked for
  EXPECT_EQ(DataOf(ReadAll(*store, 1)), std::string(300, 'x'));
  std::unique_ptr<segment_log::Reader> reader =
      store->Find(Id(1)).value()->OpenReader().value();
  EXPECT_TRUE(reader->closed());
  EXPECT_EQ(DataOf(ReadAll(*store, 2)), std::string(200, 'x'));
}

// Sets the last write of every segment of process `n` to `seconds` after
// the epoch: the total cap goes by it, and writes in one test can share a
// clock tick.
void SetSegmentTimes(const std::string& state_dir, int n, time_t seconds) {
  for (const std::string& path :
       SegmentPaths(ProcessOutputDir(state_dir, Id(n)))) {
    const struct timespec times[2] = {{seconds, 0}, {seconds, 0}};
    ASSERT_EQ(utimensat(AT_FDCWD, path.c_str(), times, 0), 0) << path;
  }
}

TEST_F(LogStoreTest, CreateEnforcesTheTotalCapOverWhatIsOnDisk) {
  // Two ended processes and a live one, 500-byte pieces in 1000-byte
  // segments: about 12 KB on disk for a 10 KB cap.
  Write(1, 8, 500, /*close=*/true, segment_log::Sizes(1000));
  Write(2, 8, 500, /*close=*/true, segment_log::Sizes(1000));
  SetSegmentTimes(tmp_.path(), 1, 1000);  // the oldest
  SetSegmentTimes(tmp_.path(), 2, 2000);
  Write(3, 8, 500, /*close=*/false, segment_log::Sizes(1000));
  ASSERT_GT(BytesOnDisk({1, 2, 3}), 10000u);

  LogStore::Options options = OptionsFor(tmp_.path());
  options.max_total_bytes = 10000;
  std::unique_ptr<LogStore> store = MakeStore(options);
  EXPECT_EQ(store->total_cap_runs(), 1u);
  // Process 1 paid for it.
  std::vector<Chunk> first = ReadAll(*store, 1);
  ASSERT_FALSE(first.empty());
  EXPECT_GT(first.front().dropped_before, 0u);
  EXPECT_EQ(DataOf(ReadAll(*store, 2)), std::string(4000, 'x'));
  EXPECT_EQ(DataOf(ReadAll(*store, 3)), std::string(4000, 'x'));
  EXPECT_LE(BytesOnDisk({1, 2, 3}), 10000u);
}

// /metrics: what the total cap deleted and what it left, and followers.
TEST_F(LogStoreTest, MetricsShowRetainedAndDroppedBytesAndFollowers) {
  Write(1, 8, 500, /*close=*/true, segment_log::Sizes(1000));
  SetSegmentTimes(tmp_.path(), 1, 1000);
  Write(2, 8, 500, /*close=*/true, segment_log::Sizes(1000));
  const uint64_t before = BytesOnDisk({1, 2});
  LogStore::Options options = OptionsFor(tmp_.path());
  options.max_total_bytes = 6000;
  std::unique_ptr<LogStore> store = MakeStore(options);
  metrics::Registry metrics;
  ExportMetrics(*store, metrics);
  const uint64_t after = BytesOnDisk({1, 2});
  ASSERT_LT(after, before);
  std::string text = metrics.Render();
  EXPECT_THAT(text, HasSubstr(absl::StrCat("pm_log_store_retained_bytes ", after, "\n")));
  EXPECT_THAT(text, HasSubstr(absl::StrCat(
                        "pm_log_store_dropped_bytes_total{cause=\"total_cap\"} ",
                        before - after, "\n")));
  EXPECT_THAT(text, HasSubstr("pm_log_store_followers 0\n"));
  std::shared_ptr<OutputLog> log = store->Find(Id(2)).value();
  ASSERT_TRUE(store->Follow(log).ok());
  ASSERT_TRUE(store->Follow(log).ok());
  EXPECT_THAT(metrics.Render(), HasSubstr("pm_log_store_followers 2\n"));
  store->Unfollow(*log);
  EXPECT_THAT(metrics.Render(), HasSubstr("pm_log_store_followers 1\n"));
  store->Unfollow(*log);
}

// The shims write while the store runs: only the periodic run can see it.
TEST_F(LogStoreTest, TheTotalCapRunsPeriodicallyOnWhatTheShimsWroteSince) {
  LogStore::Options options = OptionsFor(tmp_.path());
  options.max_total_bytes = 10000;
  options.total_cap_interval = absl::Milliseconds(10);
  std::unique_ptr<LogStore> store = MakeStore(options);
  Write(1, 8, 500, /*close=*/true, segment_log::Sizes(1000));
  SetSegmentTimes(tmp_.path(), 1, 1000);
  Write(2, 8, 500, /*close=*/true, segment_log::Sizes(1000));
  Write(3, 8, 500, /*close=*/false, segment_log::Sizes(1000));
  ASSERT_GT(BytesOnDisk({1, 2, 3}), 10000u);
  // Two more runs: the second one started after the writes.
  ASSERT_TRUE(store->WaitForTotalCapRuns(store->total_cap_runs() + 2,
                                         absl::Seconds(30)));
  EXPECT_LE(BytesOnDisk({1, 2, 3}), 10000u);
  EXPECT_GT(ReadAll(*store, 1).front().dropped_before, 0u);
  EXPECT_EQ(DataOf(ReadAll(*store, 3)), std::string(4000, 'x'));
}

// The total cap never takes the segment a shim is writing, and the shim's
// Writer takes the deletion of its older segments in stride: its own
// per-process cap later finds them gone (ENOENT) and goes on.
TEST_F(LogStoreTest, TheTotalCapLeavesALiveOutputsNewestSegmentToItsWriter) {
  std::unique_ptr<LogStore> store = MakeStore(OptionsFor(tmp_.path()));
  std::unique_ptr<segment_log::Writer> writer =
      ShimWriter(1, segment_log::Sizes(1000, 3000));
  ASSERT_NE(writer, nullptr);
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE(writer->Append(kOut, std::string(500, 'a'), segment_log::kT0)
                    .ok());
  }
  const std::vector<std::string> before =
      SegmentPaths(ProcessOutputDir(tmp_.path(), Id(1)));
  ASSERT_GE(before.size(), 2u);

  LogStore::Options small = OptionsFor(tmp_.path());
  small.max_total_bytes = 1;
  std::unique_ptr<LogStore> capped = MakeStore(small);
  const std::vector<std::string> after =
      SegmentPaths(ProcessOutputDir(tmp_.path(), Id(1)));
  ASSERT_EQ(after.size(), 1u);
  EXPECT_EQ(after.front(), before.back());

  // The Writer's own cap would delete the segments the store deleted.
  for (int i = 0; i < 10; ++i) {
    absl::Status appended =
        writer->Append(kOut, std::string(500, 'b'), segment_log::kT0);
    ASSERT_TRUE(appended.ok()) << appended;
  }
  ASSERT_TRUE(writer->Close(segment_log::kT0).ok());
  EXPECT_EQ(writer->end_offset(), 7500u);
  std::vector<Chunk> chunks = ReadAll(*capped, 1);
  ASSERT_FALSE(chunks.empty());
  EXPECT_EQ(chunks.front().offset + DataOf(chunks).size(), 7500u);
}

TEST_F(LogStoreTest, LogsNoReaderHoldsAreForgottenBeyondTheCap) {
  for (int n = 1; n <= 4; ++n) Write(n, 1, 10, /*close=*/true);
  LogStore::Options options = OptionsFor(tmp_.path());
  options.max_logs = 2;
  std::unique_ptr<LogStore> store = MakeStore(options);
  // A reader holds log 1 all along.
  std::shared_ptr<OutputLog> held = store->Find(Id(1)).value();
  std::weak_ptr<OutputLog> second = store->Find(Id(2)).value();
  EXPECT_EQ(store->log_count(), 2u);
  ASSERT_TRUE(store->Find(Id(3)).ok());
  ASSERT_TRUE(store->Find(Id(4)).ok());
  // Logs 2 and 3 went (the least recently found no one held); 1 stays.
  EXPECT_EQ(store->log_count(), 2u);
  EXPECT_TRUE(second.expired());
  EXPECT_EQ(store->Find(Id(1)).value(), held);
  // A forgotten log is found on disk again.
  EXPECT_EQ(DataOf(ReadAll(*store, 2)), std::string(10, 'x'));
  EXPECT_EQ(store->log_count(), 2u);
}

// Counts its wake-ups and lets a test wait for the n-th.
class WaitingWatcher : public OutputLog::Watcher {
 public:
  void OnLogChanged() override {
    absl::MutexLock lock(&mu_);
    ++calls_;
  }
  bool WaitForCalls(int n) {
    absl::MutexLock lock(&mu_);
    auto reached = [this, n]() ABSL_SHARED_LOCKS_REQUIRED(mu_) {
      return calls_ >= n;
    };
    return mu_.AwaitWithTimeout(absl::Condition(&reached), absl::Seconds(60));
  }

 private:
  absl::Mutex mu_;
  int calls_ ABSL_GUARDED_BY(mu_) = 0;
};

TEST_F(LogStoreTest, AFollowedDirectoryWakesWatchersAtEachWriteAndAtTheEnd) {
  std::unique_ptr<LogStore> store = MakeStore(OptionsFor(tmp_.path()));
  // Another writer (a shim) owns the directory; the store only reads it.
  std::unique_ptr<segment_log::Writer> writer =
      ShimWriter(1, segment_log::Sizes(100));
  ASSERT_NE(writer, nullptr);
  std::shared_ptr<OutputLog> log = store->Find(Id(1)).value();
  ASSERT_TRUE(store->Follow(log).ok());
  ASSERT_TRUE(store->Follow(log).ok());  // a second follower: one watch
  EXPECT_EQ(store->watched_dir_count(), 1u);

  auto watcher = std::make_shared<WaitingWatcher>();
  log->Watch(watcher);
  std::thread other([&writer] {
    ASSERT_TRUE(writer->Append(kOut, "from the shim", segment_log::kT0).ok());
  });
  other.join();
  EXPECT_TRUE(watcher->WaitForCalls(1));
  EXPECT_EQ(DataOf(ReadAll(*store, 1)), "from the shim");
  // A new segment, then the end record.
  log->Watch(watcher);
  ASSERT_TRUE(
      writer->Append(kOut, std::string(200, 'r'), segment_log::kT0).ok());
  EXPECT_TRUE(watcher->WaitForCalls(2));
  log->Watch(watcher);
  ASSERT_TRUE(writer->Close(segment_log::kT0).ok());
  EXPECT_TRUE(watcher->WaitForCalls(3));

  store->Unfollow(*log);
  EXPECT_EQ(store->watched_dir_count(), 1u);
  store->Unfollow(*log);
  EXPECT_EQ(store->watched_dir_count(), 0u);
}

// A watch that could not be made (here: the directory was gone for a
// moment; on a busy host: no inotify watches left) is tried again for the
// next follower instead of leaving the log without wake-ups for good.
TEST_F(LogStoreTest, AWatchThatFailedIsTriedAgainForTheNextFollower) {
  std::unique_ptr<LogStore> store = MakeStore(OptionsFor(tmp_.path()));
  ASSERT_NE(ShimWriter(1), nullptr);
  const std::string proc_dir = ProcessDir(tmp_.path(), Id(1));
  std::shared_ptr<OutputLog> log = store->Find(Id(1)).value();
  const std::string moved = proc_dir + ".moved";
  ASSERT_EQ(rename(proc_dir.c_str(), moved.c_str()), 0);
  EXPECT_FALSE(store->Follow(log).ok());
  EXPECT_EQ(store->watched_dir_count(), 0u);
  ASSERT_EQ(rename(moved.c_str(), proc_dir.c_str()), 0);
  ASSERT_TRUE(store->Follow(log).ok());
  EXPECT_EQ(store->watched_dir_count(), 1u);
  store->Unfollow(*log);
  store->Unfollow(*log);
  EXPECT_EQ(store->watched_dir_count(), 0u);
}

}  // namespace
}  // namespace pm::log_store
