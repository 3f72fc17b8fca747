// The gateway's pm.v1.ProcessManager: each call is handed to the Library
// (pm::Client), which routes it to the local services. No process logic
// lives here; the gateway adds who is calling, what they may see, and caps.
//
//   std::unique_ptr<pm::Client> local = *pm::Client::ConnectLocal(dir);
//   pm::gateway::GatewayEnv env{local.get(), users, audit, quotas};
//   pm::gateway::GatewayService remote(env, pm::gateway::Door::kRemote);
//   builder.RegisterService(&remote);
//
// Who: on the TCP door every call's caller is its own verified user
// (RemoteCaller, basic_auth.h); on the local unix socket, an admin.
// Authorization: a user sees and acts on only the processes it started
// (ProcessStatus.owner_user); List leaves out the others, and every call
// that names another user's process (GetStatus, Stop, Signal, Remove, Wait,
// StreamOutput, Watch) answers NOT_FOUND with the message an unknown id gets, so ids of others
// neither work nor leak. Admins (pm_users add --admin) and local callers see
// everything. Start records the caller as the owner; nothing the client
// sends can set it.
//
// Threads: every method is a callback reactor on the Library's callback
// forms, so no call holds a thread while a backend works or a process runs,
// and there is no thread pool to exhaust. The client's deadline is each
// backend call's deadline, and a client that cancels (or goes away) cancels
// the backend call in flight.
//
// A cluster (env.router set): a call on a process of another host that is
// up (Stop, Signal, Remove, Wait, GetStatus, StreamOutput, a Watch of one
// process) is forwarded to that host's gateway with the caller's own
// credentials, which that gateway checks again; a Start goes to the host
// it names, or to the one with the fewest live processes (PlaceStart).
// While the host is down, GetStatus and Wait answer from this host's copy
// of its records (STATE_UNKNOWN) and the others are UNAVAILABLE naming it.
// A call on the local socket carries no user and is not forwarded.
//
// Caps (on the TCP door, per user; UserQuotas): StreamOutput, Watch and
// Wait calls open at once, and starts per second, answered RESOURCE_EXHAUSTED
// naming the flag. Every call is written to the audit log (audit_log.h)
// when it ends: user, certificate subject, peer, method, process id, code.
#ifndef PM_GATEWAY_GATEWAY_SERVICE_H_
#define PM_GATEWAY_GATEWAY_SERVICE_H_

#include <grpcpp/grpcpp.h>

#include "client/client.h"
#include "gateway/audit_log.h"
#include "gateway/basic_auth.h"
#include "gateway/cluster_router.h"
#include "gateway/user_quotas.h"
#include "gateway/users.h"
#include "pm/v1/process_manager.grpc.pb.h"

namespace pm::gateway {

// What the service works with; each must outlive it and be usable from any
// thread.
struct GatewayEnv {
  pm::Client* client = nullptr;
  // Required on the remote door (admin flags).
  UserStore* users = nullptr;
  // Optional: no audit when null.
  AuditLog* audit = nullptr;
  // Optional: no caps when null.
  UserQuotas* quotas = nullptr;
  // In a cluster of hosts (the gateway's --node): where processes are,
  // and the other hosts' gateways to forward calls to. Null: one host.
  ClusterRouter* router = nullptr;
};

// Which door a service instance serves.
enum class Door {
  kRemote,  // TCP with mutual TLS and basic auth: per-user identity, caps
  kLocal,   // the unix socket in the 0700 runtime dir: an admin, no caps
};

// Every method takes its request as raw bytes and parses it with
// ParseStrict (common/utf8_fields.h): a request that protobuf would refuse
// (a string field that is not UTF-8, garbage) is INVALID_ARGUMENT naming the
// field, answered and audited like any call, where gRPC's own parsing would
// answer a bare UNIMPLEMENTED and log a protobuf error.
using GatewayServiceBase = pm::v1::ProcessManager::WithRawCallbackMethod_Start<
    pm::v1::ProcessManager::WithRawCallbackMethod_Stop<
        pm::v1::ProcessManager::WithRawCallbackMethod_GetStatus<
            pm::v1::ProcessManager::WithRawCallbackMethod_List<
                pm::v1::ProcessManager::WithRawCallbackMethod_Wait<
                    pm::v1::ProcessManager::WithRawCallbackMethod_StreamOutput<
                        pm::v1::ProcessManager::WithRawCallbackMethod_Signal<
                            pm::v1::ProcessManager::WithRawCallbackMethod_Remove<
                                pm::v1::ProcessManager::WithRawCallbackMethod_Watch<
                                    pm::v1::ProcessManager::Service>>>>>>>>>;

class GatewayService final : public GatewayServiceBase {
 public:
  GatewayService(GatewayEnv env, Door door) : env_(env), door_(door) {}

  grpc::ServerUnaryReactor* Start(grpc::CallbackServerContext* context,
                                  const grpc::ByteBuffer* request,
                                  grpc::ByteBuffer* response) override;
  grpc::ServerUnaryReactor* Stop(grpc::CallbackServerContext* context,
                                 const grpc::ByteBuffer* request,
                                 grpc::ByteBuffer* response) override;
  grpc::ServerUnaryReactor* GetStatus(grpc::CallbackServerContext* context,
                                      const grpc::ByteBuffer* request,
                                      grpc::ByteBuffer* response) override;
  // As Stop: resolved among the caller's own, then authorized.
  grpc::ServerUnaryReactor* Signal(grpc::CallbackServerContext* context,
                                   const grpc::ByteBuffer* request,
                                   grpc::ByteBuffer* response) override;
  grpc::ServerUnaryReactor* Remove(grpc::CallbackServerContext* context,
                                   const grpc::ByteBuffer* request,
                                   grpc::ByteBuffer* response) override;
  grpc::ServerUnaryReactor* List(grpc::CallbackServerContext* context,
                                 const grpc::ByteBuffer* request,
                                 grpc::ByteBuffer* response) override;
  grpc::ServerUnaryReactor* Wait(grpc::CallbackServerContext* context,
                                 const grpc::ByteBuffer* request,
                                 grpc::ByteBuffer* response) override;
  grpc::ServerWriteReactor<grpc::ByteBuffer>* StreamOutput(
      grpc::CallbackServerContext* context, const grpc::ByteBuffer* request) override;
  // Every event of the caller's own processes (an admin's: of all), or of
  // the one process the request names, resolved and authorized as for
  // StreamOutput.
  grpc::ServerWriteReactor<grpc::ByteBuffer>* Watch(
      grpc::CallbackServerContext* context, const grpc::ByteBuffer* request) override;

 private:
  // A server stream relayed from the Library (StreamOutput, Watch).
  template <typename Stream>
  grpc::ServerWriteReactor<grpc::ByteBuffer>* Relay(
      grpc::CallbackServerContext* context, const grpc::ByteBuffer& raw);
  Caller CallerOf(const grpc::CallbackServerContext& context) const;
  // A stream slot for the caller (none needed when local or uncapped).
  absl::StatusOr<UserQuotas::Lease> OpenStream(const Caller& caller) const;

  const GatewayEnv env_;
  const Door door_;
};

// The answer to an id the caller may not see: the same NOT_FOUND an id that
// was never used gets from the registry.
grpc::Status NoSuchProcess(const std::string& id);

}  // namespace pm::gateway

#endif  // PM_GATEWAY_GATEWAY_SERVICE_H_
