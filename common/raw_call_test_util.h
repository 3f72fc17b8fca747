// Test helpers for sending a service what a well-behaved client would not:
// messages written by hand on the wire (a string field holding Latin-1,
// which protobuf's serializer would log about), and unary calls that carry
// them as raw bytes.
//
//   // StartRequest{executable: "/bin/true", args: ["caf\xe9"]}
//   const std::string wire = WireBytes(1, "/bin/true") + WireBytes(2, "caf\xe9");
//   grpc::Status status = RawUnaryCall(
//       channel, "/pm.internal.v1.Supervisor/Start", wire);
#ifndef PM_COMMON_RAW_CALL_TEST_UTIL_H_
#define PM_COMMON_RAW_CALL_TEST_UTIL_H_

#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/synchronization/notification.h"

namespace pm {

// A base-128 varint, as protobuf writes numbers and lengths.
inline std::string WireVarint(uint64_t value) {
  std::string out;
  while (value >= 0x80) {
    out += static_cast<char>((value & 0x7f) | 0x80);
    value >>= 7;
  }
  out += static_cast<char>(value);
  return out;
}

// Field `number` holding `payload` (a string, bytes or a nested message).
inline std::string WireBytes(int number, const std::string& payload) {
  return WireVarint(static_cast<uint64_t>(number) << 3 | 2) +
         WireVarint(payload.size()) + payload;
}

// Field `number` holding the integer `value`.
inline std::string WireInteger(int number, uint64_t value) {
  return WireVarint(static_cast<uint64_t>(number) << 3) + WireVarint(value);
}

// Calls `method` ("/package.Service/Method") with `request` as the
// message's bytes and waits for the answer (30 s at most); the answer's
// bytes go to `response` when given.
inline grpc::Status RawUnaryCall(const std::shared_ptr<grpc::Channel>& channel,
                                 const std::string& method,
                                 const std::string& request,
                                 std::string* response = nullptr) {
  grpc::GenericStub stub(channel);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() +
                       std::chrono::seconds(30));
  grpc::Slice slice(request);
  grpc::ByteBuffer sent(&slice, 1), received;
  absl::Notification done;
  grpc::Status status;
  stub.UnaryCall(&context, method, grpc::StubOptions(), &sent, &received,
                 [&](grpc::Status s) {
                   status = std::move(s);
                   done.Notify();
                 });
  done.WaitForNotification();
  if (status.ok() && response != nullptr) {
    response->clear();
    std::vector<grpc::Slice> slices;
    (void)received.Dump(&slices);
    for (const grpc::Slice& s : slices) {
      response->append(reinterpret_cast<const char*>(s.begin()), s.size());
    }
  }
  return status;
}

}  // namespace pm

#endif  // PM_COMMON_RAW_CALL_TEST_UTIL_H_
