#include "supervisor/supervisor_service.h"

#include "common/status.h"

namespace pm::supervisor {

grpc::Status SupervisorService::Start(grpc::ServerContext*,
                                      const pm::v1::StartRequest* request,
                                      pm::v1::StartResponse* response) {
  absl::StatusOr<pm::v1::StartResponse> started = supervisor_->Start(*request);
  if (!started.ok()) return ToGrpcStatus(started.status());
  *response = *std::move(started);
  return grpc::Status::OK;
}

grpc::ServerUnaryReactor* SupervisorService::Stop(
    grpc::CallbackServerContext* context, const pm::v1::StopRequest* request,
    pm::v1::StopResponse* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  supervisor_->Stop(*request, [reactor, response](
                                  absl::StatusOr<pm::v1::StopResponse> result) {
    if (!result.ok()) {
      reactor->Finish(ToGrpcStatus(result.status()));
      return;
    }
    *response = *std::move(result);
    reactor->Finish(grpc::Status::OK);
  });
  return reactor;
}

}  // namespace pm::supervisor
