#include "client/checked_client.h"

#include <string>
#include <utility>

#include "client/reader_stream.h"
#include "common/status.h"
#include "common/utf8_fields.h"

namespace pm {
namespace {

template <typename Request>
absl::Status CheckId(absl::string_view id) {
  Request request;
  request.set_id(std::string(id));
  return CheckUtf8Fields(request);
}

class CheckedClient final : public Client {
 public:
  explicit CheckedClient(std::unique_ptr<Client> client)
      : client_(std::move(client)) {}

  absl::StatusOr<pm::v1::StartResponse> Start(
      const pm::v1::StartRequest& request) override {
    PM_RETURN_IF_ERROR(CheckUtf8Fields(request));
    return client_->Start(request);
  }
  absl::StatusOr<pm::v1::StartResponse> StartWithOptions(
      const pm::v1::StartRequest& request, const StartOptions& options) override {
    PM_RETURN_IF_ERROR(CheckUtf8Fields(request));
    return client_->StartWithOptions(request, options);
  }
  absl::StatusOr<pm::v1::StopResponse> Stop(
      const pm::v1::StopRequest& request) override {
    PM_RETURN_IF_ERROR(CheckUtf8Fields(request));
    return client_->Stop(request);
  }
  absl::StatusOr<pm::v1::SignalResponse> Signal(
      const pm::v1::SignalRequest& request) override {
    PM_RETURN_IF_ERROR(CheckUtf8Fields(request));
    return client_->Signal(request);
  }
  absl::StatusOr<pm::v1::RemoveResponse> Remove(
      const pm::v1::RemoveRequest& request) override {
    PM_RETURN_IF_ERROR(CheckUtf8Fields(request));
    return client_->Remove(request);
  }
  absl::StatusOr<pm::v1::ProcessStatus> GetStatus(absl::string_view id) override {
    PM_RETURN_IF_ERROR(CheckId<pm::v1::GetStatusRequest>(id));
    return client_->GetStatus(id);
  }
  absl::StatusOr<pm::v1::ListResponse> List() override { return client_->List(); }
  absl::StatusOr<pm::v1::ListResponse> List(const pm::v1::ListRequest& request) override {
    PM_RETURN_IF_ERROR(CheckUtf8Fields(request));
    return client_->List(request);
  }
  absl::StatusOr<std::string> Resolve(absl::string_view ref) override {
    PM_RETURN_IF_ERROR(CheckId<pm::v1::GetStatusRequest>(ref));
    return client_->Resolve(ref);
  }
  absl::Status ResolveAsync(grpc::ClientContext* context, const std::string& ref,
                            const std::string& owner_user,
                            std::function<void(absl::StatusOr<std::string>)> done) override {
    PM_RETURN_IF_ERROR(CheckId<pm::v1::GetStatusRequest>(ref));
    return client_->ResolveAsync(context, ref, owner_user, std::move(done));
  }
  std::unique_ptr<OutputStream> StreamOutput(
      const pm::v1::StreamOutputRequest& request) override {
    absl::Status checked = CheckUtf8Fields(request);
    if (!checked.ok()) return std::make_unique<RefusedOutputStream>(checked);
    return client_->StreamOutput(request);
  }
  std::unique_ptr<EventStream> Watch(const pm::v1::WatchRequest& request) override {
    absl::Status checked = CheckUtf8Fields(request);
    if (!checked.ok()) return std::make_unique<RefusedEventStream>(checked);
    return client_->Watch(request);
  }
  absl::Status WatchAsync(grpc::ClientContext* context,
                          const pm::v1::WatchRequest* request,
                          grpc::ClientReadReactor<pm::v1::Event>* reactor) override {
    PM_RETURN_IF_ERROR(CheckUtf8Fields(*request));
    return client_->WatchAsync(context, request, reactor);
  }
  absl::StatusOr<pm::v1::ProcessStatus> Wait(absl::string_view id,
                                             absl::Duration timeout) override {
    PM_RETURN_IF_ERROR(CheckId<pm::v1::WaitRequest>(id));
    return client_->Wait(id, timeout);
  }

  absl::Status StreamOutputAsync(
      grpc::ClientContext* context, const pm::v1::StreamOutputRequest* request,
      grpc::ClientReadReactor<pm::v1::OutputChunk>* reactor) override {
    PM_RETURN_IF_ERROR(CheckUtf8Fields(*request));
    return client_->StreamOutputAsync(context, request, reactor);
  }
  absl::Status WaitAsync(grpc::ClientContext* context,
                         const pm::v1::WaitRequest* request,
                         pm::v1::ProcessStatus* response,
                         std::function<void(grpc::Status)> done) override {
    PM_RETURN_IF_ERROR(CheckUtf8Fields(*request));
    return client_->WaitAsync(context, request, response, std::move(done));
  }
  absl::Status StartAsync(grpc::ClientContext* context,
                          const pm::v1::StartRequest* request,
                          const StartOptions& options,
                          pm::v1::StartResponse* response,
                          std::function<void(grpc::Status)> done) override {
    PM_RETURN_IF_ERROR(CheckUtf8Fields(*request));
    return client_->StartAsync(context, request, options, response,
                               std::move(done));
  }
  absl::Status StopAsync(grpc::ClientContext* context,
                         const pm::v1::StopRequest* request,
                         pm::v1::StopResponse* response,
                         std::function<void(grpc::Status)> done) override {
    PM_RETURN_IF_ERROR(CheckUtf8Fields(*request));
    return client_->StopAsync(context, request, response, std::move(done));
  }
  absl::Status SignalAsync(grpc::ClientContext* context,
                           const pm::v1::SignalRequest* request,
                           pm::v1::SignalResponse* response,
                           std::function<void(grpc::Status)> done) override {
    PM_RETURN_IF_ERROR(CheckUtf8Fields(*request));
    return client_->SignalAsync(context, request, response, std::move(done));
  }
  absl::Status RemoveAsync(grpc::ClientContext* context,
                           const pm::v1::RemoveRequest* request,
                           pm::v1::RemoveResponse* response,
                           std::function<void(grpc::Status)> done) override {
    PM_RETURN_IF_ERROR(CheckUtf8Fields(*request));
    return client_->RemoveAsync(context, request, response, std::move(done));
  }
  absl::Status GetStatusAsync(grpc::ClientContext* context,
                              const pm::v1::GetStatusRequest* request,
                              pm::v1::ProcessStatus* response,
                              std::function<void(grpc::Status)> done) override {
    PM_RETURN_IF_ERROR(CheckUtf8Fields(*request));
    return client_->GetStatusAsync(context, request, response, std::move(done));
  }
  absl::Status ListAsync(grpc::ClientContext* context,
                         const pm::v1::ListRequest* request,
                         pm::v1::ListResponse* response,
                         std::function<void(grpc::Status)> done) override {
    return client_->ListAsync(context, request, response, std::move(done));
  }

 private:
  const std::unique_ptr<Client> client_;
};

}  // namespace

std::unique_ptr<Client> WithRequestChecks(std::unique_ptr<Client> client) {
  return std::make_unique<CheckedClient>(std::move(client));
}

}  // namespace pm
