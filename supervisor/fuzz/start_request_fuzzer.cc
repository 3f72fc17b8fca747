// Fuzzes pm::supervisor::ValidateStartRequest, the gate between a Start
// call and Spawn, with a StartRequest parsed from the input bytes the way
// the supervisor's gRPC layer parses one. Inputs that are not a valid
// message (including invalid UTF-8 in a string field, which protobuf
// refuses for proto3) never reach the supervisor and are skipped.
//
// Invariants besides "no crash, no sanitizer report": a refusal is
// INVALID_ARGUMENT with a message, and an accepted request is one Spawn can
// run as given, as its header promises. The command, taken from the string
// or the bytes form of each field as Spawn takes it (CommandLineOf), has a
// non-empty executable, no NUL byte in any string (the child's argv and
// envp are C strings), env names non-empty, without '=' and given once, and
// fits the command caps; limits are in range and isolation values known.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <set>
#include <string>

#include <google/protobuf/stubs/logging.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/command_line.h"
#include "common/limit_ranges.h"
#include "pm/v1/process_manager.pb.h"
#include "supervisor/spawn.h"
#include "testing/fuzz/fuzz_check.h"

namespace {

bool HasNul(const std::string& s) { return s.find('\0') != std::string::npos; }

void CheckAccepted(const pm::v1::StartRequest& request) {
  const std::string shown = request.ShortDebugString().substr(0, 2000);
  absl::StatusOr<pm::CommandLine> command = pm::CommandLineOf(request);
  PM_FUZZ_CHECK(command.ok()) << command.status() << ": " << shown;
  PM_FUZZ_CHECK(!command->executable.empty()) << shown;
  PM_FUZZ_CHECK(!HasNul(command->executable)) << shown;
  PM_FUZZ_CHECK(!HasNul(command->working_dir)) << shown;
  const pm::supervisor::CommandCaps caps;
  PM_FUZZ_CHECK(command->args.size() <= caps.max_args) << shown;
  size_t bytes = command->executable.size() + command->working_dir.size();
  for (const std::string& arg : command->args) {
    PM_FUZZ_CHECK(!HasNul(arg)) << shown;
    bytes += arg.size();
  }
  std::set<std::string> names;
  for (const auto& [name, value] : command->env) {
    PM_FUZZ_CHECK(!name.empty()) << shown;
    PM_FUZZ_CHECK(name.find('=') == std::string::npos) << shown;
    PM_FUZZ_CHECK(!HasNul(name) && !HasNul(value)) << shown;
    PM_FUZZ_CHECK(names.insert(name).second) << name << " twice: " << shown;
    bytes += name.size() + value.size();
  }
  PM_FUZZ_CHECK(bytes <= caps.max_bytes) << shown;
  const double cpus = request.limits().cpus();
  PM_FUZZ_CHECK(cpus == 0 || (cpus >= pm::kMinCpus && cpus <= pm::kMaxCpus)) << shown;
  PM_FUZZ_CHECK(request.limits().io_weight() <= pm::kMaxIoWeight) << shown;
  for (int value : request.isolate()) {
    PM_FUZZ_CHECK(value == pm::v1::ISOLATION_PID ||
                  value == pm::v1::ISOLATION_NET ||
                  value == pm::v1::ISOLATION_MOUNT)
        << shown;
  }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  // Protobuf logs every refused string field; the fuzzer would print little
  // else.
  google::protobuf::SetLogHandler(nullptr);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  pm::v1::StartRequest request;
  if (!request.ParseFromArray(data, static_cast<int>(size))) return 0;
  const absl::Status status = pm::supervisor::ValidateStartRequest(request);
  if (status.ok()) {
    CheckAccepted(request);
  } else {
    PM_FUZZ_CHECK(status.code() == absl::StatusCode::kInvalidArgument)
        << status;
    PM_FUZZ_CHECK(!status.message().empty());
  }
  return 0;
}
