#include "common/log.h"

#include <unistd.h>

#include <cstdlib>
#include <string>

#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace pm {
namespace {

std::string& Tag() {
  static std::string* tag = new std::string("pm");
  return *tag;
}

char SeverityLetter(LogSeverity severity) {
  switch (severity) {
    case LogSeverity::kInfo:
      return 'I';
    case LogSeverity::kWarning:
      return 'W';
    case LogSeverity::kError:
      return 'E';
    case LogSeverity::kFatal:
      return 'F';
  }
  return '?';
}

}  // namespace

void SetLogTag(absl::string_view tag) { Tag() = std::string(tag); }

LogLine::LogLine(LogSeverity severity, const char* file, int line)
    : severity_(severity) {
  absl::string_view path(file);
  if (auto slash = path.rfind('/'); slash != absl::string_view::npos) {
    path.remove_prefix(slash + 1);
  }
  stream_ << SeverityLetter(severity) << ' '
          << absl::FormatTime("%H:%M:%E3S", absl::Now(), absl::LocalTimeZone())
          << ' ' << Tag() << ' ' << path << ':' << line << "] ";
}

LogLine::~LogLine() {
  stream_ << '\n';
  std::string text = stream_.str();
  // A single write keeps concurrent lines whole; a short write is not retried
  // (stderr is a log, not data).
  ssize_t ignored = ::write(STDERR_FILENO, text.data(), text.size());
  (void)ignored;
  if (severity_ == LogSeverity::kFatal) std::abort();
}

}  // namespace pm
