// LogStore without a server: ids, the total cap and its eviction order, the
// closed-log count, and exact accounting under concurrent appends.
#include "log_store/log_store.h"

#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_format.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace pm::log_store {
namespace {

using ::testing::HasSubstr;

constexpr OutputStream kOut = OutputStream::kStdout;

// The n-th test process id.
std::string Id(int n) {
  return absl::StrFormat("00000000-0000-4000-8000-%012d", n);
}

// Chunks of 10 bytes and no overhead, so byte counts are exact.
LogStore::Options SmallOptions(uint64_t max_total_bytes,
                               size_t max_closed_logs = 100) {
  LogStore::Options options;
  options.max_bytes_per_process = 1 << 20;
  options.max_total_bytes = max_total_bytes;
  options.max_closed_logs = max_closed_logs;
  options.max_chunk_bytes = 10;
  options.chunk_overhead_bytes = 0;
  return options;
}

// Opens log `n`, appends `bytes` bytes at its end, and closes it if asked.
std::shared_ptr<OutputLog> Fill(LogStore& store, int n, uint64_t bytes,
                                bool close) {
  std::shared_ptr<OutputLog> log = store.Open(Id(n)).value();
  const uint64_t end = log->end_offset();
  EXPECT_TRUE(store.AppendData(*log, end, kOut, std::string(bytes, 'x')).ok());
  if (close) {
    EXPECT_TRUE(store.Close(*log, end + bytes).ok());
  }
  return log;
}

uint64_t Retained(const LogStore& store, int n) {
  return store.RetainedBytes(Id(n)).value();
}

TEST(LogStoreTest, OpenCreatesOnceAndFindFindsByIdInEitherCase) {
  LogStore store(LogStore::Options{});
  const std::string id = "0B7E3D1C-6A1F-4E8E-9F3C-2D6A5B4C3D2E";
  std::shared_ptr<OutputLog> log = store.Open(id).value();
  ASSERT_TRUE(store.AppendData(*log, 0, kOut, "hi").ok());
  EXPECT_EQ(store.Open(absl::AsciiStrToLower(id)).value(), log);
  EXPECT_EQ(store.Find(id).value(), log);
  EXPECT_EQ(store.log_count(), 1u);
}

TEST(LogStoreTest, MalformedAndUnknownIds) {
  LogStore store(LogStore::Options{});
  absl::StatusOr<std::shared_ptr<OutputLog>> bad = store.Open("42");
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(bad.status().message(), HasSubstr("malformed process id"));
  EXPECT_EQ(store.Find("../etc").status().code(),
            absl::StatusCode::kInvalidArgument);

  absl::StatusOr<std::shared_ptr<OutputLog>> unknown = store.Find(Id(7));
  EXPECT_EQ(unknown.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(unknown.status().message(),
              HasSubstr("no output for process " + Id(7)));
  EXPECT_EQ(store.RetainedBytes(Id(7)).status().code(),
            absl::StatusCode::kNotFound);
}

TEST(LogStoreTest, TotalCapDropsFromClosedLogsOldestFirst) {
  LogStore store(SmallOptions(/*max_total_bytes=*/300));
  Fill(store, 1, 100, /*close=*/true);
  Fill(store, 2, 100, /*close=*/true);
  Fill(store, 3, 100, /*close=*/false);
  EXPECT_EQ(store.total_retained_bytes(), 300u);

  // 50 over: taken from the oldest closed log, not from the open one.
  Fill(store, 3, 50, false);
  EXPECT_EQ(Retained(store, 1), 50u);
  EXPECT_EQ(Retained(store, 2), 100u);
  EXPECT_EQ(Retained(store, 3), 150u);

  // 100 over: the rest of log 1, then log 2.
  Fill(store, 3, 100, false);
  EXPECT_EQ(Retained(store, 1), 0u);
  EXPECT_EQ(Retained(store, 2), 50u);
  EXPECT_EQ(Retained(store, 3), 250u);
  EXPECT_EQ(store.total_retained_bytes(), 300u);

  // A reader of log 1 from the start is told everything was dropped.
  std::optional<OutputLog::Chunk> chunk = store.Find(Id(1)).value()->Read(0);
  ASSERT_TRUE(chunk.has_value());
  EXPECT_EQ(chunk->offset, 100u);
  EXPECT_EQ(chunk->dropped_before, 100u);
  EXPECT_TRUE(chunk->data.empty());
}

TEST(LogStoreTest, TotalCapThenDropsFromTheLargestOpenLog) {
  LogStore store(SmallOptions(/*max_total_bytes=*/300));
  Fill(store, 1, 60, /*close=*/true);
  Fill(store, 2, 200, false);
  Fill(store, 3, 40, false);
  EXPECT_EQ(store.total_retained_bytes(), 300u);

  Fill(store, 3, 80, false);  // 80 over: all of closed log 1, then log 2
  EXPECT_EQ(Retained(store, 1), 0u);
  EXPECT_EQ(Retained(store, 2), 180u);
  EXPECT_EQ(Retained(store, 3), 120u);

  Fill(store, 2, 30, false);  // log 2 is the largest: it pays for itself
  EXPECT_EQ(Retained(store, 2), 180u);
  EXPECT_EQ(Retained(store, 3), 120u);
  EXPECT_EQ(store.total_retained_bytes(), 300u);
}

TEST(LogStoreTest, PerProcessCapCountsInTheTotal) {
  LogStore::Options options = SmallOptions(/*max_total_bytes=*/1000);
  options.max_bytes_per_process = 100;
  LogStore store(options);
  Fill(store, 1, 250, false);
  EXPECT_EQ(Retained(store, 1), 100u);
  EXPECT_EQ(store.total_retained_bytes(), 100u);
}

TEST(LogStoreTest, EvictsTheOldestClosedLogBeyondTheCount) {
  LogStore store(SmallOptions(/*max_total_bytes=*/10000, /*max_closed_logs=*/2));
  std::shared_ptr<OutputLog> first = Fill(store, 1, 30, /*close=*/true);
  Fill(store, 2, 30, true);
  Fill(store, 3, 30, false);
  EXPECT_EQ(store.log_count(), 3u);

  Fill(store, 4, 30, true);  // a third closed log: the first goes
  EXPECT_EQ(store.Find(Id(1)).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(store.log_count(), 3u);
  EXPECT_EQ(store.closed_log_count(), 2u);
  EXPECT_EQ(store.total_retained_bytes(), 90u);
  // A reader still holding it sees its bytes dropped, not a silent end.
  std::optional<OutputLog::Chunk> chunk = first->Read(10);
  ASSERT_TRUE(chunk.has_value());
  EXPECT_EQ(chunk->offset, 30u);
  EXPECT_EQ(chunk->dropped_before, 20u);
}

TEST(LogStoreTest, ReopeningAClosedLogFindsItClosed) {
  LogStore store(SmallOptions(/*max_total_bytes=*/10000));
  Fill(store, 1, 30, /*close=*/true);
  std::shared_ptr<OutputLog> log = store.Open(Id(1)).value();
  EXPECT_TRUE(log->closed());
  EXPECT_EQ(log->end_offset(), 30u);
  EXPECT_TRUE(store.Close(*log, 30).ok());
  EXPECT_EQ(store.closed_log_count(), 1u);  // not counted twice
}

TEST(LogStoreTest, TotalStaysExactUnderConcurrentAppends) {
  LogStore::Options options = SmallOptions(/*max_total_bytes=*/5000, 3);
  options.max_bytes_per_process = 2000;
  options.chunk_overhead_bytes = 8;
  LogStore store(options);
  constexpr int kThreads = 8;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&store, t] {
      for (int round = 0; round < 5; ++round) {
        const int n = t * 100 + round;
        std::shared_ptr<OutputLog> log = store.Open(Id(n)).value();
        for (uint64_t offset = 0; offset < 3000; offset += 7) {
          ASSERT_TRUE(
              store.AppendData(*log, offset, kOut, std::string(7, 'z')).ok());
        }
        ASSERT_TRUE(store.Close(*log, 3003).ok());
      }
    });
  }
  for (std::thread& thread : threads) thread.join();

  EXPECT_LE(store.total_retained_bytes(), 5000u);
  EXPECT_EQ(store.closed_log_count(), 3u);
  uint64_t sum = 0;
  for (int t = 0; t < kThreads; ++t) {
    for (int round = 0; round < 5; ++round) {
      absl::StatusOr<uint64_t> retained = store.RetainedBytes(Id(t * 100 + round));
      if (retained.ok()) sum += *retained;
    }
  }
  EXPECT_EQ(sum, store.total_retained_bytes());
}

}  // namespace
}  // namespace pm::log_store
