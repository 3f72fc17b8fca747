// One-line logs to stderr for the services (Debian's abseil has no absl/log).
//
//   PM_LOG(INFO) << "listening on " << path;
//   PM_LOG(ERROR) << "registry unreachable: " << status;
//
// Each line is written with one write(2), so lines of concurrent threads
// never interleave. FATAL aborts after writing. Three layouts (SetLogFormat;
// the services' --log_format, common/log_flags.h):
//
//   text     I 18:54:23.771 registry server.cc:123] serving on ...
//   journal  <6>registry server.cc:123] serving on ...
//            (the level as a syslog prefix journald reads; the journal
//            stamps the time; the default when stderr is the journal)
//   json     {"time":"2026-12-04T18:54:23.771Z","level":"info",
//             "service":"registry","source":"server.cc:123",
//             "message":"serving on ..."}   (one object per line)
//
// A message is one line in each: a newline in it is written as "\n"
// (text, journal) or escaped (json, where bytes that are not UTF-8 are
// written as \u00XX).
#ifndef PM_COMMON_LOG_H_
#define PM_COMMON_LOG_H_

#include <sstream>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace pm {

enum class LogSeverity { kInfo, kWarning, kError, kFatal };

// The name printed in front of every line ("registry", ...). Set once in main.
void SetLogTag(absl::string_view tag);

enum class LogFormat { kText, kJournal, kJson };
// "text", "journal" or "json"; INVALID_ARGUMENT naming the value otherwise.
absl::StatusOr<LogFormat> ParseLogFormat(absl::string_view text);
// kJournal when stderr is systemd's journal stream ($JOURNAL_STREAM names
// its device and inode), else kText.
LogFormat DefaultLogFormat();
// The layout of every line from now on (kText until set).
void SetLogFormat(LogFormat format);

// The line `severity` at file:line says `message`, in `format`, with its
// newline: what a LogLine writes (for tests).
std::string FormatLogLine(LogFormat format, LogSeverity severity, absl::Time time,
                          absl::string_view tag, absl::string_view source,
                          absl::string_view message);

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
  const char* file_;
  int line_;
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
