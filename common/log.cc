#include "common/log.h"

#include <unistd.h>

#include <cstdlib>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace pm {
namespace {

// The tag, set by SetLogTag while other threads may log (a service's main
// thread names itself when it starts serving, its threads log meanwhile):
// guarded, and copied out per line.
absl::Mutex tag_mu(absl::kConstInit);
std::string* tag ABSL_GUARDED_BY(tag_mu) = nullptr;

std::string Tag() {
  absl::MutexLock lock(&tag_mu);
  return tag == nullptr ? std::string("pm") : *tag;
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

void SetLogTag(absl::string_view name) {
  absl::MutexLock lock(&tag_mu);
  if (tag == nullptr) {
    tag = new std::string(name);
  } else {
    *tag = std::string(name);
  }
}

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
