// Caps on a StreamOutputRequest that the CLI checks before sending and the
// log_store enforces (pm.v1.StreamOutputRequest).
#ifndef PM_COMMON_OUTPUT_REQUEST_H_
#define PM_COMMON_OUTPUT_REQUEST_H_

#include <cstdint>

namespace pm {

// tail_lines at most: the log_store keeps that many offsets while counting.
inline constexpr uint64_t kMaxTailLines = 1000000;

}  // namespace pm

#endif  // PM_COMMON_OUTPUT_REQUEST_H_
