// Fuzzes the /proc text parsers: pm::ParseProcStat (common/proc.h, a
// /proc/PID/stat line, whose comm field a process names itself and so may
// hold anything: spaces, parentheses, digits) and
// pm::registry::ParseProcStatus (/proc/PID/status), then the registry's
// whole read of a process, pm::registry::ReadLiveView, on a fake proc root
// holding those two texts.
//
// The input is the stat text, a line "@@", then the status text; without
// that line both files get the whole input.
//
// Invariants besides "no crash, no sanitizer report":
//   - an accepted stat line has a positive pid and the comm between its
//     first '(' and last ')';
//   - status keys and values are trimmed and hold no newline, keys no ':';
//   - ReadStartTicks and ReadLiveView agree with the parsers: they succeed
//     exactly when the stat line parses, with its start ticks, and the view
//     holds every status field.
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "common/proc.h"
#include "registry/proc_reader.h"
#include "testing/fuzz/fuzz_check.h"

namespace {

constexpr pid_t kPid = 42;
constexpr absl::string_view kSeparator = "\n@@\n";

// <temp>/proc, with <temp>/proc/42/ for the fake process.
std::string* proc_root = nullptr;

void RemoveProcRoot() {
  std::error_code ignored;
  std::filesystem::remove_all(std::filesystem::path(*proc_root).parent_path(),
                              ignored);
}

void WriteFile(const std::string& path, absl::string_view text) {
  const int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC,
                      0600);
  PM_FUZZ_CHECK(fd >= 0) << "open " << path;
  size_t written = 0;
  while (written < text.size()) {
    ssize_t n = write(fd, text.data() + written, text.size() - written);
    PM_FUZZ_CHECK(n > 0) << "write " << path;
    written += static_cast<size_t>(n);
  }
  close(fd);
}

bool Trimmed(absl::string_view s) {
  return absl::StripAsciiWhitespace(s).size() == s.size();
}

void CheckStat(absl::string_view text,
               const absl::StatusOr<pm::ProcStat>& stat) {
  if (!stat.ok()) {
    PM_FUZZ_CHECK(stat.status().code() == absl::StatusCode::kInvalidArgument)
        << stat.status();
    return;
  }
  PM_FUZZ_CHECK(stat->pid > 0);
  const size_t open_paren = text.find('(');
  const size_t close_paren = text.rfind(')');
  PM_FUZZ_CHECK(open_paren != absl::string_view::npos &&
                close_paren != absl::string_view::npos &&
                open_paren < close_paren);
  PM_FUZZ_CHECK(stat->comm ==
                text.substr(open_paren + 1, close_paren - open_paren - 1))
      << stat->comm;
}

void CheckStatus(const std::map<std::string, std::string>& fields) {
  for (const auto& [key, value] : fields) {
    PM_FUZZ_CHECK(key.find(':') == std::string::npos) << key;
    PM_FUZZ_CHECK(key.find('\n') == std::string::npos) << key;
    PM_FUZZ_CHECK(value.find('\n') == std::string::npos) << value;
    PM_FUZZ_CHECK(Trimmed(key) && Trimmed(value)) << key << ": " << value;
  }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  const char* tmp = getenv("TEST_TMPDIR");
  if (tmp == nullptr) tmp = getenv("TMPDIR");
  std::string tmpl = absl::StrCat(tmp != nullptr ? tmp : "/tmp",
                                  "/proc_fuzzer.XXXXXX");
  PM_FUZZ_CHECK(mkdtemp(tmpl.data()) != nullptr) << "mkdtemp " << tmpl;
  proc_root = new std::string(tmpl + "/proc");
  std::filesystem::create_directories(absl::StrCat(*proc_root, "/", kPid));
  atexit(RemoveProcRoot);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::string_view input(reinterpret_cast<const char*>(data), size);
  absl::string_view stat_text = input;
  absl::string_view status_text = input;
  if (size_t sep = input.find(kSeparator); sep != absl::string_view::npos) {
    stat_text = input.substr(0, sep);
    status_text = input.substr(sep + kSeparator.size());
  }

  const absl::StatusOr<pm::ProcStat> stat = pm::ParseProcStat(stat_text);
  CheckStat(stat_text, stat);
  const std::map<std::string, std::string> fields =
      pm::registry::ParseProcStatus(status_text);
  CheckStatus(fields);

  const std::string dir = absl::StrCat(*proc_root, "/", kPid);
  WriteFile(dir + "/stat", stat_text);
  WriteFile(dir + "/status", status_text);
  const absl::StatusOr<uint64_t> ticks =
      pm::registry::ReadStartTicks(*proc_root, kPid);
  PM_FUZZ_CHECK(ticks.ok() == stat.ok()) << ticks.status();
  if (!stat.ok()) return 0;
  PM_FUZZ_CHECK(*ticks == stat->start_ticks);
  const absl::StatusOr<pm::registry::LiveView> view =
      pm::registry::ReadLiveView(*proc_root, kPid, *ticks);
  PM_FUZZ_CHECK(view.ok()) << view.status();
  PM_FUZZ_CHECK(view->proc_status == fields);
  PM_FUZZ_CHECK(view->threads >= 0) << view->threads;
  return 0;
}
