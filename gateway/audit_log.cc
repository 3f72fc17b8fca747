#include "gateway/audit_log.h"

#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/log.h"
#include "common/status.h"

namespace pm::gateway {
namespace {

// A JSON string literal of `text`: printable ASCII as is, quotes and
// backslashes escaped, every other byte as \u00XX (bytes, not code points:
// names here may be any bytes a client sent).
void AppendJsonString(std::string* out, absl::string_view text) {
  out->push_back('"');
  for (unsigned char c : text) {
    if (c == '"' || c == '\\') {
      out->push_back('\\');
      out->push_back(static_cast<char>(c));
    } else if (c >= 0x20 && c < 0x7f) {
      out->push_back(static_cast<char>(c));
    } else {
      absl::StrAppendFormat(out, "\\u%04x", c);
    }
  }
  out->push_back('"');
}

const char* CodeName(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::OK: return "OK";
    case grpc::StatusCode::CANCELLED: return "CANCELLED";
    case grpc::StatusCode::UNKNOWN: return "UNKNOWN";
    case grpc::StatusCode::INVALID_ARGUMENT: return "INVALID_ARGUMENT";
    case grpc::StatusCode::DEADLINE_EXCEEDED: return "DEADLINE_EXCEEDED";
    case grpc::StatusCode::NOT_FOUND: return "NOT_FOUND";
    case grpc::StatusCode::ALREADY_EXISTS: return "ALREADY_EXISTS";
    case grpc::StatusCode::PERMISSION_DENIED: return "PERMISSION_DENIED";
    case grpc::StatusCode::UNAUTHENTICATED: return "UNAUTHENTICATED";
    case grpc::StatusCode::RESOURCE_EXHAUSTED: return "RESOURCE_EXHAUSTED";
    case grpc::StatusCode::FAILED_PRECONDITION: return "FAILED_PRECONDITION";
    case grpc::StatusCode::ABORTED: return "ABORTED";
    case grpc::StatusCode::OUT_OF_RANGE: return "OUT_OF_RANGE";
    case grpc::StatusCode::UNIMPLEMENTED: return "UNIMPLEMENTED";
    case grpc::StatusCode::INTERNAL: return "INTERNAL";
    case grpc::StatusCode::UNAVAILABLE: return "UNAVAILABLE";
    case grpc::StatusCode::DATA_LOSS: return "DATA_LOSS";
    default: return "UNKNOWN";
  }
}

}  // namespace

std::string AuditJson(const AuditEntry& entry) {
  std::string out = "{\"time\":";
  AppendJsonString(&out, absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", entry.time,
                                          absl::UTCTimeZone()));
  for (auto [name, value] :
       {std::pair<const char*, const std::string*>{"user", &entry.user},
        {"subject", &entry.subject},
        {"peer", &entry.peer},
        {"method", &entry.method},
        {"id", &entry.id}}) {
    absl::StrAppend(&out, ",\"", name, "\":");
    AppendJsonString(&out, *value);
  }
  absl::StrAppend(&out, ",\"code\":\"", CodeName(entry.code), "\",\"message\":");
  AppendJsonString(&out, entry.message);
  out.push_back('}');
  return out;
}

absl::StatusOr<std::unique_ptr<AuditLog>> AuditLog::Open(AuditLogOptions options) {
  if (options.path.empty()) {
    return absl::InvalidArgumentError("no audit log path given");
  }
  if (options.max_bytes < 4096) {
    return absl::InvalidArgumentError(absl::StrCat(
        "audit log size cap ", options.max_bytes, " is under 4096 bytes"));
  }
  std::unique_ptr<AuditLog> log(new AuditLog(std::move(options)));
  absl::MutexLock lock(&log->mu_);
  PM_RETURN_IF_ERROR(log->OpenFile());
  return log;
}

absl::Status AuditLog::OpenFile() {
  PM_ASSIGN_OR_RETURN(
      fd_, Fd::Open(options_.path, O_WRONLY | O_APPEND | O_CREAT, 0600));
  struct stat st = {};
  if (fstat(fd_.get(), &st) != 0) return ErrnoError("fstat", options_.path);
  size_ = static_cast<uint64_t>(st.st_size);
  return absl::OkStatus();
}

absl::Status AuditLog::Rotate() {
  for (int i = options_.keep; i >= 1; --i) {
    const std::string from =
        i == 1 ? options_.path : absl::StrCat(options_.path, ".", i - 1);
    const std::string to = absl::StrCat(options_.path, ".", i);
    if (rename(from.c_str(), to.c_str()) != 0 && errno != ENOENT) {
      return ErrnoError("rename", from);
    }
  }
  if (options_.keep == 0 && unlink(options_.path.c_str()) != 0 &&
      errno != ENOENT) {
    return ErrnoError("unlink", options_.path);
  }
  return OpenFile();
}

void AuditLog::Record(const AuditEntry& entry) {
  std::string line = AuditJson(entry);
  line.push_back('\n');
  absl::MutexLock lock(&mu_);
  absl::Status status = absl::OkStatus();
  if (size_ > 0 && size_ + line.size() > options_.max_bytes) status = Rotate();
  if (status.ok() && fd_) {
    const ssize_t n = write(fd_.get(), line.data(), line.size());
    if (n == static_cast<ssize_t>(line.size())) {
      size_ += line.size();
      return;
    }
    status = n < 0 ? ErrnoError("write", options_.path)
                   : absl::DataLossError(absl::StrCat(
                         "write(\"", options_.path, "\"): short write"));
  }
  ++failed_;
  const absl::Time now = absl::Now();
  if (now - last_warning_ >= absl::Minutes(1)) {
    last_warning_ = now;
    PM_LOG(WARNING) << "audit log: " << status << " (" << failed_
                    << " line(s) lost so far)";
  }
}

uint64_t AuditLog::failed() {
  absl::MutexLock lock(&mu_);
  return failed_;
}

}  // namespace pm::gateway
