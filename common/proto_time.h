// absl::Time / absl::Duration <-> google.protobuf.Timestamp / Duration.
#ifndef PM_COMMON_PROTO_TIME_H_
#define PM_COMMON_PROTO_TIME_H_

#include <google/protobuf/duration.pb.h>
#include <google/protobuf/timestamp.pb.h>

#include "absl/time/time.h"

namespace pm {

google::protobuf::Timestamp ToProtoTimestamp(absl::Time time);
absl::Time FromProtoTimestamp(const google::protobuf::Timestamp& timestamp);
google::protobuf::Duration ToProtoDuration(absl::Duration duration);
absl::Duration FromProtoDuration(const google::protobuf::Duration& duration);

}  // namespace pm

#endif  // PM_COMMON_PROTO_TIME_H_
