#include "common/file_limit.h"

#include <errno.h>

#include <string>

#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "common/status.h"

namespace pm {

absl::StatusOr<rlimit> RaiseFileLimit() {
  rlimit original;
  if (getrlimit(RLIMIT_NOFILE, &original) != 0) {
    return ErrnoError("getrlimit", "RLIMIT_NOFILE");
  }
  if (original.rlim_cur == original.rlim_max) return original;
  rlimit raised = original;
  raised.rlim_cur = original.rlim_max;
  if (setrlimit(RLIMIT_NOFILE, &raised) != 0) {
    return ErrnoStatus(
        absl::StrCat("setrlimit(RLIMIT_NOFILE, {", FormatFileLimit(raised.rlim_cur),
                     ", ", FormatFileLimit(raised.rlim_max), "})"),
        errno);
  }
  return original;
}

std::string FormatFileLimit(rlim_t limit) {
  return limit == RLIM_INFINITY ? std::string("unlimited") : absl::StrCat(limit);
}

void LogFileLimitRaise(const absl::StatusOr<rlimit>& original) {
  if (!original.ok()) {
    PM_LOG(WARNING) << "RLIMIT_NOFILE left as it was: " << original.status();
    return;
  }
  if (original->rlim_cur == original->rlim_max) {
    PM_LOG(INFO) << "RLIMIT_NOFILE: soft limit already at the hard limit, "
                 << FormatFileLimit(original->rlim_max);
    return;
  }
  PM_LOG(INFO) << "RLIMIT_NOFILE: soft limit raised from "
               << FormatFileLimit(original->rlim_cur) << " to "
               << FormatFileLimit(original->rlim_max)
               << " (the hard limit); processes started get "
               << FormatFileLimit(original->rlim_cur);
}

absl::Status ExplainFileExhaustion(const absl::Status& status,
                                   absl::string_view whose) {
  const absl::optional<int> errnum = ErrnoOf(status);
  if (!errnum || (*errnum != EMFILE && *errnum != ENFILE)) return status;
  std::string limit;
  if (*errnum == ENFILE) {
    limit = "the system's open-file table is full (fs.file-max)";
  } else {
    rlimit now;
    limit = getrlimit(RLIMIT_NOFILE, &now) == 0
                ? absl::StrCat(whose, "'s RLIMIT_NOFILE is ",
                               FormatFileLimit(now.rlim_cur), " (hard limit ",
                               FormatFileLimit(now.rlim_max), ")")
                : absl::StrCat(whose, "'s RLIMIT_NOFILE is reached");
  }
  absl::Status explained = absl::ResourceExhaustedError(
      absl::StrCat(status.message(), ": ", limit));
  status.ForEachPayload([&](absl::string_view url, const absl::Cord& payload) {
    explained.SetPayload(url, payload);
  });
  return explained;
}

}  // namespace pm
