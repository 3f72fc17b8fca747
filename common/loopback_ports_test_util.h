// Free TCP ports on 127.0.0.1 for tests that must name a port before the
// server that binds it starts (etcd's client and peer URLs, a gateway whose
// address is published to a cluster before it listens, a gateway that must
// come back on its port after a restart).
//
//   PM_ASSIGN_OR_RETURN(std::vector<int> ports, pm::FreeLoopbackPorts(2));
//   // ports[0] != ports[1]; bind them soon: another process may take one.
#ifndef PM_COMMON_LOOPBACK_PORTS_TEST_UTIL_H_
#define PM_COMMON_LOOPBACK_PORTS_TEST_UTIL_H_

#include <vector>

#include "absl/status/statusor.h"

namespace pm {

// `count` distinct TCP ports on 127.0.0.1 that were free a moment ago: all
// are bound to port 0 at once (so they differ), then released. Errors name
// the call that failed (socket, bind, getsockname) and errno.
absl::StatusOr<std::vector<int>> FreeLoopbackPorts(int count);

}  // namespace pm

#endif  // PM_COMMON_LOOPBACK_PORTS_TEST_UTIL_H_
