// Fuzzes what every pm server does first with a request from outside:
// ParseStrictInto (common/utf8_fields.h), the check of every proto3 string
// field for UTF-8 before protobuf parses the bytes. The gateway runs it on
// every request of every client.
//
// Invariants besides "no crash, no sanitizer report", for each request
// type the gateway takes:
//   - the answer is OK or INVALID_ARGUMENT, never anything else;
//   - what it accepted is a message whose every string is UTF-8 by the
//     other implementation too (the in-memory check through reflection):
//     the wire walker and reflection agree on what they let through.
#include <cstddef>
#include <cstdint>
#include <memory>

#include "absl/strings/string_view.h"
#include "common/utf8_fields.h"
#include "pm/v1/process_manager.pb.h"
#include "testing/fuzz/fuzz_check.h"

namespace {

void Check(google::protobuf::Message& message, absl::string_view wire) {
  absl::Status parsed = pm::ParseStrictInto(wire, message);
  PM_FUZZ_CHECK(parsed.ok() || parsed.code() == absl::StatusCode::kInvalidArgument)
      << parsed;
  if (!parsed.ok()) return;
  absl::Status again = pm::CheckUtf8Fields(message);
  PM_FUZZ_CHECK(again.ok()) << message.GetTypeName() << ": " << again;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::string_view wire(reinterpret_cast<const char*>(data), size);
  pm::v1::StartRequest start;
  Check(start, wire);
  pm::v1::StopRequest stop;
  Check(stop, wire);
  pm::v1::StreamOutputRequest stream;
  Check(stream, wire);
  pm::v1::ListRequest list;
  Check(list, wire);
  return 0;
}
