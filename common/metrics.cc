#include "common/metrics.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"

namespace pm::metrics {

namespace {

bool ValidName(absl::string_view name, bool colons) {
  if (name.empty()) return false;
  for (size_t i = 0; i < name.size(); ++i) {
    const char c = name[i];
    const bool letter = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
                        (colons && c == ':');
    if (!letter && !(i > 0 && c >= '0' && c <= '9')) return false;
  }
  return true;
}

// Prometheus's float text: integers without a fraction, +Inf, NaN.
std::string FormatValue(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  if (v == std::floor(v) && std::fabs(v) < 1e15) {
    return absl::StrCat(static_cast<int64_t>(v));
  }
  // The shortest of 15 to 17 digits that reads back as `v`.
  char buf[32];
  for (int digits = 15; digits < 17; ++digits) {
    snprintf(buf, sizeof(buf), "%.*g", digits, v);
    if (strtod(buf, nullptr) == v) return buf;
  }
  snprintf(buf, sizeof(buf), "%.17g", v);
  return buf;
}

// `{a="x",b="y"}`, with `extra` (already escaped: le="0.5") last; empty
// when there is no label at all.
std::string LabelText(const std::vector<std::string>& names, const LabelValues& values,
                      const std::string& extra = "") {
  std::vector<std::string> parts;
  for (size_t i = 0; i < names.size(); ++i) {
    parts.push_back(absl::StrCat(names[i], "=\"", EscapeLabelValue(values[i]), "\""));
  }
  if (!extra.empty()) parts.push_back(extra);
  if (parts.empty()) return "";
  return absl::StrCat("{", absl::StrJoin(parts, ","), "}");
}

}  // namespace

void Misuse(const std::string& what) {
  fprintf(stderr, "pm::metrics misuse: %s\n", what.c_str());
  std::abort();
}

std::string EscapeLabelValue(absl::string_view value) {
  return absl::StrReplaceAll(value, {{"\\", "\\\\"}, {"\"", "\\\""}, {"\n", "\\n"}});
}

std::string EscapeHelp(absl::string_view help) {
  return absl::StrReplaceAll(help, {{"\\", "\\\\"}, {"\n", "\\n"}});
}

Histogram::Histogram(std::vector<double> bounds)
    : bounds_(std::move(bounds)), counts_(bounds_.size() + 1, 0) {}

void Histogram::Observe(double value) {
  size_t i = 0;
  while (i < bounds_.size() && value > bounds_[i]) ++i;
  absl::MutexLock lock(&mu_);
  ++counts_[i];
  sum_ += value;
}

Histogram::Snapshot Histogram::snapshot() const {
  Snapshot s;
  s.bounds = bounds_;
  absl::MutexLock lock(&mu_);
  uint64_t running = 0;
  for (uint64_t c : counts_) {
    running += c;
    s.cumulative.push_back(running);
  }
  s.sum = sum_;
  return s;
}

std::vector<double> ExponentialBuckets(double start, double factor, int count) {
  if (start <= 0 || factor <= 1 || count < 1) Misuse("bad exponential buckets");
  std::vector<double> bounds;
  double b = start;
  for (int i = 0; i < count; ++i, b *= factor) bounds.push_back(b);
  return bounds;
}

struct Registry::Entry {
  std::string name;
  std::string help;
  const char* type;
  std::vector<std::string> label_names;
  std::unique_ptr<Family<Counter>> counters;
  std::unique_ptr<Family<Gauge>> gauges;
  std::unique_ptr<Family<Histogram>> histograms;
  std::function<std::vector<Sample>()> collect;
};

Registry::Registry() = default;
Registry::~Registry() = default;

std::unique_ptr<Registry::Entry> Registry::NewEntry(const std::string& name,
                                                    const std::string& help, const char* type,
                                                    const std::vector<std::string>& label_names) {
  if (!ValidName(name, /*colons=*/true)) Misuse("invalid metric name " + name);
  for (const std::string& label : label_names) {
    if (!ValidName(label, /*colons=*/false) || label.rfind("__", 0) == 0 || label == "le") {
      Misuse(absl::StrCat("invalid label name ", label, " of ", name));
    }
  }
  auto entry = std::make_unique<Entry>();
  entry->name = name;
  entry->help = help;
  entry->type = type;
  entry->label_names = label_names;
  return entry;
}

void Registry::Publish(std::unique_ptr<Entry> entry) {
  absl::MutexLock lock(&mu_);
  for (const auto& known : entries_) {
    if (known->name == entry->name) Misuse("metric added twice: " + entry->name);
  }
  entries_.push_back(std::move(entry));
}

Family<Counter>& Registry::AddCounter(const std::string& name, const std::string& help,
                                      std::vector<std::string> label_names) {
  std::unique_ptr<Entry> entry = NewEntry(name, help, "counter", label_names);
  entry->counters.reset(new Family<Counter>(
      std::move(label_names), [] { return std::make_unique<Counter>(); }, kMaxChildren));
  Family<Counter>& family = *entry->counters;
  Publish(std::move(entry));
  return family;
}

Family<Gauge>& Registry::AddGauge(const std::string& name, const std::string& help,
                                  std::vector<std::string> label_names) {
  std::unique_ptr<Entry> entry = NewEntry(name, help, "gauge", label_names);
  entry->gauges.reset(new Family<Gauge>(
      std::move(label_names), [] { return std::make_unique<Gauge>(); }, kMaxChildren));
  Family<Gauge>& family = *entry->gauges;
  Publish(std::move(entry));
  return family;
}

Family<Histogram>& Registry::AddHistogram(const std::string& name, const std::string& help,
                                          std::vector<std::string> label_names,
                                          std::vector<double> bounds) {
  for (size_t i = 0; i < bounds.size(); ++i) {
    if (!std::isfinite(bounds[i]) || (i > 0 && bounds[i] <= bounds[i - 1])) {
      Misuse("histogram bounds must be finite and increasing: " + name);
    }
  }
  std::unique_ptr<Entry> entry = NewEntry(name, help, "histogram", label_names);
  entry->histograms.reset(new Family<Histogram>(
      std::move(label_names),
      [bounds = std::move(bounds)] { return std::make_unique<Histogram>(bounds); },
      kMaxChildren));
  Family<Histogram>& family = *entry->histograms;
  Publish(std::move(entry));
  return family;
}

void Registry::AddGaugeCallback(const std::string& name, const std::string& help,
                                std::vector<std::string> label_names,
                                std::function<std::vector<Sample>()> collect) {
  std::unique_ptr<Entry> entry = NewEntry(name, help, "gauge", label_names);
  entry->collect = std::move(collect);
  Publish(std::move(entry));
}

void Registry::AddCounterCallback(const std::string& name, const std::string& help,
                                  std::vector<std::string> label_names,
                                  std::function<std::vector<Sample>()> collect) {
  std::unique_ptr<Entry> entry = NewEntry(name, help, "counter", label_names);
  entry->collect = std::move(collect);
  Publish(std::move(entry));
}

std::string Registry::Render() const {
  std::string out;
  absl::MutexLock lock(&mu_);
  for (const auto& entry : entries_) {
    const std::string& name = entry->name;
    const std::vector<std::string>& labels = entry->label_names;
    absl::StrAppend(&out, "# HELP ", name, " ", EscapeHelp(entry->help), "\n",
                    "# TYPE ", name, " ", entry->type, "\n");
    if (entry->counters) {
      entry->counters->ForEach([&](const LabelValues& values, const Counter& c) {
        absl::StrAppend(&out, name, LabelText(labels, values), " ", c.value(), "\n");
      });
    } else if (entry->gauges) {
      entry->gauges->ForEach([&](const LabelValues& values, const Gauge& g) {
        absl::StrAppend(&out, name, LabelText(labels, values), " ", g.value(), "\n");
      });
    } else if (entry->histograms) {
      entry->histograms->ForEach([&](const LabelValues& values, const Histogram& h) {
        const Histogram::Snapshot s = h.snapshot();
        for (size_t i = 0; i <= s.bounds.size(); ++i) {
          const std::string le =
              i < s.bounds.size() ? FormatValue(s.bounds[i]) : std::string("+Inf");
          absl::StrAppend(&out, name, "_bucket",
                          LabelText(labels, values, absl::StrCat("le=\"", le, "\"")), " ",
                          s.cumulative[i], "\n");
        }
        absl::StrAppend(&out, name, "_sum", LabelText(labels, values), " ",
                        FormatValue(s.sum), "\n", name, "_count",
                        LabelText(labels, values), " ", s.cumulative.back(), "\n");
      });
    } else if (entry->collect) {
      for (const Sample& sample : entry->collect()) {
        if (sample.labels.size() != labels.size()) {
          Misuse("a sample's labels do not match the label names of " + name);
        }
        absl::StrAppend(&out, name, LabelText(labels, sample.labels), " ",
                        FormatValue(sample.value), "\n");
      }
    }
  }
  return out;
}

Registry& Global() {
  static Registry* registry = new Registry();
  return *registry;
}

}  // namespace pm::metrics
