// Prometheus metrics of a pm process: counters, gauges and histograms,
// with labels, rendered in Prometheus's text exposition format (0.0.4).
//
//   metrics::Registry& registry = metrics::Global();
//   metrics::Family<metrics::Counter>& calls = registry.AddCounter(
//       "pm_gateway_calls_total", "Calls by method and code",
//       {"method", "code"});
//   calls.With({"Start", "OK"}).Increment();
//   metrics::Histogram& latency = registry.AddHistogram(
//       "pm_supervisor_start_seconds", "Start latency", {},
//       metrics::ExponentialBuckets(0.0005, 2, 14)).With({});
//   latency.Observe(0.004);
//   registry.AddGaugeCallback("pm_registry_processes", "Records by state",
//                             {"state"}, [] { return CountByState(); });
//   std::string text = registry.Render();   // what /metrics serves
//
// Each service keeps its own metrics under its own name prefix
// (pm_supervisor_, pm_log_store_, ...), so the text of several services
// concatenated is still valid (the launcher serves them that way).
//
// Label values come from fixed sets chosen by the code (a method name, a
// status code, a state): never from a client's input, so a family cannot
// grow without bound. A family refuses its max_children'th new child and
// counts it in the "overflow" child (every label "overflow") instead.
//
// Thread-safe: updates are atomics (a histogram takes its own lock);
// Render takes each family's lock in turn.
#ifndef PM_COMMON_METRICS_H_
#define PM_COMMON_METRICS_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"

namespace pm::metrics {

using LabelValues = std::vector<std::string>;

class Counter {
 public:
  void Increment(uint64_t by = 1) { value_.fetch_add(by, std::memory_order_relaxed); }
  uint64_t value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<uint64_t> value_{0};
};

class Gauge {
 public:
  void Set(int64_t v) { value_.store(v, std::memory_order_relaxed); }
  void Add(int64_t by) { value_.fetch_add(by, std::memory_order_relaxed); }
  int64_t value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<int64_t> value_{0};
};

class Histogram {
 public:
  // `bounds`: the buckets' upper bounds, increasing (+Inf is implied).
  explicit Histogram(std::vector<double> bounds);
  void Observe(double value);

  struct Snapshot {
    std::vector<double> bounds;
    std::vector<uint64_t> cumulative;  // per bound, then +Inf (= count)
    double sum = 0;
  };
  Snapshot snapshot() const;

 private:
  const std::vector<double> bounds_;
  mutable absl::Mutex mu_;
  std::vector<uint64_t> counts_ ABSL_GUARDED_BY(mu_);  // per bound, then +Inf
  double sum_ ABSL_GUARDED_BY(mu_) = 0;
};

// `count` bounds: start, start*factor, start*factor^2, ...
std::vector<double> ExponentialBuckets(double start, double factor, int count);

// The children of one metric name, one per set of label values.
template <typename T>
class Family {
 public:
  // The child of `values` (one per label name), made on first use. The
  // reference stays valid for the family's life.
  T& With(const LabelValues& values);

  // For Render.
  template <typename F>
  void ForEach(F f) const {
    absl::MutexLock lock(&mu_);
    for (const auto& [values, child] : children_) f(values, *child);
  }

 private:
  friend class Registry;
  Family(std::vector<std::string> label_names, std::function<std::unique_ptr<T>()> make,
         size_t max_children)
      : label_names_(std::move(label_names)),
        make_(std::move(make)),
        max_children_(max_children) {}

  const std::vector<std::string> label_names_;
  const std::function<std::unique_ptr<T>()> make_;
  const size_t max_children_;
  mutable absl::Mutex mu_;
  std::map<LabelValues, std::unique_ptr<T>> children_ ABSL_GUARDED_BY(mu_);
};

// A gauge read when rendered: one sample per set of label values.
struct Sample {
  LabelValues labels;
  double value = 0;
};

class Registry {
 public:
  Registry();
  ~Registry();
  Registry(const Registry&) = delete;
  Registry& operator=(const Registry&) = delete;

  // Names and label names must be valid Prometheus names, a name must be
  // new, and label values must have one value per label name: a breach is
  // a bug in the caller and aborts with a message.
  Family<Counter>& AddCounter(const std::string& name, const std::string& help,
                              std::vector<std::string> label_names);
  Family<Gauge>& AddGauge(const std::string& name, const std::string& help,
                          std::vector<std::string> label_names);
  Family<Histogram>& AddHistogram(const std::string& name, const std::string& help,
                                  std::vector<std::string> label_names,
                                  std::vector<double> bounds);
  // `collect` runs at every Render, on the renderer's thread. A counter's
  // samples must never go down (but for a restart of the process).
  void AddGaugeCallback(const std::string& name, const std::string& help,
                        std::vector<std::string> label_names,
                        std::function<std::vector<Sample>()> collect);
  void AddCounterCallback(const std::string& name, const std::string& help,
                          std::vector<std::string> label_names,
                          std::function<std::vector<Sample>()> collect);

  // Every metric, in the order added.
  std::string Render() const;

  // Children per family at most (see above).
  static constexpr size_t kMaxChildren = 1000;

 private:
  struct Entry;
  // A checked entry, and its publication once complete (a Render never
  // sees one half made).
  static std::unique_ptr<Entry> NewEntry(const std::string& name, const std::string& help,
                                         const char* type,
                                         const std::vector<std::string>& label_names);
  void Publish(std::unique_ptr<Entry> entry);

  mutable absl::Mutex mu_;
  std::vector<std::unique_ptr<Entry>> entries_ ABSL_GUARDED_BY(mu_);
};

// The process's registry: what its /metrics and its Scrape RPC serve.
Registry& Global();

// Prometheus text escaping: of a label value (\\, \", \n) and of HELP
// text (\\, \n).
std::string EscapeLabelValue(absl::string_view value);
std::string EscapeHelp(absl::string_view help);

// "Content-Type" of Render's text.
inline constexpr char kContentType[] = "text/plain; version=0.0.4; charset=utf-8";

// Aborts with `what` (a misuse of this API).
[[noreturn]] void Misuse(const std::string& what);

template <typename T>
T& Family<T>::With(const LabelValues& values) {
  if (values.size() != label_names_.size()) {
    Misuse("label values do not match the label names");
  }
  absl::MutexLock lock(&mu_);
  auto it = children_.find(values);
  if (it != children_.end()) return *it->second;
  if (children_.size() >= max_children_) {
    LabelValues overflow(label_names_.size(), "overflow");
    auto& child = children_[overflow];
    if (!child) child = make_();
    return *child;
  }
  auto& child = children_[values];
  child = make_();
  return *child;
}

}  // namespace pm::metrics

#endif  // PM_COMMON_METRICS_H_
