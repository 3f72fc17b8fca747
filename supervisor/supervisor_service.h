// SupervisorService: the gRPC face of Supervisor on its unix socket.
//
//   SupervisorService service(supervisor.get());
//   pm::ServeUntilSignal(pm::Service::kSupervisor, dir, {&service});
//
// Thin: converts protos and statuses, nothing else. Start and Stop are
// callback reactors finished by the supervisor when the work is done (Start:
// spawned, recorded, log open; Stop: the tree is gone), so neither a backend
// round trip nor a 10 s grace period holds a thread.
#ifndef PM_SUPERVISOR_SUPERVISOR_SERVICE_H_
#define PM_SUPERVISOR_SUPERVISOR_SERVICE_H_

#include "pm/internal/v1/internal.grpc.pb.h"
#include "supervisor/supervisor.h"

namespace pm::supervisor {

class SupervisorService final
    : public pm::internal::v1::Supervisor::WithCallbackMethod_Start<
          pm::internal::v1::Supervisor::WithCallbackMethod_Stop<
              pm::internal::v1::Supervisor::Service>> {
 public:
  explicit SupervisorService(Supervisor* supervisor)
      : supervisor_(supervisor) {}

  grpc::ServerUnaryReactor* Start(grpc::CallbackServerContext* context,
                                  const pm::v1::StartRequest* request,
                                  pm::v1::StartResponse* response) override;
  grpc::ServerUnaryReactor* Stop(grpc::CallbackServerContext* context,
                                 const pm::v1::StopRequest* request,
                                 pm::v1::StopResponse* response) override;

 private:
  Supervisor* supervisor_;
};

}  // namespace pm::supervisor

#endif  // PM_SUPERVISOR_SUPERVISOR_SERVICE_H_
