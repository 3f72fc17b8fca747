// The defaults of pm::Client's optional methods.
#include "client/client.h"

namespace pm {

absl::StatusOr<pm::v1::StartResponse> Client::StartWithOptions(
    const pm::v1::StartRequest& request, const StartOptions& options) {
  if (!options.owner.empty()) {
    return absl::UnimplementedError("this client cannot record an owner");
  }
  return Start(request);
}

absl::Status Client::StreamOutputAsync(
    grpc::ClientContext*, const pm::v1::StreamOutputRequest*,
    grpc::ClientReadReactor<pm::v1::OutputChunk>*) {
  return absl::UnimplementedError("this client has no callback StreamOutput");
}

absl::Status Client::WaitAsync(grpc::ClientContext*, const pm::v1::WaitRequest*,
                               pm::v1::ProcessStatus*,
                               std::function<void(grpc::Status)>) {
  return absl::UnimplementedError("this client has no callback Wait");
}

absl::Status Client::StartAsync(grpc::ClientContext*, const pm::v1::StartRequest*,
                                const StartOptions&, pm::v1::StartResponse*,
                                std::function<void(grpc::Status)>) {
  return absl::UnimplementedError("this client has no callback Start");
}

}  // namespace pm
