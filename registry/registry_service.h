// The gRPC face of the registry: pm.internal.v1.Registry served from a
// Registry. Each handler converts the call to the Registry's and its
// absl::Status to a grpc::Status; the logic is in registry.h.
//
//   pm::registry::Registry registry(options);
//   pm::registry::RegistryService service(&registry);
//   return pm::ServeUntilSignal(pm::Service::kRegistry, runtime_dir,
//                               {&service});
//
// Status codes are the Registry's: INVALID_ARGUMENT, NOT_FOUND,
// FAILED_PRECONDITION, with their messages. GetStatus and Wait, which
// clients call, take their request as raw bytes parsed with pm::ParseStrict
// (common/utf8_fields.h): an id that is not UTF-8 is INVALID_ARGUMENT
// naming it, not gRPC's bare UNIMPLEMENTED.
#ifndef PM_REGISTRY_REGISTRY_SERVICE_H_
#define PM_REGISTRY_REGISTRY_SERVICE_H_

#include <grpcpp/grpcpp.h>

#include "common/stream_set.h"
#include "pm/internal/v1/internal.grpc.pb.h"
#include "registry/registry.h"

namespace pm::registry {

// Unary callback handlers; each finishes its call before returning (the
// Registry never blocks on anything but its own mutex and /proc reads).
// GetStatus and Wait take raw bytes (a non-UTF-8 id is INVALID_ARGUMENT
// naming it); the others are typed. Built on the plain Service, not on
// CallbackService, so no method has both a typed and a raw handler.
class RegistryService final
    : public pm::internal::v1::Registry::WithRawCallbackMethod_GetStatus<
          pm::internal::v1::Registry::WithRawCallbackMethod_Wait<
              pm::internal::v1::Registry::WithCallbackMethod_CreateRecord<
                  pm::internal::v1::Registry::WithCallbackMethod_UpdateRecord<
                      pm::internal::v1::Registry::WithCallbackMethod_List<
                          pm::internal::v1::Registry::WithCallbackMethod_SyncRecords<
                              pm::internal::v1::Registry::WithCallbackMethod_ListLive<
                                  pm::internal::v1::Registry::WithCallbackMethod_Resolve<
                                      pm::internal::v1::Registry::WithCallbackMethod_RemoveRecord<
                                          pm::internal::v1::Registry::WithCallbackMethod_Watch<
                                              pm::internal::v1::Registry::WithCallbackMethod_ListNodes<
                                                  pm::internal::v1::Registry::Service>>>>>>>>>>> {
 public:
  // `registry` must outlive the service.
  explicit RegistryService(Registry* registry) : registry_(registry) {}

  grpc::ServerUnaryReactor* CreateRecord(
      grpc::CallbackServerContext* context,
      const pm::internal::v1::CreateRecordRequest* request,
      pm::v1::ProcessStatus* response) override;
  grpc::ServerUnaryReactor* UpdateRecord(
      grpc::CallbackServerContext* context,
      const pm::internal::v1::UpdateRecordRequest* request,
      pm::v1::ProcessStatus* response) override;
  // A pm.v1.GetStatusRequest in, a pm.v1.ProcessStatus out.
  grpc::ServerUnaryReactor* GetStatus(grpc::CallbackServerContext* context,
                                      const grpc::ByteBuffer* request,
                                      grpc::ByteBuffer* response) override;
  grpc::ServerUnaryReactor* List(grpc::CallbackServerContext* context,
                                 const pm::v1::ListRequest* request,
                                 pm::v1::ListResponse* response) override;
  grpc::ServerUnaryReactor* ListNodes(
      grpc::CallbackServerContext* context,
      const pm::internal::v1::ListNodesRequest* request,
      pm::internal::v1::ListNodesResponse* response) override;
  grpc::ServerUnaryReactor* ListLive(
      grpc::CallbackServerContext* context,
      const pm::internal::v1::ListLiveRequest* request,
      pm::internal::v1::ListLiveResponse* response) override;
  grpc::ServerUnaryReactor* Resolve(
      grpc::CallbackServerContext* context,
      const pm::internal::v1::ResolveRequest* request,
      pm::internal::v1::ResolveResponse* response) override;
  grpc::ServerUnaryReactor* RemoveRecord(
      grpc::CallbackServerContext* context,
      const pm::internal::v1::RemoveRecordRequest* request,
      pm::v1::ProcessStatus* response) override;
  // A pm.v1.WaitRequest in, a pm.v1.ProcessStatus out. Finishes when the
  // record ends, or CANCELLED when the caller goes away.
  grpc::ServerUnaryReactor* Wait(grpc::CallbackServerContext* context,
                                 const grpc::ByteBuffer* request,
                                 grpc::ByteBuffer* response) override;
  // The registry's events after a cursor, then as they come (see Watch in
  // pm.v1); ended with UNAVAILABLE at Shutdown.
  grpc::ServerWriteReactor<pm::v1::Event>* Watch(
      grpc::CallbackServerContext* context,
      const pm::v1::WatchRequest* request) override;
  // One stream per supervisor: creates and updates in order, answered by
  // tag (see SyncRecords in internal.proto).
  grpc::ServerBidiReactor<pm::internal::v1::RecordOp,
                          pm::internal::v1::RecordOpResult>*
  SyncRecords(grpc::CallbackServerContext* context) override;

  // Ends the open SyncRecords streams with UNAVAILABLE and refuses new ones,
  // so grpc::Server::Shutdown need not wait out its deadline for them.
  void Shutdown();
  // SyncRecords streams whose reactor has not reached OnDone yet, and a
  // wait until there are `n` (false if `timeout` passed first).
  size_t sync_stream_count() const;
  bool WaitForSyncStreams(size_t n, absl::Duration timeout) const;
  // Waits until at least `n` SyncRecords streams were refused since
  // Shutdown (false if `timeout` passed first): a test's sign that a
  // supervisor tried the registry while it was going away.
  bool WaitForRefusedSyncStreams(size_t n, absl::Duration timeout) const;

 private:
  Registry* const registry_;
  StreamSet syncs_;
  StreamSet watches_;
};

}  // namespace pm::registry

#endif  // PM_REGISTRY_REGISTRY_SERVICE_H_
