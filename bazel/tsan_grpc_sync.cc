// ThreadSanitizer's view of gRPC's completion guarantee, linked into every
// --config=tsan binary and test with bazel/sanitizer_defaults.cc.
//
// gRPC promises that starting a batch of operations happens before the
// completion of that batch is delivered (a reactor's StartWrite before its
// OnWriteDone, a call's arrival before its handler, ...). Debian's libgrpc is
// not built with TSan, and it keeps that promise with atomics and lock-free
// queues TSan cannot see, so every reactor field pm sets before a StartX and
// reads in the reaction on another thread would be reported as a race, in
// pm's own code. This file interposes the C core's entry points the C++
// library goes through (its calls cross from libgrpc++ into libgrpc by the
// PLT, where the executable's definition wins) and tells TSan exactly that
// promise, and no more: a release on the batch's tag when it is started, an
// acquire on the tag when the completion queue hands the completion out
// (grpc_completion_queue_next, which gRPC 1.51's callback threads poll, or
// pluck for blocking calls). Two reactions of one call on two threads stay
// unordered unless pm orders them, so a race between them is still found.
//
// One more promise, of the server's callback API: OnDone and OnCancel run
// after every reaction that dropped the call's last reference. Those drops
// are atomic decrements, some in pm's instrumented copy of the gRPC headers
// (which TSan sees as releases), some inside libgrpc++ (which it does not
// see); the library then schedules OnDone or OnCancel, possibly on an
// executor thread. So the interposed ScheduleOnDone and CallOnCancel
// acquire the counter before handing on.
//
// Only with TSan; elsewhere this file is empty.
#if defined(__has_feature)
#if __has_feature(thread_sanitizer)

#include <grpc/grpc.h>
#include <grpcpp/support/server_callback.h>
#include <sanitizer/tsan_interface.h>

#include "bazel/tsan_real.h"

namespace {

void* Real(const char* symbol) { return pm_tsan::RealFunction(symbol, "libgrpc"); }

void Completed(const grpc_event& event) {
  if (event.type == GRPC_OP_COMPLETE && event.tag != nullptr) {
    __tsan_acquire(event.tag);
  }
}

}  // namespace

extern "C" {

grpc_call_error grpc_call_start_batch(grpc_call* call, const grpc_op* ops,
                                      size_t nops, void* tag, void* reserved) {
  static const auto real =
      reinterpret_cast<grpc_call_error (*)(grpc_call*, const grpc_op*, size_t,
                                           void*, void*)>(
          Real("grpc_call_start_batch"));
  if (tag != nullptr) __tsan_release(tag);
  return real(call, ops, nops, tag, reserved);
}

grpc_call_error grpc_server_request_call(
    grpc_server* server, grpc_call** call, grpc_call_details* details,
    grpc_metadata_array* request_metadata,
    grpc_completion_queue* cq_bound_to_call,
    grpc_completion_queue* cq_for_notification, void* tag_new) {
  static const auto real = reinterpret_cast<grpc_call_error (*)(
      grpc_server*, grpc_call**, grpc_call_details*, grpc_metadata_array*,
      grpc_completion_queue*, grpc_completion_queue*, void*)>(
      Real("grpc_server_request_call"));
  if (tag_new != nullptr) __tsan_release(tag_new);
  return real(server, call, details, request_metadata, cq_bound_to_call,
              cq_for_notification, tag_new);
}

grpc_call_error grpc_server_request_registered_call(
    grpc_server* server, void* registered_method, grpc_call** call,
    gpr_timespec* deadline, grpc_metadata_array* request_metadata,
    grpc_byte_buffer** optional_payload,
    grpc_completion_queue* cq_bound_to_call,
    grpc_completion_queue* cq_for_notification, void* tag_new) {
  static const auto real = reinterpret_cast<grpc_call_error (*)(
      grpc_server*, void*, grpc_call**, gpr_timespec*, grpc_metadata_array*,
      grpc_byte_buffer**, grpc_completion_queue*, grpc_completion_queue*,
      void*)>(Real("grpc_server_request_registered_call"));
  if (tag_new != nullptr) __tsan_release(tag_new);
  return real(server, registered_method, call, deadline, request_metadata,
              optional_payload, cq_bound_to_call, cq_for_notification,
              tag_new);
}

grpc_event grpc_completion_queue_next(grpc_completion_queue* cq,
                                      gpr_timespec deadline, void* reserved) {
  static const auto real = reinterpret_cast<grpc_event (*)(
      grpc_completion_queue*, gpr_timespec, void*)>(
      Real("grpc_completion_queue_next"));
  const grpc_event event = real(cq, deadline, reserved);
  Completed(event);
  return event;
}

grpc_event grpc_completion_queue_pluck(grpc_completion_queue* cq, void* tag,
                                       gpr_timespec deadline, void* reserved) {
  static const auto real = reinterpret_cast<grpc_event (*)(
      grpc_completion_queue*, void*, gpr_timespec, void*)>(
      Real("grpc_completion_queue_pluck"));
  const grpc_event event = real(cq, tag, deadline, reserved);
  Completed(event);
  return event;
}

}  // extern "C"

namespace grpc {
namespace internal {

void ServerCallbackCall::ScheduleOnDone(bool inline_ondone) {
  static const auto real =
      reinterpret_cast<void (*)(ServerCallbackCall*, bool)>(
          Real("_ZN4grpc8internal18ServerCallbackCall14ScheduleOnDoneEb"));
  __tsan_acquire(&callbacks_outstanding_);
  real(this, inline_ondone);
}

void ServerCallbackCall::CallOnCancel(ServerReactor* reactor) {
  static const auto real =
      reinterpret_cast<void (*)(ServerCallbackCall*, ServerReactor*)>(Real(
          "_ZN4grpc8internal18ServerCallbackCall12CallOnCancelEPNS0_"
          "13ServerReactorE"));
  __tsan_acquire(&on_cancel_conditions_remaining_);
  real(this, reactor);
}

}  // namespace internal
}  // namespace grpc

#endif  // __has_feature(thread_sanitizer)
#endif  // defined(__has_feature)
