// H2Unary: one gRPC unary call to a local service's unix socket over an
// HTTP/2 connection of its own (Debian's nghttp2), without gRPC's runtime.
//
// A command typed at a shell makes one or two calls and exits; gRPC's
// runtime costs it more than the calls do (its threads started at init,
// the channel's resolver, load balancer and subchannel, and an HTTP/2
// handshake that waits for the server's SETTINGS before the first call).
// Here a call is: connect, one write of the preface, SETTINGS, HEADERS and
// DATA, and the reads of the answer. The wire is gRPC's (HTTP/2, the
// 5-byte message prefix, grpc-status and grpc-message in the trailers), so
// the services serve it as any other call. Only the Library's one-shot
// local client uses it (Client::ConnectLocal with one_shot); streams and
// long calls stay on gRPC.
//
//   pm::v1::ProcessStatus status;
//   absl::Status called = pm::H2Unary(
//       {socket, "/pm.internal.v1.Registry/GetStatus", {}, absl::Now() + absl::Seconds(30)},
//       request, &status);
#ifndef PM_CLIENT_H2_UNARY_H_
#define PM_CLIENT_H2_UNARY_H_

#include <string>
#include <utility>
#include <vector>

#include <google/protobuf/message.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace pm {

struct H2UnaryCall {
  std::string socket;  // the service's unix socket
  std::string method;  // "/package.Service/Method"
  // Request metadata: lower-case keys, printable ASCII values.
  std::vector<std::pair<std::string, std::string>> metadata;
  absl::Time deadline = absl::InfiniteFuture();
};

// The largest answer taken: pm's gRPC channels' cap (common/channel.h,
// kMaxMessageBytes; a List of 10,000 processes is about 2 MiB).
inline constexpr size_t kH2UnaryMaxAnswerBytes = 64 << 20;

// The answer's message bytes, or the call's status as gRPC would give it:
// the server's code and message (grpc-status, grpc-message); for a stream
// reset or an HTTP answer without grpc-status, gRPC's mapping of it;
// UNAVAILABLE saying why when the service cannot be reached or closes the
// connection before answering (the caller names the service and socket);
// DEADLINE_EXCEEDED at the deadline (none: an infinite one);
// RESOURCE_EXHAUSTED past kH2UnaryMaxAnswerBytes; INVALID_ARGUMENT for
// metadata that is no lower-case header name and printable value;
// INTERNAL for an answer that is not HTTP/2.
absl::StatusOr<std::string> H2Unary(const H2UnaryCall& call, absl::string_view request);

// The same with messages: INTERNAL when the answer does not parse.
absl::Status H2Unary(const H2UnaryCall& call, const google::protobuf::Message& request,
                     google::protobuf::Message* response);

}  // namespace pm

#endif  // PM_CLIENT_H2_UNARY_H_
