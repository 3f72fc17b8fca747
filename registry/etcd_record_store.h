// EtcdRecordStore: the registry's records in etcd (issue 17), through its v3
// gRPC API (//third_party/etcd:etcd_cc_grpc).
//
//   EtcdRecordStore::Options options;
//   options.endpoints = "10.0.0.1:2379,10.0.0.2:2379";
//   options.prefix = "/pm/prod/";
//   PM_ASSIGN_OR_RETURN(std::unique_ptr<EtcdRecordStore> store,
//                       EtcdRecordStore::Open(options));
//   RecordWrite write;
//   write.put.push_back(stored);
//   PM_RETURN_IF_ERROR(store->Write(write));     // one etcd Txn
//
// Keys, below the prefix:
//   records/<id>                      the serialized StoredRecord
//   events/<sequence, 20 digits>      the serialized pm.v1.Event
// The sequence is zero-padded so that etcd's key order is the events' order.
//
// Each Write is one etcd Txn (no compares, every op in its success branch),
// so it applies whole or not at all, and returns once etcd has committed it
// (a quorum of members has it in its log). etcd caps the ops of one Txn
// (--max-txn-ops, 128 by default): a Write needing more is refused with
// INVALID_ARGUMENT before anything is sent, never split, since two Txns
// would not be atomic together. A caller with a bigger change whose parts
// are each safe alone (the registry's load-time LOST marks and evictions,
// which the next load would redo) must split it itself.
//
// One channel to the first endpoint that answered at Open; gRPC reconnects
// it, but a store does not move to another endpoint (yet). Calls do not
// wait for a connection: with etcd down they fail at once (UNAVAILABLE).
// Unlike SqliteRecordStore's file lock, nothing stops two stores writing
// one prefix (last write wins): give each registry a prefix of its own
// until the cluster's ownership of records (a lease-held key) exists.
// Thread-safe (the stub is; the store keeps no other state).
#ifndef PM_REGISTRY_ETCD_RECORD_STORE_H_
#define PM_REGISTRY_ETCD_RECORD_STORE_H_

#include <grpcpp/grpcpp.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "etcd/etcdserver/etcdserverpb/rpc.grpc.pb.h"
#include "registry/etcd_tls.h"
#include "registry/record_store.h"

namespace pm::registry {

class EtcdRecordStore : public RecordStore {
 public:
  struct Options {
    // "host:port", or several separated by commas: Open uses the first that
    // answers, in order.
    std::string endpoints;
    // How etcd is reached (registry/etcd_tls.h: TLS with a client
    // certificate, or plaintext).
    EtcdTls tls;
    // Every key of this store starts with it ("/pm/<cluster>/"); it must
    // end in '/' so that one cluster's prefix is not a prefix of another's.
    std::string prefix;
    // The longest any one call to etcd may take, Open's probe included.
    absl::Duration deadline = absl::Seconds(5);
    // The most ops one Write may need: etcd's --max-txn-ops.
    size_t max_txn_ops = 128;
    // How many keys one Range of LoadAll or LoadEvents reads at most.
    int64_t page_size = 500;
  };

  // Connects to the first of `options.endpoints` that answers a Range within
  // the deadline. INVALID_ARGUMENT for options that cannot work (no
  // endpoint, a prefix not ending in '/'); a TLS file's error naming it
  // (NewEtcdChannel); UNAVAILABLE naming every endpoint tried and why, and
  // whether TLS was on, when none answers.
  static absl::StatusOr<std::unique_ptr<EtcdRecordStore>> Open(Options options);

  EtcdRecordStore(const EtcdRecordStore&) = delete;
  EtcdRecordStore& operator=(const EtcdRecordStore&) = delete;

  // One Txn. A record both put and removed is removed; an event below
  // drop_events_below is not stored (etcd refuses a Txn that writes one
  // key twice). INVALID_ARGUMENT naming the cap when it needs more than
  // max_txn_ops ops. Otherwise etcd's gRPC code (UNAVAILABLE when it cannot
  // be reached, DEADLINE_EXCEEDED) with a message naming etcd, the
  // endpoint and its reason; on any error nothing was applied, except that
  // a DEADLINE_EXCEEDED or UNAVAILABLE after the request left may have
  // been committed (as for any remote store: the caller's retry must be
  // idempotent, which the registry's are).
  absl::Status Write(const RecordWrite& write) override;

  // Every record under <prefix>records/, read in pages of page_size at one
  // revision (a consistent snapshot). DATA_LOSS naming the key when a value
  // is not a StoredRecord of the id its key names.
  absl::StatusOr<std::vector<pm::internal::v1::StoredRecord>> LoadAll()
      override;

  // Every event under <prefix>events/, oldest first, likewise. DATA_LOSS
  // naming the key for one that is not a pm.v1.Event of its sequence.
  absl::StatusOr<std::vector<pm::v1::Event>> LoadEvents() override;

  // The endpoint this store talks to.
  const std::string& endpoint() const { return endpoint_; }

  // The key of record `id`, and of the event of `sequence`.
  std::string RecordKey(absl::string_view id) const;
  std::string EventKey(uint64_t sequence) const;

 private:
  EtcdRecordStore(Options options, std::string endpoint,
                  std::shared_ptr<grpc::Channel> channel);

  // Every key-value in [begin, PrefixEnd(begin)), in key order, calling
  // `each` on each; paged, at the revision of the first page.
  absl::Status RangePrefix(
      const std::string& begin,
      const std::function<absl::Status(const mvccpb::KeyValue&)>& each);
  // The status of a failed call `what` ("Txn of 3 ops"): its gRPC code,
  // naming etcd, the endpoint, TLS or not, and gRPC's message
  // (EtcdCallError).
  absl::Status Error(absl::string_view what, const grpc::Status& rpc) const;
  void SetDeadline(grpc::ClientContext& context) const;

  const Options options_;
  const std::string endpoint_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<etcdserverpb::KV::Stub> kv_;
};

}  // namespace pm::registry

#endif  // PM_REGISTRY_ETCD_RECORD_STORE_H_
