#include "common/status_core.h"

#include <string.h>

#include "absl/strings/cord.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace pm {
namespace {

// Where a status made from an errno keeps it: a payload, which absl carries
// with the status (and, unlike the message, no user text can forge).
constexpr char kErrnoPayload[] = "pm.dev/errno";

}  // namespace

std::string ErrnoName(int errnum) {
  const char* name = strerrorname_np(errnum);
  return name != nullptr ? std::string(name) : absl::StrCat("errno ", errnum);
}

absl::Status ErrnoError(absl::string_view call, absl::string_view arg,
                        int errnum) {
  return ErrnoStatus(arg.empty() ? absl::StrCat(call, "()")
                                 : absl::StrCat(call, "(\"", arg, "\")"),
                     errnum);
}

absl::Status ErrnoStatus(absl::string_view what, int errnum) {
  absl::Status status(absl::ErrnoToStatusCode(errnum),
                      absl::StrCat(what, ": ", strerror(errnum), " (",
                                   ErrnoName(errnum), ")"));
  status.SetPayload(kErrnoPayload, absl::Cord(absl::StrCat(errnum)));
  return status;
}

absl::optional<int> ErrnoOf(const absl::Status& status) {
  absl::optional<absl::Cord> payload = status.GetPayload(kErrnoPayload);
  int errnum = 0;
  if (!payload || !absl::SimpleAtoi(std::string(*payload), &errnum)) {
    return absl::nullopt;
  }
  return errnum;
}

absl::Status ErrnoError(absl::string_view call, absl::string_view arg) {
  return ErrnoError(call, arg, errno);
}

absl::Status ErrnoError(absl::string_view call) {
  return ErrnoError(call, "", errno);
}

absl::Status Annotate(const absl::Status& status, absl::string_view context) {
  if (status.ok()) return status;
  absl::Status annotated(status.code(),
                         absl::StrCat(context, ": ", status.message()));
  status.ForEachPayload([&](absl::string_view url, const absl::Cord& payload) {
    annotated.SetPayload(url, payload);
  });
  return annotated;
}

namespace {
constexpr absl::string_view kClusterUnavailableLead = "cluster unavailable: ";
}  // namespace

absl::Status ClusterUnavailableError(absl::string_view message) {
  if (IsClusterUnavailableMessage(message)) return absl::UnavailableError(message);
  return absl::UnavailableError(absl::StrCat(kClusterUnavailableLead, message));
}

bool IsClusterUnavailableMessage(absl::string_view message) {
  return absl::StartsWith(message, kClusterUnavailableLead);
}

}  // namespace pm
