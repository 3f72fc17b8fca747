#include "cli/format.h"

#include <google/protobuf/util/json_util.h>

#include <algorithm>
#include <map>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "common/command_line.h"
#include "common/exit_status.h"
#include "common/process_end.h"
#include "common/proto_time.h"
#include "common/utf8.h"

namespace pm::cli {
namespace {

using pm::v1::ProcessStatus;

// The width of a status block's labels: one value column whichever fields
// are present, so that blocks of running and ended processes line up alike.
constexpr size_t kLabelWidth = sizeof("termination:  ") - 1;

ExitStatus EndOf(const ProcessStatus& status) {
  return status.state() == ProcessStatus::STATE_SIGNALED
             ? ExitStatus::Signaled(status.signal(), status.core_dumped())
             : ExitStatus::Exited(status.exit_code());
}

std::string FormatTime(const google::protobuf::Timestamp& timestamp,
                       absl::string_view format, absl::TimeZone zone) {
  if (timestamp.seconds() == 0 && timestamp.nanos() == 0) return "-";
  return absl::FormatTime(format, FromProtoTimestamp(timestamp), zone);
}

bool IsPlainShellChar(char c) {
  return absl::ascii_isalnum(static_cast<unsigned char>(c)) ||
         absl::string_view("_@%+=:,./-").find(c) != absl::string_view::npos;
}

bool IsControl(char c) {
  const unsigned char u = static_cast<unsigned char>(c);
  return u < 0x20 || u == 0x7f;
}

// $'...' quoting (bash, zsh, ksh and POSIX 2024 sh) for words with control
// characters, which single quotes would print raw and break the line, or
// bytes that are not UTF-8 (a Latin-1 argument), which a terminal would show
// as garbage: each becomes \xNN, so the word can be typed back exactly.
// UTF-8 characters are kept as they are.
std::string DollarQuote(absl::string_view word) {
  std::string quoted = "$'";
  for (size_t i = 0; i < word.size(); ++i) {
    const char c = word[i];
    if (static_cast<unsigned char>(c) >= 0x80) {
      const size_t length = Utf8SequenceLength(word, i);
      if (length == 0) {
        absl::StrAppendFormat(&quoted, "\\x%02x", static_cast<unsigned char>(c));
      } else {
        quoted.append(word.data() + i, length);
        i += length - 1;
      }
      continue;
    }
    switch (c) {
      case '\n':
        quoted += "\\n";
        break;
      case '\t':
        quoted += "\\t";
        break;
      case '\r':
        quoted += "\\r";
        break;
      case '\\':
        quoted += "\\\\";
        break;
      case '\'':
        quoted += "\\'";
        break;
      default:
        if (IsControl(c)) {
          absl::StrAppendFormat(&quoted, "\\x%02x",
                                static_cast<unsigned char>(c));
        } else {
          quoted += c;
        }
    }
  }
  quoted += "'";
  return quoted;
}

}  // namespace

std::string OneLine(absl::string_view text) {
  std::string out;
  for (char c : EscapeInvalidUtf8(text)) {
    const unsigned char u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f) {
      absl::StrAppend(&out, "\\x", absl::Hex(u, absl::kZeroPad2));
    } else {
      out.push_back(c);
    }
  }
  return out;
}

std::string StateName(ProcessStatus::State state) {
  switch (state) {
    case ProcessStatus::STATE_RUNNING:
      return "running";
    case ProcessStatus::STATE_STOPPING:
      return "stopping";
    case ProcessStatus::STATE_EXITED:
      return "exited";
    case ProcessStatus::STATE_SIGNALED:
      return "signaled";
    case ProcessStatus::STATE_LOST:
      return "lost";
    case ProcessStatus::STATE_BACKOFF:
      return "backoff";
    case ProcessStatus::STATE_UNKNOWN:
      return "unknown";
    case ProcessStatus::STATE_UNSPECIFIED:
      return "unspecified";
    default:
      // A state of a newer pm: its number, not a word that means another.
      return absl::StrCat("state ", static_cast<int>(state));
  }
}

bool HasEnded(const ProcessStatus& status) {
  return IsEndState(status.state());
}

std::string DescribeEnd(const ProcessStatus& status) {
  if (status.state() == ProcessStatus::STATE_LOST) {
    return "lost: how it ended is unknown";
  }
  if (HasEnded(status)) return EndOf(status).ToString();
  if (status.state() == ProcessStatus::STATE_UNKNOWN) {
    return absl::StrCat(
        "unknown",
        status.state_reason().empty() ? "" : ": ", OneLine(status.state_reason()),
        " (last known: ", StateName(status.last_known_state()), ", pid ",
        status.pid(), ")");
  }
  return absl::StrCat(StateName(status.state()), " (pid ", status.pid(), ")");
}

std::string DescribeTermination(ProcessStatus::Termination termination) {
  switch (termination) {
    case ProcessStatus::TERMINATION_BY_ITSELF:
      return "ended by itself";
    case ProcessStatus::TERMINATION_AFTER_SIGTERM:
      return "ended after the SIGTERM of a stop";
    case ProcessStatus::TERMINATION_KILLED:
      return "killed: the stop's grace period ran out";
    case ProcessStatus::TERMINATION_FORCED:
      return "killed at once by a forced stop";
    default:
      return "";
  }
}

int ShellExitCode(const ProcessStatus& status) {
  if (status.state() == ProcessStatus::STATE_LOST) return kShellCodeLost;
  return HasEnded(status) ? EndOf(status).ShellCode() : 1;
}

std::string ShellQuote(absl::string_view word) {
  if (word.empty()) return "''";
  if (std::all_of(word.begin(), word.end(), IsPlainShellChar)) {
    return std::string(word);
  }
  if (std::any_of(word.begin(), word.end(), IsControl) || !IsValidUtf8(word)) {
    return DollarQuote(word);
  }
  return absl::StrCat("'", absl::StrReplaceAll(word, {{"'", "'\\''"}}), "'");
}

std::string PrintablePath(absl::string_view path) {
  if (std::none_of(path.begin(), path.end(), IsControl) && IsValidUtf8(path)) {
    return std::string(path);
  }
  return DollarQuote(path);
}

std::string FormatCommand(const ProcessStatus& status) {
  std::vector<std::string> words = {ShellQuote(ExecutableOf(status))};
  for (const std::string& arg : ArgsOf(status)) words.push_back(ShellQuote(arg));
  return absl::StrJoin(words, " ");
}

std::string FormatBytes(uint64_t bytes) {
  if (bytes < 1024) return absl::StrCat(bytes, " B");
  const char* units[] = {"KiB", "MiB", "GiB", "TiB"};
  double value = static_cast<double>(bytes) / 1024;
  size_t unit = 0;
  while (value >= 1024 && unit + 1 < sizeof(units) / sizeof(units[0])) {
    value /= 1024;
    ++unit;
  }
  return absl::StrFormat("%.1f %s", value, units[unit]);
}

std::string FormatExactBytes(uint64_t bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  size_t unit = 0;
  while (bytes != 0 && bytes % 1024 == 0 &&
         unit + 1 < sizeof(units) / sizeof(units[0])) {
    bytes /= 1024;
    ++unit;
  }
  return absl::StrCat(bytes, " ", units[unit]);
}

std::string IsolationName(pm::v1::Isolation isolation) {
  switch (isolation) {
    case pm::v1::ISOLATION_PID:
      return "pid";
    case pm::v1::ISOLATION_NET:
      return "net";
    case pm::v1::ISOLATION_MOUNT:
      return "mount";
    default:
      return "unknown";
  }
}

std::string FormatLimits(const pm::v1::Limits& limits) {
  std::vector<std::string> parts;
  if (limits.memory_bytes() > 0) {
    parts.push_back(
        absl::StrCat("memory ", FormatExactBytes(limits.memory_bytes())));
  }
  if (limits.cpus() > 0) parts.push_back(absl::StrCat("cpus ", limits.cpus()));
  if (limits.pids() > 0) parts.push_back(absl::StrCat("pids ", limits.pids()));
  if (limits.io_weight() > 0) {
    parts.push_back(absl::StrCat("io weight ", limits.io_weight()));
  }
  return absl::StrJoin(parts, ", ");
}

std::string DescribeOom(const ProcessStatus& status) {
  const uint64_t kills = status.usage().oom_kills();
  if (!status.oom_killed() && kills == 0) return "";
  const std::string why =
      status.limits().memory_bytes() > 0
          ? absl::StrCat("(memory limit ",
                         FormatExactBytes(status.limits().memory_bytes()),
                         " reached)")
          : std::string("(out of memory)");
  if (status.oom_killed()) {
    return absl::StrCat("killed by the OOM killer ", why);
  }
  return absl::StrCat("the OOM killer killed ", kills,
                      kills == 1 ? " process" : " processes", " of its tree ",
                      why);
}

std::string FormatRunTime(absl::Duration duration) {
  if (duration <= absl::ZeroDuration()) return "0s";
  const absl::Duration unit =
      duration < absl::Seconds(10) ? absl::Milliseconds(1) : absl::Seconds(1);
  return absl::FormatDuration(absl::Trunc(duration, unit));
}

std::string AlignColumns(const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> widths;
  for (const auto& row : rows) {
    if (row.size() > widths.size()) widths.resize(row.size(), 0);
    for (size_t i = 0; i < row.size(); ++i) {
      widths[i] = std::max(widths[i], row[i].size());
    }
  }
  std::string text;
  for (const auto& row : rows) {
    for (size_t i = 0; i < row.size(); ++i) {
      text += row[i];
      if (i + 1 < row.size()) {
        text.append(widths[i] - row[i].size() + 2, ' ');
      }
    }
    text += "\n";
  }
  return text;
}

namespace {

// The `usage:` section of the status block: one line per resource of the
// whole tree, with what its limit did; "" when nothing is accounted.
std::string FormatUsage(const pm::v1::ResourceUsage& usage) {
  std::vector<std::vector<std::string>> rows;
  if (usage.has_memory_bytes() || usage.has_memory_peak_bytes()) {
    std::vector<std::string> notes;
    if (usage.has_memory_peak_bytes()) {
      notes.push_back(
          absl::StrCat("peak ", FormatBytes(usage.memory_peak_bytes())));
    }
    if (usage.memory_limit_hits() > 0) {
      notes.push_back(absl::StrCat("reached the limit ",
                                   usage.memory_limit_hits(), " times"));
    }
    std::string value = usage.has_memory_bytes()
                            ? FormatBytes(usage.memory_bytes())
                            : std::string("-");
    if (!notes.empty())
      absl::StrAppend(&value, " (", absl::StrJoin(notes, "; "), ")");
    rows.push_back({"memory", value});
  }
  if (usage.has_cpu_time()) {
    std::string value = FormatRunTime(FromProtoDuration(usage.cpu_time()));
    if (usage.cpu_throttled_periods() > 0) {
      absl::StrAppend(
          &value, " (throttled in ", usage.cpu_throttled_periods(), " of ",
          usage.cpu_periods(), " periods, ",
          FormatRunTime(FromProtoDuration(usage.cpu_throttled_time())),
          " in all)");
    }
    rows.push_back({"cpu time", value});
  }
  if (usage.has_tasks() || usage.task_limit_hits() > 0) {
    std::string value = absl::StrCat(usage.tasks());
    if (usage.task_limit_hits() > 0) {
      absl::StrAppend(&value, " (", usage.task_limit_hits(),
                      usage.task_limit_hits() == 1 ? " fork" : " forks",
                      " failed at the limit)");
    }
    rows.push_back({"tasks", value});
  }
  if (usage.oom_kills() > 0) {
    rows.push_back({"oom kills", absl::StrCat(usage.oom_kills())});
  }
  if (rows.empty()) return "";
  std::string section = "usage:\n";
  for (const auto& row : rows) {
    // The values line up with the block's.
    absl::StrAppend(&section, "  ", row[0], ":",
                    std::string(kLabelWidth - row[0].size() - 3, ' '), row[1],
                    "\n");
  }
  return section;
}

}  // namespace

std::string FormatStatusBlock(const ProcessStatus& status,
                              absl::TimeZone zone) {
  const bool running = !HasEnded(status);
  // Its host is unreachable: what /proc said there is not known here.
  const bool unknown = status.state() == ProcessStatus::STATE_UNKNOWN;
  std::string block;
  auto add = [&block](absl::string_view name, absl::string_view value) {
    absl::StrAppend(&block, name, ":",
                    std::string(kLabelWidth - name.size() - 1, ' '), value,
                    "\n");
  };
  add("id", status.id());
  if (!status.name().empty()) add("name", status.name());
  if (!status.node().empty()) add("node", status.node());
  add("state", StateName(status.state()));
  if (unknown) {
    // Why nothing is known, and what was: next to the state they qualify.
    if (!status.state_reason().empty()) {
      add("state reason", OneLine(status.state_reason()));
    }
    add("last known", StateName(status.last_known_state()));
  }
  // Near the top: it is the first thing to know about such a process.
  const std::string oom = DescribeOom(status);
  if (!oom.empty()) add("OOM", oom);
  add("pid", status.pid() > 0 ? absl::StrCat(status.pid()) : "-");
  add("command", FormatCommand(status));
  const std::string resolved = ResolvedExecutableOf(status);
  if (!resolved.empty() && resolved != ExecutableOf(status)) {
    add("executable", PrintablePath(resolved));
  }
  const std::string working_dir = WorkingDirOf(status);
  if (!working_dir.empty()) add("working dir", PrintablePath(working_dir));
  if (!status.owner().empty()) add("owner", status.owner());
  if (!status.labels().empty()) {
    // Sorted, one line: "app=web tier=front". Values may hold anything.
    std::map<std::string, std::string> sorted(status.labels().begin(),
                                              status.labels().end());
    std::string labels;
    for (const auto& [key, value] : sorted) {
      absl::StrAppend(&labels, labels.empty() ? "" : " ", key, "=", PrintablePath(value));
    }
    add("labels", labels);
  }
  add("started", FormatTime(status.started_at(), "%Y-%m-%d %H:%M:%S %Z", zone));
  if (status.has_ended_at()) {
    add("ended", FormatTime(status.ended_at(), "%Y-%m-%d %H:%M:%S %Z", zone));
  }
  add("run time", FormatRunTime(FromProtoDuration(status.run_time())));
  if (status.run() > 0) {
    const pm::v1::RestartPolicy& policy = status.restart();
    std::string restart =
        policy.policy() == pm::v1::RestartPolicy::POLICY_ALWAYS ? "always" : "on-failure";
    absl::StrAppend(&restart, ": run ", status.run(), ", ", status.restarts(),
                    status.restarts() == 1 ? " restart" : " restarts");
    if (policy.max_restarts() > 0) {
      absl::StrAppend(&restart, " (at most ", policy.max_restarts(), " within ",
                      policy.has_window()
                          ? absl::FormatDuration(FromProtoDuration(policy.window()))
                          : "its life",
                      ")");
    }
    if (status.gave_up()) absl::StrAppend(&restart, "; given up");
    add("restart", restart);
    if (status.has_last_run()) {
      const pm::v1::RunEnd& last = status.last_run();
      add("last run", absl::StrCat(
                          "run ", last.run(), " ",
                          last.signal() != 0
                              ? absl::StrCat("killed by signal ", last.signal(), " (",
                                             SignalName(last.signal()), ")")
                              : absl::StrCat("exited with code ", last.exit_code()),
                          " at ",
                          FormatTime(last.ended_at(), "%Y-%m-%d %H:%M:%S %Z", zone)));
    }
    if (status.has_next_start()) {
      add("next run", FormatTime(status.next_start(), "%Y-%m-%d %H:%M:%S %Z", zone));
    }
  }
  if (!running) {
    add("exit", DescribeEnd(status));
    const std::string how = DescribeTermination(status.termination());
    if (!how.empty()) add("termination", how);
  }
  if (!status.end_reason().empty()) add("end reason", status.end_reason());
  // The count is final once the process has ended; a running process may
  // not have reported it yet, and "0 B" would then mislead.
  if (!running || status.output_bytes() > 0) {
    add("output", absl::StrCat(FormatBytes(status.output_bytes()), " (",
                               status.output_bytes(), " bytes)"));
  }
  const std::string limits = FormatLimits(status.limits());
  if (!limits.empty()) add("limits", limits);
  if (!status.isolation().empty()) {
    std::vector<std::string> names;
    for (int isolation : status.isolation()) {
      names.push_back(IsolationName(static_cast<pm::v1::Isolation>(isolation)));
    }
    add("isolation", absl::StrJoin(names, ", "));
  }
  if (!status.cgroup().empty()) add("cgroup", status.cgroup());
  if (running && !unknown) {
    add("rss", FormatBytes(status.rss_bytes()));
    add("threads", absl::StrCat(status.threads()));
  }
  absl::StrAppend(&block, FormatUsage(status.usage()));
  if (status.proc_status().empty()) return block;

  // A protobuf map has no order; sorted names read better than a random one.
  const std::map<std::string, std::string> sorted(status.proc_status().begin(),
                                                  status.proc_status().end());
  std::vector<std::vector<std::string>> proc_rows;
  for (const auto& [name, value] : sorted) {
    // /proc separates multi-part values (Uid, Gid, ...) with tabs.
    proc_rows.push_back({absl::StrCat("  ", name, ":"),
                         absl::StrReplaceAll(value, {{"\t", " "}})});
  }
  return absl::StrCat(block, "proc status:\n", AlignColumns(proc_rows));
}

std::string FormatTable(const pm::v1::ListResponse& list, absl::TimeZone zone) {
  // Only a cluster's processes have a node: a single host's table stays as
  // it always was.
  const bool nodes = std::any_of(
      list.processes().begin(), list.processes().end(),
      [](const ProcessStatus& status) { return !status.node().empty(); });
  std::vector<std::vector<std::string>> rows = {
      {"UUID", "NAME", "STATE", "PID", "EXIT", "STARTED", "COMMAND"}};
  if (nodes) rows[0].insert(rows[0].begin() + 2, "NODE");
  for (const ProcessStatus& status : list.processes()) {
    std::string exit = "-";
    if (status.state() == ProcessStatus::STATE_EXITED) {
      exit = absl::StrCat(status.exit_code());
    } else if (status.state() == ProcessStatus::STATE_SIGNALED) {
      exit = absl::StrCat(SignalName(status.signal()),
                          status.core_dumped() ? " (core)" : "",
                          status.oom_killed() ? " (OOM)" : "");
    }
    rows.push_back({status.id(), status.name().empty() ? "-" : status.name(),
                    StateName(status.state()),
                    status.pid() > 0 ? absl::StrCat(status.pid()) : "-", exit,
                    FormatTime(status.started_at(), "%Y-%m-%d %H:%M:%S", zone),
                    FormatCommand(status)});
    if (nodes) {
      rows.back().insert(rows.back().begin() + 2,
                         status.node().empty() ? "-" : status.node());
    }
  }
  return AlignColumns(rows);
}

absl::StatusOr<std::string> ToJson(const google::protobuf::Message& message) {
  google::protobuf::util::JsonPrintOptions options;
  // Scripts read `exitCode: 0` and `stopped: false` too.
  options.always_print_primitive_fields = true;
  std::string json;
  auto status =
      google::protobuf::util::MessageToJsonString(message, &json, options);
  if (!status.ok()) {
    return absl::InternalError(absl::StrCat(
        "converting ", message.GetTypeName(), " to JSON: ", status.ToString()));
  }
  return json;
}

}  // namespace pm::cli
