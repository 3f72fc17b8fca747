#include "supervisor/supervisor_service.h"

#include "common/metadata.h"
#include "common/status.h"

namespace pm::supervisor {

grpc::ServerUnaryReactor* SupervisorService::Start(
    grpc::CallbackServerContext* context, const pm::v1::StartRequest* request,
    pm::v1::StartResponse* response) {
  // The gateway names the authenticated user in pm-owner (and strips any a
  // remote client sent); local callers are trusted by the socket's mode.
  auto metadata = [context](const char* key) {
    auto it = context->client_metadata().find(key);
    return it == context->client_metadata().end()
               ? std::string()
               : std::string(it->second.data(), it->second.size());
  };
  Owner owner{metadata(kOwnerMetadataKey), metadata(kOwnerUserMetadataKey)};
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
