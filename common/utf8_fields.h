// Refusing proto3 `string` fields that are not UTF-8 with INVALID_ARGUMENT
// naming the field, instead of protobuf's silent parse failure.
//
// protobuf 3.21 will not parse a proto3 message one of whose `string` fields
// is not valid UTF-8. Inside gRPC that failure becomes a bare UNIMPLEMENTED
// (a server parsing a request) or INTERNAL (a client parsing an answer),
// with only a libprotobuf ERROR line in the log. A server that takes its
// request as raw bytes (a WithRawCallbackMethod_X handler) parses it with
// ParseStrict and answers what was wrong:
//
//   class MyService final
//       : public Svc::WithRawCallbackMethod_Start<Svc::Service> {
//     grpc::ServerUnaryReactor* Start(grpc::CallbackServerContext* context,
//                                     const grpc::ByteBuffer* request,
//                                     grpc::ByteBuffer* response) override {
//       grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
//       absl::StatusOr<pm::v1::StartRequest> parsed =
//           pm::ParseStrict<pm::v1::StartRequest>(*request);
//       if (!parsed.ok()) {
//         // INVALID_ARGUMENT "args[1] is not valid UTF-8 (byte 0xe9 at 3);
//         // send it in args_bytes"
//         reactor->Finish(pm::ToGrpcStatus(parsed.status()));
//         return reactor;
//       }
//       pm::v1::StartResponse answer = ...;
//       *response = pm::SerializeToByteBuffer(answer);
//       reactor->Finish(grpc::Status::OK);
//       return reactor;
//     }
//   };
//
// A client checks a message it built before sending it (protobuf's
// serializer sends it anyway, after a log line):
//
//   PM_RETURN_IF_ERROR(pm::CheckUtf8Fields(request));
//
// Messages name the field by its path from the top message: `executable`,
// `args[1]`, `env["LANG"]`, `a key of env`, `spec.working_dir`,
// `processes[2].args[0]`; when the message holding the field has a field
// named `<field>_bytes` (the convention of pm's protos for a bytes form),
// they say to send the value there. They never quote the value itself (it
// may be a secret): only the first bad byte and its offset.
#ifndef PM_COMMON_UTF8_FIELDS_H_
#define PM_COMMON_UTF8_FIELDS_H_

#include <google/protobuf/descriptor.h>
#include <google/protobuf/message.h>
#include <grpcpp/support/byte_buffer.h>

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace pm {

// Walks `wire`, a serialized message of `type`, and checks that the payload
// of every proto3 `string` field is valid UTF-8 (common/utf8.h), in nested
// messages, repeated fields and map keys and values too. Fields `type` does
// not know are skipped, as protobuf keeps them unparsed. Returns OK, or
// INVALID_ARGUMENT: the first field that is not UTF-8, named as above; or
// "malformed <type>: ..." for bytes that are not a message (truncated,
// a bad tag or wire type, nested more than 100 deep). Never crashes on
// garbage; reads `wire` in place, copying nothing.
absl::Status CheckUtf8Fields(const google::protobuf::Descriptor& type,
                             absl::string_view wire);

// The same check on a message in memory, through reflection: what a client
// runs before sending (serializing it to check would log protobuf's error).
absl::Status CheckUtf8Fields(const google::protobuf::Message& message);

// CheckUtf8Fields(message's type, wire), then parses `wire` into `message`.
// INVALID_ARGUMENT as above, or "malformed <type>" if protobuf still refuses
// it. `message` is cleared first.
absl::Status ParseStrictInto(absl::string_view wire,
                             google::protobuf::Message& message);

// A gRPC message's bytes, in one piece. INVALID_ARGUMENT if gRPC cannot
// give them (a buffer it failed to read).
absl::StatusOr<std::string> ByteBufferToString(const grpc::ByteBuffer& buffer);

// `message` as the bytes of a gRPC message, for a raw handler's response.
grpc::ByteBuffer SerializeToByteBuffer(const google::protobuf::Message& message);

// A message of type T parsed from raw request bytes, with the check above.
template <typename T>
absl::StatusOr<T> ParseStrict(absl::string_view wire) {
  T message;
  absl::Status parsed = ParseStrictInto(wire, message);
  if (!parsed.ok()) return parsed;
  return message;
}

template <typename T>
absl::StatusOr<T> ParseStrict(const grpc::ByteBuffer& buffer) {
  absl::StatusOr<std::string> wire = ByteBufferToString(buffer);
  if (!wire.ok()) return wire.status();
  return ParseStrict<T>(*wire);
}

}  // namespace pm

#endif  // PM_COMMON_UTF8_FIELDS_H_
