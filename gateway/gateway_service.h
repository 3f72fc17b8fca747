// The gateway's pm.v1.ProcessManager: each call is handed to the Library
// (pm::Client), which routes it to the local services. No process logic
// lives here; the gateway adds only who is calling.
//
//   std::unique_ptr<pm::Client> local = *pm::Client::ConnectLocal(dir);
//   pm::gateway::GatewayService service(local.get());
//   builder.RegisterService(&service);
//
// Start records the caller (OwnerOf: the authenticated user and the client
// certificate's subject) as the process's owner through
// Client::StartWithOptions; nothing the client sends can set it.
//
// Threads: Stop, GetStatus and List are short and synchronous, served from
// gRPC's bounded sync thread pool. Start (answered by the backend's answer,
// with no thread hop), Wait (a long poll) and StreamOutput (open for a
// process's whole life when following) are callback reactors on the
// Library's callback forms, so a waiting or following client holds no
// thread. The client's deadline is the backend call's deadline, and a client
// that cancels (or goes away) cancels the backend call.
#ifndef PM_GATEWAY_GATEWAY_SERVICE_H_
#define PM_GATEWAY_GATEWAY_SERVICE_H_

#include <grpcpp/grpcpp.h>

#include "client/client.h"
#include "pm/v1/process_manager.grpc.pb.h"

namespace pm::gateway {

using GatewayServiceBase = pm::v1::ProcessManager::WithCallbackMethod_Start<
    pm::v1::ProcessManager::WithCallbackMethod_Wait<
        pm::v1::ProcessManager::WithCallbackMethod_StreamOutput<
            pm::v1::ProcessManager::Service>>>;

class GatewayService final : public GatewayServiceBase {
 public:
  // `client` must outlive the service and be usable from any thread.
  explicit GatewayService(pm::Client* client) : client_(client) {}

  grpc::ServerUnaryReactor* Start(grpc::CallbackServerContext* context,
                                  const pm::v1::StartRequest* request,
                                  pm::v1::StartResponse* response) override;
  grpc::Status Stop(grpc::ServerContext* context,
                    const pm::v1::StopRequest* request,
                    pm::v1::StopResponse* response) override;
  grpc::Status GetStatus(grpc::ServerContext* context,
                         const pm::v1::GetStatusRequest* request,
                         pm::v1::ProcessStatus* response) override;
  grpc::Status List(grpc::ServerContext* context,
                    const pm::v1::ListRequest* request,
                    pm::v1::ListResponse* response) override;

  grpc::ServerUnaryReactor* Wait(grpc::CallbackServerContext* context,
                                 const pm::v1::WaitRequest* request,
                                 pm::v1::ProcessStatus* response) override;
  grpc::ServerWriteReactor<pm::v1::OutputChunk>* StreamOutput(
      grpc::CallbackServerContext* context,
      const pm::v1::StreamOutputRequest* request) override;

 private:
  pm::Client* client_;
};

}  // namespace pm::gateway

#endif  // PM_GATEWAY_GATEWAY_SERVICE_H_
