#include "supervisor/supervisor_service.h"

#include "common/metadata.h"
#include "common/status.h"
#include "common/utf8_fields.h"

namespace pm::supervisor {
namespace {

// The callback that finishes `reactor` with the supervisor's answer,
// serialized into `response`.
template <typename Response>
std::function<void(absl::StatusOr<Response>)> FinishWith(
    grpc::ServerUnaryReactor* reactor, grpc::ByteBuffer* response) {
  return [reactor, response](absl::StatusOr<Response> result) {
    if (!result.ok()) {
      reactor->Finish(ToGrpcStatus(result.status()));
      return;
    }
    *response = SerializeToByteBuffer(*result);
    reactor->Finish(grpc::Status::OK);
  };
}

}  // namespace

grpc::ServerUnaryReactor* SupervisorService::Start(
    grpc::CallbackServerContext* context, const grpc::ByteBuffer* request,
    grpc::ByteBuffer* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  absl::StatusOr<pm::v1::StartRequest> parsed =
      ParseStrict<pm::v1::StartRequest>(*request);
  if (!parsed.ok()) {
    reactor->Finish(ToGrpcStatus(parsed.status()));
    return reactor;
  }
  // The gateway names the authenticated user in pm-owner (and strips any a
  // remote client sent); local callers are trusted by the socket's mode.
  auto metadata = [context](const char* key) {
    auto it = context->client_metadata().find(key);
    return it == context->client_metadata().end()
               ? std::string()
               : std::string(it->second.data(), it->second.size());
  };
  Owner owner{metadata(kOwnerMetadataKey), metadata(kOwnerUserMetadataKey)};
  supervisor_->Start(*parsed, std::move(owner),
                     FinishWith<pm::v1::StartResponse>(reactor, response));
  return reactor;
}

grpc::ServerUnaryReactor* SupervisorService::Stop(
    grpc::CallbackServerContext* context, const grpc::ByteBuffer* request,
    grpc::ByteBuffer* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  absl::StatusOr<pm::v1::StopRequest> parsed =
      ParseStrict<pm::v1::StopRequest>(*request);
  if (!parsed.ok()) {
    reactor->Finish(ToGrpcStatus(parsed.status()));
    return reactor;
  }
  supervisor_->Stop(*parsed, FinishWith<pm::v1::StopResponse>(reactor, response));
  return reactor;
}

grpc::ServerUnaryReactor* SupervisorService::Signal(
    grpc::CallbackServerContext* context, const grpc::ByteBuffer* request,
    grpc::ByteBuffer* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  absl::StatusOr<pm::v1::SignalRequest> parsed =
      ParseStrict<pm::v1::SignalRequest>(*request);
  if (!parsed.ok()) {
    reactor->Finish(ToGrpcStatus(parsed.status()));
    return reactor;
  }
  supervisor_->Signal(*parsed,
                      FinishWith<pm::v1::SignalResponse>(reactor, response));
  return reactor;
}

grpc::ServerUnaryReactor* SupervisorService::Remove(
    grpc::CallbackServerContext* context, const grpc::ByteBuffer* request,
    grpc::ByteBuffer* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  absl::StatusOr<pm::v1::RemoveRequest> parsed =
      ParseStrict<pm::v1::RemoveRequest>(*request);
  if (!parsed.ok()) {
    reactor->Finish(ToGrpcStatus(parsed.status()));
    return reactor;
  }
  supervisor_->Remove(*parsed,
                      FinishWith<pm::v1::RemoveResponse>(reactor, response));
  return reactor;
}

}  // namespace pm::supervisor
