// LogStore without a server: where the output goes on disk, ids, output
// from before a restart, the total cap across processes, the closed logs
// kept in memory, inotify wake-ups for output another writer appends, and a
// full disk.
#include "log_store/log_store.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/notification.h"
#include "common/state_dir.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
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
    return options;
  }

  std::unique_ptr<LogStore> MakeStore(const LogStore::Options& options) {
    absl::StatusOr<std::unique_ptr<LogStore>> store = LogStore::Create(options);
    EXPECT_TRUE(store.ok()) << store.status();
    return store.ok() ? *std::move(store) : nullptr;
  }

  // Opens log `n`, appends `bytes` bytes at its end, and closes it if asked.
  std::shared_ptr<OutputLog> Fill(LogStore& store, int n, uint64_t bytes,
                                  bool close) {
    std::shared_ptr<OutputLog> log = store.Open(Id(n)).value();
    const uint64_t end = log->end_offset();
    absl::StatusOr<OutputLog::Update> update =
        store.AppendData(*log, end, kOut, std::string(bytes, 'x'));
    EXPECT_TRUE(update.ok()) << update.status();
    if (close) {
      EXPECT_TRUE(store.Close(*log, end + bytes).ok());
    }
    return log;
  }

  std::vector<Chunk> ReadAll(LogStore& store, int n) {
    std::shared_ptr<OutputLog> log = store.Find(Id(n)).value();
    std::unique_ptr<segment_log::Reader> reader = log->OpenReader().value();
    return ReadChunks(*reader, 0);
  }

  TempDir tmp_;
};

TEST_F(LogStoreTest, OutputGoesToTheProcessDirectoryInTheStateDir) {
  std::unique_ptr<LogStore> store = MakeStore(OptionsFor(tmp_.path()));
  const std::string id = "0B7E3D1C-6A1F-4E8E-9F3C-2D6A5B4C3D2E";
  std::shared_ptr<OutputLog> log = store->Open(id).value();
  ASSERT_TRUE(store->AppendData(*log, 0, kOut, "hi").ok());
  // The shim's directory: procs/<id>/output, the id in lower case.
  const std::string dir =
      ProcessOutputDir(tmp_.path(), absl::AsciiStrToLower(id));
  EXPECT_EQ(log->dir(), dir);
  EXPECT_EQ(SegmentPaths(dir).size(), 1u);
  EXPECT_EQ(store->Open(absl::AsciiStrToLower(id)).value(), log);
  EXPECT_EQ(store->Find(id).value(), log);
  EXPECT_EQ(store->log_count(), 1u);
}

TEST_F(LogStoreTest, MalformedAndUnknownIds) {
  std::unique_ptr<LogStore> store = MakeStore(OptionsFor(tmp_.path()));
  absl::StatusOr<std::shared_ptr<OutputLog>> bad = store->Open("42");
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(bad.status().message(), HasSubstr("malformed process id"));
  EXPECT_EQ(store->Find("../etc").status().code(),
            absl::StatusCode::kInvalidArgument);

  absl::StatusOr<std::shared_ptr<OutputLog>> unknown = store->Find(Id(7));
  EXPECT_EQ(unknown.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(unknown.status().message(),
              HasSubstr("no output for process " + Id(7)));
}

TEST_F(LogStoreTest, CreateRefusesWhatCannotWork) {
  LogStore::Options options;
  EXPECT_EQ(LogStore::Create(options).status().code(),
            absl::StatusCode::kInvalidArgument);
  options = OptionsFor(tmp_.path());
  options.max_total_bytes = 0;
  EXPECT_EQ(LogStore::Create(options).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(LogStoreTest, ARestartedStoreServesOutputOfProcessesThatEndedBefore) {
  {
    std::unique_ptr<LogStore> store = MakeStore(OptionsFor(tmp_.path()));
    Fill(*store, 1, 300, /*close=*/true);
    Fill(*store, 2, 200, /*close=*/false);
  }
  std::unique_ptr<LogStore> store = MakeStore(OptionsFor(tmp_.path()));
  EXPECT_EQ(store->log_count(), 0u);  // nothing held until asked for
  std::vector<Chunk> ended = ReadAll(*store, 1);
  EXPECT_EQ(DataOf(ended), std::string(300, 'x'));
  std::unique_ptr<segment_log::Reader> reader =
      store->Find(Id(1)).value()->OpenReader().value();
  EXPECT_TRUE(reader->closed());
  EXPECT_EQ(DataOf(ReadAll(*store, 2)), std::string(200, 'x'));
  // The live one's Append stream comes back and goes on where it was.
  std::shared_ptr<OutputLog> live = store->Open(Id(2)).value();
  EXPECT_EQ(live->end_offset(), 200u);
  EXPECT_EQ(store->estimated_total_bytes(), 0u + [&] {
    uint64_t total = 0;
    for (int n : {1, 2}) {
      for (const std::string& path :
           SegmentPaths(ProcessOutputDir(tmp_.path(), Id(n)))) {
        total += segment_log::FileSize(path);
      }
    }
    return total;
  }());
}

// Sets the last write of every segment of process `n` to `seconds` after
// the epoch: the total cap goes by it, and appends in one test can share a
// clock tick.
void SetSegmentTimes(const std::string& state_dir, int n, time_t seconds) {
  for (const std::string& path :
       SegmentPaths(ProcessOutputDir(state_dir, Id(n)))) {
    const struct timespec times[2] = {{seconds, 0}, {seconds, 0}};
    ASSERT_EQ(utimensat(AT_FDCWD, path.c_str(), times, 0), 0) << path;
  }
}

TEST_F(LogStoreTest, TheTotalCapDeletesTheOldestSegmentsAcrossProcesses) {
  LogStore::Options options = OptionsFor(tmp_.path());
  options.max_bytes_per_process = 1 << 20;
  options.segment_bytes = 1000;
  options.max_total_bytes = 10000;
  std::unique_ptr<LogStore> store = MakeStore(options);
  // Two ended processes, then a live one; each appends in 500-byte pieces
  // so each has several segments.
  for (int n : {1, 2}) {
    for (int i = 0; i < 8; ++i) Fill(*store, n, 500, /*close=*/false);
    ASSERT_TRUE(store->Close(*store->Find(Id(n)).value(), 4000).ok());
  }
  SetSegmentTimes(tmp_.path(), 1, 1000);  // the oldest
  SetSegmentTimes(tmp_.path(), 2, 2000);
  for (int i = 0; i < 8; ++i) Fill(*store, 3, 500, /*close=*/false);
  // About 12 KB written for a 10 KB cap: process 1 paid for it.
  std::vector<Chunk> first = ReadAll(*store, 1);
  std::vector<Chunk> second = ReadAll(*store, 2);
  std::vector<Chunk> third = ReadAll(*store, 3);
  ASSERT_FALSE(first.empty());
  EXPECT_GT(first.front().dropped_before, 0u);
  EXPECT_EQ(DataOf(second), std::string(4000, 'x'));
  EXPECT_EQ(DataOf(third), std::string(4000, 'x'));
  EXPECT_LE(store->estimated_total_bytes(), 10000u);
  uint64_t total = 0;
  for (int n : {1, 2, 3}) {
    for (const std::string& path :
         SegmentPaths(ProcessOutputDir(tmp_.path(), Id(n)))) {
      total += segment_log::FileSize(path);
    }
  }
  EXPECT_LE(total, 10000u);
  EXPECT_EQ(total, store->estimated_total_bytes());
}

TEST_F(LogStoreTest, AClosedLogForgottenFromMemoryIsFoundOnDisk) {
  LogStore::Options options = OptionsFor(tmp_.path());
  options.max_closed_logs = 2;
  std::unique_ptr<LogStore> store = MakeStore(options);
  Fill(*store, 1, 30, /*close=*/true);
  Fill(*store, 2, 30, true);
  Fill(*store, 3, 30, true);  // a third closed log: the first is forgotten
  EXPECT_EQ(store->log_count(), 2u);
  EXPECT_EQ(store->closed_log_count(), 2u);
  EXPECT_EQ(DataOf(ReadAll(*store, 1)), std::string(30, 'x'));
  EXPECT_TRUE(store->Open(Id(1)).value()->closed());
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

TEST_F(LogStoreTest, AFollowedDirectoryWakesWatchersWhenAnotherWriterAppends) {
  std::unique_ptr<LogStore> store = MakeStore(OptionsFor(tmp_.path()));
  // Another writer (a shim) owns the directory; the store only reads it.
  const std::string dir = ProcessOutputDir(tmp_.path(), Id(1));
  ASSERT_EQ(mkdir((tmp_.path() + "/procs/" + Id(1)).c_str(), 0700), 0);
  std::unique_ptr<segment_log::Writer> writer = segment_log::OpenWriter(dir);
  ASSERT_NE(writer, nullptr);
  std::shared_ptr<OutputLog> log = store->Find(Id(1)).value();
  EXPECT_FALSE(log->appending());
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
  std::vector<Chunk> chunks = ReadAll(*store, 1);
  EXPECT_EQ(DataOf(chunks), "from the shim");

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
  const std::string proc_dir = tmp_.path() + "/procs/" + Id(1);
  const std::string dir = ProcessOutputDir(tmp_.path(), Id(1));
  ASSERT_EQ(mkdir(proc_dir.c_str(), 0700), 0);
  ASSERT_NE(segment_log::OpenWriter(dir), nullptr);
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

TEST_F(LogStoreTest, AFullDiskIsAGapAndTheStoreGoesOn) {
  const std::string state_dir = tmp_.Sub("disk");
  segment_log::SmallTmpfs disk(state_dir, 64 << 10);
  if (!disk.ok()) GTEST_SKIP() << "no tmpfs to fill: " << disk.error();
  // Ballast to free later, as an operator would.
  const std::string ballast = state_dir + "/ballast";
  {
    std::string bytes(32 << 10, 'B');
    FILE* f = fopen(ballast.c_str(), "w");
    ASSERT_NE(f, nullptr);
    ASSERT_EQ(fwrite(bytes.data(), 1, bytes.size(), f), bytes.size());
    ASSERT_EQ(fclose(f), 0);
  }
  std::unique_ptr<LogStore> store = MakeStore(OptionsFor(state_dir));
  ASSERT_NE(store, nullptr);
  std::shared_ptr<OutputLog> log = store->Open(Id(1)).value();
  const std::string piece(4000, 'p');
  uint64_t written = 0;
  uint64_t lost = 0;
  while (lost == 0) {
    ASSERT_LT(written, uint64_t{64} << 10) << "the disk never filled";
    absl::StatusOr<OutputLog::Update> update =
        store->AppendData(*log, written + lost, kOut, piece);
    // Never an error for the Append stream: the bytes are a gap.
    ASSERT_TRUE(update.ok()) << update.status();
    EXPECT_EQ(update->end_offset, written + lost + piece.size());
    if (update->write_error.ok()) {
      written += piece.size();
    } else {
      EXPECT_THAT(update->write_error.message(), HasSubstr("No space left"));
      lost += piece.size();
    }
  }
  EXPECT_EQ(store->write_errors(), 1u);

  ASSERT_EQ(unlink(ballast.c_str()), 0);
  absl::StatusOr<OutputLog::Update> back =
      store->AppendData(*log, written + lost, kOut, "space is back");
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_TRUE(back->write_error.ok()) << back->write_error;
  ASSERT_TRUE(store->Close(*log, written + lost + 13).ok());
  std::vector<Chunk> chunks = ReadAll(*store, 1);
  ASSERT_EQ(chunks.size(), 2u);
  EXPECT_EQ(chunks[0].data, std::string(written, 'p'));
  EXPECT_EQ(chunks[1].offset, written + lost);
  EXPECT_EQ(chunks[1].dropped_before, lost);
  EXPECT_EQ(chunks[1].data, "space is back");
}

}  // namespace
}  // namespace pm::log_store
