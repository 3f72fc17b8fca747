#include "common/log.h"

#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_replace.h"
#include "absl/time/time.h"
#include "common/utf8.h"

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

std::atomic<LogFormat> format{LogFormat::kText};

// The level as journald reads it from a line's "<N>" prefix (sd-daemon.h).
int SyslogPriority(LogSeverity severity) {
  switch (severity) {
    case LogSeverity::kInfo:
      return 6;
    case LogSeverity::kWarning:
      return 4;
    case LogSeverity::kError:
      return 3;
    case LogSeverity::kFatal:
      return 2;
  }
  return 6;
}

const char* LevelName(LogSeverity severity) {
  switch (severity) {
    case LogSeverity::kInfo:
      return "info";
    case LogSeverity::kWarning:
      return "warning";
    case LogSeverity::kError:
      return "error";
    case LogSeverity::kFatal:
      return "fatal";
  }
  return "info";
}

// `text` as a JSON string, quotes included: control characters and bytes
// that are not UTF-8 as \u00XX.
std::string JsonString(absl::string_view text) {
  std::string out = "\"";
  for (size_t i = 0; i < text.size();) {
    const unsigned char c = static_cast<unsigned char>(text[i]);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
      ++i;
    } else if (c == '\n') {
      out += "\\n";
      ++i;
    } else if (c < 0x20 || c == 0x7f) {
      out += absl::StrFormat("\\u%04x", c);
      ++i;
    } else if (c < 0x80) {
      out += static_cast<char>(c);
      ++i;
    } else if (const size_t n = Utf8SequenceLength(text, i); n > 0) {
      out.append(text.data() + i, n);
      i += n;
    } else {
      out += absl::StrFormat("\\u%04x", c);
      ++i;
    }
  }
  out += '"';
  return out;
}

// A message on one line: its newlines as the two characters \n.
std::string OneLine(absl::string_view message) {
  return absl::StrReplaceAll(message, {{"\n", "\\n"}});
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

absl::StatusOr<LogFormat> ParseLogFormat(absl::string_view text) {
  if (text == "text") return LogFormat::kText;
  if (text == "journal") return LogFormat::kJournal;
  if (text == "json") return LogFormat::kJson;
  return absl::InvalidArgumentError(
      absl::StrCat("log format \"", text, "\" is not text, journal or json"));
}

LogFormat DefaultLogFormat() {
  // "DEVICE:INODE" of the stream systemd connected stderr to; a stderr
  // redirected since (by the service itself, or a shell) is not it.
  const char* stream = getenv("JOURNAL_STREAM");
  struct stat st;
  if (stream == nullptr || fstat(STDERR_FILENO, &st) != 0) return LogFormat::kText;
  return absl::StrCat(st.st_dev, ":", st.st_ino) == stream ? LogFormat::kJournal
                                                           : LogFormat::kText;
}

void SetLogFormat(LogFormat f) { format.store(f); }

std::string FormatLogLine(LogFormat f, LogSeverity severity, absl::Time time,
                          absl::string_view tag, absl::string_view source,
                          absl::string_view message) {
  switch (f) {
    case LogFormat::kJournal:
      return absl::StrCat("<", SyslogPriority(severity), ">", tag, " ", source, "] ",
                          OneLine(message), "\n");
    case LogFormat::kJson:
      return absl::StrCat(
          "{\"time\":",
          JsonString(absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", time, absl::UTCTimeZone())),
          ",\"level\":\"", LevelName(severity), "\",\"service\":", JsonString(tag),
          ",\"source\":", JsonString(source), ",\"message\":", JsonString(message), "}\n");
    case LogFormat::kText:
      break;
  }
  return absl::StrCat(std::string(1, SeverityLetter(severity)), " ",
                      absl::FormatTime("%H:%M:%E3S", time, absl::LocalTimeZone()), " ", tag,
                      " ", source, "] ", OneLine(message), "\n");
}

void SetLogTag(absl::string_view name) {
  absl::MutexLock lock(&tag_mu);
  if (tag == nullptr) {
    tag = new std::string(name);
  } else {
    *tag = std::string(name);
  }
}

LogLine::LogLine(LogSeverity severity, const char* file, int line)
    : severity_(severity), file_(file), line_(line) {}

LogLine::~LogLine() {
  absl::string_view path(file_);
  if (auto slash = path.rfind('/'); slash != absl::string_view::npos) {
    path.remove_prefix(slash + 1);
  }
  const std::string text =
      FormatLogLine(format.load(), severity_, absl::Now(), Tag(),
                    absl::StrCat(path, ":", line_), stream_.str());
  // A single write keeps concurrent lines whole; a short write is not retried
  // (stderr is a log, not data).
  ssize_t ignored = ::write(STDERR_FILENO, text.data(), text.size());
  (void)ignored;
  if (severity_ == LogSeverity::kFatal) std::abort();
}

}  // namespace pm
