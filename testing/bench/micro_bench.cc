// Micro-benchmarks (Google Benchmark) of the spawn path, the registry and
// the on-disk output, each beside its baseline in the same run; the ratios follow
// the table.
//
//   bazel run -c opt //testing/bench:micro
//   bazel run -c opt //testing/bench:micro -- --benchmark_filter=Spawn
//
// Spawn: pm's Spawn (pipes, clone3 with a pidfd, exec confirmed) of
// /bin/true and its reap, against posix_spawn + waitpid; and the same in a
// cgroup of its own (made, joined, removed), as the supervisor does, where
// this host allows it (root, cgroups).
// Registry: a record created and ended (CreateRecord + UpdateRecord to
// EXITED, what each Start costs the registry), written through to SQLite in
// $TMPDIR (else /var/tmp: a disk, not a tmpfs), against the same in memory
// only.
// Segments: the on-disk output (segment_log) written as each process's
// pm-shim writes it (the shim is the only writer: the log_store no longer
// takes output in) and read back as the log_store does, against plain write() and pread() of
// the same bytes to and from one file (page cache, no fsync, both).
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <benchmark/benchmark.h>

#include <filesystem>

#include "absl/strings/str_format.h"
#include "absl/strings/str_cat.h"
#include "registry/registry.h"
#include "registry/sqlite_record_store.h"
#include "segment_log/reader.h"
#include "segment_log/writer.h"
#include "supervisor/cgroup.h"
#include "supervisor/spawn.h"

extern char** environ;

namespace pm::bench {
namespace {

// --- Spawn ------------------------------------------------------------------

void BM_PosixSpawnBaseline(benchmark::State& state) {
  char* argv[] = {const_cast<char*>("/bin/true"), nullptr};
  for (auto _ : state) {
    pid_t pid = 0;
    if (posix_spawn(&pid, "/bin/true", nullptr, nullptr, argv, environ) != 0) {
      state.SkipWithError("posix_spawn failed");
      break;
    }
    waitpid(pid, nullptr, 0);
  }
}
BENCHMARK(BM_PosixSpawnBaseline)->Unit(benchmark::kMicrosecond);

pm::v1::StartRequest TrueRequest() {
  pm::v1::StartRequest request;
  request.set_executable("/bin/true");
  return request;
}

// Reaps the child through its pidfd, as the supervisor does.
void Reap(const supervisor::SpawnedChild& child) {
  siginfo_t info = {};
  waitid(static_cast<idtype_t>(P_PIDFD), child.pidfd.get(), &info, WEXITED);
}

void BM_PmSpawn(benchmark::State& state) {
  const pm::v1::StartRequest request = TrueRequest();
  for (auto _ : state) {
    absl::StatusOr<supervisor::SpawnedChild> child = supervisor::Spawn(request);
    if (!child.ok()) {
      state.SkipWithError(std::string(child.status().message()).c_str());
      break;
    }
    Reap(*child);
  }
}
BENCHMARK(BM_PmSpawn)->Unit(benchmark::kMicrosecond);

void BM_PmSpawnInItsOwnCgroup(benchmark::State& state) {
  supervisor::CgroupOptions options;
  options.name_prefix = absl::StrFormat("microbench%d.", getpid());
  std::unique_ptr<supervisor::Cgroups> cgroups = supervisor::Cgroups::Init(options);
  if (!cgroups->enabled()) {
    state.SkipWithError("no cgroups here (needs root and a cgroup mount)");
    return;
  }
  // Arg 1: only the spawn into a cgroup made beforehand is timed (what a
  // Start waits for; the supervisor makes and removes cgroups off its loop).
  const bool spawn_only = state.range(0) == 1;
  const pm::v1::StartRequest request = TrueRequest();
  for (auto _ : state) {
    if (spawn_only) state.PauseTiming();
    absl::StatusOr<std::unique_ptr<supervisor::ProcessCgroup>> cgroup =
        cgroups->Create(pm::v1::Limits());
    if (!cgroup.ok()) {
      state.SkipWithError(std::string(cgroup.status().message()).c_str());
      break;
    }
    if (spawn_only) state.ResumeTiming();
    absl::StatusOr<supervisor::SpawnedChild> child =
        supervisor::Spawn(request, (*cgroup)->spawn_options());
    (*cgroup)->CloseSpawnFds();
    if (!child.ok()) {
      state.SkipWithError(std::string(child.status().message()).c_str());
      break;
    }
    Reap(*child);
    if (spawn_only) state.PauseTiming();
    if (absl::Status removed = (*cgroup)->Remove(); !removed.ok()) {
      state.SkipWithError(std::string(removed.message()).c_str());
      break;
    }
    if (spawn_only) state.ResumeTiming();
  }
}
BENCHMARK(BM_PmSpawnInItsOwnCgroup)
    ->ArgName("spawn_only")
    ->Arg(0)
    ->Arg(1)
    ->Unit(benchmark::kMicrosecond);

// --- Registry ---------------------------------------------------------------

pm::internal::v1::CreateRecordRequest SleepRecord() {
  pm::internal::v1::CreateRecordRequest request;
  request.mutable_spec()->set_executable("sleep");
  request.mutable_spec()->add_args("1000");
  request.set_resolved_executable("/usr/bin/sleep");
  request.set_pid(4242);
  request.set_start_ticks(123456);
  request.set_owner_user("alice");
  return request;
}

void CreateAndEnd(benchmark::State& state, pm::registry::Registry& registry) {
  const pm::internal::v1::CreateRecordRequest create = SleepRecord();
  pm::internal::v1::UpdateRecordRequest exited;
  exited.set_state(pm::v1::ProcessStatus::STATE_EXITED);
  exited.mutable_end()->set_end_reason("exited with code 0");
  for (auto _ : state) {
    absl::StatusOr<pm::v1::ProcessStatus> created = registry.CreateRecord(create);
    if (!created.ok()) {
      state.SkipWithError(std::string(created.status().message()).c_str());
      break;
    }
    exited.set_id(created->id());
    absl::StatusOr<pm::v1::ProcessStatus> ended = registry.UpdateRecord(exited);
    if (!ended.ok()) {
      state.SkipWithError(std::string(ended.status().message()).c_str());
      break;
    }
  }
}

pm::registry::RegistryOptions BenchRegistryOptions() {
  pm::registry::RegistryOptions options;
  // Small enough that the runs reach the steady state: each end evicts one.
  options.max_ended_records = 1000;
  return options;
}

void BM_RegistryInMemoryBaseline(benchmark::State& state) {
  pm::registry::Registry registry(BenchRegistryOptions());
  CreateAndEnd(state, registry);
}
BENCHMARK(BM_RegistryInMemoryBaseline)->Unit(benchmark::kMicrosecond);

void BM_RegistryInSqlite(benchmark::State& state) {
  const char* tmp = getenv("TMPDIR");
  std::string dir = absl::StrCat(tmp != nullptr && *tmp ? tmp : "/var/tmp",
                                 "/pm_registry_bench.XXXXXX");
  if (mkdtemp(dir.data()) == nullptr) {
    state.SkipWithError("mkdtemp failed");
    return;
  }
  {
    auto store = pm::registry::SqliteRecordStore::Open(dir + "/registry.sqlite");
    auto registry = store.ok() ? pm::registry::Registry::Open(
                                     BenchRegistryOptions(), *std::move(store))
                               : store.status();
    if (!registry.ok()) {
      state.SkipWithError(std::string(registry.status().message()).c_str());
    } else {
      CreateAndEnd(state, **registry);
    }
  }
  std::error_code ignored;
  std::filesystem::remove_all(dir, ignored);
}
BENCHMARK(BM_RegistryInSqlite)->Unit(benchmark::kMicrosecond);
// --- Segments ---------------------------------------------------------------

// A directory of its own under TMPDIR, removed with its files at the end.
class ScratchDir {
 public:
  ScratchDir() {
    const char* base = getenv("TMPDIR");
    path_ = absl::StrFormat("%s/pm-bench.XXXXXX", base ? base : "/tmp");
    if (mkdtemp(path_.data()) == nullptr) path_.clear();
  }
  ~ScratchDir() {
    if (path_.empty()) return;
    nftw(
        path_.c_str(),
        [](const char* path, const struct stat*, int, struct FTW*) {
          return remove(path);
        },
        16, FTW_DEPTH | FTW_PHYS);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// Bytes on disk per process: the writer's default cap is 256 MiB; the
// store's 64 MiB keeps the runs short and the page cache warm for both.
constexpr uint64_t kOnDisk = uint64_t{64} << 20;

void BM_FileWriteBaseline(benchmark::State& state) {
  const size_t piece = static_cast<size_t>(state.range(0));
  const std::string data(piece, 'x');
  ScratchDir dir;
  const std::string path = dir.path() + "/file";
  int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (dir.path().empty() || fd < 0) {
    state.SkipWithError("cannot make a scratch file");
    return;
  }
  uint64_t at = 0;
  for (auto _ : state) {
    if (at + piece > kOnDisk) {  // start over, as retention would
      state.PauseTiming();
      if (ftruncate(fd, 0) != 0) state.SkipWithError("ftruncate failed");
      at = 0;
      state.ResumeTiming();
    }
    if (pwrite(fd, data.data(), piece, at) != static_cast<ssize_t>(piece)) {
      state.SkipWithError("pwrite failed");
      break;
    }
    at += piece;
  }
  close(fd);
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * piece);
}
BENCHMARK(BM_FileWriteBaseline)->Arg(4 << 10)->Arg(64 << 10)->Arg(1 << 20);

void BM_SegmentWriterAppend(benchmark::State& state) {
  const size_t piece = static_cast<size_t>(state.range(0));
  const std::string data(piece, 'x');
  ScratchDir dir;
  segment_log::WriterOptions options;
  options.max_bytes = kOnDisk;
  absl::StatusOr<std::unique_ptr<segment_log::Writer>> writer =
      segment_log::Writer::Open(dir.path() + "/proc", options);
  if (!writer.ok()) {
    state.SkipWithError(std::string(writer.status().message()).c_str());
    return;
  }
  const absl::Time now = absl::Now();
  for (auto _ : state) {
    absl::Status status =
        (*writer)->Append(segment_log::Stream::kStdout, data, now);
    if (!status.ok()) {
      state.SkipWithError(std::string(status.message()).c_str());
      break;
    }
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * piece);
}
BENCHMARK(BM_SegmentWriterAppend)->Arg(4 << 10)->Arg(64 << 10)->Arg(1 << 20);

void BM_FilePreadBaseline(benchmark::State& state) {
  const size_t piece = static_cast<size_t>(state.range(0));
  ScratchDir dir;
  const std::string path = dir.path() + "/file";
  int fd = open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  const std::string fill(1 << 20, 'x');
  for (uint64_t at = 0; fd >= 0 && at < kOnDisk; at += fill.size()) {
    if (pwrite(fd, fill.data(), fill.size(), at) < 0) break;
  }
  std::string out(piece, '\0');
  uint64_t at = 0;
  for (auto _ : state) {
    if (at + piece > kOnDisk) at = 0;
    if (pread(fd, out.data(), piece, at) != static_cast<ssize_t>(piece)) {
      state.SkipWithError("pread failed");
      break;
    }
    benchmark::DoNotOptimize(out.data());
    at += piece;
  }
  if (fd >= 0) close(fd);
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * piece);
}
BENCHMARK(BM_FilePreadBaseline)->Arg(64 << 10)->Arg(1 << 20);

// Reading a whole on-disk output from the start in chunks of at most
// `piece`, written in 64 KiB appends (a pipe read each).
void BM_SegmentReaderRead(benchmark::State& state) {
  const size_t piece = static_cast<size_t>(state.range(0));
  ScratchDir dir;
  const std::string proc = dir.path() + "/proc";
  {
    segment_log::WriterOptions options;
    options.max_bytes = 2 * kOnDisk;
    absl::StatusOr<std::unique_ptr<segment_log::Writer>> writer =
        segment_log::Writer::Open(proc, options);
    const std::string data(64 << 10, 'x');
    for (uint64_t at = 0; writer.ok() && at < kOnDisk; at += data.size()) {
      if (!(*writer)->Append(segment_log::Stream::kStdout, data, absl::Now()).ok()) {
        break;
      }
    }
  }
  absl::StatusOr<std::unique_ptr<segment_log::Reader>> reader =
      segment_log::Reader::Open(proc);
  if (!reader.ok()) {
    state.SkipWithError(std::string(reader.status().message()).c_str());
    return;
  }
  uint64_t cursor = 0, bytes = 0;
  for (auto _ : state) {
    absl::StatusOr<std::optional<segment_log::Chunk>> chunk =
        (*reader)->Read(cursor, piece);
    if (!chunk.ok()) {
      state.SkipWithError(std::string(chunk.status().message()).c_str());
      break;
    }
    if (!*chunk) {
      cursor = 0;  // at the end: from the start again
      continue;
    }
    benchmark::DoNotOptimize((*chunk)->data.data());
    cursor = (*chunk)->offset + (*chunk)->data.size();
    bytes += (*chunk)->data.size();
  }
  state.SetBytesProcessed(static_cast<int64_t>(bytes));
}
BENCHMARK(BM_SegmentReaderRead)->Arg(64 << 10)->Arg(1 << 20);

// --- Ratios -----------------------------------------------------------------

// The console table, then each measure against its baseline.
class RatioReporter : public benchmark::ConsoleReporter {
 public:
  void ReportRuns(const std::vector<Run>& runs) override {
    ConsoleReporter::ReportRuns(runs);
    for (const Run& run : runs) {
      if (run.error_occurred || run.run_type != Run::RT_Iteration) continue;
      Result& r = results_[run.benchmark_name()];
      r.time = run.GetAdjustedRealTime();
      auto bytes = run.counters.find("bytes_per_second");
      if (bytes != run.counters.end()) r.bytes_per_second = bytes->second;
    }
  }

  void PrintRatios() const {
    std::printf("\nagainst the baseline of the same run:\n");
    Time("BM_PmSpawn", "BM_PosixSpawnBaseline", "pm Spawn + reap of /bin/true");
    Time("BM_PmSpawnInItsOwnCgroup/spawn_only:0", "BM_PosixSpawnBaseline",
         "the same, in a cgroup made, joined and removed each time");
    Time("BM_PmSpawnInItsOwnCgroup/spawn_only:1", "BM_PosixSpawnBaseline",
         "the same, timing only the spawn into a cgroup made before");
    Time("BM_RegistryInSqlite", "BM_RegistryInMemoryBaseline",
         "registry create + end of a record, written through to SQLite");
    for (const char* size : {"4096", "65536", "1048576"}) {
      Rate(absl::StrFormat("BM_SegmentWriterAppend/%s", size),
           absl::StrFormat("BM_FileWriteBaseline/%s", size),
           absl::StrFormat("segment append of %s-byte pieces", size));
    }
    for (const char* size : {"65536", "1048576"}) {
      Rate(absl::StrFormat("BM_SegmentReaderRead/%s", size),
           absl::StrFormat("BM_FilePreadBaseline/%s", size),
           absl::StrFormat("segment read of %s-byte chunks", size));
    }
  }

 private:
  struct Result {
    double time = 0;
    double bytes_per_second = 0;
  };
  const Result* Find(const std::string& name) const {
    auto it = results_.find(name);
    return it == results_.end() ? nullptr : &it->second;
  }
  void Time(const std::string& measure, const std::string& baseline,
            const std::string& what) const {
    const Result* m = Find(measure);
    const Result* b = Find(baseline);
    if (m == nullptr || b == nullptr || b->time <= 0) return;
    std::printf("  %-58s %8.1f us vs %8.1f us: %.2fx the time\n", what.c_str(),
                m->time, b->time, m->time / b->time);
  }
  void Rate(const std::string& measure, const std::string& baseline,
            const std::string& what) const {
    const Result* m = Find(measure);
    const Result* b = Find(baseline);
    if (m == nullptr || b == nullptr || b->bytes_per_second <= 0) return;
    std::printf("  %-58s %7.2f GB/s vs %7.2f GB/s: %.2f of the rate\n", what.c_str(),
                m->bytes_per_second / 1e9, b->bytes_per_second / 1e9,
                m->bytes_per_second / b->bytes_per_second);
  }
  std::map<std::string, Result> results_;
};

}  // namespace
}  // namespace pm::bench

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 2;
  pm::bench::RatioReporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  reporter.PrintRatios();
  benchmark::Shutdown();
  return 0;
}
