#include "common/cgroup_usage.h"

#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/fd.h"

namespace pm {
namespace {

void SetDurationUsec(uint64_t usec, google::protobuf::Duration* out) {
  out->set_seconds(static_cast<int64_t>(usec / 1000000));
  out->set_nanos(static_cast<int32_t>((usec % 1000000) * 1000));
}

std::optional<uint64_t> Counter(const std::map<std::string, uint64_t>& counters,
                                const std::string& key) {
  auto it = counters.find(key);
  if (it == counters.end()) return std::nullopt;
  return it->second;
}

std::optional<std::map<std::string, uint64_t>> ReadCounters(
    const std::string& dir, absl::string_view name) {
  if (dir.empty()) return std::nullopt;
  std::optional<std::string> text = ReadCgroupFile(dir, name);
  if (!text) return std::nullopt;
  return ParseKeyedCounters(*text);
}

std::optional<uint64_t> CountLines(const std::string& dir,
                                   absl::string_view name) {
  if (dir.empty()) return std::nullopt;
  std::optional<std::string> text = ReadCgroupFile(dir, name);
  if (!text) return std::nullopt;
  return static_cast<uint64_t>(std::count(text->begin(), text->end(), '\n'));
}

// Memory: cgroup2 when its memory controller is enabled there, else v1.
void ReadMemory(const CgroupDirs& dirs, pm::v1::ResourceUsage& usage) {
  if (!dirs.unified.empty()) {
    if (auto current = ReadCgroupNumber(dirs.unified, "memory.current")) {
      usage.set_memory_bytes(*current);
      // memory.peak needs Linux 5.19.
      if (auto peak = ReadCgroupNumber(dirs.unified, "memory.peak")) {
        usage.set_memory_peak_bytes(*peak);
      }
      if (auto events = ReadCounters(dirs.unified, "memory.events")) {
        if (auto n = Counter(*events, "oom_kill")) usage.set_oom_kills(*n);
        if (auto n = Counter(*events, "max")) usage.set_memory_limit_hits(*n);
      }
      return;
    }
  }
  const std::string dir = dirs.V1("memory");
  if (dir.empty()) return;
  if (auto current = ReadCgroupNumber(dir, "memory.usage_in_bytes")) {
    usage.set_memory_bytes(*current);
  }
  if (auto peak = ReadCgroupNumber(dir, "memory.max_usage_in_bytes")) {
    usage.set_memory_peak_bytes(*peak);
  }
  if (auto control = ReadCounters(dir, "memory.oom_control")) {
    if (auto n = Counter(*control, "oom_kill")) usage.set_oom_kills(*n);
  }
  // With a memory+swap limit as tight as the memory one, the memsw counter
  // is the one that fails first, and the plain one never counts a hit.
  std::optional<uint64_t> hits = ReadCgroupNumber(dir, "memory.failcnt");
  if (auto memsw = ReadCgroupNumber(dir, "memory.memsw.failcnt")) {
    hits = std::max(hits.value_or(0), *memsw);
  }
  if (hits) usage.set_memory_limit_hits(*hits);
}

void ReadCpu(const CgroupDirs& dirs, pm::v1::ResourceUsage& usage) {
  // cgroup2 accounts CPU time in every cgroup, controller or not; the
  // throttling fields appear only with the cpu controller.
  std::optional<std::map<std::string, uint64_t>> v2 =
      ReadCounters(dirs.unified, "cpu.stat");
  if (v2) {
    if (auto usec = Counter(*v2, "usage_usec")) {
      SetDurationUsec(*usec, usage.mutable_cpu_time());
    }
  }
  if (!usage.has_cpu_time()) {
    if (auto nsec = ReadCgroupNumber(dirs.V1("cpuacct"), "cpuacct.usage")) {
      SetDurationUsec(*nsec / 1000, usage.mutable_cpu_time());
    }
  }
  if (v2 && v2->count("nr_periods") > 0) {
    usage.set_cpu_periods((*v2)["nr_periods"]);
    usage.set_cpu_throttled_periods((*v2)["nr_throttled"]);
    SetDurationUsec((*v2)["throttled_usec"], usage.mutable_cpu_throttled_time());
    return;
  }
  if (auto v1 = ReadCounters(dirs.V1("cpu"), "cpu.stat")) {
    if (v1->count("nr_periods") == 0) return;
    usage.set_cpu_periods((*v1)["nr_periods"]);
    usage.set_cpu_throttled_periods((*v1)["nr_throttled"]);
    SetDurationUsec((*v1)["throttled_time"] / 1000,
                    usage.mutable_cpu_throttled_time());
  }
}

void ReadTasks(const CgroupDirs& dirs, pm::v1::ResourceUsage& usage) {
  const std::string v2 = dirs.unified;
  const std::string v1 = dirs.V1("pids");
  std::optional<uint64_t> tasks;
  if (!v2.empty()) tasks = ReadCgroupNumber(v2, "pids.current");
  if (!tasks && !v1.empty()) tasks = ReadCgroupNumber(v1, "pids.current");
  // Without a pids controller: count the threads the cgroup lists.
  if (!tasks) tasks = CountLines(v2, "cgroup.threads");
  for (auto it = dirs.v1.begin(); !tasks && it != dirs.v1.end(); ++it) {
    tasks = CountLines(it->second, "tasks");
  }
  if (tasks) usage.set_tasks(*tasks);

  std::optional<std::map<std::string, uint64_t>> events;
  if (!v2.empty()) events = ReadCounters(v2, "pids.events");
  if (!events && !v1.empty()) events = ReadCounters(v1, "pids.events");
  if (events) {
    if (auto n = Counter(*events, "max")) usage.set_task_limit_hits(*n);
  }
}

}  // namespace

std::string CgroupDirs::V1(const std::string& controller) const {
  auto it = v1.find(controller);
  return it == v1.end() ? std::string() : it->second;
}

std::map<std::string, uint64_t> ParseKeyedCounters(absl::string_view text) {
  std::map<std::string, uint64_t> counters;
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
    std::vector<absl::string_view> parts =
        absl::StrSplit(line, absl::ByAnyChar(" \t"), absl::SkipEmpty());
    uint64_t value = 0;
    if (parts.size() == 2 && absl::SimpleAtoi(parts[1], &value)) {
      counters[std::string(parts[0])] = value;
    }
  }
  return counters;
}

std::optional<std::string> ReadCgroupFile(const std::string& dir,
                                          absl::string_view name) {
  if (dir.empty()) return std::nullopt;
  const std::string path = absl::StrCat(dir, "/", name);
  absl::StatusOr<std::string> text = ReadFile(path);
  if (!text.ok()) return std::nullopt;
  return *std::move(text);
}

std::optional<uint64_t> ReadCgroupNumber(const std::string& dir,
                                         absl::string_view name) {
  std::optional<std::string> text = ReadCgroupFile(dir, name);
  uint64_t value = 0;
  if (!text || !absl::SimpleAtoi(absl::StripAsciiWhitespace(*text), &value)) {
    return std::nullopt;
  }
  return value;
}

pm::v1::ResourceUsage ReadCgroupUsage(const CgroupDirs& dirs) {
  pm::v1::ResourceUsage usage;
  if (dirs.empty()) return usage;
  ReadMemory(dirs, usage);
  ReadCpu(dirs, usage);
  ReadTasks(dirs, usage);
  return usage;
}

}  // namespace pm
