// Resource limits and isolation as a user types them on `pm start` and
// `pm run`: the values of --memory, --cpus, --pids, --io-weight and
// --isolate, parsed into the StartRequest's Limits and Isolation.
//
//   PM_ASSIGN_OR_RETURN(uint64_t bytes, ParseByteSize("--memory", "256M"));
//   // bytes == 256 << 20
//   PM_RETURN_IF_ERROR(AddIsolation("pid,net", request));
//   // request.isolate() == {ISOLATION_PID, ISOLATION_NET}
//
// Every error is INVALID_ARGUMENT with a message fit for "pm: run: <message>"
// that names the flag, the value and what would be accepted. The ranges are
// the supervisor's (common/limit_ranges.h), checked here too so that a typo
// is a usage error (exit 2) before anything is sent.
#ifndef PM_CLI_LIMITS_H_
#define PM_CLI_LIMITS_H_

#include <cstdint>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/limit_ranges.h"
#include "pm/v1/process_manager.pb.h"

namespace pm::cli {

// A size in bytes: a plain number of bytes ("1048576"), or a number with a
// binary unit K, M, G or T (1K = 1024), in either case, optionally followed
// by "i", "iB" or "B" ("256M", "256MiB", "1.5g"). A fraction needs a unit
// and is rounded down to whole bytes. `flag` ("--memory") names the value in
// errors: INVALID_ARGUMENT for anything else, for 0, and past 2^64-1.
absl::StatusOr<uint64_t> ParseByteSize(absl::string_view flag,
                                       absl::string_view text);

// --cpus: a decimal number of cores in [kMinCpus, kMaxCpus] ("0.5", "2").
absl::StatusOr<double> ParseCpus(absl::string_view text);

// --pids: a whole number of tasks, 1 to 2^32-1.
absl::StatusOr<uint32_t> ParsePids(absl::string_view text);

// --io-weight: a whole number in [kMinIoWeight, kMaxIoWeight].
absl::StatusOr<uint32_t> ParseIoWeight(absl::string_view text);

// Adds the namespaces of a comma-separated --isolate value ("pid,net",
// "mount"; names in any case) to `request`, each once however often it is
// named. INVALID_ARGUMENT for an empty or unknown name.
absl::Status AddIsolation(absl::string_view list,
                          pm::v1::StartRequest& request);

}  // namespace pm::cli

#endif  // PM_CLI_LIMITS_H_
