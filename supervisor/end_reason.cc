#include "supervisor/end_reason.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/proto_time.h"

namespace pm::supervisor {

std::string FormatBytes(uint64_t bytes) {
  constexpr uint64_t kKiB = 1024, kMiB = kKiB << 10, kGiB = kMiB << 10;
  auto unit = [bytes](uint64_t size, const char* name) {
    if (bytes % size == 0) return absl::StrCat(bytes / size, " ", name);
    return absl::StrFormat("%.1f %s", static_cast<double>(bytes) / size, name);
  };
  if (bytes >= kGiB) return unit(kGiB, "GiB");
  if (bytes >= kMiB) return unit(kMiB, "MiB");
  if (bytes >= kKiB && bytes % kKiB == 0) return unit(kKiB, "KiB");
  return absl::StrCat(bytes, bytes == 1 ? " byte" : " bytes");
}

std::string DescribeEnd(const ExitStatus& exit,
                        pm::v1::ProcessStatus::Termination termination,
                        bool oom_killed, const pm::v1::ResourceUsage& usage,
                        const pm::v1::Limits& limits) {
  std::string text = exit.ToString();
  if (oom_killed) {
    absl::StrAppend(
        &text, ": the OOM killer ended it (",
        limits.memory_bytes() > 0
            ? absl::StrCat("memory limit ", FormatBytes(limits.memory_bytes()),
                           " reached")
            : std::string("out of memory"),
        ")");
  } else if (termination == pm::v1::ProcessStatus::TERMINATION_AFTER_SIGTERM) {
    absl::StrAppend(&text, " after the stop's SIGTERM");
  } else if (termination == pm::v1::ProcessStatus::TERMINATION_KILLED) {
    absl::StrAppend(&text, " when the stop's grace period ran out");
  } else if (termination == pm::v1::ProcessStatus::TERMINATION_FORCED) {
    absl::StrAppend(&text, " by a forced stop");
  }
  const uint64_t others =
      usage.oom_kills() > (oom_killed ? 1u : 0u)
          ? usage.oom_kills() - (oom_killed ? 1u : 0u)
          : 0;
  if (others > 0) {
    absl::StrAppend(&text, "; the OOM killer ended ", others,
                    oom_killed ? " other" : "",
                    others == 1 ? " process" : " processes", " of its tree",
                    limits.memory_bytes() > 0
                        ? absl::StrCat(" (memory limit ",
                                       FormatBytes(limits.memory_bytes()), ")")
                        : std::string());
  }
  return text;
}

std::string GivenUpSuffix(uint32_t restarts, const pm::v1::RestartPolicy& policy) {
  return absl::StrCat("; given up after ", restarts, " restarts (", policy.max_restarts(),
                      " within ",
                      policy.has_window() ? absl::FormatDuration(FromProtoDuration(policy.window()))
                                          : "its life",
                      ")");
}

}  // namespace pm::supervisor
