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
//
// A request with a string field that is not UTF-8 (an id, or an argument,
// env entry or path sent in its string field rather than its bytes form)
// is refused before it is sent, with INVALID_ARGUMENT naming the field:
// "args[1] is not valid UTF-8 (byte 0xe9 at 3); send it in args_bytes".
// Arguments, environment entries and paths that are not UTF-8 go in the
// StartRequest's bytes forms (see process_manager.proto); a status shows
// them in its bytes fields.
//
// The remote implementation talks to the gateway (mutual TLS and basic
// auth) with the same interface, so a program is the same either way:
//
//   pm::RemoteOptions remote;
//   remote.target = "localhost:8080";
//   remote.ca_file = "certs/dev/ca.pem";
//   remote.cert_file = "certs/dev/client.pem";
//   remote.key_file = "certs/dev/client.key";
//   remote.user = "demo";
//   remote.password_file = "certs/dev/demo.password";
//   PM_ASSIGN_OR_RETURN(std::unique_ptr<pm::Client> client,
//                       pm::Client::ConnectRemote(remote));
#ifndef PM_CLIENT_CLIENT_H_
#define PM_CLIENT_CLIENT_H_

#include <memory>
#include <string>

#include <functional>

#include <grpcpp/support/client_callback.h>

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

// A stream of events (Watch), as OutputStream is of output.
class EventStream {
 public:
  virtual ~EventStream() = default;
  // False at the end of the stream (or on error, or after Cancel).
  virtual bool Next(pm::v1::Event* event) = 0;
  // Blocks until the server has attached the stream.
  virtual void WaitUntilAttached() = 0;
  // Ends the stream; the server side is cancelled too.
  virtual void Cancel() = 0;
  // After Next() returned false: CANCELLED after Cancel(), the service's
  // error otherwise.
  virtual absl::Status Finish() = 0;
};

// How to reach the gateway. The password is never put on a command line
// (it would show in `ps`): give it here, or the file holding it.
struct RemoteOptions {
  // "host:port" of the gateway, e.g. "localhost:8080". The gateway's
  // certificate must be valid for `host`.
  std::string target;
  // PEM files: the CA the gateway's certificate chains to, and this
  // client's certificate and key (issued by the CA the gateway trusts).
  std::string ca_file;
  std::string cert_file;
  std::string key_file;
  std::string user;
  // The password, or (when empty) the first line of `password_file`.
  std::string password;
  std::string password_file;
};

// A Start made on someone's behalf.
struct StartOptions {
  // Who asked, recorded as ProcessStatus.owner. Only the gateway sets it
  // (from the authenticated user); the local client sends it to the
  // supervisor as `pm-owner` metadata on the trusted unix socket.
  std::string owner;
  // The user alone (ProcessStatus.owner_user), sent as `pm-owner-user`.
  std::string owner_user;
};

// How the local client calls the services.
struct LocalOptions {
  // For a program that makes a few calls and exits (the `pm` command): the
  // unary calls (Start, Stop, Signal, Remove, GetStatus, List, Resolve) go
  // over an HTTP/2 connection of their own each (h2_unary.h), without
  // gRPC's runtime, which costs such a program more than its calls; Wait,
  // the streams and the async calls stay on gRPC, started at their first
  // use. A service that restarted is found at once (each call connects
  // anew).
  bool one_shot = false;
};

class Client {
 public:
  virtual ~Client() = default;

  // Connects (lazily) to the services whose sockets are in `runtime_dir`.
  static absl::StatusOr<std::unique_ptr<Client>> ConnectLocal(
      const std::string& runtime_dir, const LocalOptions& options = {});

  // Connects (lazily) to a gateway over mutual TLS with basic auth. Errors:
  // INVALID_ARGUMENT (a missing option), NOT_FOUND / PERMISSION_DENIED (a
  // file that cannot be read, named). Calls then fail as the gateway says:
  // UNAUTHENTICATED (no or malformed credentials), PERMISSION_DENIED (wrong
  // user or password), UNAVAILABLE (unreachable, or the TLS handshake was
  // refused, e.g. for a certificate the gateway does not trust).
  static absl::StatusOr<std::unique_ptr<Client>> ConnectRemote(
      const RemoteOptions& options);

  virtual absl::StatusOr<pm::v1::StartResponse> Start(
      const pm::v1::StartRequest& request) = 0;
  virtual absl::StatusOr<pm::v1::StopResponse> Stop(
      const pm::v1::StopRequest& request) = 0;
  virtual absl::StatusOr<pm::v1::ProcessStatus> GetStatus(
      absl::string_view id) = 0;
  virtual absl::StatusOr<pm::v1::ListResponse> List() = 0;
  // Filtered (see pm.v1.ListRequest). The default: List() for an empty
  // request, else UNIMPLEMENTED.
  virtual absl::StatusOr<pm::v1::ListResponse> List(
      const pm::v1::ListRequest& request);

  // Every call that takes an id takes a name or a unique prefix of an id
  // too (see pm.v1.StopRequest). Resolve gives the full id such a
  // reference names: `ref` itself when it is a full id, without a call.
  // NOT_FOUND, or FAILED_PRECONDITION for an ambiguous prefix (listing the
  // candidates). The default asks GetStatus(ref) for the id.
  virtual absl::StatusOr<std::string> Resolve(absl::string_view ref);
  virtual std::unique_ptr<OutputStream> StreamOutput(
      const pm::v1::StreamOutputRequest& request) = 0;
  // A signal to the process's group or leader (see pm.v1.SignalRequest);
  // the removal of an ended process's record and output (pm.v1.Remove).
  // The defaults return UNIMPLEMENTED.
  virtual absl::StatusOr<pm::v1::SignalResponse> Signal(
      const pm::v1::SignalRequest& request);
  virtual absl::StatusOr<pm::v1::RemoveResponse> Remove(
      const pm::v1::RemoveRequest& request);
  // The processes' events (see pm.v1.WatchRequest); request.id may be a
  // name or a prefix (resolved once). The default: a stream refused with
  // UNIMPLEMENTED.
  virtual std::unique_ptr<EventStream> Watch(const pm::v1::WatchRequest& request);
  // The final status once the process has ended; DEADLINE_EXCEEDED after
  // `timeout`.
  virtual absl::StatusOr<pm::v1::ProcessStatus> Wait(
      absl::string_view id, absl::Duration timeout) = 0;

  // Start with options. The default handles an empty owner as Start() and
  // refuses an owner with UNIMPLEMENTED (an implementation that cannot
  // record it must not drop it silently).
  virtual absl::StatusOr<pm::v1::StartResponse> StartWithOptions(
      const pm::v1::StartRequest& request, const StartOptions& options);

  // Callback forms for servers that must not hold a thread per call (the
  // gateway). The caller owns `context` (set its deadline; TryCancel()
  // cancels the backend call), `request`, `response` and `reactor`, which
  // must outlive the call.
  //
  // StreamOutputAsync binds `reactor` to a new call and returns OK; the
  // caller then calls reactor->StartRead(...) and reactor->StartCall(), as
  // with any gRPC ClientReadReactor, and OnDone reports the end.
  // WaitAsync and StartAsync start the call and return OK; `done` then runs
  // once, on a gRPC thread, with the service's status (StartAsync records
  // options.owner as StartWithOptions does). The defaults return
  // UNIMPLEMENTED and touch nothing.
  virtual absl::Status StreamOutputAsync(
      grpc::ClientContext* context, const pm::v1::StreamOutputRequest* request,
      grpc::ClientReadReactor<pm::v1::OutputChunk>* reactor);
  virtual absl::Status WaitAsync(grpc::ClientContext* context,
                                 const pm::v1::WaitRequest* request,
                                 pm::v1::ProcessStatus* response,
                                 std::function<void(grpc::Status)> done);
  virtual absl::Status StartAsync(grpc::ClientContext* context,
                                  const pm::v1::StartRequest* request,
                                  const StartOptions& options,
                                  pm::v1::StartResponse* response,
                                  std::function<void(grpc::Status)> done);
  // The same for Stop, GetStatus and List, so that a server never holds a
  // thread for a call (the gateway serves everything on the callback API).
  virtual absl::Status StopAsync(grpc::ClientContext* context,
                                 const pm::v1::StopRequest* request,
                                 pm::v1::StopResponse* response,
                                 std::function<void(grpc::Status)> done);
  virtual absl::Status GetStatusAsync(grpc::ClientContext* context,
                                      const pm::v1::GetStatusRequest* request,
                                      pm::v1::ProcessStatus* response,
                                      std::function<void(grpc::Status)> done);
  virtual absl::Status ListAsync(grpc::ClientContext* context,
                                 const pm::v1::ListRequest* request,
                                 pm::v1::ListResponse* response,
                                 std::function<void(grpc::Status)> done);
  // As StreamOutputAsync; request->id must be a full id (resolve first).
  virtual absl::Status WatchAsync(grpc::ClientContext* context,
                                  const pm::v1::WatchRequest* request,
                                  grpc::ClientReadReactor<pm::v1::Event>* reactor);
  virtual absl::Status SignalAsync(grpc::ClientContext* context,
                                   const pm::v1::SignalRequest* request,
                                   pm::v1::SignalResponse* response,
                                   std::function<void(grpc::Status)> done);
  virtual absl::Status RemoveAsync(grpc::ClientContext* context,
                                   const pm::v1::RemoveRequest* request,
                                   pm::v1::RemoveResponse* response,
                                   std::function<void(grpc::Status)> done);
  // Resolve among the processes of `owner_user` only (empty: all), for a
  // server that acts for one user: another user's process is never
  // matched, nor listed as a candidate. The callback forms above take full
  // ids only: resolve first. `done` runs once, on a gRPC thread (or here,
  // at once, for a full id). The default returns UNIMPLEMENTED.
  virtual absl::Status ResolveAsync(
      grpc::ClientContext* context, const std::string& ref,
      const std::string& owner_user,
      std::function<void(absl::StatusOr<std::string>)> done);
};

}  // namespace pm

#endif  // PM_CLIENT_CLIENT_H_
