#include "common/command_line.h"

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "common/utf8.h"

namespace pm {
namespace {

absl::Status CheckNoNul(absl::string_view what, absl::string_view value) {
  if (value.find('\0') != absl::string_view::npos) {
    return absl::InvalidArgumentError(absl::StrCat(what, " contains a NUL byte"));
  }
  return absl::OkStatus();
}

// `field` or `field_bytes`, never both: the value of whichever is set.
absl::StatusOr<std::string> OneForm(absl::string_view field,
                                    const std::string& text,
                                    const std::string& bytes) {
  if (!text.empty() && !bytes.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        field, " and ", field, "_bytes are both set; send one of them"));
  }
  const bool from_bytes = !bytes.empty();
  const std::string& value = from_bytes ? bytes : text;
  PM_RETURN_IF_ERROR(
      CheckNoNul(from_bytes ? absl::StrCat(field, "_bytes") : field, value));
  return value;
}

absl::StatusOr<std::vector<std::string>> Args(
    const pm::v1::StartRequest& request) {
  if (!request.args().empty() && !request.args_bytes().empty()) {
    return absl::InvalidArgumentError(
        "args and args_bytes are both set; send one of them");
  }
  const bool from_bytes = !request.args_bytes().empty();
  const auto& args = from_bytes ? request.args_bytes() : request.args();
  for (int i = 0; i < args.size(); ++i) {
    PM_RETURN_IF_ERROR(CheckNoNul(
        absl::StrCat(from_bytes ? "args_bytes[" : "args[", i, "]"), args[i]));
  }
  return std::vector<std::string>(args.begin(), args.end());
}

// The checks of one env entry; `where` names it ("env", "env_bytes[2]").
absl::Status CheckEnvEntry(absl::string_view where, const std::string& name,
                           const std::string& value) {
  if (name.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(where, " has an empty name"));
  }
  const std::string shown = EscapeInvalidUtf8(name);
  if (name.find('=') != std::string::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, " name \"", shown, "\" contains '='"));
  }
  PM_RETURN_IF_ERROR(
      CheckNoNul(absl::StrCat(where, " name \"", shown, "\""), name));
  return CheckNoNul(absl::StrCat(where, " value of ", shown), value);
}

absl::StatusOr<std::vector<std::pair<std::string, std::string>>> Env(
    const pm::v1::StartRequest& request) {
  std::vector<std::pair<std::string, std::string>> env;
  env.reserve(request.env().size() + request.env_bytes().size());
  // Where each name came from, to name both places of a duplicate.
  absl::flat_hash_map<absl::string_view, std::string> seen;
  for (const auto& [name, value] : request.env()) {
    PM_RETURN_IF_ERROR(CheckEnvEntry("env", name, value));
    seen.emplace(name, "env");
    env.emplace_back(name, value);
  }
  for (int i = 0; i < request.env_bytes().size(); ++i) {
    const pm::v1::EnvVar& var = request.env_bytes(i);
    const std::string where = absl::StrCat("env_bytes[", i, "]");
    PM_RETURN_IF_ERROR(CheckEnvEntry(where, var.name(), var.value()));
    auto [it, added] = seen.emplace(var.name(), where);
    if (!added) {
      return absl::InvalidArgumentError(
          absl::StrCat("env name \"", EscapeInvalidUtf8(var.name()),
                       "\" is given twice (in ", it->second, " and ", where,
                       ")"));
    }
    env.emplace_back(var.name(), var.value());
  }
  return env;
}

// `value` into the string field when it is UTF-8, else the bytes field.
void Echo(absl::string_view value, std::string* text, std::string* bytes) {
  const bool utf8 = IsValidUtf8(value);
  std::string* set = utf8 ? text : bytes;
  std::string* cleared = utf8 ? bytes : text;
  set->assign(value.data(), value.size());
  cleared->clear();
}

// All of `args` into the string list when every one is UTF-8, else all
// into the bytes list: one list or the other, so their order is never lost.
void EchoArgs(const std::vector<std::string>& args,
              google::protobuf::RepeatedPtrField<std::string>* text,
              google::protobuf::RepeatedPtrField<std::string>* bytes) {
  text->Clear();
  bytes->Clear();
  bool all_utf8 = true;
  for (const std::string& arg : args) all_utf8 = all_utf8 && IsValidUtf8(arg);
  auto* list = all_utf8 ? text : bytes;
  list->Reserve(static_cast<int>(args.size()));
  for (const std::string& arg : args) list->Add(std::string(arg));
}

}  // namespace

absl::StatusOr<CommandLine> CommandLineOf(const pm::v1::StartRequest& request) {
  CommandLine command;
  PM_ASSIGN_OR_RETURN(command.executable,
                      OneForm("executable", request.executable(),
                              request.executable_bytes()));
  if (command.executable.empty()) {
    return absl::InvalidArgumentError(
        "executable is empty (set executable or executable_bytes)");
  }
  PM_ASSIGN_OR_RETURN(command.args, Args(request));
  PM_ASSIGN_OR_RETURN(command.env, Env(request));
  PM_ASSIGN_OR_RETURN(command.working_dir,
                      OneForm("working_dir", request.working_dir(),
                              request.working_dir_bytes()));
  return command;
}

void PutCommandLine(const CommandLine& command, pm::v1::StartRequest& request) {
  Echo(command.executable, request.mutable_executable(),
       request.mutable_executable_bytes());
  Echo(command.working_dir, request.mutable_working_dir(),
       request.mutable_working_dir_bytes());
  EchoArgs(command.args, request.mutable_args(), request.mutable_args_bytes());
  request.clear_env();
  request.clear_env_bytes();
  for (const auto& [name, value] : command.env) {
    if (IsValidUtf8(name) && IsValidUtf8(value)) {
      (*request.mutable_env())[name] = value;
    } else {
      pm::v1::EnvVar* var = request.add_env_bytes();
      var->set_name(name);
      var->set_value(value);
    }
  }
}

void EchoCommandLine(const CommandLine& command, pm::v1::ProcessStatus& status) {
  Echo(command.executable, status.mutable_executable(),
       status.mutable_executable_bytes());
  Echo(command.working_dir, status.mutable_working_dir(),
       status.mutable_working_dir_bytes());
  EchoArgs(command.args, status.mutable_args(), status.mutable_args_bytes());
}

void EchoResolvedExecutable(absl::string_view path,
                            pm::v1::ProcessStatus& status) {
  Echo(path, status.mutable_resolved_executable(),
       status.mutable_resolved_executable_bytes());
}

std::string ExecutableOf(const pm::v1::ProcessStatus& status) {
  return status.executable_bytes().empty() ? status.executable()
                                           : status.executable_bytes();
}

std::string ExecutableOf(const pm::v1::StartRequest& request) {
  return request.executable_bytes().empty() ? request.executable()
                                            : request.executable_bytes();
}

std::vector<std::string> ArgsOf(const pm::v1::ProcessStatus& status) {
  const auto& args =
      status.args_bytes().empty() ? status.args() : status.args_bytes();
  return std::vector<std::string>(args.begin(), args.end());
}

std::string WorkingDirOf(const pm::v1::ProcessStatus& status) {
  return status.working_dir_bytes().empty() ? status.working_dir()
                                            : status.working_dir_bytes();
}

std::string ResolvedExecutableOf(const pm::v1::ProcessStatus& status) {
  return status.resolved_executable_bytes().empty()
             ? status.resolved_executable()
             : status.resolved_executable_bytes();
}

}  // namespace pm
