// Status helpers shared by every pm service: those of status_core.h, and
// absl::Status <-> grpc::Status for the RPC layer.
//
//   return pm::ToGrpcStatus(supervisor.Start(request, &reply));
#ifndef PM_COMMON_STATUS_H_
#define PM_COMMON_STATUS_H_

#include <grpcpp/support/status.h>

#include "absl/status/status.h"
#include "common/status_core.h"

namespace pm {

// absl::Status <-> grpc::Status, code and message kept.
grpc::Status ToGrpcStatus(const absl::Status& status);
absl::Status FromGrpcStatus(const grpc::Status& status);

}  // namespace pm

#endif  // PM_COMMON_STATUS_H_
