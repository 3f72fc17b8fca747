#include "supervisor/supervisor_service.h"

#include "common/metadata.h"
#include "common/status.h"

namespace pm::supervisor {

grpc::ServerUnaryReactor* SupervisorService::Start(
    grpc::CallbackServerContext* context, const pm::v1::StartRequest* request,
    pm::v1::StartResponse* response) {
  // The gateway names the authenticated user in pm-owner (and strips any a
  // remote client sent); local callers are trusted by the socket's mode.
  std::string owner;
  if (auto it = context->client_metadata().find(kOwnerMetadataKey);
      it != context->client_metadata().end()) {
    owner.assign(it->second.data(), it->second.size());
  }
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  supervisor_->Start(*request, std::move(owner),
                     [reactor, response](absl::StatusOr<pm::v1::StartResponse> started) {
                       if (!started.ok()) {
                         reactor->Finish(ToGrpcStatus(started.status()));
                         return;
                       }
                       *response = *std::move(started);
                       reactor->Finish(grpc::Status::OK);
                     });
  return reactor;
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
