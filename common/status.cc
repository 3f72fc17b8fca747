#include "common/status.h"

#include <string.h>

#include "absl/strings/str_cat.h"

namespace pm {

std::string ErrnoName(int errnum) {
  const char* name = strerrorname_np(errnum);
  return name != nullptr ? std::string(name) : absl::StrCat("errno ", errnum);
}

absl::Status ErrnoError(absl::string_view call, absl::string_view arg,
                        int errnum) {
  std::string message =
      arg.empty() ? absl::StrCat(call, "()")
                  : absl::StrCat(call, "(\"", arg, "\")");
  absl::StrAppend(&message, ": ", strerror(errnum), " (", ErrnoName(errnum),
                  ")");
  return absl::Status(absl::ErrnoToStatusCode(errnum), message);
}

absl::Status ErrnoError(absl::string_view call, absl::string_view arg) {
  return ErrnoError(call, arg, errno);
}

absl::Status ErrnoError(absl::string_view call) {
  return ErrnoError(call, "", errno);
}

absl::Status Annotate(const absl::Status& status, absl::string_view context) {
  if (status.ok()) return status;
  return absl::Status(status.code(),
                      absl::StrCat(context, ": ", status.message()));
}

grpc::Status ToGrpcStatus(const absl::Status& status) {
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()),
                      std::string(status.message()));
}

absl::Status FromGrpcStatus(const grpc::Status& status) {
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()),
                      status.error_message());
}

}  // namespace pm
