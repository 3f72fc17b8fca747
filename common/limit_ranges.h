// The ranges of a StartRequest's limits: the supervisor refuses a value
// outside them (supervisor/spawn.cc) and the CLI checks them before sending
// (cli/limits.h), so a typo is a usage error. Their one home.
#ifndef PM_COMMON_LIMIT_RANGES_H_
#define PM_COMMON_LIMIT_RANGES_H_

#include <cstdint>

namespace pm {

// limits.cpus, in cores (0: no limit).
inline constexpr double kMinCpus = 0.01;
inline constexpr double kMaxCpus = 100000;
// limits.io_weight (0: the kernel's default weight, 100).
inline constexpr uint32_t kMinIoWeight = 1;
inline constexpr uint32_t kMaxIoWeight = 10000;

}  // namespace pm

#endif  // PM_COMMON_LIMIT_RANGES_H_
