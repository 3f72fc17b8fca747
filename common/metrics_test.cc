#include "common/metrics.h"

#include <thread>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace pm::metrics {
namespace {

using ::testing::HasSubstr;

TEST(MetricsTest, CountersAndGaugesRenderWithTheirLabels) {
  Registry registry;
  Family<Counter>& calls = registry.AddCounter("pm_test_calls_total", "Calls", {"method", "code"});
  calls.With({"Start", "OK"}).Increment();
  calls.With({"Start", "OK"}).Increment(2);
  calls.With({"Stop", "NOT_FOUND"}).Increment();
  Gauge& live = registry.AddGauge("pm_test_live", "Live ones", {}).With({});
  live.Set(5);
  live.Add(-2);
  EXPECT_EQ(registry.Render(),
            "# HELP pm_test_calls_total Calls\n"
            "# TYPE pm_test_calls_total counter\n"
            "pm_test_calls_total{method=\"Start\",code=\"OK\"} 3\n"
            "pm_test_calls_total{method=\"Stop\",code=\"NOT_FOUND\"} 1\n"
            "# HELP pm_test_live Live ones\n"
            "# TYPE pm_test_live gauge\n"
            "pm_test_live 3\n");
}

TEST(MetricsTest, LabelValuesAndHelpAreEscaped) {
  Registry registry;
  registry.AddCounter("pm_test_total", "a \\ b\nc", {"v"}).With({"q\"\\\nx"}).Increment();
  EXPECT_THAT(registry.Render(), HasSubstr("# HELP pm_test_total a \\\\ b\\nc\n"));
  EXPECT_THAT(registry.Render(), HasSubstr("pm_test_total{v=\"q\\\"\\\\\\nx\"} 1\n"));
}

TEST(MetricsTest, HistogramBucketsAreCumulativeWithSumAndCount) {
  Registry registry;
  Histogram& h =
      registry.AddHistogram("pm_test_seconds", "Latency", {}, {0.5, 1, 2.5}).With({});
  h.Observe(0.1);
  h.Observe(0.5);  // a bound is inclusive
  h.Observe(2);
  h.Observe(10);
  EXPECT_EQ(registry.Render(),
            "# HELP pm_test_seconds Latency\n"
            "# TYPE pm_test_seconds histogram\n"
            "pm_test_seconds_bucket{le=\"0.5\"} 2\n"
            "pm_test_seconds_bucket{le=\"1\"} 2\n"
            "pm_test_seconds_bucket{le=\"2.5\"} 3\n"
            "pm_test_seconds_bucket{le=\"+Inf\"} 4\n"
            "pm_test_seconds_sum 12.6\n"
            "pm_test_seconds_count 4\n");
}

TEST(MetricsTest, GaugeCallbacksAreReadAtEachRender) {
  Registry registry;
  int calls = 0;
  registry.AddGaugeCallback("pm_test_processes", "By state", {"state"}, [&] {
    ++calls;
    return std::vector<Sample>{{{"running"}, 2.0 * calls}, {{"exited"}, 1}};
  });
  EXPECT_THAT(registry.Render(), HasSubstr("pm_test_processes{state=\"running\"} 2\n"));
  EXPECT_THAT(registry.Render(), HasSubstr("pm_test_processes{state=\"running\"} 4\n"));
  EXPECT_THAT(registry.Render(), HasSubstr("pm_test_processes{state=\"exited\"} 1\n"));
  registry.AddCounterCallback("pm_test_bytes_total", "Read", {}, [] {
    return std::vector<Sample>{{{}, 12345678901.0}};
  });
  EXPECT_THAT(registry.Render(), HasSubstr("# TYPE pm_test_bytes_total counter\n"
                                           "pm_test_bytes_total 12345678901\n"));
}

TEST(MetricsTest, AFamilyPastItsCapCountsInOverflow) {
  Registry registry;
  Family<Counter>& f = registry.AddCounter("pm_test_total", "Capped", {"k"});
  for (size_t i = 0; i < Registry::kMaxChildren + 10; ++i) {
    f.With({std::to_string(i)}).Increment();
  }
  EXPECT_THAT(registry.Render(), HasSubstr("pm_test_total{k=\"overflow\"} 10\n"));
  EXPECT_THAT(registry.Render(), ::testing::Not(HasSubstr("k=\"1005\"")));
}

TEST(MetricsTest, ConcurrentUpdatesAreAllCounted) {
  Registry registry;
  Family<Counter>& f = registry.AddCounter("pm_test_total", "Racy", {"t"});
  Histogram& h = registry.AddHistogram("pm_test_seconds", "Racy", {}, {1}).With({});
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 10000; ++i) {
        f.With({std::to_string(i % 3)}).Increment();
        h.Observe(t);
        if (i % 1000 == 0) registry.Render();
      }
    });
  }
  for (std::thread& t : threads) t.join();
  uint64_t total = 0;
  f.ForEach([&](const LabelValues&, const Counter& c) { total += c.value(); });
  EXPECT_EQ(total, 40000u);
  EXPECT_EQ(h.snapshot().cumulative.back(), 40000u);
}

TEST(MetricsDeathTest, MisuseAbortsNamingIt) {
  Registry registry;
  registry.AddCounter("pm_test_total", "x", {});
  EXPECT_DEATH(registry.AddCounter("pm_test_total", "x", {}), "added twice");
  EXPECT_DEATH(registry.AddCounter("bad name", "x", {}), "invalid metric name");
  EXPECT_DEATH(registry.AddCounter("pm_ok", "x", {"le"}), "invalid label name");
  EXPECT_DEATH(registry.AddCounter("pm_ok2", "x", {"a"}).With({"1", "2"}), "do not match");
}

}  // namespace
}  // namespace pm::metrics
