// Cluster: one host's registry as a member of a cluster of pm hosts that
// share an etcd (issue 17; README, "Running on several hosts"). Each host's
// registry stays the owner of its own records, kept in its own store
// (SQLite) so that the host manages its processes with etcd down; the
// Cluster adds, through etcd's v3 gRPC API:
//
//   - liveness: the key <prefix>nodes/<node> (a ClusterNode) on a lease of
//     lease_ttl (10 s), kept alive every third of it. A host whose pm is
//     killed or cut off loses the key when the lease runs out; the others
//     then answer its processes' records as STATE_UNKNOWN.
//   - a directory: every record of this host is mirrored under
//     <prefix>procs/<id> (the pm.v1.ProcessStatus, node set), written
//     behind the registry's own store by a thread of the Cluster, latest
//     state first, retried until etcd takes it; at start and after every
//     reconnection the whole set is written again and this host's keys
//     that it no longer holds are deleted. The other hosts' records are
//     read back through a Watch into memory: List, GetStatus and Resolve
//     answer for the whole cluster without a call to etcd.
//   - claims: an id (<prefix>ids/<id>) and a name (<prefix>names/<name>)
//     are taken in one etcd Txn that succeeds only if neither key exists,
//     so ids and names are unique across the cluster.
//
//   Cluster::Options options;
//   options.endpoints = "10.0.0.1:2379,10.0.0.2:2379,10.0.0.3:2379";
//   options.node = "b";
//   options.tls = {"etcd-ca.pem", "etcd-client.pem", "etcd-client.key"};
//   PM_ASSIGN_OR_RETURN(std::unique_ptr<Cluster> cluster,
//                       Cluster::Start(options, [&] { return registry.Snapshot(); }));
//   PM_RETURN_IF_ERROR(cluster->Claim(id, name));   // before the record
//   cluster->Publish(status);                        // after each change
//   std::optional<ProcessStatus> there = cluster->Find(id);
//
// etcd is reached over TLS with a client certificate when options.tls says
// so (registry/etcd_tls.h: every member's certificate is checked for one
// name), else in plaintext. Every error of a call to etcd names its
// endpoints and which of the two it was; a TLS handshake that fails (no
// client certificate, one etcd does not trust, a plaintext etcd) makes
// etcd out of reach, as a down one would, and its message says to check
// the TLS setup.
//
// With etcd unreachable: Claim is UNAVAILABLE naming etcd (the registry
// still records an unnamed process, whose id the mirror claims later);
// Publish queues (latest state per id); the other hosts' records are
// answered from memory as STATE_UNKNOWN, "etcd unreachable since ...".
// Nothing is lost: once etcd is back, the mirror is written again whole.
//
// Changes of the other hosts' processes, as this host sees them, go to a
// listener (SetChangeListener: the registry tells them to its watchers as
// events): a record that appears, changes state or run, or goes; and a
// state that stops being known (STATE_UNKNOWN: its host's lease expired,
// or etcd went out of reach) or is known again. What changed while this
// host was cut off is told once it is back in sync, one change per record
// (the states in between are not seen). Nothing is told of the records
// found at the first sync after a start.
//
// Thread-safe. Three threads of its own: the writer (the lease, its
// keepalives, the mirror), the watcher (the other hosts' records) and the
// reporter (the listener's calls, one at a time, in order).
#ifndef PM_REGISTRY_CLUSTER_H_
#define PM_REGISTRY_CLUSTER_H_

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "etcd/etcdserver/etcdserverpb/rpc.grpc.pb.h"
#include "pm/internal/v1/internal.pb.h"
#include "pm/v1/process_manager.pb.h"
#include "registry/etcd_tls.h"

namespace pm::registry {

// The gRPC target for etcd's endpoints ("h1:p1,h2:p2"): several IPv4
// addresses become one "ipv4:" target (gRPC moves to the next when one
// fails), otherwise the first endpoint. INVALID_ARGUMENT for none.
absl::StatusOr<std::string> EtcdTarget(absl::string_view endpoints);

// The first key after every key that starts with `prefix`: [prefix, end)
// is a prefix scan (etcd's clientv3.GetPrefixRangeEnd). pm's prefixes end
// in '/', never in 0xff.
std::string EtcdPrefixEnd(std::string prefix);

// ALREADY_EXISTS: the name is taken by process `holder` (`where`, e.g. " in
// the cluster"), which it names only when `visible` (the holder is the
// starter's own, or the starter is local); otherwise "by another user's
// process", as the supervisor says it (an id Resolve hides from that user
// must not come out here).
absl::Status NameTakenError(absl::string_view name, absl::string_view holder,
                            bool visible, absl::string_view where = "");

class Cluster {
 public:
  // What the listener was told last of another host's record.
  struct Told {
    pm::v1::ProcessStatus::State state = pm::v1::ProcessStatus::STATE_UNSPECIFIED;
    uint32_t run = 0;
    std::string node;
  };
  // What a registry told of the other hosts' records before it stopped
  // (its retained events, Registry::ToldOfOtherHosts): where its reporting
  // picks up after a restart, so that what changed meanwhile is told.
  struct ToldBefore {
    absl::flat_hash_map<std::string, Told> records;
    // When it last told anything: another host's record it never told of
    // that started later is new since (one that started before was told
    // in an event no longer retained, and is not told again).
    absl::Time until = absl::InfinitePast();
  };
  struct Options {
    // etcd's client endpoints, "host:port" separated by commas.
    std::string endpoints;
    // How etcd is reached (TLS with a client certificate, or plaintext).
    EtcdTls tls;
    // Every key starts with it; it ends in '/'.
    std::string prefix = "/pm/default/";
    // This host's name (pm::ValidateNodeName, common/names.h).
    std::string node;
    // Identifies this registry's stack (ClusterNode.instance).
    std::string instance;
    // The host's gateway address, published with the node (may be empty).
    std::string gateway;
    // The lease on the node key: a host is reported unreachable this long
    // (at most) after its registry stopped renewing it.
    absl::Duration lease_ttl = absl::Seconds(10);
    // The longest one call to etcd may take.
    absl::Duration deadline = absl::Seconds(3);
    // How long the writer waits before trying etcd again after a failure.
    absl::Duration retry = absl::Milliseconds(500);
    // The longest read of a claim (OwnerOf, ClaimedIdOfName) may take: a
    // registry's handler waits on it.
    absl::Duration claim_read_deadline = absl::Milliseconds(500);
    // Keys per Range: the cluster's directory is read in pages of this many
    // at one revision (as clientv3's WithLimit, or a Kubernetes list with
    // its continue token), so a directory of any size costs etcd and this
    // registry bounded messages, never one answer of every record.
    int64_t range_page = 1000;
    // Tests only: runs after each page of a paged read but the last, with
    // what the read is ("Range of the cluster", "Range of the records"; a
    // test compacts etcd there).
    std::function<void(absl::string_view what)> after_range_page;
    // Where the reporting of changes starts at the first sync. Empty: with
    // what is there then (nothing told of it).
    ToldBefore told_before;
  };
  // This host's records as the registry holds them (called on the writer's
  // thread, without any lock of the Cluster's).
  using Snapshot = std::function<std::vector<pm::v1::ProcessStatus>()>;

  // A change of another host's process, as this host answers for it.
  struct RemoteChange {
    // Its state and run as last told (UNSPECIFIED: it is new here).
    pm::v1::ProcessStatus::State before = pm::v1::ProcessStatus::STATE_UNSPECIFIED;
    uint32_t run_before = 0;
    // As answered now (STATE_UNKNOWN with its reason when its host or etcd
    // cannot be reached); as last seen when removed.
    pm::v1::ProcessStatus status;
    // Its record went (removed or evicted on its host).
    bool removed = false;
  };
  // Called on the watcher's thread, without any lock of the Cluster's, in
  // the order the changes were seen.
  using ChangeListener = std::function<void(std::vector<RemoteChange>)>;

  // Checks the options, reads the TLS files and starts the threads; does
  // not wait for etcd (connected() says when it is reached).
  // INVALID_ARGUMENT for options that cannot work; a TLS file that cannot
  // be read is its error naming the flag and the file (NewEtcdChannel).
  static absl::StatusOr<std::unique_ptr<Cluster>> Start(Options options,
                                                        Snapshot snapshot);
  // Stops the threads. The lease is left to expire (a registry restarting
  // on the same stack takes the node key back at once).
  ~Cluster();
  Cluster(const Cluster&) = delete;
  Cluster& operator=(const Cluster&) = delete;

  const std::string& node() const { return options_.node; }

  // From now on, changes go to `listener` (replacing any before).
  void SetChangeListener(ChangeListener listener);

  // Takes `id` for `owner_user`'s process on this host and, if not empty,
  // `name`, in one Txn. ALREADY_EXISTS naming the holder (the node, or the
  // process of the name); UNAVAILABLE naming etcd when it cannot be
  // reached. Taking again what this host holds already is OK.
  absl::Status Claim(const std::string& id, const std::string& name,
                     const std::string& owner_user);

  // The record of a process of this host changed: mirrored soon (queued;
  // the newest status of an id replaces an older one not yet written).
  void Publish(const pm::v1::ProcessStatus& status);
  // Its record was dropped (removed or evicted): its keys go, the name's
  // only while it still names this id.
  void Unpublish(const std::string& id, const std::string& name);

  // Another host's record of `id`, as last seen, in STATE_UNKNOWN (with
  // its reason and last known state) when that host, or etcd, is not
  // reachable now. nullopt when no other host has it.
  std::optional<pm::v1::ProcessStatus> Find(absl::string_view id) const;
  // Who claimed an id: the host, and the user whose process it is ("" for
  // one started on a host's local socket).
  struct IdClaim {
    std::string node;
    std::string owner_user;
  };
  // The claim of `id` in etcd, asked of etcd now (a record made a moment
  // ago on another host, not yet seen through the watch). nullopt when no
  // host claimed it or etcd cannot be asked. Waits at most
  // claim_read_deadline, never while etcd is known out of reach; a read
  // that fails does not count etcd out of reach (the watch and the
  // writer's calls tell that: one slow read, which any caller can ask
  // for, must not make every other host's record UNKNOWN).
  std::optional<IdClaim> OwnerOf(const std::string& id);
  // The id that holds the name `name` in etcd, asked of etcd now (a name
  // taken a moment ago on another host); as OwnerOf otherwise.
  std::optional<std::string> ClaimedIdOfName(const std::string& name);
  // Reads of claims sent to etcd so far (tests: a lookup's cost must not
  // tell what it found).
  uint64_t claim_reads() const { return claim_reads_.load(); }
  // The id another host's process of this name has.
  std::optional<std::string> IdOfName(absl::string_view name) const;
  // Every other host's record, likewise.
  std::vector<pm::v1::ProcessStatus> Others() const;

  // Whether the watcher is in sync with etcd now.
  bool connected() const;
  // Whether etcd answers now: the watcher in sync and the last call of
  // the writer's (or of a Claim) reached it.
  bool reachable() const;
  // Why etcd is out of reach now ("etcd at ... unreachable since ...
  // (the last error)"); empty when reachable().
  std::string EtcdUnreachable() const;
  // Whether the node key is held (the lease kept alive).
  bool holds_lease() const;
  // The gateway address of `node` while it holds its lease (empty string
  // if it published none); nullopt when it does not hold one.
  std::optional<std::string> GatewayOf(absl::string_view node) const;
  // The hosts known (their node keys), with their gateway addresses.
  std::map<std::string, pm::internal::v1::ClusterNode> Nodes() const;
  // Waits (up to `timeout`) until `ready` holds under the Cluster's view,
  // re-checked at every change of it. For tests and for a first sync.
  bool AwaitChange(const std::function<bool(const Cluster&)>& ready,
                   absl::Duration timeout) const;
  // Mirror writes not yet taken by etcd (queued or in a Txn now).
  size_t pending() const;

 private:
  Cluster(Options options, std::string target, std::shared_ptr<grpc::Channel> channel,
          Snapshot snapshot);

  void WriterLoop();
  // The writer's next call: the lease, the mirror written whole, a
  // keepalive when `*next_keepalive` is due (then moved on), or the queue.
  absl::Status WriterStep(absl::Time* next_keepalive);
  grpc::Status ClaimTxn(const etcdserverpb::TxnRequest& request,
                        etcdserverpb::TxnResponse* response);
  void WatcherLoop();
  // One pass of each (false: etcd failed; the loop waits and tries again).
  absl::Status HoldLease();
  absl::Status KeepAlive();
  absl::Status Resync();
  absl::Status FlushPending();
  // `*synced`: the directory was read (the others' records are current),
  // whatever ended the watch after that.
  absl::Status WatchOnce(bool* synced);
  // The value of a claim's key, asked of etcd now (OwnerOf).
  std::optional<std::string> ReadClaim(const std::string& key);
  // Applies one key's put (or delete: `value` null) under mutex_.
  void ApplyKey(absl::string_view key, const std::string* value,
                absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);
  // The changes since the last call, of the records marked dirty (or of
  // all), and what was told is remembered. None before the first sync.
  std::vector<RemoteChange> TakeChanges() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);
  // At the first sync: what was told is options_.told_before's, and of the
  // rest what is there now (StartReporting in cluster.cc says which).
  void StartReporting() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);
  // Takes the changes as they are marked and tells them, in order.
  void ReporterLoop() ABSL_LOCKS_EXCLUDED(mutex_);
  // Hands `changes` to the listener (the reporter's thread, no lock held).
  void Tell(std::vector<RemoteChange> changes) ABSL_LOCKS_EXCLUDED(mutex_);
  std::string EtcdUnreachableLocked() const ABSL_SHARED_LOCKS_REQUIRED(mutex_);
  // A record of another host as it is answered now.
  pm::v1::ProcessStatus Answer(const pm::v1::ProcessStatus& stored) const
      ABSL_SHARED_LOCKS_REQUIRED(mutex_);

  std::string Key(absl::string_view kind, absl::string_view rest) const;
  absl::Status Error(absl::string_view what, const grpc::Status& rpc) const;
  // Every key in [key, range_end) at one revision, read `range_page` at a
  // time, in order; `*revision` is the revision read (the first page's).
  // A compaction of that revision between two pages starts the read again
  // from the first page, at the newest revision (three times at most).
  // Errors name `what`.
  absl::StatusOr<std::vector<mvccpb::KeyValue>> RangeAll(absl::string_view what,
                                                         const std::string& key,
                                                         const std::string& range_end,
                                                         int64_t* revision);
  void SetDeadline(grpc::ClientContext& context) const;
  bool stopping() const;
  // Remembers whether etcd answered the last call (OK) or could not be
  // reached (UNAVAILABLE, DEADLINE_EXCEEDED); other errors say nothing of
  // its reach.
  void NoteEtcd(const absl::Status& step);

  const Options options_;
  const std::string target_;
  const Snapshot snapshot_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<etcdserverpb::KV::Stub> kv_;
  std::unique_ptr<etcdserverpb::Lease::Stub> lease_;
  std::unique_ptr<etcdserverpb::Watch::Stub> watch_;

  mutable absl::Mutex mutex_;
  bool stopping_ ABSL_GUARDED_BY(mutex_) = false;
  // Writer: the mirror writes to do (nullopt status: delete), the lease.
  struct PendingWrite {
    std::optional<pm::v1::ProcessStatus> status;
    std::string release_name;
  };
  std::map<std::string, PendingWrite> pending_ ABSL_GUARDED_BY(mutex_);
  // Taken from pending_ by the writer, in its Txn now.
  size_t in_flight_ ABSL_GUARDED_BY(mutex_) = 0;
  int64_t lease_id_ ABSL_GUARDED_BY(mutex_) = 0;
  // Why the last call to etcd failed to reach it; empty once one did.
  // Claims fail at once meanwhile; the writer keeps trying every `retry`.
  std::string etcd_error_ ABSL_GUARDED_BY(mutex_);
  std::atomic<uint64_t> claim_reads_{0};
  absl::Time etcd_error_since_ ABSL_GUARDED_BY(mutex_);
  bool resynced_ ABSL_GUARDED_BY(mutex_) = false;
  // Watcher: other hosts' records and the node keys.
  bool connected_ ABSL_GUARDED_BY(mutex_) = false;
  absl::Time disconnected_since_ ABSL_GUARDED_BY(mutex_);
  std::string last_error_ ABSL_GUARDED_BY(mutex_);
  absl::flat_hash_map<std::string, pm::v1::ProcessStatus> others_
      ABSL_GUARDED_BY(mutex_);
  absl::flat_hash_map<std::string, std::string> other_names_ ABSL_GUARDED_BY(mutex_);
  std::map<std::string, pm::internal::v1::ClusterNode> nodes_
      ABSL_GUARDED_BY(mutex_);
  // What the listener was told of each other host's record, the ids whose
  // record changed since (or every id), and the records that went (for
  // the event of their removal). Reporting starts at the first sync, and
  // its changes are taken only once a listener is set.
  absl::flat_hash_map<std::string, Told> told_ ABSL_GUARDED_BY(mutex_);
  absl::flat_hash_set<std::string> dirty_ ABSL_GUARDED_BY(mutex_);
  bool all_dirty_ ABSL_GUARDED_BY(mutex_) = false;
  absl::flat_hash_map<std::string, pm::v1::ProcessStatus> went_ ABSL_GUARDED_BY(mutex_);
  bool reporting_ ABSL_GUARDED_BY(mutex_) = false;
  ChangeListener listener_ ABSL_GUARDED_BY(mutex_);
  // When each node's key was last seen going (deleted or expired).
  absl::flat_hash_map<std::string, absl::Time> gone_since_ ABSL_GUARDED_BY(mutex_);
  const absl::Time started_ = absl::Now();
  uint64_t changes_ ABSL_GUARDED_BY(mutex_) = 0;
  // The watcher's call, cancelled by the destructor.
  grpc::ClientContext* watch_context_ ABSL_GUARDED_BY(mutex_) = nullptr;
  grpc::ClientContext* keepalive_context_ ABSL_GUARDED_BY(mutex_) = nullptr;

  std::thread writer_;
  std::thread watcher_;
  std::thread reporter_;
};

}  // namespace pm::registry

#endif  // PM_REGISTRY_CLUSTER_H_
