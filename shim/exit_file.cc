#include "shim/exit_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/fd.h"
#include "common/status_core.h"

namespace pm::shim {
namespace {

constexpr char kMagicLine[] = "pm-shim-exit 1";
constexpr char kMagicLineWithRuns[] = "pm-shim-exit 2";

// A decimal number without sign or leading zeros, at most `max`.
absl::StatusOr<uint64_t> ParseNumber(absl::string_view line,
                                     absl::string_view text, uint64_t max) {
  uint64_t value = 0;
  if (text.empty() || text.size() > 20 || (text.size() > 1 && text[0] == '0') ||
      text.find_first_not_of("0123456789") != absl::string_view::npos ||
      !absl::SimpleAtoi(text, &value) || value > max) {
    return absl::InvalidArgumentError(absl::StrCat(
        "exit file: bad number \"", text, "\" in line \"", line, "\""));
  }
  return value;
}

absl::StatusOr<ExitStatus> ParseStatusLine(absl::string_view line) {
  std::vector<absl::string_view> words = absl::StrSplit(line, ' ');
  if (words.size() == 3 && words[0] == "status" && words[1] == "exited") {
    PM_ASSIGN_OR_RETURN(uint64_t code, ParseNumber(line, words[2], 255));
    return ExitStatus::Exited(static_cast<int>(code));
  }
  if (words.size() == 4 && words[0] == "status" && words[1] == "signaled" &&
      (words[3] == "core" || words[3] == "nocore")) {
    PM_ASSIGN_OR_RETURN(uint64_t sig, ParseNumber(line, words[2], 64));
    if (sig == 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("exit file: signal 0 in line \"", line, "\""));
    }
    return ExitStatus::Signaled(static_cast<int>(sig), words[3] == "core");
  }
  return absl::InvalidArgumentError(
      absl::StrCat("exit file: bad status line \"", line, "\""));
}

absl::StatusOr<uint64_t> ParseKeyed(absl::string_view line,
                                    absl::string_view key, uint64_t max) {
  std::vector<absl::string_view> words = absl::StrSplit(line, ' ');
  if (words.size() != 2 || words[0] != key) {
    return absl::InvalidArgumentError(absl::StrCat(
        "exit file: want \"", key, " N\", got \"", line, "\""));
  }
  return ParseNumber(line, words[1], max);
}

}  // namespace

std::string FormatExitFile(const ExitRecord& record) {
  const ProcessEnd& end = record.end;
  const std::string status =
      end.status.kind == ExitStatus::Kind::kExited
          ? absl::StrCat("exited ", end.status.code)
          : absl::StrCat("signaled ", end.status.signal,
                         end.status.core_dumped ? " core" : " nocore");
  std::string text = absl::StrCat(
      record.run ? kMagicLineWithRuns : kMagicLine, "\nstatus ", status,
      "\nended_ns ", absl::ToUnixNanos(end.ended), "\noutput_end ",
      end.output_end, "\n");
  if (record.run) {
    absl::StrAppend(&text, "run ", *record.run, "\ngave_up ", record.gave_up ? 1 : 0, "\n");
  }
  return text;
}

absl::StatusOr<ExitRecord> ParseExitFile(absl::string_view text) {
  if (text.empty() || text.back() != '\n') {
    return absl::InvalidArgumentError(
        "exit file: empty or cut short (no final newline)");
  }
  std::vector<absl::string_view> lines =
      absl::StrSplit(text.substr(0, text.size() - 1), '\n');
  const bool with_runs = lines[0] == kMagicLineWithRuns;
  if (lines[0] != kMagicLine && !with_runs) {
    return absl::InvalidArgumentError(absl::StrCat(
        "exit file: first line \"", lines[0], "\", want \"", kMagicLine,
        "\" or \"", kMagicLineWithRuns, "\""));
  }
  const size_t want = with_runs ? 6 : 4;
  if (lines.size() != want) {
    return absl::InvalidArgumentError(
        absl::StrCat("exit file: ", lines.size(), " lines, want ", want));
  }
  ExitRecord record;
  ProcessEnd& end = record.end;
  PM_ASSIGN_OR_RETURN(end.status, ParseStatusLine(lines[1]));
  PM_ASSIGN_OR_RETURN(uint64_t ns, ParseKeyed(lines[2], "ended_ns", INT64_MAX));
  end.ended = absl::FromUnixNanos(static_cast<int64_t>(ns));
  PM_ASSIGN_OR_RETURN(end.output_end,
                      ParseKeyed(lines[3], "output_end", UINT64_MAX));
  if (with_runs) {
    PM_ASSIGN_OR_RETURN(uint64_t run, ParseKeyed(lines[4], "run", UINT32_MAX));
    if (run == 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("exit file: run 0 in line \"", lines[4], "\""));
    }
    record.run = static_cast<uint32_t>(run);
    PM_ASSIGN_OR_RETURN(uint64_t gave_up, ParseKeyed(lines[5], "gave_up", 1));
    record.gave_up = gave_up == 1;
  }
  return record;
}

absl::Status WriteExitFile(const std::string& dir, const ExitRecord& record) {
  const std::string path = absl::StrCat(dir, "/", kExitFileName);
  const std::string temp = absl::StrCat(path, ".tmp");
  PM_ASSIGN_OR_RETURN(Fd file,
                      Fd::Open(temp, O_WRONLY | O_CREAT | O_TRUNC, 0600));
  const std::string text = FormatExitFile(record);
  size_t done = 0;
  while (done < text.size()) {
    ssize_t n = write(file.get(), text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoError("write", temp);
    done += static_cast<size_t>(n);
  }
  // The data before the name: after a crash, `exit` is whole or absent.
  if (fsync(file.get()) != 0) return ErrnoError("fsync", temp);
  if (rename(temp.c_str(), path.c_str()) != 0) {
    return ErrnoError("rename", absl::StrCat(temp, "\", \"", path));
  }
  PM_ASSIGN_OR_RETURN(Fd dir_fd, Fd::Open(dir, O_RDONLY | O_DIRECTORY));
  if (fsync(dir_fd.get()) != 0) return ErrnoError("fsync", dir);
  return absl::OkStatus();
}

absl::StatusOr<std::optional<ExitRecord>> ReadExitFile(const std::string& dir) {
  const std::string path = absl::StrCat(dir, "/", kExitFileName);
  absl::StatusOr<std::string> text = ReadFile(path);
  if (!text.ok() && ErrnoOf(text.status()) == ENOENT) return std::nullopt;
  if (!text.ok()) return text.status();
  PM_ASSIGN_OR_RETURN(ExitRecord record, ParseExitFile(*text));
  return record;
}

}  // namespace pm::shim
