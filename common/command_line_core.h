// A process's command as the kernel takes it: bytes, in no particular
// encoding. The plain struct, without the protos that carry it
// (common/command_line.h converts), so that pm-shim and the spawn code link
// no protobuf.
//
//   pm::CommandLine command{"printf", {"%s", "caf\xe9"}, {{"LANG", "C"}}, ""};
//   const std::string* lang = command.Getenv("LANG");
#ifndef PM_COMMON_COMMAND_LINE_CORE_H_
#define PM_COMMON_COMMAND_LINE_CORE_H_

#include <string>
#include <utility>
#include <vector>

#include "absl/strings/string_view.h"

namespace pm {

struct CommandLine {
  // As given: a path, or a name to look up on PATH. Never empty.
  std::string executable;
  // After argv[0].
  std::vector<std::string> args;
  // NAME, VALUE pairs: `env` (in its map's order), then `env_bytes` (in
  // order). Names are unique, non-empty, without '='.
  std::vector<std::pair<std::string, std::string>> env;
  // Empty: "/" (SpawnCommand).
  std::string working_dir;

  // The value of `name` in env, or nullptr.
  const std::string* Getenv(absl::string_view name) const;
};

}  // namespace pm

#endif  // PM_COMMON_COMMAND_LINE_CORE_H_
