// The defaults of pm::Client's optional methods.
#include "client/client.h"

#include "client/reader_stream.h"

#include "common/names.h"
#include "common/status.h"

namespace pm {

absl::StatusOr<pm::v1::StartResponse> Client::StartWithOptions(
    const pm::v1::StartRequest& request, const StartOptions& options) {
  if (!options.owner.empty() || !options.owner_user.empty()) {
    return absl::UnimplementedError("this client cannot record an owner");
  }
  return Start(request);
}

absl::StatusOr<pm::v1::ListResponse> Client::List(
    const pm::v1::ListRequest& request) {
  if (request.ByteSizeLong() != 0) {
    return absl::UnimplementedError("this client cannot filter List");
  }
  return List();
}

absl::StatusOr<std::string> Client::Resolve(absl::string_view ref) {
  if (IsFullId(ref)) return std::string(ref);
  PM_ASSIGN_OR_RETURN(pm::v1::ProcessStatus status, GetStatus(ref));
  return status.id();
}

absl::Status Client::ResolveAsync(grpc::ClientContext*, const std::string&,
                                  const std::string&,
                                  std::function<void(absl::StatusOr<std::string>)>) {
  return absl::UnimplementedError("this client has no callback Resolve");
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

absl::StatusOr<pm::v1::SignalResponse> Client::Signal(
    const pm::v1::SignalRequest&) {
  return absl::UnimplementedError("this client has no Signal");
}

absl::StatusOr<pm::v1::RemoveResponse> Client::Remove(
    const pm::v1::RemoveRequest&) {
  return absl::UnimplementedError("this client has no Remove");
}

std::unique_ptr<EventStream> Client::Watch(const pm::v1::WatchRequest&) {
  return std::make_unique<RefusedEventStream>(
      absl::UnimplementedError("this client has no Watch"));
}

absl::Status Client::WatchAsync(grpc::ClientContext*, const pm::v1::WatchRequest*,
                                grpc::ClientReadReactor<pm::v1::Event>*) {
  return absl::UnimplementedError("this client has no callback Watch");
}

absl::Status Client::SignalAsync(grpc::ClientContext*, const pm::v1::SignalRequest*,
                                 pm::v1::SignalResponse*,
                                 std::function<void(grpc::Status)>) {
  return absl::UnimplementedError("this client has no callback Signal");
}

absl::Status Client::RemoveAsync(grpc::ClientContext*, const pm::v1::RemoveRequest*,
                                 pm::v1::RemoveResponse*,
                                 std::function<void(grpc::Status)>) {
  return absl::UnimplementedError("this client has no callback Remove");
}

absl::Status Client::StopAsync(grpc::ClientContext*, const pm::v1::StopRequest*,
                               pm::v1::StopResponse*,
                               std::function<void(grpc::Status)>) {
  return absl::UnimplementedError("this client has no callback Stop");
}

absl::Status Client::GetStatusAsync(grpc::ClientContext*,
                                    const pm::v1::GetStatusRequest*,
                                    pm::v1::ProcessStatus*,
                                    std::function<void(grpc::Status)>) {
  return absl::UnimplementedError("this client has no callback GetStatus");
}

absl::Status Client::ListAsync(grpc::ClientContext*, const pm::v1::ListRequest*,
                               pm::v1::ListResponse*,
                               std::function<void(grpc::Status)>) {
  return absl::UnimplementedError("this client has no callback List");
}

}  // namespace pm
