// ReaderOutputStream: pm::OutputStream over a synchronous gRPC ClientReader,
// shared by the local and the remote Library (internal to client/).
//
//   return std::make_unique<ReaderOutputStream>(
//       [&](grpc::ClientContext* c) { return stub->StreamOutput(c, request); },
//       [socket](const grpc::Status& s) { return BackendStatus(s, ...); });
#ifndef PM_CLIENT_READER_STREAM_H_
#define PM_CLIENT_READER_STREAM_H_

#include <functional>
#include <memory>

#include <grpcpp/grpcpp.h>
#include <grpcpp/support/sync_stream.h>

#include "absl/status/status.h"
#include "client/client.h"
#include "pm/v1/process_manager.grpc.pb.h"

namespace pm {

// `Interface` (OutputStream, EventStream) over a ClientReader of `Message`.
template <typename Interface, typename Message>
class ReaderStream final : public Interface {
 public:
  using Reader = grpc::ClientReader<Message>;
  // `open` starts the call on the given context; `to_status` turns its final
  // gRPC status into the Library's (naming the service it came from).
  ReaderStream(
      const std::function<std::unique_ptr<Reader>(grpc::ClientContext*)>& open,
      std::function<absl::Status(const grpc::Status&)> to_status)
      : to_status_(std::move(to_status)), reader_(open(&context_)) {}

  bool Next(Message* message) override { return reader_->Read(message); }
  void WaitUntilAttached() override { reader_->WaitForInitialMetadata(); }
  void Cancel() override { context_.TryCancel(); }
  absl::Status Finish() override { return to_status_(reader_->Finish()); }

 private:
  std::function<absl::Status(const grpc::Status&)> to_status_;
  grpc::ClientContext context_;
  std::unique_ptr<Reader> reader_;
};

// The stream of a call refused before it was sent: nothing, then the
// refusal.
template <typename Interface, typename Message>
class RefusedStream final : public Interface {
 public:
  explicit RefusedStream(absl::Status status) : status_(std::move(status)) {}
  bool Next(Message*) override { return false; }
  void WaitUntilAttached() override {}
  void Cancel() override {}
  absl::Status Finish() override { return status_; }

 private:
  const absl::Status status_;
};

using ReaderOutputStream = ReaderStream<OutputStream, pm::v1::OutputChunk>;
using RefusedOutputStream = RefusedStream<OutputStream, pm::v1::OutputChunk>;
using ReaderEventStream = ReaderStream<EventStream, pm::v1::Event>;
using RefusedEventStream = RefusedStream<EventStream, pm::v1::Event>;

}  // namespace pm

#endif  // PM_CLIENT_READER_STREAM_H_
