// The pm Library: the C++ client API of the process manager.
//
//   PM_ASSIGN_OR_RETURN(std::unique_ptr<pm::Client> client,
//                       pm::Client::ConnectLocal(pm::DefaultRuntimeDir()));
//   pm::v1::StartRequest start;
//   start.set_executable("sleep");
//   start.add_args("100");
//   PM_ASSIGN_OR_RETURN(pm::v1::StartResponse started, client->Start(start));
//   PM_ASSIGN_OR_RETURN(pm::v1::ProcessStatus status,
//                       client->GetStatus(started.id()));
//
//   pm::v1::StreamOutputRequest read;
//   read.set_id(started.id());
//   read.set_from_start(true);
//   read.set_follow(true);
//   std::unique_ptr<pm::OutputStream> stream = client->StreamOutput(read);
//   pm::v1::OutputChunk chunk;
//   while (stream->Next(&chunk)) fwrite(chunk.data().data(), 1, ...);
//   PM_RETURN_IF_ERROR(stream->Finish());
//
// One interface, used by the CLI and the gateway alike. The local
// implementation routes each call to the service that owns it, so a request
// takes one obvious path: Start and Stop to the supervisor, GetStatus and
// List and Wait to the registry, StreamOutput to the log_store. Errors are the
// services' own (INVALID_ARGUMENT, NOT_FOUND, FAILED_PRECONDITION,
// RESOURCE_EXHAUSTED, ...); a service that cannot be reached is UNAVAILABLE
// with a message naming the service and its socket.
#ifndef PM_CLIENT_CLIENT_H_
#define PM_CLIENT_CLIENT_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "pm/v1/process_manager.pb.h"

namespace pm {

// A stream of output chunks. Next() blocks for the next chunk; Cancel() may
// be called from any thread (e.g. a SIGINT watcher) to end it early.
class OutputStream {
 public:
  virtual ~OutputStream() = default;
  // False at the end of the stream (or on error, or after Cancel).
  virtual bool Next(pm::v1::OutputChunk* chunk) = 0;
  // Blocks until the server has attached the stream (its headers arrived):
  // from then on, every byte the process writes reaches this reader.
  virtual void WaitUntilAttached() = 0;
  // Ends the stream; the server side is cancelled too.
  virtual void Cancel() = 0;
  // After Next() returned false: OK when the stream ended normally,
  // CANCELLED after Cancel(), the service's error otherwise.
  virtual absl::Status Finish() = 0;
};

class Client {
 public:
  virtual ~Client() = default;

  // Connects (lazily) to the services whose sockets are in `runtime_dir`.
  static absl::StatusOr<std::unique_ptr<Client>> ConnectLocal(
      const std::string& runtime_dir);

  virtual absl::StatusOr<pm::v1::StartResponse> Start(
      const pm::v1::StartRequest& request) = 0;
  virtual absl::StatusOr<pm::v1::StopResponse> Stop(
      const pm::v1::StopRequest& request) = 0;
  virtual absl::StatusOr<pm::v1::ProcessStatus> GetStatus(
      absl::string_view id) = 0;
  virtual absl::StatusOr<pm::v1::ListResponse> List() = 0;
  virtual std::unique_ptr<OutputStream> StreamOutput(
      const pm::v1::StreamOutputRequest& request) = 0;
  // The final status once the process has ended; DEADLINE_EXCEEDED after
  // `timeout`.
  virtual absl::StatusOr<pm::v1::ProcessStatus> Wait(
      absl::string_view id, absl::Duration timeout) = 0;
};

}  // namespace pm

#endif  // PM_CLIENT_CLIENT_H_
