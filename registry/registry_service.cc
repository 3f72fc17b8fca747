#include "registry/registry_service.h"

#include <utility>

#include "common/status.h"

namespace pm::registry {
namespace {

// Finishes the call with `result`: its value into `response`, or its status.
template <typename T>
grpc::ServerUnaryReactor* Finish(grpc::CallbackServerContext* context,
                                 absl::StatusOr<T> result, T* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  if (result.ok()) *response = *std::move(result);
  reactor->Finish(ToGrpcStatus(result.status()));
  return reactor;
}

}  // namespace

grpc::ServerUnaryReactor* RegistryService::CreateRecord(
    grpc::CallbackServerContext* context,
    const pm::internal::v1::CreateRecordRequest* request,
    pm::v1::ProcessStatus* response) {
  return Finish(context, registry_->CreateRecord(*request), response);
}

grpc::ServerUnaryReactor* RegistryService::UpdateRecord(
    grpc::CallbackServerContext* context,
    const pm::internal::v1::UpdateRecordRequest* request,
    pm::v1::ProcessStatus* response) {
  return Finish(context, registry_->UpdateRecord(*request), response);
}

grpc::ServerUnaryReactor* RegistryService::GetStatus(
    grpc::CallbackServerContext* context,
    const pm::v1::GetStatusRequest* request, pm::v1::ProcessStatus* response) {
  return Finish(context, registry_->GetStatus(request->id()), response);
}

grpc::ServerUnaryReactor* RegistryService::List(
    grpc::CallbackServerContext* context, const pm::v1::ListRequest*,
    pm::v1::ListResponse* response) {
  return Finish(context, absl::StatusOr<pm::v1::ListResponse>(registry_->List()),
                response);
}

}  // namespace pm::registry
