#include "common/names.h"

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "common/uuid.h"

namespace pm {
namespace {

// Quoted for a message, at most 64 bytes of it, escaped.
std::string Quoted(absl::string_view text) {
  std::string shown = absl::CHexEscape(text.substr(0, 64));
  if (text.size() > 64) absl::StrAppend(&shown, "...");
  return absl::StrCat("\"", shown, "\"");
}

bool NameChar(char c) { return absl::ascii_isalnum(c) || c == '_' || c == '.' || c == '-'; }

// What is wrong with `text` as a name-like token of at most `max` of
// NameChar (and `extra`), the first alphanumeric; empty when nothing is.
std::string TokenProblem(absl::string_view text, size_t max, char extra = 0) {
  if (text.empty()) return "is empty";
  if (text.size() > max) {
    return absl::StrCat("is ", text.size(), " characters long (at most ", max, ")");
  }
  if (!absl::ascii_isalnum(text[0])) return "must start with a letter or a digit";
  for (char c : text) {
    if (!NameChar(c) && !(extra != 0 && c == extra)) {
      return absl::StrCat("has '", absl::CHexEscape(absl::string_view(&c, 1)),
                          "': only letters, digits and _ . -",
                          extra != 0 ? absl::StrCat(" ", std::string(1, extra)) : "",
                          " are allowed");
    }
  }
  return "";
}

}  // namespace

bool IsFullId(absl::string_view ref) { return ValidateProcessId(ref).ok(); }

absl::Status ValidateName(absl::string_view name) {
  if (std::string problem = TokenProblem(name, kMaxNameLength); !problem.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("name ", Quoted(name), " ", problem));
  }
  if (IsFullId(name)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "name ", Quoted(name), " is shaped like a process id: a name must not be a UUID"));
  }
  return absl::OkStatus();
}

absl::Status ValidateNodeName(absl::string_view node) {
  if (std::string problem = TokenProblem(node, kMaxNodeNameLength); !problem.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("node ", Quoted(node), " ", problem));
  }
  return absl::OkStatus();
}

absl::Status ValidateLabels(const google::protobuf::Map<std::string, std::string>& labels) {
  if (labels.size() > kMaxLabels) {
    return absl::InvalidArgumentError(absl::StrCat(
        labels.size(), " labels: at most ", kMaxLabels, " are allowed"));
  }
  for (const auto& [key, value] : labels) {
    if (std::string problem = TokenProblem(key, kMaxLabelKeyLength, '/');
        !problem.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("label key ", Quoted(key), " ", problem));
    }
    if (value.size() > kMaxLabelValueLength) {
      return absl::InvalidArgumentError(absl::StrCat(
          "label ", Quoted(key), ": the value is ", value.size(),
          " bytes long (at most ", kMaxLabelValueLength, ")"));
    }
    if (value.find('\0') != std::string::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat("label ", Quoted(key), ": the value has a NUL byte"));
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateRef(absl::string_view ref) {
  if (ref.empty()) {
    return absl::InvalidArgumentError(
        "no process named: give an id, a name or a prefix of an id");
  }
  if (IsFullId(ref)) return absl::OkStatus();
  bool ok = ref.size() <= kMaxNameLength;
  for (char c : ref) ok = ok && NameChar(c);
  if (!ok) {
    return absl::InvalidArgumentError(absl::StrCat(
        "malformed process reference ", Quoted(ref),
        ": want an id (a UUID like 123e4567-e89b-42d3-a456-426614174000), a "
        "name, or a prefix of an id"));
  }
  return absl::OkStatus();
}

bool CouldBeIdPrefix(absl::string_view ref) {
  if (ref.empty() || ref.size() > 36) return false;
  for (char c : ref) {
    if (!absl::ascii_isxdigit(c) && c != '-') return false;
  }
  return true;
}

bool LabelSelector::Matches(
    const google::protobuf::Map<std::string, std::string>& labels) const {
  auto it = labels.find(key);
  if (it == labels.end()) return false;
  return !value.has_value() || it->second == *value;
}

absl::StatusOr<LabelSelector> ParseLabelSelector(absl::string_view text) {
  LabelSelector selector;
  const size_t eq = text.find('=');
  selector.key = std::string(text.substr(0, eq));
  if (eq != absl::string_view::npos) selector.value = std::string(text.substr(eq + 1));
  if (std::string problem = TokenProblem(selector.key, kMaxLabelKeyLength, '/');
      !problem.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "label selector ", Quoted(text), ": want key=value or key; the key ", problem));
  }
  return selector;
}

}  // namespace pm
