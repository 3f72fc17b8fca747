#include "cli/flags.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace pm::cli {
namespace {

const FlagSpec* FindLong(const std::vector<FlagSpec>& specs,
                         absl::string_view spelled) {
  const std::string name = CanonicalFlagName(spelled);
  for (const FlagSpec& spec : specs) {
    if (CanonicalFlagName(spec.name) == name) return &spec;
  }
  return nullptr;
}

const FlagSpec* FindShort(const std::vector<FlagSpec>& specs, char name) {
  for (const FlagSpec& spec : specs) {
    if (spec.short_name != 0 && spec.short_name == name) return &spec;
  }
  return nullptr;
}

absl::Status SetBool(const FlagSpec& spec, absl::string_view spelled,
                     absl::string_view value, ParsedFlags& flags) {
  if (value != "true" && value != "false") {
    return absl::InvalidArgumentError(absl::StrCat(
        spelled, " takes no value (or true/false), not \"", value, "\""));
  }
  flags.values[spec.name] = {std::string(value)};
  return absl::OkStatus();
}

void SetValue(const FlagSpec& spec, std::string value, ParsedFlags& flags) {
  std::vector<std::string>& values = flags.values[spec.name];
  if (!spec.repeated) values.clear();
  values.push_back(std::move(value));
}

// One word of bundled short flags ("-aq", "-n5", "-qn 5") at args[i]; a
// flag that takes a value takes the rest of the word, or the next word (i
// moves past it).
absl::Status ParseBundle(const std::vector<FlagSpec>& specs,
                         const std::string& arg,
                         const std::vector<std::string>& args, size_t& i,
                         ParsedFlags& flags) {
  for (size_t k = 1; k < arg.size(); ++k) {
    const FlagSpec* spec = FindShort(specs, arg[k]);
    if (spec == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat("unknown flag ", arg));
    }
    if (spec->kind == FlagSpec::kBool) {
      flags.values[spec->name] = {"true"};
      continue;
    }
    if (k + 1 < arg.size()) {
      SetValue(*spec, arg.substr(k + 1), flags);
      return absl::OkStatus();
    }
    if (i + 1 == args.size()) {
      return absl::InvalidArgumentError(
          absl::StrCat("-", std::string(1, arg[k]), " needs a value (-",
                       std::string(1, arg[k]), " ", spec->value_name, ")"));
    }
    SetValue(*spec, args[++i], flags);
    return absl::OkStatus();
  }
  return absl::OkStatus();
}

}  // namespace

std::string CanonicalFlagName(absl::string_view name) {
  std::string canonical(name);
  std::replace(canonical.begin(), canonical.end(), '-', '_');
  return canonical;
}

std::string ParsedFlags::Get(const std::string& name) const {
  auto it = values.find(name);
  return it == values.end() || it->second.empty() ? "" : it->second.back();
}

bool ParsedFlags::GetBool(const std::string& name) const {
  return Get(name) == "true";
}

std::vector<std::string> ParsedFlags::GetAll(const std::string& name) const {
  auto it = values.find(name);
  return it == values.end() ? std::vector<std::string>() : it->second;
}

absl::StatusOr<ParsedFlags> ParseFlags(const std::vector<FlagSpec>& specs,
                                       const std::vector<std::string>& args,
                                       bool stop_at_positional) {
  ParsedFlags flags;
  size_t i = 0;
  for (; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (arg == "--") {
      ++i;
      break;
    }
    // "-" alone is a word (stdin, by convention), not a flag.
    if (arg.size() < 2 || arg[0] != '-') {
      if (stop_at_positional) break;
      flags.positional.push_back(arg);
      continue;
    }
    const bool is_long = arg[1] == '-' || arg.size() > 2;
    const absl::string_view body =
        absl::string_view(arg).substr(arg[1] == '-' ? 2 : 1);
    const size_t eq = body.find('=');
    const absl::string_view spelled_name = body.substr(0, eq);
    const FlagSpec* spec =
        is_long ? FindLong(specs, spelled_name) : FindShort(specs, arg[1]);
    if (spec == nullptr && arg[1] != '-' && arg.size() > 2) {
      // Short flags bundled as getopt takes them: "-aq" is "-a -q", and
      // "-n5" is "-n 5".
      absl::Status bundled = ParseBundle(specs, arg, args, i, flags);
      if (!bundled.ok()) return bundled;
      continue;
    }
    if (spec == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat("unknown flag ", arg));
    }
    const std::string spelled =
        absl::StrCat(arg[1] == '-' ? "--" : "-", spelled_name);
    if (spec->kind == FlagSpec::kBool) {
      const absl::string_view value =
          eq == absl::string_view::npos ? "true" : body.substr(eq + 1);
      absl::Status set = SetBool(*spec, spelled, value, flags);
      if (!set.ok()) return set;
      continue;
    }
    if (eq != absl::string_view::npos) {
      SetValue(*spec, std::string(body.substr(eq + 1)), flags);
      continue;
    }
    if (i + 1 == args.size()) {
      return absl::InvalidArgumentError(absl::StrCat(
          spelled, " needs a value (", spelled, "=", spec->value_name, ")"));
    }
    SetValue(*spec, args[++i], flags);
  }
  for (; i < args.size(); ++i) flags.positional.push_back(args[i]);
  return flags;
}

}  // namespace pm::cli
