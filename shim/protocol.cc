#include "shim/protocol.h"

#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/status_core.h"

namespace pm::shim {
namespace {

// What a command memfd must be sealed against, so that what the shim checks
// is what it reads, whatever the sender still holds.
constexpr int kCommandSeals = F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE;

// ---- encoding ----

void PutLe(std::string& out, uint64_t value, int bytes) {
  for (int i = 0; i < bytes; ++i) out.push_back(static_cast<char>(value >> (8 * i)));
}

uint64_t GetLe(absl::string_view in, int bytes) {
  uint64_t value = 0;
  for (int i = bytes - 1; i >= 0; --i) {
    value = (value << 8) | static_cast<uint8_t>(in[i]);
  }
  return value;
}

class Writer {
 public:
  void Bytes(FieldTag tag, absl::string_view value) {
    PutLe(body_, static_cast<uint16_t>(tag), 2);
    PutLe(body_, value.size(), 4);
    body_.append(value.data(), value.size());
  }
  void U32(FieldTag tag, uint32_t value) {
    std::string v;
    PutLe(v, value, 4);
    Bytes(tag, v);
  }
  void U64(FieldTag tag, uint64_t value) {
    std::string v;
    PutLe(v, value, 8);
    Bytes(tag, v);
  }
  void Join(FieldTag tag, const CgroupJoinRef& join) {
    std::string v;
    PutLe(v, join.fd_index, 4);
    v += join.path;
    Bytes(tag, v);
  }
  static std::string Status(const ExitStatus& status) {
    std::string v;
    const bool exited = status.kind == ExitStatus::Kind::kExited;
    PutLe(v, exited ? 1 : 2, 1);
    PutLe(v, status.core_dumped ? 1 : 0, 1);
    PutLe(v, 0, 2);
    PutLe(v, static_cast<uint32_t>(exited ? status.code : status.signal), 4);
    return v;
  }
  void PreviousEnd(const ProcessEnd& end) {
    std::string v = Status(end.status);
    PutLe(v, static_cast<uint64_t>(absl::ToUnixNanos(end.ended)), 8);
    Bytes(FieldTag::kPreviousEnd, v);
  }
  void End(const ProcessEnd& end) {
    Bytes(FieldTag::kExitStatus, Status(end.status));
    U64(FieldTag::kEndedNs, static_cast<uint64_t>(absl::ToUnixNanos(end.ended)));
    U64(FieldTag::kExitOutputEnd, end.output_end);
  }
  void Time(FieldTag tag, absl::Time time) {
    U64(tag, static_cast<uint64_t>(absl::ToUnixNanos(time)));
  }
  void Restart(const RestartPolicy& policy) {
    std::string v;
    PutLe(v, static_cast<uint8_t>(policy.when), 1);
    PutLe(v, 0, 3);
    PutLe(v, policy.max_restarts, 4);
    for (absl::Duration d : {policy.first_delay, policy.max_delay,
                             policy.reset_after, policy.window}) {
      PutLe(v, static_cast<uint64_t>(absl::ToInt64Nanoseconds(d)), 8);
    }
    Bytes(FieldTag::kRestart, v);
  }
  void Command(const CommandLine& command) {
    Bytes(FieldTag::kExecutable, command.executable);
    for (const std::string& arg : command.args) Bytes(FieldTag::kArg, arg);
    for (const auto& [name, value] : command.env) {
      Bytes(FieldTag::kEnv, absl::StrCat(name, "=", value));
    }
    if (!command.working_dir.empty()) Bytes(FieldTag::kWorkingDir, command.working_dir);
  }
  const std::string& body() const { return body_; }
  absl::StatusOr<std::string> Finish(MessageType type) const {
    std::string out;
    PutLe(out, kProtocolVersion, 2);
    PutLe(out, static_cast<uint16_t>(type), 2);
    PutLe(out, body_.size(), 4);
    out += body_;
    if (out.size() > kMaxMessageBytes) {
      return absl::InvalidArgumentError(absl::StrCat(
          "shim message ", static_cast<int>(type), " is ", out.size(),
          " bytes, over the limit of ", kMaxMessageBytes));
    }
    return out;
  }

 private:
  std::string body_;
};

struct EncodeVisitor {
  Writer w;
  absl::StatusOr<std::string> operator()(const Spawn& m) {
    w.Bytes(FieldTag::kUuid, m.uuid);
    if (m.command_memfd) {
      w.U32(FieldTag::kCommandMemfd, *m.command_memfd);
    } else {
      w.Command(m.command);
    }
    if (m.isolation != 0) w.U32(FieldTag::kIsolation, m.isolation);
    if (m.file_limit) {
      std::string v;
      PutLe(v, m.file_limit->rlim_cur, 8);
      PutLe(v, m.file_limit->rlim_max, 8);
      w.Bytes(FieldTag::kFileLimit, v);
    }
    if (m.cgroup2_dir) w.U32(FieldTag::kCgroup2Dir, *m.cgroup2_dir);
    if (m.cgroup2_join) w.Join(FieldTag::kCgroup2Join, *m.cgroup2_join);
    for (const CgroupJoinRef& j : m.cgroup_joins) w.Join(FieldTag::kCgroupJoin, j);
    if (m.restart) w.Restart(*m.restart);
    return w.Finish(MessageType::kSpawn);
  }
  absl::StatusOr<std::string> operator()(const Spawned& m) {
    w.U32(FieldTag::kPid, static_cast<uint32_t>(m.pid));
    w.U64(FieldTag::kStartTicks, m.start_ticks);
    w.Bytes(FieldTag::kExecutable, m.executable);
    return w.Finish(MessageType::kSpawned);
  }
  absl::StatusOr<std::string> operator()(const SpawnFailed& m) {
    w.U32(FieldTag::kCode, static_cast<uint32_t>(m.code));
    w.Bytes(FieldTag::kMessage, m.message);
    return w.Finish(MessageType::kSpawnFailed);
  }
  absl::StatusOr<std::string> operator()(const Exited& m) {
    w.End(m.end);
    if (m.run) w.U32(FieldTag::kRun, *m.run);
    if (m.gave_up) w.U32(FieldTag::kGaveUp, 1);
    return w.Finish(MessageType::kExited);
  }
  absl::StatusOr<std::string> operator()(const Hello& m) {
    w.Bytes(FieldTag::kUuid, m.uuid);
    w.U32(FieldTag::kPid, static_cast<uint32_t>(m.pid));
    w.U64(FieldTag::kStartTicks, m.start_ticks);
    if (m.end) w.End(*m.end);
    w.U64(FieldTag::kOutputEnd, m.output_end);
    if (m.run) w.U32(FieldTag::kRun, *m.run);
    if (m.next_start) w.Time(FieldTag::kNextStartNs, *m.next_start);
    if (m.previous_end) w.PreviousEnd(*m.previous_end);
    if (m.gave_up) w.U32(FieldTag::kGaveUp, 1);
    return w.Finish(MessageType::kHello);
  }
  absl::StatusOr<std::string> operator()(const Closed& m) {
    w.U64(FieldTag::kOutputEnd, m.output_end);
    if (m.capped != 0) w.U64(FieldTag::kOutputCapped, m.capped);
    if (m.lost != 0) w.U64(FieldTag::kOutputLost, m.lost);
    return w.Finish(MessageType::kClosed);
  }
  absl::StatusOr<std::string> operator()(const ForkShim& m) {
    w.Bytes(FieldTag::kUuid, m.uuid);
    return w.Finish(MessageType::kForkShim);
  }
  absl::StatusOr<std::string> operator()(const ShimForked& m) {
    w.U32(FieldTag::kPid, static_cast<uint32_t>(m.pid));
    return w.Finish(MessageType::kShimForked);
  }
  absl::StatusOr<std::string> operator()(const NoRestart&) {
    return w.Finish(MessageType::kNoRestart);
  }
  absl::StatusOr<std::string> operator()(const Restarting& m) {
    w.U32(FieldTag::kRun, m.run);
    w.End(m.end);
    w.Time(FieldTag::kNextStartNs, m.next_start);
    return w.Finish(MessageType::kRestarting);
  }
  absl::StatusOr<std::string> operator()(const RunStarted& m) {
    w.U32(FieldTag::kRun, m.run);
    w.U32(FieldTag::kPid, static_cast<uint32_t>(m.pid));
    w.U64(FieldTag::kStartTicks, m.start_ticks);
    w.Bytes(FieldTag::kExecutable, m.executable);
    return w.Finish(MessageType::kRunStarted);
  }
};

// ---- decoding ----

absl::Status Bad(absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("shim message: ", what));
}

// The fields of one message, checked against what its type allows.
class Fields {
 public:
  struct Field {
    FieldTag tag;
    absl::string_view value;
  };

  // Splits the body; refuses a field header or value running past the end.
  static absl::StatusOr<Fields> Split(absl::string_view body) {
    Fields fields;
    size_t at = 0;
    while (at < body.size()) {
      if (body.size() - at < 6) {
        return Bad(absl::StrCat("field header at byte ", at, " cut short"));
      }
      const uint16_t tag = static_cast<uint16_t>(GetLe(body.substr(at), 2));
      const uint64_t length = GetLe(body.substr(at + 2), 4);
      at += 6;
      if (length > body.size() - at) {
        return Bad(absl::StrCat("field ", tag, " of ", length,
                                " bytes runs past the end"));
      }
      fields.all_.push_back({static_cast<FieldTag>(tag), body.substr(at, length)});
      at += length;
    }
    return fields;
  }

  // Refuses any field whose tag is not in `allowed`.
  absl::Status OnlyThese(std::initializer_list<FieldTag> allowed) const {
    for (const Field& f : all_) {
      bool ok = false;
      for (FieldTag a : allowed) ok = ok || a == f.tag;
      if (!ok) {
        return Bad(absl::StrCat("unknown field ", static_cast<int>(f.tag),
                                " for this message type"));
      }
    }
    return absl::OkStatus();
  }

  std::vector<absl::string_view> All(FieldTag tag) const {
    std::vector<absl::string_view> out;
    for (const Field& f : all_) {
      if (f.tag == tag) out.push_back(f.value);
    }
    return out;
  }

  // The one field `tag`, or nullopt; refuses it twice.
  absl::StatusOr<std::optional<absl::string_view>> Optional(FieldTag tag) const {
    std::vector<absl::string_view> found = All(tag);
    if (found.size() > 1) {
      return Bad(absl::StrCat("field ", static_cast<int>(tag), " given ",
                              found.size(), " times"));
    }
    if (found.empty()) return std::nullopt;
    return found[0];
  }
  absl::StatusOr<absl::string_view> Required(FieldTag tag) const {
    PM_ASSIGN_OR_RETURN(std::optional<absl::string_view> v, Optional(tag));
    if (!v) return Bad(absl::StrCat("field ", static_cast<int>(tag), " missing"));
    return *v;
  }
  static absl::StatusOr<uint64_t> Fixed(FieldTag tag, absl::string_view v,
                                        size_t size) {
    if (v.size() != size) {
      return Bad(absl::StrCat("field ", static_cast<int>(tag), " is ", v.size(),
                              " bytes, want ", size));
    }
    return GetLe(v, static_cast<int>(size));
  }
  absl::StatusOr<uint64_t> RequiredFixed(FieldTag tag, size_t size) const {
    PM_ASSIGN_OR_RETURN(absl::string_view v, Required(tag));
    return Fixed(tag, v, size);
  }

 private:
  std::vector<Field> all_;
};

absl::Status CheckNoNul(absl::string_view what, absl::string_view value) {
  if (value.find('\0') != absl::string_view::npos) {
    return Bad(absl::StrCat(what, " contains a NUL byte"));
  }
  return absl::OkStatus();
}

absl::StatusOr<CgroupJoinRef> DecodeJoin(FieldTag tag, absl::string_view v) {
  if (v.size() < 5) {
    return Bad(absl::StrCat("field ", static_cast<int>(tag),
                            " is cut short (an fd index and a path)"));
  }
  CgroupJoinRef join{static_cast<uint32_t>(GetLe(v, 4)), std::string(v.substr(4))};
  PM_RETURN_IF_ERROR(CheckNoNul("a cgroup path", join.path));
  return join;
}

// The fd indices a Spawn names must be exactly 0 .. fd_count-1, each once.
absl::Status CheckFdIndices(const Spawn& m, size_t fd_count) {
  std::vector<bool> used(fd_count, false);
  auto use = [&](uint32_t index) -> absl::Status {
    if (index >= fd_count) {
      return Bad(absl::StrCat("fd index ", index, " but ", fd_count,
                              " fds attached"));
    }
    if (used[index]) return Bad(absl::StrCat("fd index ", index, " used twice"));
    used[index] = true;
    return absl::OkStatus();
  };
  if (m.command_memfd) PM_RETURN_IF_ERROR(use(*m.command_memfd));
  if (m.cgroup2_dir) PM_RETURN_IF_ERROR(use(*m.cgroup2_dir));
  if (m.cgroup2_join) PM_RETURN_IF_ERROR(use(m.cgroup2_join->fd_index));
  for (const CgroupJoinRef& j : m.cgroup_joins) PM_RETURN_IF_ERROR(use(j.fd_index));
  for (size_t i = 0; i < fd_count; ++i) {
    if (!used[i]) return Bad(absl::StrCat("attached fd ", i, " is not named"));
  }
  return absl::OkStatus();
}

// The command's fields (executable, args, env, working dir), in a Spawn or
// in a command memfd.
absl::StatusOr<CommandLine> DecodeCommand(const Fields& f) {
  CommandLine command;
  PM_ASSIGN_OR_RETURN(absl::string_view exe, f.Required(FieldTag::kExecutable));
  if (exe.empty()) return Bad("the executable is empty");
  PM_RETURN_IF_ERROR(CheckNoNul("the executable", exe));
  command.executable = std::string(exe);
  for (absl::string_view arg : f.All(FieldTag::kArg)) {
    PM_RETURN_IF_ERROR(CheckNoNul("an argument", arg));
    command.args.emplace_back(arg);
  }
  for (absl::string_view entry : f.All(FieldTag::kEnv)) {
    PM_RETURN_IF_ERROR(CheckNoNul("an env entry", entry));
    const size_t eq = entry.find('=');
    if (eq == absl::string_view::npos || eq == 0) {
      return Bad("an env entry is not NAME=VALUE with a non-empty NAME");
    }
    const absl::string_view name = entry.substr(0, eq);
    if (command.Getenv(name) != nullptr) {
      return Bad("an env name is given twice");
    }
    command.env.emplace_back(std::string(name), std::string(entry.substr(eq + 1)));
  }
  PM_ASSIGN_OR_RETURN(std::optional<absl::string_view> dir,
                      f.Optional(FieldTag::kWorkingDir));
  if (dir) {
    if (dir->empty()) return Bad("the working dir is given but empty");
    PM_RETURN_IF_ERROR(CheckNoNul("the working dir", *dir));
    command.working_dir = std::string(*dir);
  }
  return command;
}

absl::StatusOr<std::string> DecodeUuid(const Fields& f) {
  PM_ASSIGN_OR_RETURN(absl::string_view uuid, f.Required(FieldTag::kUuid));
  if (uuid.size() != 36 ||
      uuid.find_first_not_of("0123456789abcdef-") != absl::string_view::npos) {
    return Bad("the uuid is not 36 characters of lowercase hex and dashes");
  }
  return std::string(uuid);
}

absl::StatusOr<RestartPolicy> DecodeRestart(absl::string_view v) {
  if (v.size() != 40) return Bad("the restart policy is not 40 bytes");
  const uint64_t when = GetLe(v, 1);
  if (when > static_cast<uint64_t>(RestartPolicy::When::kAlways) ||
      GetLe(v.substr(1), 3) != 0) {
    return Bad(absl::StrCat("unknown restart policy ", when));
  }
  RestartPolicy policy;
  policy.when = static_cast<RestartPolicy::When>(when);
  policy.max_restarts = static_cast<uint32_t>(GetLe(v.substr(4), 4));
  absl::Duration* durations[] = {&policy.first_delay, &policy.max_delay,
                                 &policy.reset_after, &policy.window};
  for (size_t i = 0; i < 4; ++i) {
    const uint64_t ns = GetLe(v.substr(8 + 8 * i, 8), 8);
    if (ns > static_cast<uint64_t>(absl::ToInt64Nanoseconds(kMaxRestartDuration))) {
      return Bad(absl::StrCat("restart duration ", i, " is over ",
                              absl::FormatDuration(kMaxRestartDuration)));
    }
    *durations[i] = absl::Nanoseconds(static_cast<int64_t>(ns));
  }
  if (policy.first_delay > policy.max_delay) {
    return Bad("the first restart delay is above the largest");
  }
  return policy;
}

absl::StatusOr<absl::Time> DecodeTime(FieldTag tag, absl::string_view value) {
  PM_ASSIGN_OR_RETURN(uint64_t ns, Fields::Fixed(tag, value, 8));
  if (ns > INT64_MAX) return Bad(absl::StrCat("field ", static_cast<int>(tag), " is negative"));
  return absl::FromUnixNanos(static_cast<int64_t>(ns));
}

absl::StatusOr<std::optional<uint32_t>> DecodeRun(const Fields& f) {
  PM_ASSIGN_OR_RETURN(std::optional<absl::string_view> run, f.Optional(FieldTag::kRun));
  if (!run) return std::nullopt;
  PM_ASSIGN_OR_RETURN(uint64_t number, Fields::Fixed(FieldTag::kRun, *run, 4));
  if (number == 0) return Bad("run 0 (the first is 1)");
  return static_cast<uint32_t>(number);
}

absl::StatusOr<Spawn> DecodeSpawn(const Fields& f, size_t fd_count) {
  PM_RETURN_IF_ERROR(f.OnlyThese(
      {FieldTag::kUuid, FieldTag::kExecutable, FieldTag::kArg, FieldTag::kEnv,
       FieldTag::kWorkingDir, FieldTag::kIsolation, FieldTag::kFileLimit,
       FieldTag::kCgroup2Dir, FieldTag::kCgroup2Join, FieldTag::kCgroupJoin,
       FieldTag::kCommandMemfd, FieldTag::kRestart}));
  Spawn m;
  PM_ASSIGN_OR_RETURN(m.uuid, DecodeUuid(f));
  PM_ASSIGN_OR_RETURN(std::optional<absl::string_view> memfd,
                      f.Optional(FieldTag::kCommandMemfd));
  if (memfd) {
    // The command is in the memfd, not here as well.
    for (FieldTag tag : {FieldTag::kExecutable, FieldTag::kArg, FieldTag::kEnv,
                         FieldTag::kWorkingDir}) {
      if (!f.All(tag).empty()) {
        return Bad(absl::StrCat("field ", static_cast<int>(tag),
                                " with the command in a memfd"));
      }
    }
    PM_ASSIGN_OR_RETURN(uint64_t index, Fields::Fixed(FieldTag::kCommandMemfd, *memfd, 4));
    m.command_memfd = static_cast<uint32_t>(index);
  } else {
    PM_ASSIGN_OR_RETURN(m.command, DecodeCommand(f));
  }
  PM_ASSIGN_OR_RETURN(std::optional<absl::string_view> iso,
                      f.Optional(FieldTag::kIsolation));
  if (iso) {
    PM_ASSIGN_OR_RETURN(uint64_t bits, Fields::Fixed(FieldTag::kIsolation, *iso, 4));
    if (bits & ~uint64_t{kIsolatePid | kIsolateNet | kIsolateMount}) {
      return Bad(absl::StrCat("unknown isolation bits ", bits));
    }
    m.isolation = static_cast<uint32_t>(bits);
  }
  PM_ASSIGN_OR_RETURN(std::optional<absl::string_view> limit,
                      f.Optional(FieldTag::kFileLimit));
  if (limit) {
    if (limit->size() != 16) return Bad("the file limit is not 16 bytes");
    rlimit r;
    r.rlim_cur = GetLe(*limit, 8);
    r.rlim_max = GetLe(limit->substr(8), 8);
    if (r.rlim_cur > r.rlim_max) return Bad("the file limit's soft is above its hard");
    m.file_limit = r;
  }
  PM_ASSIGN_OR_RETURN(std::optional<absl::string_view> dir_fd,
                      f.Optional(FieldTag::kCgroup2Dir));
  if (dir_fd) {
    PM_ASSIGN_OR_RETURN(uint64_t index,
                        Fields::Fixed(FieldTag::kCgroup2Dir, *dir_fd, 4));
    m.cgroup2_dir = static_cast<uint32_t>(index);
  }
  PM_ASSIGN_OR_RETURN(std::optional<absl::string_view> join2,
                      f.Optional(FieldTag::kCgroup2Join));
  if (join2) {
    PM_ASSIGN_OR_RETURN(m.cgroup2_join, DecodeJoin(FieldTag::kCgroup2Join, *join2));
  }
  for (absl::string_view j : f.All(FieldTag::kCgroupJoin)) {
    PM_ASSIGN_OR_RETURN(CgroupJoinRef join, DecodeJoin(FieldTag::kCgroupJoin, j));
    m.cgroup_joins.push_back(std::move(join));
  }
  PM_ASSIGN_OR_RETURN(std::optional<absl::string_view> restart,
                      f.Optional(FieldTag::kRestart));
  if (restart) {
    PM_ASSIGN_OR_RETURN(m.restart, DecodeRestart(*restart));
  }
  PM_RETURN_IF_ERROR(CheckFdIndices(m, fd_count));
  return m;
}

absl::StatusOr<pid_t> DecodePid(const Fields& f) {
  PM_ASSIGN_OR_RETURN(uint64_t pid, f.RequiredFixed(FieldTag::kPid, 4));
  if (pid == 0 || pid > INT32_MAX) return Bad(absl::StrCat("pid ", pid));
  return static_cast<pid_t>(pid);
}

// An exit status as Writer::Status encodes it (8 bytes).
absl::StatusOr<ExitStatus> DecodeExitStatus(absl::string_view status) {
  const uint8_t kind = static_cast<uint8_t>(status[0]);
  const uint8_t core = static_cast<uint8_t>(status[1]);
  const uint64_t reserved = GetLe(status.substr(2), 2);
  const uint64_t value = GetLe(status.substr(4), 4);
  if (kind == 1 && core == 0 && reserved == 0 && value <= 255) {
    return ExitStatus::Exited(static_cast<int>(value));
  }
  if (kind == 2 && core <= 1 && reserved == 0 && value >= 1 && value <= 64) {
    return ExitStatus::Signaled(static_cast<int>(value), core == 1);
  }
  return Bad(absl::StrCat("bad exit status (kind ", kind, ", core ", core,
                          ", value ", value, ")"));
}

// Hello's kPreviousEnd: an exit status and its end time.
absl::StatusOr<ProcessEnd> DecodePreviousEnd(absl::string_view bytes) {
  if (bytes.size() != 16) return Bad("the previous run's end is not 16 bytes");
  ProcessEnd end;
  PM_ASSIGN_OR_RETURN(end.status, DecodeExitStatus(bytes.substr(0, 8)));
  const uint64_t ns = GetLe(bytes.substr(8), 8);
  if (ns > INT64_MAX) return Bad("the previous run's end time is negative");
  end.ended = absl::FromUnixNanos(static_cast<int64_t>(ns));
  return end;
}

// The exit status, end time and output end at the exit; nullopt when none
// of them is there.
absl::StatusOr<std::optional<ProcessEnd>> DecodeEnd(const Fields& f) {
  PM_ASSIGN_OR_RETURN(std::optional<absl::string_view> status,
                      f.Optional(FieldTag::kExitStatus));
  PM_ASSIGN_OR_RETURN(std::optional<absl::string_view> ended,
                      f.Optional(FieldTag::kEndedNs));
  PM_ASSIGN_OR_RETURN(std::optional<absl::string_view> output_end,
                      f.Optional(FieldTag::kExitOutputEnd));
  if (!status && !ended && !output_end) return std::nullopt;
  if (!status || !ended || !output_end) {
    return Bad("an exit status, its end time and its output end go together");
  }
  if (status->size() != 8) return Bad("the exit status is not 8 bytes");
  ProcessEnd end;
  PM_ASSIGN_OR_RETURN(end.status, DecodeExitStatus(*status));
  PM_ASSIGN_OR_RETURN(uint64_t ns, Fields::Fixed(FieldTag::kEndedNs, *ended, 8));
  if (ns > INT64_MAX) return Bad("the end time is negative");
  end.ended = absl::FromUnixNanos(static_cast<int64_t>(ns));
  PM_ASSIGN_OR_RETURN(end.output_end,
                      Fields::Fixed(FieldTag::kExitOutputEnd, *output_end, 8));
  return end;
}

absl::Status WantFds(absl::string_view type, size_t want, size_t got) {
  if (want != got) {
    return Bad(absl::StrCat(type, " carries ", want, " fds, got ", got));
  }
  return absl::OkStatus();
}

absl::StatusOr<Message> DecodeBody(MessageType type, const Fields& f,
                                   size_t fd_count) {
  switch (type) {
    case MessageType::kSpawn: {
      PM_ASSIGN_OR_RETURN(Spawn m, DecodeSpawn(f, fd_count));
      return m;
    }
    case MessageType::kSpawned: {
      PM_RETURN_IF_ERROR(f.OnlyThese(
          {FieldTag::kPid, FieldTag::kStartTicks, FieldTag::kExecutable}));
      PM_RETURN_IF_ERROR(WantFds("Spawned", 1, fd_count));
      Spawned m;
      PM_ASSIGN_OR_RETURN(m.pid, DecodePid(f));
      PM_ASSIGN_OR_RETURN(m.start_ticks, f.RequiredFixed(FieldTag::kStartTicks, 8));
      PM_ASSIGN_OR_RETURN(absl::string_view exe, f.Required(FieldTag::kExecutable));
      m.executable = std::string(exe);
      return m;
    }
    case MessageType::kSpawnFailed: {
      PM_RETURN_IF_ERROR(f.OnlyThese({FieldTag::kCode, FieldTag::kMessage}));
      PM_RETURN_IF_ERROR(WantFds("SpawnFailed", 0, fd_count));
      SpawnFailed m;
      PM_ASSIGN_OR_RETURN(uint64_t code, f.RequiredFixed(FieldTag::kCode, 4));
      if (code == 0 || code > 16) return Bad(absl::StrCat("status code ", code));
      m.code = static_cast<absl::StatusCode>(code);
      PM_ASSIGN_OR_RETURN(absl::string_view text, f.Required(FieldTag::kMessage));
      m.message = std::string(text);
      return m;
    }
    case MessageType::kExited: {
      PM_RETURN_IF_ERROR(f.OnlyThese({FieldTag::kExitStatus, FieldTag::kEndedNs,
                                      FieldTag::kExitOutputEnd, FieldTag::kRun,
                                      FieldTag::kGaveUp}));
      PM_RETURN_IF_ERROR(WantFds("Exited", 0, fd_count));
      PM_ASSIGN_OR_RETURN(std::optional<ProcessEnd> end, DecodeEnd(f));
      if (!end) return Bad("Exited without an exit status");
      Exited m;
      m.end = *end;
      PM_ASSIGN_OR_RETURN(m.run, DecodeRun(f));
      PM_ASSIGN_OR_RETURN(std::optional<absl::string_view> gave_up,
                          f.Optional(FieldTag::kGaveUp));
      if (gave_up) {
        PM_ASSIGN_OR_RETURN(uint64_t one, Fields::Fixed(FieldTag::kGaveUp, *gave_up, 4));
        if (one != 1) return Bad(absl::StrCat("gave up ", one));
        m.gave_up = true;
      }
      return m;
    }
    case MessageType::kHello: {
      PM_RETURN_IF_ERROR(f.OnlyThese(
          {FieldTag::kUuid, FieldTag::kPid, FieldTag::kStartTicks,
           FieldTag::kExitStatus, FieldTag::kEndedNs, FieldTag::kExitOutputEnd,
           FieldTag::kOutputEnd, FieldTag::kRun, FieldTag::kNextStartNs,
           FieldTag::kPreviousEnd, FieldTag::kGaveUp}));
      Hello m;
      PM_ASSIGN_OR_RETURN(absl::string_view uuid, f.Required(FieldTag::kUuid));
      m.uuid = std::string(uuid);
      PM_ASSIGN_OR_RETURN(m.pid, DecodePid(f));
      PM_ASSIGN_OR_RETURN(m.start_ticks, f.RequiredFixed(FieldTag::kStartTicks, 8));
      PM_ASSIGN_OR_RETURN(m.end, DecodeEnd(f));
      PM_ASSIGN_OR_RETURN(m.output_end, f.RequiredFixed(FieldTag::kOutputEnd, 8));
      PM_ASSIGN_OR_RETURN(m.run, DecodeRun(f));
      PM_ASSIGN_OR_RETURN(std::optional<absl::string_view> next,
                          f.Optional(FieldTag::kNextStartNs));
      if (next) {
        if (!m.end || !m.run) return Bad("Hello with a next start but no ended run");
        PM_ASSIGN_OR_RETURN(m.next_start, DecodeTime(FieldTag::kNextStartNs, *next));
      }
      PM_ASSIGN_OR_RETURN(std::optional<absl::string_view> previous,
                          f.Optional(FieldTag::kPreviousEnd));
      if (previous) {
        if (!m.run || *m.run < 2 || m.next_start) {
          return Bad("Hello with a previous run's end but no later run");
        }
        PM_ASSIGN_OR_RETURN(m.previous_end, DecodePreviousEnd(*previous));
      }
      PM_ASSIGN_OR_RETURN(std::optional<absl::string_view> gave_up,
                          f.Optional(FieldTag::kGaveUp));
      if (gave_up) {
        PM_ASSIGN_OR_RETURN(uint64_t one, Fields::Fixed(FieldTag::kGaveUp, *gave_up, 4));
        if (one != 1) return Bad(absl::StrCat("gave up ", one));
        if (!m.end || !m.run || m.next_start) {
          return Bad("Hello that gave up without a run that ended for good");
        }
        m.gave_up = true;
      }
      PM_RETURN_IF_ERROR(WantFds("Hello", m.end ? 0 : 1, fd_count));
      return m;
    }
    case MessageType::kNoRestart: {
      PM_RETURN_IF_ERROR(f.OnlyThese({}));
      PM_RETURN_IF_ERROR(WantFds("NoRestart", 0, fd_count));
      return NoRestart{};
    }
    case MessageType::kRestarting: {
      PM_RETURN_IF_ERROR(f.OnlyThese({FieldTag::kRun, FieldTag::kExitStatus,
                                      FieldTag::kEndedNs, FieldTag::kExitOutputEnd,
                                      FieldTag::kNextStartNs}));
      PM_RETURN_IF_ERROR(WantFds("Restarting", 0, fd_count));
      Restarting m;
      PM_ASSIGN_OR_RETURN(std::optional<uint32_t> run, DecodeRun(f));
      if (!run) return Bad("Restarting without its run");
      m.run = *run;
      PM_ASSIGN_OR_RETURN(std::optional<ProcessEnd> end, DecodeEnd(f));
      if (!end) return Bad("Restarting without the run's exit status");
      m.end = *end;
      PM_ASSIGN_OR_RETURN(absl::string_view next, f.Required(FieldTag::kNextStartNs));
      PM_ASSIGN_OR_RETURN(m.next_start, DecodeTime(FieldTag::kNextStartNs, next));
      return m;
    }
    case MessageType::kRunStarted: {
      PM_RETURN_IF_ERROR(f.OnlyThese({FieldTag::kRun, FieldTag::kPid,
                                      FieldTag::kStartTicks, FieldTag::kExecutable}));
      PM_RETURN_IF_ERROR(WantFds("RunStarted", 1, fd_count));
      RunStarted m;
      PM_ASSIGN_OR_RETURN(std::optional<uint32_t> run, DecodeRun(f));
      if (!run || *run < 2) return Bad("RunStarted without a run after the first");
      m.run = *run;
      PM_ASSIGN_OR_RETURN(m.pid, DecodePid(f));
      PM_ASSIGN_OR_RETURN(m.start_ticks, f.RequiredFixed(FieldTag::kStartTicks, 8));
      PM_ASSIGN_OR_RETURN(absl::string_view exe, f.Required(FieldTag::kExecutable));
      m.executable = std::string(exe);
      return m;
    }
    case MessageType::kClosed: {
      PM_RETURN_IF_ERROR(f.OnlyThese(
          {FieldTag::kOutputEnd, FieldTag::kOutputCapped, FieldTag::kOutputLost}));
      PM_RETURN_IF_ERROR(WantFds("Closed", 0, fd_count));
      Closed m;
      PM_ASSIGN_OR_RETURN(m.output_end, f.RequiredFixed(FieldTag::kOutputEnd, 8));
      for (auto [tag, field] : {std::pair{FieldTag::kOutputCapped, &m.capped},
                                std::pair{FieldTag::kOutputLost, &m.lost}}) {
        PM_ASSIGN_OR_RETURN(std::optional<absl::string_view> v, f.Optional(tag));
        if (!v) continue;
        PM_ASSIGN_OR_RETURN(*field, Fields::Fixed(tag, *v, 8));
      }
      return m;
    }
    case MessageType::kForkShim: {
      PM_RETURN_IF_ERROR(f.OnlyThese({FieldTag::kUuid}));
      PM_RETURN_IF_ERROR(WantFds("ForkShim", 1, fd_count));
      ForkShim m;
      PM_ASSIGN_OR_RETURN(m.uuid, DecodeUuid(f));
      return m;
    }
    case MessageType::kShimForked: {
      PM_RETURN_IF_ERROR(f.OnlyThese({FieldTag::kPid}));
      PM_RETURN_IF_ERROR(WantFds("ShimForked", 1, fd_count));
      ShimForked m;
      PM_ASSIGN_OR_RETURN(m.pid, DecodePid(f));
      return m;
    }
  }
  return Bad(absl::StrCat("unknown type ", static_cast<int>(type)));
}

}  // namespace

absl::StatusOr<std::string> Encode(const Message& message) {
  return std::visit(EncodeVisitor{}, message);
}

absl::StatusOr<std::string> EncodeCommand(const CommandLine& command) {
  Writer w;
  w.Command(command);
  if (w.body().size() > kMaxCommandBytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the encoded command is ", w.body().size(), " bytes, over the limit of ",
        kMaxCommandBytes));
  }
  return w.body();
}

absl::StatusOr<CommandLine> DecodeCommandBytes(absl::string_view bytes) {
  if (bytes.size() > kMaxCommandBytes) {
    return Bad(absl::StrCat("a command of ", bytes.size(), " bytes, over the limit of ",
                            kMaxCommandBytes));
  }
  PM_ASSIGN_OR_RETURN(Fields fields, Fields::Split(bytes));
  PM_RETURN_IF_ERROR(fields.OnlyThese({FieldTag::kExecutable, FieldTag::kArg,
                                       FieldTag::kEnv, FieldTag::kWorkingDir}));
  return DecodeCommand(fields);
}

absl::StatusOr<Fd> SealCommand(const CommandLine& command) {
  PM_ASSIGN_OR_RETURN(std::string bytes, EncodeCommand(command));
  Fd memfd(memfd_create("pm-shim-command", MFD_CLOEXEC | MFD_ALLOW_SEALING));
  if (!memfd) return ErrnoError("memfd_create", "pm-shim-command");
  for (size_t at = 0; at < bytes.size();) {
    const ssize_t n = write(memfd.get(), bytes.data() + at, bytes.size() - at);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoError("write", "the command memfd");
    at += static_cast<size_t>(n);
  }
  if (fcntl(memfd.get(), F_ADD_SEALS, kCommandSeals | F_SEAL_SEAL) != 0) {
    return ErrnoError("fcntl(F_ADD_SEALS)", "the command memfd");
  }
  return memfd;
}

absl::StatusOr<CommandLine> ReadSealedCommand(int memfd) {
  const int seals = fcntl(memfd, F_GET_SEALS);
  if (seals < 0) {
    return Annotate(ErrnoError("fcntl(F_GET_SEALS)", "the command memfd"),
                    "the command fd is not a memfd");
  }
  if ((seals & kCommandSeals) != kCommandSeals) {
    return Bad(absl::StrCat("the command memfd is not sealed (seals ", seals, ")"));
  }
  struct stat st;
  if (fstat(memfd, &st) != 0) return ErrnoError("fstat", "the command memfd");
  if (st.st_size < 0 || static_cast<uint64_t>(st.st_size) > kMaxCommandBytes) {
    return Bad(absl::StrCat("a command memfd of ", st.st_size, " bytes, over the limit of ",
                            kMaxCommandBytes));
  }
  std::string bytes(static_cast<size_t>(st.st_size), '\0');
  for (size_t at = 0; at < bytes.size();) {
    const ssize_t n = pread(memfd, bytes.data() + at, bytes.size() - at,
                            static_cast<off_t>(at));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoError("pread", "the command memfd");
    if (n == 0) return Bad("the command memfd is shorter than its size");
    at += static_cast<size_t>(n);
  }
  return DecodeCommandBytes(bytes);
}

absl::StatusOr<std::optional<Fd>> SpillLargeCommand(Spawn& spawn, uint32_t fd_index) {
  if (spawn.command_memfd || Encode(spawn).ok()) return std::nullopt;
  PM_ASSIGN_OR_RETURN(Fd memfd, SealCommand(spawn.command));
  spawn.command_memfd = fd_index;
  // Still too large without the command: something else is (a cgroup path).
  PM_RETURN_IF_ERROR(Encode(spawn).status());
  return memfd;
}

absl::Status LoadSpawnCommand(Spawn& spawn, absl::Span<const Fd> fds) {
  if (!spawn.command_memfd) return absl::OkStatus();
  if (*spawn.command_memfd >= fds.size()) {
    return Bad(absl::StrCat("command memfd index ", *spawn.command_memfd, " but ",
                            fds.size(), " fds attached"));
  }
  PM_ASSIGN_OR_RETURN(spawn.command, ReadSealedCommand(fds[*spawn.command_memfd].get()));
  return absl::OkStatus();
}

absl::StatusOr<Message> Decode(absl::string_view datagram, size_t fd_count) {
  if (datagram.size() > kMaxMessageBytes) {
    return Bad(absl::StrCat(datagram.size(), " bytes, over the limit of ",
                            kMaxMessageBytes));
  }
  if (datagram.size() < kHeaderBytes) {
    return Bad(absl::StrCat("truncated header (", datagram.size(), " of ",
                            kHeaderBytes, " bytes)"));
  }
  const uint64_t version = GetLe(datagram, 2);
  const uint64_t type = GetLe(datagram.substr(2), 2);
  const uint64_t length = GetLe(datagram.substr(4), 4);
  if (version != kProtocolVersion) {
    return Bad(absl::StrCat("version ", version, ", this side speaks ",
                            kProtocolVersion));
  }
  if (length != datagram.size() - kHeaderBytes) {
    return Bad(absl::StrCat("the header says ", length, " body bytes, the datagram has ",
                            datagram.size() - kHeaderBytes));
  }
  if (type < static_cast<uint64_t>(MessageType::kSpawn) ||
      type > static_cast<uint64_t>(MessageType::kRunStarted)) {
    return Bad(absl::StrCat("unknown type ", type));
  }
  if (fd_count > kMaxFds) return Bad(absl::StrCat(fd_count, " fds attached"));
  PM_ASSIGN_OR_RETURN(Fields fields, Fields::Split(datagram.substr(kHeaderBytes)));
  return DecodeBody(static_cast<MessageType>(type), fields, fd_count);
}

absl::Status SendMessage(int socket, const Message& message,
                         absl::Span<const int> fds) {
  if (fds.size() > kMaxFds) {
    return absl::InvalidArgumentError(absl::StrCat(fds.size(), " fds, over ", kMaxFds));
  }
  PM_ASSIGN_OR_RETURN(std::string datagram, Encode(message));
  iovec iov{datagram.data(), datagram.size()};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxFds)];
  if (!fds.empty()) {
    msg.msg_control = control;
    msg.msg_controllen = CMSG_SPACE(sizeof(int) * fds.size());
    cmsghdr* cmsg = CMSG_FIRSTHDR(&msg);
    cmsg->cmsg_level = SOL_SOCKET;
    cmsg->cmsg_type = SCM_RIGHTS;
    cmsg->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
    memcpy(CMSG_DATA(cmsg), fds.data(), sizeof(int) * fds.size());
  }
  ssize_t n;
  do {
    n = sendmsg(socket, &msg, MSG_NOSIGNAL);
  } while (n < 0 && errno == EINTR);
  if (n < 0) {
    return ErrnoStatus(absl::StrCat("sendmsg(shim ", MessageName(message), ")"), errno);
  }
  return absl::OkStatus();
}

absl::StatusOr<Received> ReceiveMessage(int socket) {
  // The datagram's size first (MSG_PEEK | MSG_TRUNC gives its whole
  // length), so the buffer is what it needs: most messages are tens of
  // bytes, and a kMaxMessageBytes buffer each time was an mmap, a munmap
  // and its page faults per message. One byte more tells a datagram over
  // the limit.
  ssize_t size;
  do {
    size = recv(socket, nullptr, 0, MSG_PEEK | MSG_TRUNC);
  } while (size < 0 && errno == EINTR);
  if (size < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
    return absl::UnavailableError("recvmsg(shim socket): nothing to read");
  }
  if (size < 0) return ErrnoStatus("recv(shim socket, MSG_PEEK)", errno);
  std::string buffer(std::min<size_t>(static_cast<size_t>(size), kMaxMessageBytes) + 1,
                     '\0');
  iovec iov{buffer.data(), buffer.size()};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxFds)];
  msg.msg_control = control;
  msg.msg_controllen = sizeof(control);
  ssize_t n;
  do {
    n = recvmsg(socket, &msg, MSG_CMSG_CLOEXEC);
  } while (n < 0 && errno == EINTR);
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
    return absl::UnavailableError("recvmsg(shim socket): nothing to read");
  }
  if (n < 0) return ErrnoStatus("recvmsg(shim socket)", errno);
  // Own whatever fds came, before any check can return.
  Received received;
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    const size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < count; ++i) {
      int fd;
      memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
      received.fds.emplace_back(fd);
    }
  }
  if (n == 0 && received.fds.empty()) {
    return absl::NotFoundError("shim socket: end of stream");
  }
  if ((msg.msg_flags & MSG_TRUNC) != 0 || static_cast<size_t>(n) > kMaxMessageBytes) {
    return Bad(absl::StrCat("datagram over the limit of ", kMaxMessageBytes, " bytes"));
  }
  if ((msg.msg_flags & MSG_CTRUNC) != 0) {
    // The kernel drops the fds it cannot install: too many were attached,
    // or this process has no fd left for them.
    return absl::ResourceExhaustedError(absl::StrCat(
        "shim message: its attached fds were not received (MSG_CTRUNC: more "
        "than ", kMaxFds, " attached, or this process is out of fds)"));
  }
  PM_ASSIGN_OR_RETURN(received.message,
                      Decode(absl::string_view(buffer.data(), n), received.fds.size()));
  return received;
}

absl::string_view MessageName(const Message& message) {
  static constexpr absl::string_view kNames[] = {
      "Spawn",     "Spawned",   "SpawnFailed", "Exited",     "Hello",     "Closed",
      "ForkShim",  "ShimForked", "NoRestart",  "Restarting", "RunStarted"};
  return kNames[message.index()];
}

}  // namespace pm::shim
