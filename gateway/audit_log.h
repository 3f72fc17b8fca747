// AuditLog: one JSON line for every call through the gateway and every
// refused authentication, in a size-bounded file with rotation.
//
//   AuditLogOptions options;
//   options.path = dir + "/gateway-audit.jsonl";
//   PM_ASSIGN_OR_RETURN(std::unique_ptr<AuditLog> audit, AuditLog::Open(options));
//   AuditEntry entry;
//   entry.user = "alice";
//   entry.method = "Stop";
//   entry.id = "0b5e...";
//   entry.code = grpc::StatusCode::OK;
//   audit->Record(entry);
//
// A line looks like
//   {"time":"2026-12-03T09:12:01.123Z","user":"alice","subject":"CN=laptop",
//    "peer":"ipv4:127.0.0.1:51234","method":"Stop","id":"0b5e...",
//    "code":"OK","message":""}
// Fields that were unknown are empty strings; every string is escaped as
// JSON wants (control and non-ASCII bytes as \u00XX, so a hostile user name
// can neither break a line nor forge one).
//
// When the file would grow past `max_bytes`, it is renamed to PATH.1 (PATH.1
// to PATH.2, ... up to `keep` old files, the oldest deleted) and a new one
// is begun: the audit never takes more than (keep + 1) * max_bytes. A write
// that fails (a full disk) is counted and logged once a minute at most; the
// call it describes is not held up by it. Thread-safe; each line is one
// write(2) on an O_APPEND file, so lines never interleave.
#ifndef PM_GATEWAY_AUDIT_LOG_H_
#define PM_GATEWAY_AUDIT_LOG_H_

#include <cstdint>
#include <memory>
#include <string>

#include <grpcpp/support/status.h>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/fd.h"

namespace pm::gateway {

struct AuditEntry {
  absl::Time time = absl::Now();
  std::string user;     // the authenticated (or, when refused, claimed) user
  std::string subject;  // the client certificate's subject
  std::string peer;     // gRPC's peer string ("ipv4:127.0.0.1:5123")
  std::string method;   // "Start", "Stop", ..., or "authenticate"
  std::string id;       // the process id, when the call names or made one
  grpc::StatusCode code = grpc::StatusCode::OK;
  std::string message;  // the error's message (empty when OK)
};

// One entry as a JSON object, without the newline.
std::string AuditJson(const AuditEntry& entry);

struct AuditLogOptions {
  std::string path;
  uint64_t max_bytes = 16 << 20;
  int keep = 3;
};

class AuditLog {
 public:
  // Opens (creates, mode 0600) the file for appending. Errors name the path.
  static absl::StatusOr<std::unique_ptr<AuditLog>> Open(AuditLogOptions options);

  void Record(const AuditEntry& entry) ABSL_LOCKS_EXCLUDED(mu_);

  const std::string& path() const { return options_.path; }
  // Lines that could not be written.
  uint64_t failed() ABSL_LOCKS_EXCLUDED(mu_);

 private:
  explicit AuditLog(AuditLogOptions options) : options_(std::move(options)) {}
  absl::Status OpenFile() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status Rotate() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const AuditLogOptions options_;
  absl::Mutex mu_;
  Fd fd_ ABSL_GUARDED_BY(mu_);
  uint64_t size_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t failed_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Time last_warning_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
};

}  // namespace pm::gateway

#endif  // PM_GATEWAY_AUDIT_LOG_H_
