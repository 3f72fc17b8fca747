#include "client/checked_client.h"

#include <string>
#include <utility>

#include "common/status.h"
#include "common/utf8_fields.h"

namespace pm {
namespace {

// The stream of a refused StreamOutput: no chunk, then the refusal.
class RefusedOutputStream final : public OutputStream {
 public:
  explicit RefusedOutputStream(absl::Status status) : status_(std::move(status)) {}
  bool Next(pm::v1::OutputChunk*) override { return false; }
  void WaitUntilAttached() override {}
  void Cancel() override {}
  absl::Status Finish() override { return status_; }

 private:
  const absl::Status status_;
};

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
  absl::StatusOr<pm::v1::ProcessStatus> GetStatus(absl::string_view id) override {
    PM_RETURN_IF_ERROR(CheckId<pm::v1::GetStatusRequest>(id));
    return client_->GetStatus(id);
  }
  absl::StatusOr<pm::v1::ListResponse> List() override { return client_->List(); }
  std::unique_ptr<OutputStream> StreamOutput(
      const pm::v1::StreamOutputRequest& request) override {
    absl::Status checked = CheckUtf8Fields(request);
    if (!checked.ok()) return std::make_unique<RefusedOutputStream>(checked);
    return client_->StreamOutput(request);
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
