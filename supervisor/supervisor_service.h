// SupervisorService: the gRPC face of Supervisor on its unix socket.
//
//   SupervisorService service(supervisor.get());
//   pm::ServeUntilSignal(pm::Service::kSupervisor, dir, {&service});
//
// Thin: converts protos and statuses, nothing else. Start and Stop are
// callback reactors finished by the supervisor when the work is done (Start:
// spawned, recorded, log open; Stop: the tree is gone), so neither a backend
// round trip nor a 10 s grace period holds a thread.
//
// Both take their request as raw bytes and parse it with pm::ParseStrict
// (common/utf8_fields.h): a string field that is not UTF-8 (an argument in
// Latin-1 sent in `args` rather than `args_bytes`) is answered
// INVALID_ARGUMENT naming the field, where gRPC's own parsing would answer a
// bare UNIMPLEMENTED.
#ifndef PM_SUPERVISOR_SUPERVISOR_SERVICE_H_
#define PM_SUPERVISOR_SUPERVISOR_SERVICE_H_

#include "pm/internal/v1/internal.grpc.pb.h"
#include "supervisor/supervisor.h"

namespace pm::supervisor {

class SupervisorService final
    : public pm::internal::v1::Supervisor::WithRawCallbackMethod_Start<
          pm::internal::v1::Supervisor::WithRawCallbackMethod_Stop<
              pm::internal::v1::Supervisor::WithRawCallbackMethod_Signal<
                  pm::internal::v1::Supervisor::WithRawCallbackMethod_Remove<
                      pm::internal::v1::Supervisor::Service>>>> {
 public:
  explicit SupervisorService(Supervisor* supervisor)
      : supervisor_(supervisor) {}

  // A pm.v1.StartRequest in, a pm.v1.StartResponse out.
  grpc::ServerUnaryReactor* Start(grpc::CallbackServerContext* context,
                                  const grpc::ByteBuffer* request,
                                  grpc::ByteBuffer* response) override;
  // A pm.v1.StopRequest in, a pm.v1.StopResponse out.
  grpc::ServerUnaryReactor* Stop(grpc::CallbackServerContext* context,
                                 const grpc::ByteBuffer* request,
                                 grpc::ByteBuffer* response) override;
  // A pm.v1.SignalRequest in, a pm.v1.SignalResponse out.
  grpc::ServerUnaryReactor* Signal(grpc::CallbackServerContext* context,
                                   const grpc::ByteBuffer* request,
                                   grpc::ByteBuffer* response) override;
  // A pm.v1.RemoveRequest in, a pm.v1.RemoveResponse out.
  grpc::ServerUnaryReactor* Remove(grpc::CallbackServerContext* context,
                                   const grpc::ByteBuffer* request,
                                   grpc::ByteBuffer* response) override;

 private:
  Supervisor* supervisor_;
};

}  // namespace pm::supervisor

#endif  // PM_SUPERVISOR_SUPERVISOR_SERVICE_H_
