#include "registry/registry_service.h"

#include <memory>
#include <string>
#include <utility>

#include "absl/synchronization/mutex.h"

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

namespace {

// One Wait call: finished exactly once, by the record's end or by the
// caller's cancellation, whichever comes first.
class WaitReactor final : public grpc::ServerUnaryReactor {
 public:
  WaitReactor(Registry* registry, std::string id, pm::v1::ProcessStatus* response)
      : registry_(registry), id_(std::move(id)), response_(response) {}

  void Begin() {
    auto state = state_;
    uint64_t token = registry_->Wait(
        id_, [state](absl::StatusOr<pm::v1::ProcessStatus> result) {
          absl::MutexLock lock(&state->mu);
          if (state->reactor == nullptr) return;  // cancelled
          WaitReactor* self = state->reactor;
          state->reactor = nullptr;
          if (result.ok()) *self->response_ = *std::move(result);
          self->Finish(ToGrpcStatus(result.status()));
        });
    // `this` may be gone already (answered at once); only `state` is ours.
    absl::MutexLock lock(&state->mu);
    state->token = token;
  }

  void OnCancel() override {
    uint64_t token;
    {
      absl::MutexLock lock(&state_->mu);
      if (state_->reactor == nullptr) return;  // already answered
      state_->reactor = nullptr;
      token = state_->token;
    }
    registry_->CancelWait(id_, token);
    Finish(grpc::Status(grpc::StatusCode::CANCELLED, "wait cancelled"));
  }
  void OnDone() override { delete this; }

 private:
  struct State {
    absl::Mutex mu;
    WaitReactor* reactor = nullptr;  // null once answered or cancelled
    uint64_t token = 0;
  };
  Registry* registry_;
  std::string id_;
  pm::v1::ProcessStatus* response_;
  std::shared_ptr<State> state_ = [this] {
    auto state = std::make_shared<State>();
    state->reactor = this;
    return state;
  }();
};

}  // namespace

grpc::ServerUnaryReactor* RegistryService::Wait(
    grpc::CallbackServerContext*, const pm::v1::WaitRequest* request,
    pm::v1::ProcessStatus* response) {
  auto* reactor = new WaitReactor(registry_, request->id(), response);
  reactor->Begin();
  return reactor;
}

}  // namespace pm::registry
