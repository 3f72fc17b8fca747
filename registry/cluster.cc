#include "registry/cluster.h"

#include <arpa/inet.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <set>
#include <utility>

#include "absl/base/macros.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/log.h"
#include "common/names.h"
#include "common/process_end.h"
#include "common/proto_time.h"
#include "common/status_core.h"

namespace pm::registry {
namespace {

using ::pm::internal::v1::ClusterNode;
using ::pm::v1::ProcessStatus;

constexpr char kNodes[] = "nodes";
constexpr char kProcs[] = "procs";
constexpr char kIds[] = "ids";
constexpr char kNames[] = "names";
// Records per mirror Txn: two ops each, under etcd's --max-txn-ops (128).
constexpr size_t kRecordsPerTxn = 50;
// A call that fails UNAVAILABLE where etcd answered the one before (the
// member this host was connected to went away) is tried again after each
// of these pauses, through the next member, before etcd counts as out of
// reach: gRPC may send a try or two on the old connection before it sees
// that connection closed.
constexpr absl::Duration kFailoverPauses[] = {
    absl::Milliseconds(50), absl::Milliseconds(100), absl::Milliseconds(200)};
// How far another host's clock may be behind this one's for a restarted
// registry to still tell a start it missed (StartReporting).
constexpr absl::Duration kClockSkewAllowance = absl::Minutes(10);

std::string Since(absl::Time when) {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", when, absl::UTCTimeZone());
}

// The value of an id's claim: its host, then, for a process a user owns,
// a newline and the user (node names hold no newline). A registry older
// than the user in the claim wrote the host alone.
std::string ClaimValue(const std::string& node, const std::string& owner_user) {
  return owner_user.empty() ? node : absl::StrCat(node, "\n", owner_user);
}
Cluster::IdClaim ParseClaim(absl::string_view value) {
  std::pair<absl::string_view, absl::string_view> parts =
      absl::StrSplit(value, absl::MaxSplits('\n', 1));
  return Cluster::IdClaim{std::string(parts.first), std::string(parts.second)};
}

}  // namespace

// The first key after every key that starts with `prefix` (etcd's
// clientv3.GetPrefixRangeEnd); our prefixes end in '/'.
std::string EtcdPrefixEnd(std::string prefix) {
  prefix.back() = static_cast<char>(prefix.back() + 1);
  return prefix;
}

absl::Status NameTakenError(absl::string_view name, absl::string_view holder,
                            bool visible, absl::string_view where) {
  return absl::AlreadyExistsError(absl::StrCat(
      "the name \"", name, "\" is taken by ",
      visible ? absl::StrCat("process ", holder) : "another user's process", where));
}

absl::StatusOr<std::string> EtcdTarget(absl::string_view endpoints) {
  std::vector<std::string> list;
  for (absl::string_view one : absl::StrSplit(endpoints, ',', absl::SkipWhitespace())) {
    list.emplace_back(absl::StripAsciiWhitespace(one));
  }
  if (list.empty()) {
    return absl::InvalidArgumentError("no etcd endpoint given (host:port)");
  }
  bool all_ipv4 = true;
  for (const std::string& endpoint : list) {
    const size_t colon = endpoint.rfind(':');
    in_addr address;
    int port = 0;
    all_ipv4 = all_ipv4 && colon != std::string::npos &&
               inet_pton(AF_INET, endpoint.substr(0, colon).c_str(), &address) == 1 &&
               absl::SimpleAtoi(endpoint.substr(colon + 1), &port) && port > 0 &&
               port < 65536;
  }
  if (all_ipv4) return absl::StrCat("ipv4:", absl::StrJoin(list, ","));
  return list.front();
}

absl::StatusOr<std::unique_ptr<Cluster>> Cluster::Start(Options options,
                                                        Snapshot snapshot) {
  PM_RETURN_IF_ERROR(pm::ValidateNodeName(options.node));
  if (options.prefix.empty() || options.prefix.back() != '/' ||
      options.prefix.front() != '/') {
    return absl::InvalidArgumentError(absl::StrCat(
        "etcd key prefix \"", options.prefix,
        "\" must start and end in '/' (\"/pm/<cluster>/\")"));
  }
  if (options.lease_ttl < absl::Seconds(2) || options.deadline <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        "the cluster's lease must be 2 s or more, its call deadline positive");
  }
  PM_ASSIGN_OR_RETURN(std::string target, EtcdTarget(options.endpoints));
  grpc::ChannelArguments arguments;
  // The first read of the directory holds every record of the cluster.
  arguments.SetMaxReceiveMessageSize(-1);
  // Reconnect soon after etcd comes back (gRPC's default backoff grows to
  // two minutes).
  arguments.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 2000);
  arguments.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 200);
  PM_ASSIGN_OR_RETURN(std::shared_ptr<grpc::Channel> channel,
                      NewEtcdChannel(target, options.tls, std::move(arguments)));
  std::unique_ptr<Cluster> cluster(new Cluster(std::move(options), std::move(target),
                                               std::move(channel), std::move(snapshot)));
  cluster->writer_ = std::thread([c = cluster.get()] { c->WriterLoop(); });
  cluster->watcher_ = std::thread([c = cluster.get()] { c->WatcherLoop(); });
  cluster->reporter_ = std::thread([c = cluster.get()] { c->ReporterLoop(); });
  return cluster;
}

Cluster::Cluster(Options options, std::string target,
                 std::shared_ptr<grpc::Channel> channel, Snapshot snapshot)
    : options_(std::move(options)),
      target_(std::move(target)),
      snapshot_(std::move(snapshot)),
      channel_(std::move(channel)) {
  kv_ = etcdserverpb::KV::NewStub(channel_);
  lease_ = etcdserverpb::Lease::NewStub(channel_);
  watch_ = etcdserverpb::Watch::NewStub(channel_);
  disconnected_since_ = absl::Now();
}

Cluster::~Cluster() {
  {
    absl::MutexLock lock(&mutex_);
    stopping_ = true;
    if (watch_context_ != nullptr) watch_context_->TryCancel();
    if (keepalive_context_ != nullptr) keepalive_context_->TryCancel();
  }
  if (writer_.joinable()) writer_.join();
  if (watcher_.joinable()) watcher_.join();
  if (reporter_.joinable()) reporter_.join();
}

std::string Cluster::Key(absl::string_view kind, absl::string_view rest) const {
  return absl::StrCat(options_.prefix, kind, "/", rest);
}

absl::StatusOr<std::vector<mvccpb::KeyValue>> Cluster::RangeAll(absl::string_view what,
                                                                 const std::string& key,
                                                                 const std::string& range_end,
                                                                 int64_t* revision) {
  // Reads started again after a compaction, before giving up: each starts
  // at the newest revision, so only compactions that keep coming (a
  // revision history shorter than one read) use them all.
  constexpr int kRestarts = 3;
  for (int restart = 0;; ++restart) {
    etcdserverpb::RangeRequest request;
    request.set_key(key);
    request.set_range_end(range_end);
    request.set_limit(std::max<int64_t>(options_.range_page, 1));
    std::vector<mvccpb::KeyValue> kvs;
    *revision = 0;
    bool compacted = false;
    while (true) {
      etcdserverpb::RangeResponse page;
      grpc::ClientContext context;
      SetDeadline(context);
      const grpc::Status rpc = kv_->Range(&context, request, &page);
      if (!rpc.ok()) {
        // A page after the first can find its revision compacted away
        // (etcd's OUT_OF_RANGE, "required revision has been compacted"):
        // the pages read are of a state no page can be read of any more,
        // so the read starts again from the first page.
        if (rpc.error_code() == grpc::StatusCode::OUT_OF_RANGE && *revision != 0 &&
            restart < kRestarts) {
          PM_LOG(INFO) << "cluster: " << what << ": revision " << *revision
                       << " was compacted between two pages; reading again from the first";
          compacted = true;
          break;
        }
        return Error(what, rpc);
      }
      if (*revision == 0) {
        *revision = page.header().revision();
        request.set_revision(*revision);  // the next pages see the same state
      }
      for (mvccpb::KeyValue& kv : *page.mutable_kvs()) kvs.push_back(std::move(kv));
      if (!page.more()) return kvs;
      // The next page starts just after this one's last key: always further
      // on, so an etcd that answered wrongly cannot hold this in a loop, nor
      // end it early with keys unread (they would count as gone).
      const std::string next =
          kvs.empty() ? std::string() : kvs.back().key() + std::string(1, '\0');
      if (next <= request.key()) {
        return absl::InternalError(absl::StrCat(
            what, ": etcd said more keys follow \"", absl::CEscape(request.key()),
            "\" but gave none after it"));
      }
      request.set_key(next);
      if (options_.after_range_page) options_.after_range_page(what);
    }
    if (!compacted) return kvs;
  }
}

absl::Status Cluster::Error(absl::string_view what, const grpc::Status& rpc) const {
  return EtcdCallError(options_.endpoints, options_.tls, what, rpc);
}

void Cluster::SetDeadline(grpc::ClientContext& context) const {
  context.set_deadline(std::chrono::system_clock::now() +
                       absl::ToChronoMilliseconds(options_.deadline));
}

void Cluster::NoteEtcd(const absl::Status& step) {
  absl::MutexLock lock(&mutex_);
  // Every other host's state is answered unknown while etcd is out of
  // reach, and known again after: told as changes either way.
  if (step.ok()) {
    if (!etcd_error_.empty()) {
      ++changes_;
      all_dirty_ = true;
    }
    etcd_error_.clear();
  } else if (absl::IsUnavailable(step) || absl::IsDeadlineExceeded(step)) {
    if (etcd_error_.empty()) {
      etcd_error_since_ = absl::Now();
      ++changes_;
      all_dirty_ = true;
    }
    etcd_error_ = std::string(step.message());
  }
}

bool Cluster::stopping() const {
  absl::MutexLock lock(&mutex_);
  return stopping_;
}

// --- Claims ------------------------------------------------------------------

absl::Status Cluster::Claim(const std::string& id, const std::string& name,
                            const std::string& owner_user) {
  const char* what = name.empty() ? "the id is" : "the id and the name are";
  {
    // etcd known to be out of reach: no call that would wait for its
    // deadline (a Start is not held up seconds each while etcd is down).
    absl::MutexLock lock(&mutex_);
    if (!etcd_error_.empty()) {
      return absl::UnavailableError(absl::StrCat(
          "the cluster cannot check that ", what, " free: ", etcd_error_));
    }
  }
  etcdserverpb::TxnRequest request;
  etcdserverpb::Compare* free_id = request.add_compare();
  free_id->set_key(Key(kIds, id));
  free_id->set_target(etcdserverpb::Compare::CREATE);
  free_id->set_result(etcdserverpb::Compare::EQUAL);
  free_id->set_create_revision(0);
  etcdserverpb::PutRequest* put_id = request.add_success()->mutable_request_put();
  put_id->set_key(Key(kIds, id));
  put_id->set_value(ClaimValue(options_.node, owner_user));
  request.add_failure()->mutable_request_range()->set_key(Key(kIds, id));
  if (!name.empty()) {
    etcdserverpb::Compare* free_name = request.add_compare();
    free_name->set_key(Key(kNames, name));
    free_name->set_target(etcdserverpb::Compare::CREATE);
    free_name->set_result(etcdserverpb::Compare::EQUAL);
    free_name->set_create_revision(0);
    etcdserverpb::PutRequest* put_name =
        request.add_success()->mutable_request_put();
    put_name->set_key(Key(kNames, name));
    put_name->set_value(id);
    request.add_failure()->mutable_request_range()->set_key(Key(kNames, name));
  }
  etcdserverpb::TxnResponse response;
  grpc::Status rpc = ClaimTxn(request, &response);
  // Through the next member if the one this host was connected to went
  // away. Taking again what this host took already is no conflict
  // (below), so a Txn that was applied before its answer was lost does no
  // harm.
  for (absl::Duration pause : kFailoverPauses) {
    if (rpc.error_code() != grpc::StatusCode::UNAVAILABLE) break;
    absl::SleepFor(pause);
    rpc = ClaimTxn(request, &response);
  }
  if (!rpc.ok()) {
    const absl::Status failed = Error("Txn", rpc);
    NoteEtcd(failed);
    return absl::UnavailableError(absl::StrCat(
        "the cluster cannot check that ", what, " free: ", failed.message()));
  }
  if (response.succeeded()) return absl::OkStatus();
  // Who holds what: a retry of our own claim is no conflict.
  std::string id_holder;
  std::string name_holder;
  for (int i = 0; i < response.responses_size(); ++i) {
    const auto& kvs = response.responses(i).response_range().kvs();
    if (kvs.empty()) continue;
    (i == 0 ? id_holder : name_holder) = kvs[0].value();
  }
  if (!id_holder.empty() && ParseClaim(id_holder).node != options_.node) {
    return absl::AlreadyExistsError(absl::StrCat(
        "a process with id ", id, " is on record on host ",
        ParseClaim(id_holder).node));
  }
  if (!name_holder.empty() && name_holder != id) {
    // The holder's id only to its owner (or a local starter): its claim
    // says whose it is.
    std::optional<IdClaim> holder = OwnerOf(name_holder);
    const bool visible =
        owner_user.empty() || (holder.has_value() && holder->owner_user == owner_user);
    return NameTakenError(name, name_holder, visible, " in the cluster");
  }
  return absl::OkStatus();
}

grpc::Status Cluster::ClaimTxn(const etcdserverpb::TxnRequest& request,
                               etcdserverpb::TxnResponse* response) {
  grpc::ClientContext context;
  SetDeadline(context);
  return kv_->Txn(&context, request, response);
}

// --- The mirror ----------------------------------------------------------------

void Cluster::Publish(const ProcessStatus& status) {
  absl::MutexLock lock(&mutex_);
  PendingWrite& write = pending_[status.id()];
  write.status = status;
  write.status->set_node(options_.node);
  // The live view is not mirrored: it is read on the host, per answer.
  write.status->clear_proc_status();
  write.status->clear_rss_bytes();
  write.status->clear_threads();
}

void Cluster::Unpublish(const std::string& id, const std::string& name) {
  absl::MutexLock lock(&mutex_);
  PendingWrite& write = pending_[id];
  write.status.reset();
  if (!name.empty()) write.release_name = name;
}

size_t Cluster::pending() const {
  absl::MutexLock lock(&mutex_);
  return pending_.size() + in_flight_;
}

bool Cluster::holds_lease() const {
  absl::MutexLock lock(&mutex_);
  return lease_id_ != 0;
}

void Cluster::WriterLoop() {
  absl::Time next_keepalive = absl::InfinitePast();
  std::string last_logged;
  auto report = [&](const absl::Status& status) {
    // Logged once per different failure, not at every retry.
    if (status.ok() || status.ToString() == last_logged) return;
    last_logged = status.ToString();
    PM_LOG(WARNING) << "cluster: " << status << "; trying again";
  };
  while (!stopping()) {
    bool answered_last;
    {
      absl::MutexLock lock(&mutex_);
      answered_last = etcd_error_.empty();
    }
    absl::Status step = WriterStep(&next_keepalive);
    for (absl::Duration pause : kFailoverPauses) {
      if (!absl::IsUnavailable(step) || !answered_last) break;
      {
        absl::MutexLock lock(&mutex_);
        if (mutex_.AwaitWithTimeout(absl::Condition(&stopping_), pause)) break;
      }
      step = WriterStep(&next_keepalive);
    }
    report(step);
    NoteEtcd(step);
    if (step.ok() && !last_logged.empty()) {
      PM_LOG(INFO) << "cluster: etcd answers again";
      last_logged.clear();
    }
    absl::MutexLock lock(&mutex_);
    if (!step.ok()) {
      mutex_.AwaitWithTimeout(absl::Condition(&stopping_), options_.retry);
      continue;
    }
    if (lease_id_ == 0 || !resynced_) continue;
    // Until there is something to write, or the next keepalive is due.
    auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_) {
      return stopping_ || !pending_.empty();
    };
    mutex_.AwaitWithDeadline(absl::Condition(&ready), next_keepalive);
  }
}

absl::Status Cluster::WriterStep(absl::Time* next_keepalive) {
  bool held;
  bool resynced;
  {
    absl::MutexLock lock(&mutex_);
    held = lease_id_ != 0;
    resynced = resynced_;
  }
  absl::Status step = absl::OkStatus();
  if (!held) {
    step = HoldLease();
    if (step.ok()) *next_keepalive = absl::Now() + options_.lease_ttl / 3;
  } else if (!resynced) {
    step = Resync();
  } else if (absl::Now() >= *next_keepalive) {
    step = KeepAlive();
    if (step.ok()) *next_keepalive = absl::Now() + options_.lease_ttl / 3;
  } else {
    step = FlushPending();
  }
  return step;
}

absl::Status Cluster::HoldLease() {
  etcdserverpb::LeaseGrantResponse granted;
  {
    etcdserverpb::LeaseGrantRequest request;
    request.set_ttl(absl::ToInt64Seconds(options_.lease_ttl));
    grpc::ClientContext context;
    SetDeadline(context);
    const grpc::Status rpc = lease_->LeaseGrant(&context, request, &granted);
    if (!rpc.ok()) return Error("LeaseGrant", rpc);
  }
  const std::string key = Key(kNodes, options_.node);
  etcdserverpb::RangeResponse held;
  {
    etcdserverpb::RangeRequest request;
    request.set_key(key);
    grpc::ClientContext context;
    SetDeadline(context);
    const grpc::Status rpc = kv_->Range(&context, request, &held);
    if (!rpc.ok()) return Error(absl::StrCat("Range of ", key), rpc);
  }
  int64_t mod_revision = 0;
  if (!held.kvs().empty()) {
    ClusterNode holder;
    holder.ParseFromString(held.kvs(0).value());
    if (holder.instance() != options_.instance) {
      etcdserverpb::LeaseRevokeRequest revoke;
      revoke.set_id(granted.id());
      etcdserverpb::LeaseRevokeResponse revoked;
      grpc::ClientContext context;
      SetDeadline(context);
      (void)lease_->LeaseRevoke(&context, revoke, &revoked);
      return absl::FailedPreconditionError(absl::StrCat(
          "the node name \"", options_.node, "\" is held by another registry (",
          holder.instance(), ", since ", Since(FromProtoTimestamp(holder.since())),
          "): a second stack with the same --node? This one joins once that "
          "one's lease has expired"));
    }
    mod_revision = held.kvs(0).mod_revision();
  }
  ClusterNode me;
  me.set_node(options_.node);
  me.set_instance(options_.instance);
  *me.mutable_since() = ToProtoTimestamp(absl::Now());
  me.set_gateway(options_.gateway);
  etcdserverpb::TxnRequest request;
  etcdserverpb::Compare* unchanged = request.add_compare();
  unchanged->set_key(key);
  unchanged->set_result(etcdserverpb::Compare::EQUAL);
  unchanged->set_target(etcdserverpb::Compare::MOD);
  unchanged->set_mod_revision(mod_revision);
  etcdserverpb::PutRequest* put = request.add_success()->mutable_request_put();
  put->set_key(key);
  put->set_value(me.SerializeAsString());
  put->set_lease(granted.id());
  etcdserverpb::TxnResponse response;
  grpc::ClientContext context;
  SetDeadline(context);
  const grpc::Status rpc = kv_->Txn(&context, request, &response);
  if (!rpc.ok()) return Error(absl::StrCat("Txn on ", key), rpc);
  if (!response.succeeded()) {
    return absl::AbortedError(absl::StrCat(key, " changed while it was taken"));
  }
  PM_LOG(INFO) << "cluster: node \"" << options_.node << "\" joined through etcd at "
               << options_.endpoints << (options_.tls.enabled() ? " over TLS" : " in plaintext")
               << " (lease " << granted.id() << ", "
               << absl::FormatDuration(options_.lease_ttl) << ")";
  absl::MutexLock lock(&mutex_);
  lease_id_ = granted.id();
  resynced_ = false;
  ++changes_;
  return absl::OkStatus();
}

absl::Status Cluster::KeepAlive() {
  int64_t id;
  {
    absl::MutexLock lock(&mutex_);
    id = lease_id_;
  }
  grpc::ClientContext context;
  SetDeadline(context);
  {
    absl::MutexLock lock(&mutex_);
    if (stopping_) return absl::CancelledError("stopping");
    keepalive_context_ = &context;
  }
  auto stream = lease_->LeaseKeepAlive(&context);
  etcdserverpb::LeaseKeepAliveRequest request;
  request.set_id(id);
  etcdserverpb::LeaseKeepAliveResponse response;
  const bool exchanged = stream->Write(request) && stream->Read(&response);
  stream->WritesDone();
  const grpc::Status rpc = stream->Finish();
  {
    absl::MutexLock lock(&mutex_);
    keepalive_context_ = nullptr;
  }
  if (!exchanged) {
    return Error("LeaseKeepAlive", rpc.ok() ? grpc::Status(grpc::StatusCode::UNAVAILABLE,
                                                         "the stream ended")
                                            : rpc);
  }
  if (response.ttl() <= 0) {
    // Expired while etcd was out of reach: the others have seen this host
    // go. A new lease, the key again, and the mirror written whole.
    absl::MutexLock lock(&mutex_);
    lease_id_ = 0;
    return absl::UnavailableError(absl::StrCat(
        "the lease of node \"", options_.node, "\" expired; taking a new one"));
  }
  return absl::OkStatus();
}

absl::Status Cluster::Resync() {
  // Everything queued is in the snapshot taken after this (the registry
  // publishes a change once it holds it), so the queue restarts empty and
  // an older queued state never overwrites the snapshot's.
  {
    absl::MutexLock lock(&mutex_);
    pending_.clear();
  }
  std::vector<ProcessStatus> mine = snapshot_();
  absl::flat_hash_map<std::string, const ProcessStatus*> held;
  for (const ProcessStatus& status : mine) held[status.id()] = &status;
  // This host's keys that no record backs any more (dropped while etcd was
  // out of reach, or by an earlier run of the registry).
  std::vector<std::pair<std::string, std::string>> stale;  // id, name
  {
    int64_t revision = 0;
    PM_ASSIGN_OR_RETURN(std::vector<mvccpb::KeyValue> kvs,
                        RangeAll("Range of the records", Key(kProcs, ""),
                                 EtcdPrefixEnd(Key(kProcs, "")), &revision));
    for (const mvccpb::KeyValue& kv : kvs) {
      ProcessStatus status;
      if (!status.ParseFromString(kv.value()) || status.node() != options_.node) continue;
      if (!held.contains(status.id())) stale.emplace_back(status.id(), status.name());
    }
  }
  {
    absl::MutexLock lock(&mutex_);
    for (ProcessStatus& status : mine) {
      if (pending_.count(status.id()) != 0) continue;  // newer, queued since
      PendingWrite& write = pending_[status.id()];
      write.status = std::move(status);
      write.status->set_node(options_.node);
    }
    for (auto& [id, name] : stale) {
      if (pending_.count(id) != 0) continue;
      pending_[id].release_name = name;
    }
  }
  PM_RETURN_IF_ERROR(FlushPending());
  PM_LOG(INFO) << "cluster: " << mine.size() << " record(s) of node \""
               << options_.node << "\" written to etcd, " << stale.size()
               << " stale one(s) dropped";
  absl::MutexLock lock(&mutex_);
  resynced_ = true;
  ++changes_;
  return absl::OkStatus();
}

absl::Status Cluster::FlushPending() {
  while (true) {
    std::vector<std::pair<std::string, PendingWrite>> batch;
    {
      absl::MutexLock lock(&mutex_);
      while (!pending_.empty() && batch.size() < kRecordsPerTxn) {
        auto it = pending_.begin();
        batch.emplace_back(it->first, std::move(it->second));
        pending_.erase(it);
      }
      in_flight_ = batch.size();
    }
    if (batch.empty()) {
      absl::MutexLock lock(&mutex_);
      ++changes_;
      return absl::OkStatus();
    }
    etcdserverpb::TxnRequest request;
    for (const auto& [id, write] : batch) {
      if (write.status.has_value()) {
        etcdserverpb::PutRequest* put = request.add_success()->mutable_request_put();
        put->set_key(Key(kProcs, id));
        put->set_value(write.status->SerializeAsString());
        etcdserverpb::PutRequest* claim = request.add_success()->mutable_request_put();
        claim->set_key(Key(kIds, id));
        claim->set_value(ClaimValue(options_.node, write.status->owner_user()));
      } else {
        request.add_success()->mutable_request_delete_range()->set_key(Key(kProcs, id));
        request.add_success()->mutable_request_delete_range()->set_key(Key(kIds, id));
      }
    }
    etcdserverpb::TxnResponse response;
    grpc::ClientContext context;
    SetDeadline(context);
    grpc::Status rpc = kv_->Txn(&context, request, &response);
    // A name goes only while it still names this id (a Txn of its own:
    // its compare must not hold up the records).
    for (const auto& [id, write] : batch) {
      if (!rpc.ok() || write.release_name.empty() || write.status.has_value()) continue;
      etcdserverpb::TxnRequest release;
      etcdserverpb::Compare* same = release.add_compare();
      same->set_key(Key(kNames, write.release_name));
      same->set_target(etcdserverpb::Compare::VALUE);
      same->set_result(etcdserverpb::Compare::EQUAL);
      same->set_value(id);
      release.add_success()->mutable_request_delete_range()->set_key(
          Key(kNames, write.release_name));
      etcdserverpb::TxnResponse released;
      grpc::ClientContext release_context;
      SetDeadline(release_context);
      rpc = kv_->Txn(&release_context, release, &released);
    }
    absl::MutexLock lock(&mutex_);
    in_flight_ = 0;
    if (!rpc.ok()) {
      // Back in the queue, unless a newer change of the id came meanwhile.
      for (auto& [id, write] : batch) pending_.try_emplace(id, std::move(write));
      return Error("Txn of the mirror", rpc);
    }
  }
}

// --- The other hosts ------------------------------------------------------------

void Cluster::WatcherLoop() {
  // When the last watch, in sync, ended; when one was last reopened
  // (InfinitePast: none; not std::optional, which gcc -O2 takes for
  // uninitialized); the tries to reopen it since.
  constexpr absl::Time kNone = absl::InfinitePast();
  absl::Time in_sync_until = kNone;
  absl::Time reopened = kNone;
  size_t failover_tries = 0;
  while (!stopping()) {
    bool synced = false;
    const absl::Status ended = WatchOnce(&synced);
    const absl::Time now = absl::Now();
    {
      absl::MutexLock lock(&mutex_);
      last_error_ = ended.ToString();
      if (stopping_) break;
      if (synced) {
        // A watch that was in sync ended: its member went away (killed, cut
        // off from the quorum) or etcd ended it. It is reopened at once,
        // through the next member, and the others' records are answered as
        // they were meanwhile (as during any watch's delay); only when it
        // cannot be reopened is etcd out of reach, since the end.
        in_sync_until = now;
        failover_tries = 0;
        // Not in a loop, though: a watch that keeps ending at once is
        // reopened every `retry`.
        if (reopened != kNone && now - reopened < options_.retry) {
          mutex_.AwaitWithTimeout(absl::Condition(&stopping_), options_.retry);
        }
        reopened = absl::Now();
        continue;
      }
      if (in_sync_until != kNone && absl::IsUnavailable(ended) &&
          failover_tries < ABSL_ARRAYSIZE(kFailoverPauses)) {
        mutex_.AwaitWithTimeout(absl::Condition(&stopping_),
                                kFailoverPauses[failover_tries++]);
        continue;
      }
      if (connected_) {
        connected_ = false;
        disconnected_since_ = in_sync_until != kNone ? in_sync_until : now;
        ++changes_;
        // Every other host's state is unknown from now.
        all_dirty_ = true;
      }
      in_sync_until = kNone;
      failover_tries = 0;
    }
    absl::MutexLock lock(&mutex_);
    mutex_.AwaitWithTimeout(absl::Condition(&stopping_), options_.retry);
  }
}

absl::Status Cluster::WatchOnce(bool* synced) {
  // The whole directory at one revision, then every change after it.
  int64_t revision = 0;
  PM_ASSIGN_OR_RETURN(std::vector<mvccpb::KeyValue> snapshot,
                      RangeAll("Range of the cluster", options_.prefix,
                               EtcdPrefixEnd(options_.prefix), &revision));
  const absl::Time now = absl::Now();
  std::vector<RemoteChange> changes;
  {
    absl::MutexLock lock(&mutex_);
    std::set<std::string> before;
    for (const auto& [node, info] : nodes_) before.insert(node);
    absl::flat_hash_map<std::string, ProcessStatus> previous = std::move(others_);
    others_.clear();
    other_names_.clear();
    nodes_.clear();
    for (const mvccpb::KeyValue& kv : snapshot) {
      ApplyKey(kv.key(), &kv.value(), now);
    }
    for (const std::string& node : before) {
      if (nodes_.count(node) == 0) gone_since_.try_emplace(node, now);
    }
    // What went while the watch was down.
    for (auto& [id, status] : previous) {
      if (others_.count(id) == 0) went_.insert_or_assign(id, std::move(status));
    }
    connected_ = true;
    ++changes_;
    all_dirty_ = true;
    if (!reporting_) StartReporting();
    reporting_ = true;
  }
  *synced = true;
  grpc::ClientContext context;
  // A member cut off from the others' quorum ends the watch instead of
  // going quiet (clientv3.WithRequireLeader).
  context.AddMetadata("hasleader", "true");
  {
    absl::MutexLock lock(&mutex_);
    if (stopping_) return absl::CancelledError("stopping");
    watch_context_ = &context;
  }
  auto stream = watch_->Watch(&context);
  etcdserverpb::WatchRequest request;
  etcdserverpb::WatchCreateRequest* create = request.mutable_create_request();
  create->set_key(options_.prefix);
  create->set_range_end(EtcdPrefixEnd(options_.prefix));
  create->set_start_revision(revision + 1);
  absl::Status ended = absl::OkStatus();
  if (stream->Write(request)) {
    etcdserverpb::WatchResponse response;
    while (stream->Read(&response)) {
      if (response.canceled() || response.compact_revision() != 0) {
        ended = absl::AbortedError(absl::StrCat(
            "etcd ended the watch: ", response.cancel_reason(),
            response.compact_revision() != 0 ? " (compacted)" : ""));
        context.TryCancel();
        break;
      }
      const absl::Time at = absl::Now();
      absl::MutexLock lock(&mutex_);
      for (const mvccpb::Event& event : response.events()) {
        ApplyKey(event.kv().key(),
                 event.type() == mvccpb::Event::PUT ? &event.kv().value() : nullptr, at);
      }
      ++changes_;
    }
  }
  const grpc::Status rpc = stream->Finish();
  {
    absl::MutexLock lock(&mutex_);
    watch_context_ = nullptr;
  }
  if (!ended.ok()) return ended;
  return Error("Watch", rpc.ok() ? grpc::Status(grpc::StatusCode::UNAVAILABLE,
                                                "the stream ended")
                                 : rpc);
}

void Cluster::ApplyKey(absl::string_view key, const std::string* value,
                       absl::Time now) {
  if (!absl::ConsumePrefix(&key, options_.prefix)) return;
  const size_t slash = key.find('/');
  if (slash == absl::string_view::npos) return;
  const absl::string_view kind = key.substr(0, slash);
  const std::string rest(key.substr(slash + 1));
  if (kind == kNodes) {
    ClusterNode node;
    if (value != nullptr && node.ParseFromString(*value)) {
      if (rest != options_.node && nodes_.count(rest) == 0) {
        PM_LOG(INFO) << "cluster: host \"" << rest << "\" is up (gateway "
                     << (node.gateway().empty() ? "none" : node.gateway()) << ")";
        all_dirty_ = true;  // its processes' states are known again
      }
      nodes_[rest] = std::move(node);
      gone_since_.erase(rest);
    } else {
      if (nodes_.erase(rest) > 0) all_dirty_ = true;  // now unknown
      gone_since_[rest] = now;
    }
  } else if (kind == kProcs) {
    dirty_.insert(rest);
    auto old = others_.find(rest);
    if (old != others_.end()) {
      auto named = other_names_.find(old->second.name());
      if (named != other_names_.end() && named->second == rest) other_names_.erase(named);
      went_.insert_or_assign(rest, std::move(old->second));
      others_.erase(old);
    }
    ProcessStatus status;
    if (value == nullptr || !status.ParseFromString(*value) ||
        status.node() == options_.node || status.id() != rest) {
      return;  // gone, ours (the registry holds it), or not a record
    }
    if (!status.name().empty()) other_names_[status.name()] = rest;
    went_.erase(rest);
    others_.emplace(rest, std::move(status));
  }
}

void Cluster::SetChangeListener(ChangeListener listener) {
  absl::MutexLock lock(&mutex_);
  listener_ = std::move(listener);
}

std::vector<Cluster::RemoteChange> Cluster::TakeChanges() {
  std::vector<RemoteChange> changes;
  auto consider = [&](const std::string& id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_) {
    auto told = told_.find(id);
    auto now = others_.find(id);
    if (now == others_.end()) {
      if (told == told_.end()) return;
      RemoteChange& change = changes.emplace_back();
      change.before = told->second.state;
      change.run_before = told->second.run;
      change.removed = true;
      auto went = went_.find(id);
      if (went != went_.end()) {
        change.status = std::move(went->second);
      } else {
        change.status.set_id(id);
        change.status.set_node(told->second.node);
      }
      told_.erase(told);
      return;
    }
    ProcessStatus answer = Answer(now->second);
    const Told is = {answer.state(), answer.run(), answer.node()};
    RemoteChange change;  // before UNSPECIFIED: new here
    if (told != told_.end()) {
      if (told->second.state == is.state && told->second.run == is.run) return;
      change.before = told->second.state;
      change.run_before = told->second.run;
      told->second = is;
    } else {
      told_.emplace(id, is);
    }
    change.status = std::move(answer);
    changes.push_back(std::move(change));
  };
  if (all_dirty_) {
    std::vector<std::string> ids;
    ids.reserve(others_.size() + told_.size());
    for (const auto& [id, status] : others_) ids.push_back(id);
    for (const auto& [id, told] : told_) {
      if (others_.count(id) == 0) ids.push_back(id);
    }
    for (const std::string& id : ids) consider(id);
  } else {
    for (const std::string& id : dirty_) consider(id);
  }
  dirty_.clear();
  all_dirty_ = false;
  went_.clear();
  // Before the first sync, what is there is where the reporting starts.
  if (!reporting_) changes.clear();
  return changes;
}

void Cluster::StartReporting() {
  // Where the reporting starts: what was told before a restart, so that
  // every change since is told (a record that ended or went meanwhile, or
  // whose host is out of reach now), and of the records never told, those
  // that started since (new); the others, and everything when nothing was
  // told before, as they are now, untold.
  //
  // started_at is the other host's clock and `until` this one's: a record
  // that started up to kClockSkewAllowance before `until` counts as new
  // too, so a host whose clock is behind loses no start. (Told twice at
  // worst: a record that started in that span, was told, and whose every
  // event has aged out of the retained ones since.)
  const ToldBefore& before = options_.told_before;
  told_ = before.records;
  for (const auto& [id, status] : others_) {
    if (told_.count(id) != 0) continue;
    if (before.until != absl::InfinitePast() &&
        FromProtoTimestamp(status.started_at()) > before.until - kClockSkewAllowance) {
      continue;
    }
    ProcessStatus answer = Answer(status);
    told_.emplace(id, Told{answer.state(), answer.run(), answer.node()});
  }
  dirty_.clear();
  went_.clear();
  all_dirty_ = true;
}

void Cluster::ReporterLoop() {
  // One thread tells every change, in the order they were taken, whichever
  // thread made them (the watcher, the writer or a claim noting etcd's
  // state); the listener is called with no lock held.
  while (true) {
    std::vector<RemoteChange> changes;
    {
      absl::MutexLock lock(&mutex_);
      auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_) {
        return stopping_ ||
               (reporting_ && listener_ && (all_dirty_ || !dirty_.empty()));
      };
      mutex_.Await(absl::Condition(&ready));
      if (stopping_) return;
      changes = TakeChanges();
    }
    Tell(std::move(changes));
  }
}

void Cluster::Tell(std::vector<RemoteChange> changes) {
  if (changes.empty()) return;
  ChangeListener listener;
  {
    absl::MutexLock lock(&mutex_);
    listener = listener_;
  }
  if (listener) listener(std::move(changes));
}

std::string Cluster::EtcdUnreachableLocked() const {
  if (!connected_) {
    return absl::StrCat("etcd at ", options_.endpoints, " unreachable since ",
                        Since(disconnected_since_), " (", last_error_, ")");
  }
  if (!etcd_error_.empty()) {
    // The watch may stay open on a hung etcd: the writer's calls tell.
    return absl::StrCat("etcd unreachable since ", Since(etcd_error_since_), " (",
                        etcd_error_, ")");
  }
  return "";
}

std::string Cluster::EtcdUnreachable() const {
  absl::MutexLock lock(&mutex_);
  return EtcdUnreachableLocked();
}

ProcessStatus Cluster::Answer(const ProcessStatus& stored) const {
  if (IsEndState(stored.state())) return stored;  // final, wherever it is
  std::string reason = EtcdUnreachableLocked();
  if (!reason.empty()) {
    absl::StrAppend(&reason, ": the state on host ", stored.node(), " is not known");
  } else if (nodes_.count(stored.node()) == 0) {
    auto gone = gone_since_.find(stored.node());
    reason = gone != gone_since_.end()
                 ? absl::StrCat("host ", stored.node(), " unreachable since ",
                                Since(gone->second),
                                " (its registry's lease in etcd expired)")
                 : absl::StrCat("host ", stored.node(),
                                " unreachable: it has held no lease in etcd "
                                "since this registry started at ",
                                Since(started_));
  } else {
    return stored;
  }
  ProcessStatus answer = stored;
  answer.set_last_known_state(stored.state());
  answer.set_state(ProcessStatus::STATE_UNKNOWN);
  answer.set_state_reason(std::move(reason));
  return answer;
}

std::optional<ProcessStatus> Cluster::Find(absl::string_view id) const {
  absl::MutexLock lock(&mutex_);
  auto it = others_.find(absl::AsciiStrToLower(id));
  if (it == others_.end()) return std::nullopt;
  return Answer(it->second);
}

std::optional<Cluster::IdClaim> Cluster::OwnerOf(const std::string& id) {
  std::optional<std::string> value = ReadClaim(Key(kIds, id));
  if (!value.has_value()) return std::nullopt;
  return ParseClaim(*value);
}

std::optional<std::string> Cluster::ClaimedIdOfName(const std::string& name) {
  return ReadClaim(Key(kNames, name));
}

std::optional<std::string> Cluster::ReadClaim(const std::string& key) {
  {
    // Not while etcd is known out of reach: no call waits for it then.
    absl::MutexLock lock(&mutex_);
    if (!connected_ || !etcd_error_.empty()) return std::nullopt;
  }
  ++claim_reads_;
  etcdserverpb::RangeRequest request;
  request.set_key(key);
  etcdserverpb::RangeResponse response;
  grpc::ClientContext context;
  // Short: a registry's handler waits on it (an unknown full id).
  context.set_deadline(absl::ToChronoTime(
      absl::Now() + std::min(options_.deadline, options_.claim_read_deadline)));
  const grpc::Status rpc = kv_->Range(&context, request, &response);
  if (!rpc.ok()) {
    // Answered as unclaimed. Not noted as etcd out of reach: the watch and
    // the writer's calls say that, and a read any caller can ask for that
    // ran out of its short deadline would turn every other host's record
    // UNKNOWN (and tell it) until the writer's next call.
    // Logged now and then, not per read: any caller can ask for reads.
    static std::atomic<uint64_t> failed{0};
    if (const uint64_t n = failed.fetch_add(1) + 1; n % 1000 == 1) {
      PM_LOG(INFO) << "cluster: a claim's read failed (" << n
                   << " so far): " << Error("Range of a claim", rpc);
    }
    return std::nullopt;
  }
  if (response.kvs().empty()) return std::nullopt;
  return response.kvs(0).value();
}

std::optional<std::string> Cluster::IdOfName(absl::string_view name) const {
  absl::MutexLock lock(&mutex_);
  auto it = other_names_.find(name);
  if (it == other_names_.end()) return std::nullopt;
  return it->second;
}

std::vector<ProcessStatus> Cluster::Others() const {
  absl::MutexLock lock(&mutex_);
  std::vector<ProcessStatus> all;
  all.reserve(others_.size());
  for (const auto& [id, status] : others_) all.push_back(Answer(status));
  return all;
}

bool Cluster::connected() const {
  absl::MutexLock lock(&mutex_);
  return connected_;
}

bool Cluster::reachable() const {
  absl::MutexLock lock(&mutex_);
  return EtcdUnreachableLocked().empty();
}

std::optional<std::string> Cluster::GatewayOf(absl::string_view node) const {
  absl::MutexLock lock(&mutex_);
  auto it = nodes_.find(std::string(node));
  if (it == nodes_.end()) return std::nullopt;
  return it->second.gateway();
}

std::map<std::string, ClusterNode> Cluster::Nodes() const {
  absl::MutexLock lock(&mutex_);
  return nodes_;
}

bool Cluster::AwaitChange(const std::function<bool(const Cluster&)>& ready,
                          absl::Duration timeout) const {
  const absl::Time deadline = absl::Now() + timeout;
  while (true) {
    uint64_t seen;
    {
      absl::MutexLock lock(&mutex_);
      seen = changes_;
    }
    if (ready(*this)) return true;
    absl::MutexLock lock(&mutex_);
    auto changed = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_) {
      return changes_ != seen || stopping_;
    };
    if (!mutex_.AwaitWithDeadline(absl::Condition(&changed), deadline)) {
      return false;
    }
    if (stopping_) return false;
  }
}

}  // namespace pm::registry
