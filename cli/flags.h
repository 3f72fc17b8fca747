// A subcommand's own flags: gflags cannot repeat a flag (`--env A=1 --env
// B=2`) nor hand everything after `--` over verbatim, so each subcommand
// describes its flags in a table and this small parser reads them.
//
//   const std::vector<FlagSpec> kSpecs = {
//       {"env", FlagSpec::kValue, "K=V", "set a variable", /*repeated=*/true},
//       {"follow", FlagSpec::kBool, "", "keep reading", false, 'f'},
//   };
//   PM_ASSIGN_OR_RETURN(ParsedFlags flags,
//                       ParseFlags(kSpecs, args, /*stop_at_positional=*/true));
//   for (const std::string& kv : flags.GetAll("env")) ...
//
// Accepted forms, as in gflags: `--name=value`, `--name value`, `-name`,
// `--name` for a bool (or `--name=true|false`), `-x` for a short name.
// Dashes and underscores in names are the same (`--inherit-env` is
// `--inherit_env`). `--` ends the flags: every later word is positional.
#ifndef PM_CLI_FLAGS_H_
#define PM_CLI_FLAGS_H_

#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace pm::cli {

struct FlagSpec {
  enum Kind { kBool, kValue };
  // The name as help shows it ("inherit-env"); it also matches with
  // underscores for dashes and the other way round.
  std::string name;
  Kind kind = kBool;
  // What the value looks like in help, e.g. "DURATION".
  std::string value_name;
  std::string help;
  // Whether every occurrence is kept (else the last one wins).
  bool repeated = false;
  // A one-letter alias (`-f`), or 0.
  char short_name = 0;
};

struct ParsedFlags {
  // Values by FlagSpec::name, in command-line order; "true"/"false" for
  // bools.
  std::map<std::string, std::vector<std::string>> values;
  // The non-flag words, in order, including all words after `--` (or, with
  // stop_at_positional, after the first positional word).
  std::vector<std::string> positional;

  bool Has(const std::string& name) const { return values.count(name) > 0; }
  // The last value of `name`, or "" when absent.
  std::string Get(const std::string& name) const;
  // A bool flag's value: false when absent.
  bool GetBool(const std::string& name) const;
  std::vector<std::string> GetAll(const std::string& name) const;
};

// Parses `args` against `specs`. With `stop_at_positional`, the first word
// that is not a flag ends the flags, as `--` does (for `pm start sleep 1`,
// whose command may carry flags of its own). INVALID_ARGUMENT naming the
// flag for an unknown flag, a missing value or a bad bool value.
absl::StatusOr<ParsedFlags> ParseFlags(const std::vector<FlagSpec>& specs,
                                       const std::vector<std::string>& args,
                                       bool stop_at_positional);

// "inherit_env" for "inherit-env".
std::string CanonicalFlagName(absl::string_view name);

}  // namespace pm::cli

#endif  // PM_CLI_FLAGS_H_
