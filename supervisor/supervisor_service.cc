#include "supervisor/supervisor_service.h"

#include "common/metadata.h"
#include "common/status.h"

namespace pm::supervisor {

grpc::Status SupervisorService::Start(grpc::ServerContext* context,
                                      const pm::v1::StartRequest* request,
                                      pm::v1::StartResponse* response) {
  // The gateway names the authenticated user in pm-owner (and strips any a
  // remote client sent); local callers are trusted by the socket's mode.
  std::string owner;
  if (auto it = context->client_metadata().find(kOwnerMetadataKey);
      it != context->client_metadata().end()) {
    owner.assign(it->second.data(), it->second.size());
  }
  absl::StatusOr<pm::v1::StartResponse> started =
      supervisor_->Start(*request, owner);
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
