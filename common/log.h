// One-line logs to stderr for the services (Debian's abseil has no absl/log).
//
//   PM_LOG(INFO) << "listening on " << path;
//   PM_LOG(ERROR) << "registry unreachable: " << status;
//
// Each line is written with one write(2), so lines of concurrent threads
// never interleave. FATAL aborts after writing.
#ifndef PM_COMMON_LOG_H_
#define PM_COMMON_LOG_H_

#include <sstream>
#include "absl/strings/string_view.h"

#include "absl/status/status.h"

namespace pm {

enum class LogSeverity { kInfo, kWarning, kError, kFatal };

// The name printed in front of every line ("registry", ...). Set once in main.
void SetLogTag(absl::string_view tag);

class LogLine {
 public:
  LogLine(LogSeverity severity, const char* file, int line);
  ~LogLine();
  LogLine(const LogLine&) = delete;
  LogLine& operator=(const LogLine&) = delete;
  template <typename T>
  LogLine& operator<<(const T& value) {
    stream_ << value;
    return *this;
  }
  LogLine& operator<<(const absl::Status& status) {
    // Code and message; payloads (such as an errno, see ErrnoOf) are for
    // code, not for the reader.
    stream_ << status.ToString(absl::StatusToStringMode::kWithNoExtraData);
    return *this;
  }

 private:
  LogSeverity severity_;
  std::ostringstream stream_;
};

}  // namespace pm

#define PM_LOG_SEVERITY_INFO ::pm::LogSeverity::kInfo
#define PM_LOG_SEVERITY_WARNING ::pm::LogSeverity::kWarning
#define PM_LOG_SEVERITY_ERROR ::pm::LogSeverity::kError
#define PM_LOG_SEVERITY_FATAL ::pm::LogSeverity::kFatal
#define PM_LOG(severity) \
  ::pm::LogLine(PM_LOG_SEVERITY_##severity, __FILE__, __LINE__)

#endif  // PM_COMMON_LOG_H_
