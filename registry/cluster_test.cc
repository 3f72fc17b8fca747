// Two hosts' registries as members of one cluster, on a real etcd (Debian's
// etcd-server, on free loopback ports): the records of one answered by the
// other, names unique across both, a host whose lease expired answered as
// STATE_UNKNOWN, and a hung etcd neither blocking a host nor losing what it
// recorded meanwhile; over TLS with etcd's client certificate, the same,
// and every other way to reach a TLS etcd refused with a message that says
// what of TLS failed. Every wait is for an event of the Cluster's
// (AwaitChange), never a sleep.
#include "registry/cluster.h"

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/fd.h"
#include "common/proto_time.h"
#include "etcd/etcdserver/etcdserverpb/rpc.grpc.pb.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "registry/registry.h"
#include "registry/sqlite_record_store.h"
#include "third_party/etcd/etcd_test_server.h"

namespace pm::registry {
namespace {

using ::pm::internal::v1::CreateRecordRequest;
using ::pm::internal::v1::ResolveRequest;
using ::pm::internal::v1::UpdateRecordRequest;
using ::pm::v1::ProcessStatus;
using ::testing::HasSubstr;
using ::testing::Not;

// Long enough for etcd under load, short enough for a test.
constexpr absl::Duration kLease = absl::Seconds(2);
// A lease expires within its TTL plus etcd's check (500 ms); the rest is
// slack for a loaded machine.
constexpr absl::Duration kPatience = absl::Seconds(30);

CreateRecordRequest Create(const std::string& name = "") {
  CreateRecordRequest request;
  request.mutable_spec()->set_executable("sleep");
  request.mutable_spec()->add_args("1000");
  if (!name.empty()) request.mutable_spec()->set_name(name);
  request.set_resolved_executable("/usr/bin/sleep");
  request.set_pid(4242);
  request.set_start_ticks(1);
  request.set_owner("alice (CN=laptop)");
  request.set_owner_user("alice");
  return request;
}

// One host: its registry (records in SQLite, as a host's are, so that it
// can be restarted) in the cluster as `node`.
struct Host {
  std::unique_ptr<Registry> registry;
  Cluster* cluster = nullptr;
};

class ClusterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = ::testing::TempDir() + "/" +
           ::testing::UnitTest::GetInstance()->current_test_info()->name();
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_ + "/etcd");
    absl::StatusOr<std::unique_ptr<EtcdServer>> etcd = EtcdServer::Start(dir_ + "/etcd");
    ASSERT_TRUE(etcd.ok()) << etcd.status();
    etcd_ = *std::move(etcd);
  }

  // A Cluster's options for host `node` on `endpoints`, in plaintext.
  static Cluster::Options OptionsFor(const std::string& node, const std::string& endpoints) {
    Cluster::Options options;
    options.endpoints = endpoints;
    options.prefix = "/pm/test/";
    options.node = node;
    options.instance = "stack-of-" + node;
    options.lease_ttl = kLease;
    options.deadline = absl::Seconds(1);
    options.retry = absl::Milliseconds(100);
    return options;
  }

  // Host `node`'s registry, (re)opened on its records, in the cluster on
  // `endpoints` (default: the test's etcd), reaching etcd as tls_ says.
  Host Join(const std::string& node, const std::string& endpoints = "") {
    RegistryOptions options;
    options.node = node;
    options.proc_root = dir_ + "/no_proc_here";
    Host host;
    absl::StatusOr<std::unique_ptr<SqliteRecordStore>> store =
        SqliteRecordStore::Open(dir_ + "/" + node + ".sqlite");
    EXPECT_TRUE(store.ok()) << store.status();
    if (!store.ok()) return host;
    absl::StatusOr<std::unique_ptr<Registry>> registry =
        Registry::Open(options, *std::move(store));
    EXPECT_TRUE(registry.ok()) << registry.status();
    if (!registry.ok()) return host;
    host.registry = *std::move(registry);
    Cluster::Options cluster_options =
        OptionsFor(node, endpoints.empty() ? etcd_->endpoint() : endpoints);
    cluster_options.tls = tls_;
    cluster_options.range_page = range_page_;
    cluster_options.claim_read_deadline = claim_read_deadline_;
    cluster_options.retry = retry_;
    cluster_options.after_range_page = after_range_page_;
    cluster_options.told_before = host.registry->ToldOfOtherHosts();
    Registry* records = host.registry.get();
    absl::StatusOr<std::unique_ptr<Cluster>> cluster = Cluster::Start(
        cluster_options, [records] { return records->Snapshot(); });
    EXPECT_TRUE(cluster.ok()) << cluster.status();
    if (!cluster.ok()) return host;
    host.cluster = cluster->get();
    host.registry->AttachCluster(*std::move(cluster));
    // In the cluster: the node key held, the others' records read.
    EXPECT_TRUE(host.cluster->AwaitChange(
        [](const Cluster& c) { return c.holds_lease() && c.reachable(); }, kPatience))
        << node << " never joined; etcd says:\n" << etcd_->log();
    return host;
  }

  // Waits until `host` sees another host's record of `id` that `ready`
  // accepts.
  static bool AwaitRecord(const Host& host, const std::string& id,
                          const std::function<bool(const ProcessStatus&)>& ready) {
    return host.cluster->AwaitChange(
        [&](const Cluster& c) {
          std::optional<ProcessStatus> there = c.Find(id);
          return there.has_value() && ready(*there);
        },
        kPatience);
  }

  std::string dir_;
  std::unique_ptr<EtcdServer> etcd_;
  // How the hosts reach etcd (plaintext here).
  EtcdTls tls_;
  // Keys per Range page of the hosts joined from now on.
  int64_t range_page_ = 1000;
  // Their reads of a claim's key.
  absl::Duration claim_read_deadline_ = absl::Milliseconds(500);
  // Their wait before trying etcd again after a failed call.
  absl::Duration retry_ = absl::Milliseconds(100);
  // Runs after each page of their paged reads but the last.
  std::function<void(absl::string_view)> after_range_page_;
};

TEST_F(ClusterTest, ARecordOfOneHostIsAnsweredByTheOtherWithItsNode) {
  Host a = Join("a");
  Host b = Join("b");
  absl::StatusOr<ProcessStatus> web = a.registry->CreateRecord(Create("web"));
  ASSERT_TRUE(web.ok()) << web.status();
  EXPECT_EQ(web->node(), "a");
  const std::string id = web->id();
  // At once, by its full id, whether or not the watch has brought it yet:
  // its claim in etcd names the host.
  ResolveRequest at_once;
  at_once.set_ref(id);
  absl::StatusOr<pm::internal::v1::ResolveResponse> where = b.registry->Resolve(at_once);
  ASSERT_TRUE(where.ok()) << where.status();
  EXPECT_EQ(where->node(), "a");
  // By its name too: the name's claim gives the id.
  ResolveRequest name_at_once;
  name_at_once.set_ref("web");
  where = b.registry->Resolve(name_at_once);
  ASSERT_TRUE(where.ok()) << where.status();
  EXPECT_EQ(where->id(), id);
  EXPECT_EQ(where->node(), "a");
  ResolveRequest no_such_name;
  no_such_name.set_ref("nobody-has-it");
  EXPECT_TRUE(absl::IsNotFound(b.registry->Resolve(no_such_name).status()));
  ASSERT_TRUE(AwaitRecord(b, id, [](const ProcessStatus&) { return true; }));

  absl::StatusOr<ProcessStatus> status = b.registry->GetStatus(id);
  ASSERT_TRUE(status.ok()) << status.status();
  EXPECT_EQ(status->node(), "a");
  EXPECT_EQ(status->state(), ProcessStatus::STATE_RUNNING);
  EXPECT_EQ(status->name(), "web");

  // By name and by a prefix of its id, as on its own host.
  ResolveRequest by_name;
  by_name.set_ref("web");
  absl::StatusOr<pm::internal::v1::ResolveResponse> resolved = b.registry->Resolve(by_name);
  ASSERT_TRUE(resolved.ok()) << resolved.status();
  EXPECT_EQ(resolved->id(), id);
  ResolveRequest by_prefix;
  by_prefix.set_ref(id.substr(0, 8));
  resolved = b.registry->Resolve(by_prefix);
  ASSERT_TRUE(resolved.ok()) << resolved.status();
  EXPECT_EQ(resolved->id(), id);

  // Listed beside b's own, each with its node; --node keeps one host's.
  absl::StatusOr<ProcessStatus> local = b.registry->CreateRecord(Create());
  ASSERT_TRUE(local.ok()) << local.status();
  pm::v1::ListResponse all = b.registry->List();
  std::map<std::string, std::string> nodes;
  for (const ProcessStatus& p : all.processes()) nodes[p.id()] = p.node();
  EXPECT_EQ(nodes[id], "a");
  EXPECT_EQ(nodes[local->id()], "b");
  pm::v1::ListRequest only_a;
  only_a.set_node("a");
  absl::StatusOr<pm::v1::ListResponse> listed = b.registry->List(only_a);
  ASSERT_TRUE(listed.ok()) << listed.status();
  ASSERT_EQ(listed->processes_size(), 1);
  EXPECT_EQ(listed->processes(0).id(), id);
  pm::v1::ListRequest bad_node;
  bad_node.set_node("no/such");
  EXPECT_TRUE(absl::IsInvalidArgument(b.registry->List(bad_node).status()));

  // Its end reaches the other host too; waiting for it there answers at
  // once, while waiting for a running one is refused naming its host.
  UpdateRecordRequest exited;
  exited.set_id(id);
  exited.set_state(ProcessStatus::STATE_EXITED);
  exited.mutable_end()->set_exit_code(7);
  ASSERT_TRUE(a.registry->UpdateRecord(exited).ok());
  ASSERT_TRUE(AwaitRecord(b, id, [](const ProcessStatus& p) {
    return p.state() == ProcessStatus::STATE_EXITED;
  }));
  absl::StatusOr<ProcessStatus> waited;
  b.registry->Wait(id, [&](absl::StatusOr<ProcessStatus> s) { waited = std::move(s); });
  ASSERT_TRUE(waited.ok()) << waited.status();
  EXPECT_EQ(waited->exit_code(), 7);
  ASSERT_TRUE(AwaitRecord(a, local->id(), [](const ProcessStatus&) { return true; }));
  absl::StatusOr<ProcessStatus> refused;
  a.registry->Wait(local->id(), [&](absl::StatusOr<ProcessStatus> s) { refused = std::move(s); });
  EXPECT_TRUE(absl::IsFailedPrecondition(refused.status())) << refused.status();
  EXPECT_THAT(refused.status().message(), HasSubstr("runs on host b"));
}

TEST_F(ClusterTest, TheDirectoryIsReadInPagesAtOneRevisionWithoutMissingAKey) {
  range_page_ = 2;  // a's seven records alone are 14 keys, 7 pages
  Host a = Join("a");
  std::vector<std::string> ids;
  for (int i = 0; i < 7; ++i) {
    absl::StatusOr<ProcessStatus> made = a.registry->CreateRecord(Create());
    ASSERT_TRUE(made.ok()) << made.status();
    ids.push_back(made->id());
  }
  ASSERT_TRUE(a.cluster->AwaitChange([](const Cluster& c) { return c.pending() == 0; },
                                     kPatience));
  // In etcd before b comes: b has them from its first read of the
  // directory, page after page, as soon as it has joined.
  Host b = Join("b");
  for (const std::string& id : ids) EXPECT_TRUE(b.cluster->Find(id).has_value()) << id;
  EXPECT_EQ(b.cluster->Others().size(), ids.size());
  // a's pm again, on its records: its writer reads its keys in pages too
  // and finds none stale; b still sees every record.
  a = Host();
  Host back = Join("a");
  ASSERT_TRUE(back.cluster->AwaitChange([](const Cluster& c) { return c.pending() == 0; },
                                        kPatience));
  for (const std::string& id : ids) {
    EXPECT_TRUE(AwaitRecord(b, id, [](const ProcessStatus& p) {
      return p.state() == ProcessStatus::STATE_RUNNING;
    })) << id;
  }
}

// etcd compacts its history (every 5 minutes as Kubernetes runs it): a
// paged read whose revision goes between two pages starts again from the
// first page, at once, rather than failing and waiting to be tried again.
TEST_F(ClusterTest, ACompactionBetweenTwoPagesStartsTheReadAgainFromTheFirst) {
  range_page_ = 2;
  Host a = Join("a");
  std::vector<std::string> ids;
  for (int i = 0; i < 5; ++i) {
    absl::StatusOr<ProcessStatus> made = a.registry->CreateRecord(Create());
    ASSERT_TRUE(made.ok()) << made.status();
    ids.push_back(made->id());
  }
  ASSERT_TRUE(a.cluster->AwaitChange([](const Cluster& c) { return c.pending() == 0; },
                                     kPatience));
  // b's first read of a paged directory meets a compaction after its first
  // page: a write elsewhere, then a compaction at its revision, which is
  // newer than the read's. A failed read is tried again only after an
  // hour: b is in the cluster in time only if the read itself starts over.
  std::atomic<bool> started{false};
  std::atomic<int> compactions{0};
  auto kv = etcdserverpb::KV::NewStub(grpc::CreateChannel(
      etcd_->endpoint(), grpc::InsecureChannelCredentials()));
  after_range_page_ = [&](absl::string_view what) {
    // Once, in the read of the directory that b's joining waits for (its
    // writer's read of the records may come first, on another thread).
    if (what != "Range of the cluster" || started.exchange(true)) return;
    grpc::ClientContext put_context;
    put_context.set_deadline(absl::ToChronoTime(absl::Now() + kPatience));
    etcdserverpb::PutRequest put;
    put.set_key("/elsewhere/tick");
    put.set_value("1");
    etcdserverpb::PutResponse put_response;
    const grpc::Status written = kv->Put(&put_context, put, &put_response);
    ASSERT_TRUE(written.ok()) << written.error_message();
    grpc::ClientContext compact_context;
    compact_context.set_deadline(absl::ToChronoTime(absl::Now() + kPatience));
    etcdserverpb::CompactionRequest compact;
    compact.set_revision(put_response.header().revision());
    compact.set_physical(true);
    etcdserverpb::CompactionResponse compacted;
    const grpc::Status done = kv->Compact(&compact_context, compact, &compacted);
    ASSERT_TRUE(done.ok()) << done.error_message();
    ++compactions;
  };
  retry_ = absl::Hours(1);
  Host b = Join("b");
  EXPECT_EQ(compactions.load(), 1);
  EXPECT_EQ(b.cluster->EtcdUnreachable(), "");
  for (const std::string& id : ids) EXPECT_TRUE(b.cluster->Find(id).has_value()) << id;
  EXPECT_EQ(b.cluster->Others().size(), ids.size());
}

// Reads of claims are what any caller can ask for (an unknown full id or
// name): one that runs out of its short deadline answers "not found" and
// changes nothing else, never counting etcd out of reach (which would
// answer, and tell, every other host's record as UNKNOWN).
TEST_F(ClusterTest, AClaimReadThatRunsOutOfTimeChangesNothingElseAHostAnswers) {
  claim_read_deadline_ = absl::Microseconds(1);  // every read runs out
  Host a = Join("a");
  Host b = Join("b");
  absl::StatusOr<ProcessStatus> web = a.registry->CreateRecord(Create("web"));
  ASSERT_TRUE(web.ok()) << web.status();
  ASSERT_TRUE(AwaitRecord(b, web->id(), [](const ProcessStatus& p) {
    return p.state() == ProcessStatus::STATE_RUNNING;
  }));
  for (int i = 0; i < 20; ++i) {
    ResolveRequest unknown;
    unknown.set_ref(absl::StrCat("0b6d8e3c-6f51-4f0e-9d1c-0000000000", 10 + i));
    unknown.set_owner_user("mallory");
    EXPECT_TRUE(absl::IsNotFound(b.registry->Resolve(unknown).status()));
  }
  EXPECT_TRUE(b.cluster->reachable()) << b.cluster->EtcdUnreachable();
  std::optional<ProcessStatus> there = b.cluster->Find(web->id());
  ASSERT_TRUE(there.has_value());
  EXPECT_EQ(there->state(), ProcessStatus::STATE_RUNNING) << there->state_reason();
}

// What a lookup costs must not tell what it found: a name another user
// holds, on this host or another, takes as many reads of etcd as a name
// nobody has, and gets the same NOT_FOUND.
TEST_F(ClusterTest, ALookupOfAnotherUsersNameCostsWhatOneOfNoNameDoes) {
  Host a = Join("a");
  Host b = Join("b");
  absl::StatusOr<ProcessStatus> web = a.registry->CreateRecord(Create("web"));
  ASSERT_TRUE(web.ok()) << web.status();
  ASSERT_TRUE(AwaitRecord(b, web->id(), [](const ProcessStatus&) { return true; }));
  // alice's "web", as mallory, on a (where it runs) and on b (which knows
  // it from the watch), and a name nobody has.
  for (Host* host : {&a, &b}) {
    std::vector<uint64_t> reads;
    std::vector<std::string> answers;
    for (const char* name : {"web", "nothing-here"}) {
      ResolveRequest request;
      request.set_ref(name);
      request.set_owner_user("mallory");
      const uint64_t before = host->cluster->claim_reads();
      absl::StatusOr<pm::internal::v1::ResolveResponse> found = host->registry->Resolve(request);
      reads.push_back(host->cluster->claim_reads() - before);
      ASSERT_TRUE(absl::IsNotFound(found.status())) << found.status();
      answers.push_back(std::string(found.status().message()));
    }
    EXPECT_EQ(reads[0], reads[1]);
    EXPECT_GT(reads[0], 0u);
    // The message names what was asked, never whose it is.
    EXPECT_THAT(answers[0], Not(HasSubstr("alice")));
  }
}

TEST_F(ClusterTest, AnIdClaimedAMomentAgoIsFoundOnlyByItsOwnersCalls) {
  Host a = Join("a");
  Host b = Join("b");
  // Claimed on a and not recorded: b can know it only from its claim in
  // etcd, the path a call about a process made a moment ago takes.
  const std::string id = "0b6d8e3c-6f51-4f0e-9d1c-2a4e5b7c8d9e";
  ASSERT_TRUE(a.cluster->Claim(id, "", "alice").ok());

  ResolveRequest as_alice;
  as_alice.set_ref(id);
  as_alice.set_owner_user("alice");
  absl::StatusOr<pm::internal::v1::ResolveResponse> where = b.registry->Resolve(as_alice);
  ASSERT_TRUE(where.ok()) << where.status();
  EXPECT_EQ(where->node(), "a");
  EXPECT_EQ(where->owner_user(), "alice");

  // Another user learns nothing, not even which host holds it: the same
  // answer as for an id nobody has.
  ResolveRequest as_mallory = as_alice;
  as_mallory.set_owner_user("mallory");
  absl::StatusOr<pm::internal::v1::ResolveResponse> refused = b.registry->Resolve(as_mallory);
  EXPECT_TRUE(absl::IsNotFound(refused.status())) << refused.status();
  ResolveRequest unknown = as_mallory;
  unknown.set_ref("0b6d8e3c-6f51-4f0e-9d1c-000000000000");
  absl::StatusOr<pm::internal::v1::ResolveResponse> none = b.registry->Resolve(unknown);
  EXPECT_EQ(refused.status().message(),
            absl::StrReplaceAll(none.status().message(),
                                {{unknown.ref(), as_mallory.ref()}}));

  // A local caller (no user) sees every process.
  ResolveRequest local;
  local.set_ref(id);
  where = b.registry->Resolve(local);
  ASSERT_TRUE(where.ok()) << where.status();
  EXPECT_EQ(where->node(), "a");
}

TEST_F(ClusterTest, ANameIsUniqueAcrossHostsAndFreedWhenItsRecordGoes) {
  Host a = Join("a");
  Host b = Join("b");
  absl::StatusOr<ProcessStatus> web = a.registry->CreateRecord(Create("web"));
  ASSERT_TRUE(web.ok()) << web.status();
  // No wait for the mirror: the name is claimed in etcd before the record.
  absl::StatusOr<ProcessStatus> again = b.registry->CreateRecord(Create("web"));
  ASSERT_TRUE(absl::IsAlreadyExists(again.status())) << again.status();
  EXPECT_THAT(again.status().message(), HasSubstr(web->id()));
  const pm::v1::ListResponse on_b = b.registry->List();
  for (const ProcessStatus& listed : on_b.processes()) {
    EXPECT_EQ(listed.node(), "a") << "a refused start left a record on b";
  }

  // Removed on a (ended first), the name is b's to take.
  UpdateRecordRequest exited;
  exited.set_id(web->id());
  exited.set_state(ProcessStatus::STATE_EXITED);
  ASSERT_TRUE(a.registry->UpdateRecord(exited).ok());
  ASSERT_TRUE(a.registry->RemoveRecord(web->id()).ok());
  ASSERT_TRUE(a.cluster->AwaitChange([](const Cluster& c) { return c.pending() == 0; },
                                     kPatience));
  absl::StatusOr<ProcessStatus> taken = b.registry->CreateRecord(Create("web"));
  EXPECT_TRUE(taken.ok()) << taken.status();
}

// another user's id is answered as unknown by Resolve, but a Start
// of the same name on another host hands it out in its refusal.
TEST_F(ClusterTest, ANameClashDoesNotTellAnotherUsersId) {
  Host a = Join("a");
  Host b = Join("b");
  absl::StatusOr<ProcessStatus> web = a.registry->CreateRecord(Create("web"));
  ASSERT_TRUE(web.ok()) << web.status();
  CreateRecordRequest mallorys = Create("web");
  mallorys.set_owner("mallory (CN=mallory)");
  mallorys.set_owner_user("mallory");
  absl::StatusOr<ProcessStatus> again = b.registry->CreateRecord(mallorys);
  ASSERT_TRUE(absl::IsAlreadyExists(again.status())) << again.status();
  ResolveRequest as_mallory;
  as_mallory.set_ref(web->id());
  as_mallory.set_owner_user("mallory");
  EXPECT_TRUE(absl::IsNotFound(b.registry->Resolve(as_mallory).status()));
  // The id Resolve hides from mallory:
  EXPECT_THAT(again.status().message(), Not(HasSubstr(web->id())));
}

TEST_F(ClusterTest, AHostWhoseLeaseExpiredIsAnsweredAsUnknownNotAsRunning) {
  Host a = Join("a");
  Host b = Join("b");
  absl::StatusOr<ProcessStatus> running = a.registry->CreateRecord(Create("api"));
  ASSERT_TRUE(running.ok()) << running.status();
  absl::StatusOr<ProcessStatus> ended = a.registry->CreateRecord(Create());
  ASSERT_TRUE(ended.ok()) << ended.status();
  UpdateRecordRequest exited;
  exited.set_id(ended->id());
  exited.set_state(ProcessStatus::STATE_EXITED);
  exited.mutable_end()->set_exit_code(3);
  ASSERT_TRUE(a.registry->UpdateRecord(exited).ok());
  ASSERT_TRUE(AwaitRecord(b, ended->id(), [](const ProcessStatus& p) {
    return p.state() == ProcessStatus::STATE_EXITED;
  }));
  ASSERT_TRUE(AwaitRecord(b, running->id(), [](const ProcessStatus& p) {
    return p.state() == ProcessStatus::STATE_RUNNING;
  }));

  // Host a's pm dies: its lease is no longer renewed.
  a.registry.reset();
  ASSERT_TRUE(AwaitRecord(b, running->id(), [](const ProcessStatus& p) {
    return p.state() == ProcessStatus::STATE_UNKNOWN;
  })) << "a's lease never expired; etcd says:\n" << etcd_->log();
  absl::StatusOr<ProcessStatus> unknown = b.registry->GetStatus(running->id());
  ASSERT_TRUE(unknown.ok()) << unknown.status();
  EXPECT_EQ(unknown->state(), ProcessStatus::STATE_UNKNOWN);
  EXPECT_EQ(unknown->last_known_state(), ProcessStatus::STATE_RUNNING);
  EXPECT_THAT(unknown->state_reason(), HasSubstr("host a unreachable since"));
  // An end is final wherever it was recorded.
  absl::StatusOr<ProcessStatus> still = b.registry->GetStatus(ended->id());
  ASSERT_TRUE(still.ok()) << still.status();
  EXPECT_EQ(still->state(), ProcessStatus::STATE_EXITED);
  EXPECT_EQ(still->exit_code(), 3);
  // `pm list` (running and stopping) still shows what ran there.
  pm::v1::ListRequest live;
  live.add_states(ProcessStatus::STATE_RUNNING);
  live.add_states(ProcessStatus::STATE_STOPPING);
  absl::StatusOr<pm::v1::ListResponse> listed = b.registry->List(live);
  ASSERT_TRUE(listed.ok()) << listed.status();
  ASSERT_EQ(listed->processes_size(), 1);
  EXPECT_EQ(listed->processes(0).state(), ProcessStatus::STATE_UNKNOWN);

  // Host a's pm back (the same stack, on its records): its records are
  // known again.
  Host back = Join("a");
  ASSERT_TRUE(AwaitRecord(b, running->id(), [](const ProcessStatus& p) {
    return p.state() == ProcessStatus::STATE_RUNNING;
  }));
}

// Reads `host`'s events (as a Watch does) from after `cursor` until one of
// process `id` of `kind` comes; the events of `id` read on the way are
// appended to `seen` (as "KIND_... STATE_..."). Woken by each append.
bool AwaitEvent(const Host& host, uint64_t& cursor, const std::string& id,
                pm::v1::Event::Kind kind, std::vector<std::string>& seen,
                pm::v1::Event* found = nullptr) {
  absl::Mutex mutex;
  uint64_t wakes = 0;
  const uint64_t token = host.registry->AddWatcher([&] {
    absl::MutexLock lock(&mutex);
    ++wakes;
  });
  const absl::Time deadline = absl::Now() + kPatience;
  WatchFilter filter;
  filter.id = id;
  bool ok = false;
  while (!ok) {
    uint64_t before;
    {
      absl::MutexLock lock(&mutex);
      before = wakes;
    }
    Registry::NextEventResult next = host.registry->NextEvent(cursor, filter);
    cursor = next.cursor;
    if (next.event.has_value()) {
      seen.push_back(absl::StrCat(pm::v1::Event::Kind_Name(next.event->kind()), " ",
                                  ProcessStatus::State_Name(next.event->status().state())));
      if (next.event->kind() == kind) {
        if (found != nullptr) *found = *next.event;
        ok = true;
      }
      continue;
    }
    absl::MutexLock lock(&mutex);
    auto woken = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex) { return wakes != before; };
    if (!mutex.AwaitWithDeadline(absl::Condition(&woken), deadline)) break;
  }
  host.registry->RemoveWatcher(token);
  return ok;
}

// What changed on another host while this host's registry was down is
// told once it is back, as events after the ones it had told: an end, a
// removal and a new process; what did not change is not told again.
TEST_F(ClusterTest, ARestartedRegistryTellsWhatChangedOnOtherHostsWhileItWasDown) {
  Host a = Join("a");
  Host b = Join("b");
  uint64_t cursor = a.registry->last_event_sequence();
  std::vector<std::string> seen;
  absl::StatusOr<ProcessStatus> ends = b.registry->CreateRecord(Create("ends"));
  absl::StatusOr<ProcessStatus> goes = b.registry->CreateRecord(Create("goes"));
  absl::StatusOr<ProcessStatus> stays = b.registry->CreateRecord(Create("stays"));
  for (const auto* made : {&ends, &goes, &stays}) {
    ASSERT_TRUE(made->ok()) << made->status();
    uint64_t from = cursor;  // a filtered read moves past the others' events
    ASSERT_TRUE(AwaitEvent(a, from, (*made)->id(), pm::v1::Event::KIND_STARTED, seen));
  }
  const uint64_t before = a.registry->last_event_sequence();

  a.registry.reset();  // a's registry down
  UpdateRecordRequest exited;
  exited.set_id(ends->id());
  exited.set_state(ProcessStatus::STATE_EXITED);
  exited.mutable_end()->set_exit_code(4);
  ASSERT_TRUE(b.registry->UpdateRecord(exited).ok());
  exited.set_id(goes->id());  // ended, then its record removed
  ASSERT_TRUE(b.registry->UpdateRecord(exited).ok());
  ASSERT_TRUE(b.registry->RemoveRecord(goes->id()).ok());
  absl::StatusOr<ProcessStatus> born = b.registry->CreateRecord(Create("born"));
  ASSERT_TRUE(born.ok()) << born.status();
  ASSERT_TRUE(b.cluster->AwaitChange([](const Cluster& c) { return c.pending() == 0; },
                                     kPatience));

  Host back = Join("a");
  cursor = before;
  seen.clear();
  pm::v1::Event ended;
  ASSERT_TRUE(AwaitEvent(back, cursor, ends->id(), pm::v1::Event::KIND_EXITED, seen, &ended));
  EXPECT_EQ(ended.status().exit_code(), 4);
  EXPECT_EQ(ended.status().node(), "b");
  cursor = before;
  pm::v1::Event removed;
  ASSERT_TRUE(AwaitEvent(back, cursor, goes->id(), pm::v1::Event::KIND_REMOVED, seen, &removed));
  EXPECT_EQ(removed.status().node(), "b");
  cursor = before;
  ASSERT_TRUE(AwaitEvent(back, cursor, born->id(), pm::v1::Event::KIND_STARTED, seen));
  // Three events, one each; "stays" was told before and did not change.
  cursor = before;
  std::vector<std::string> ids;
  while (true) {
    Registry::NextEventResult next = back.registry->NextEvent(cursor, WatchFilter());
    if (!next.event.has_value()) break;
    cursor = next.cursor;
    ids.push_back(next.event->status().id());
  }
  EXPECT_THAT(ids, ::testing::UnorderedElementsAre(ends->id(), goes->id(), born->id()));
}

// a restarted registry compares another host's started_at (that
// host's clock) with the time of its own last event (its clock): a process
// started on a host whose clock is behind, while this registry was down,
// is taken as told and its start is never told.
TEST_F(ClusterTest, AStartWhileDownOnAHostWithASlowClockIsTold) {
  Host a = Join("a");
  Host b = Join("b");
  uint64_t cursor = a.registry->last_event_sequence();
  std::vector<std::string> seen;
  absl::StatusOr<ProcessStatus> stays = b.registry->CreateRecord(Create("stays"));
  ASSERT_TRUE(stays.ok()) << stays.status();
  ASSERT_TRUE(AwaitEvent(a, cursor, stays->id(), pm::v1::Event::KIND_STARTED, seen));
  const uint64_t before = a.registry->last_event_sequence();
  a.registry.reset();
  // b's clock 10 s behind a's.
  CreateRecordRequest late = Create("born");
  *late.mutable_started_at() = ToProtoTimestamp(absl::Now() - absl::Seconds(10));
  absl::StatusOr<ProcessStatus> born = b.registry->CreateRecord(late);
  ASSERT_TRUE(born.ok()) << born.status();
  ASSERT_TRUE(b.cluster->AwaitChange([](const Cluster& c) { return c.pending() == 0; },
                                     kPatience));
  Host back = Join("a");
  cursor = before;
  seen.clear();
  EXPECT_TRUE(AwaitEvent(back, cursor, born->id(), pm::v1::Event::KIND_STARTED, seen));
}

TEST_F(ClusterTest, TheChangesOfAnotherHostsProcessesAreEventsOfThisHost) {
  Host a = Join("a");
  Host b = Join("b");
  uint64_t cursor = a.registry->last_event_sequence();
  std::vector<std::string> seen;

  // Created, ended and removed on b: each an event on a, with b's node.
  absl::StatusOr<ProcessStatus> web = b.registry->CreateRecord(Create("web"));
  ASSERT_TRUE(web.ok()) << web.status();
  pm::v1::Event started;
  ASSERT_TRUE(AwaitEvent(a, cursor, web->id(), pm::v1::Event::KIND_STARTED, seen, &started));
  EXPECT_EQ(started.status().node(), "b");
  EXPECT_EQ(started.status().name(), "web");
  UpdateRecordRequest exited;
  exited.set_id(web->id());
  exited.set_state(ProcessStatus::STATE_EXITED);
  exited.mutable_end()->set_exit_code(7);
  ASSERT_TRUE(b.registry->UpdateRecord(exited).ok());
  pm::v1::Event ended;
  ASSERT_TRUE(AwaitEvent(a, cursor, web->id(), pm::v1::Event::KIND_EXITED, seen, &ended));
  EXPECT_EQ(ended.status().exit_code(), 7);
  ASSERT_TRUE(b.registry->RemoveRecord(web->id()).ok());
  ASSERT_TRUE(AwaitEvent(a, cursor, web->id(), pm::v1::Event::KIND_REMOVED, seen));
  EXPECT_THAT(seen, ::testing::ElementsAre("KIND_STARTED STATE_RUNNING",
                                           "KIND_EXITED STATE_EXITED",
                                           "KIND_REMOVED STATE_EXITED"));

  // b's pm dies: its running process becomes unknown on a (an event),
  // then known again when b's stack is back.
  absl::StatusOr<ProcessStatus> api = b.registry->CreateRecord(Create("api"));
  ASSERT_TRUE(api.ok()) << api.status();
  seen.clear();
  ASSERT_TRUE(AwaitEvent(a, cursor, api->id(), pm::v1::Event::KIND_STARTED, seen));
  b.registry.reset();
  pm::v1::Event unknown;
  ASSERT_TRUE(AwaitEvent(a, cursor, api->id(), pm::v1::Event::KIND_UNKNOWN, seen, &unknown))
      << "b's lease never expired; etcd says:\n" << etcd_->log();
  EXPECT_EQ(unknown.status().last_known_state(), ProcessStatus::STATE_RUNNING);
  EXPECT_THAT(unknown.status().state_reason(), HasSubstr("host b unreachable since"));
  Host back = Join("b");
  ASSERT_TRUE(AwaitEvent(a, cursor, api->id(), pm::v1::Event::KIND_RUNNING, seen));
  EXPECT_THAT(seen, ::testing::ElementsAre("KIND_STARTED STATE_RUNNING",
                                           "KIND_UNKNOWN STATE_UNKNOWN",
                                           "KIND_RUNNING STATE_RUNNING"));

  // Numbered as a's own: a's registry reopened on its store goes on after
  // them, never numbering one again.
  const uint64_t last = a.registry->last_event_sequence();
  EXPECT_GE(last, cursor);
  a.registry.reset();
  Host a_again = Join("a");
  EXPECT_EQ(a_again.registry->last_event_sequence(), last);
}

TEST_F(ClusterTest, LosingTheEtcdMemberAHostIsConnectedToChangesNothingItAnswers) {
  absl::StatusOr<std::vector<std::unique_ptr<EtcdServer>>> members =
      EtcdServer::StartCluster(dir_, 3);
  ASSERT_TRUE(members.ok()) << members.status();
  // Every host reaches etcd through the first endpoint (gRPC's pick_first)
  // as long as that member answers.
  const std::string endpoints = EndpointsOf(*members);
  Host a = Join("a", endpoints);
  Host b = Join("b", endpoints);
  absl::StatusOr<ProcessStatus> web = a.registry->CreateRecord(Create("web"));
  ASSERT_TRUE(web.ok()) << web.status();
  ASSERT_TRUE(AwaitRecord(b, web->id(), [](const ProcessStatus& p) {
    return p.state() == ProcessStatus::STATE_RUNNING;
  }));

  // Not the leader: a leader's loss holds etcd's writes for an election.
  const absl::Status stepped_down = (*members)[0]->StepDownFor(*(*members)[1]);
  ASSERT_TRUE(stepped_down.ok()) << stepped_down;
  ASSERT_TRUE((*members)[0]->Kill().ok());
  // At once: a name is still checked (through another member), ...
  absl::StatusOr<ProcessStatus> after = a.registry->CreateRecord(Create("after"));
  ASSERT_TRUE(after.ok()) << after.status();
  // ... and until b sees that record, at every change of b's view, a's
  // records are answered as they are, never as not known.
  std::vector<std::string> unknown;
  ASSERT_TRUE(b.cluster->AwaitChange(
      [&](const Cluster& c) {
        std::optional<ProcessStatus> there = c.Find(web->id());
        if (!there.has_value() || there->state() != ProcessStatus::STATE_RUNNING) {
          unknown.push_back(there.has_value() ? there->state_reason() : "gone");
        }
        return c.Find(after->id()).has_value();
      },
      kPatience));
  EXPECT_THAT(unknown, ::testing::IsEmpty());
  EXPECT_TRUE(b.cluster->reachable());
}

TEST_F(ClusterTest, AHungEtcdNeitherBlocksAHostNorLosesWhatItRecorded) {
  Host a = Join("a");
  Host b = Join("b");
  uint64_t cursor = b.registry->last_event_sequence();
  absl::StatusOr<ProcessStatus> before = a.registry->CreateRecord(Create("before"));
  ASSERT_TRUE(before.ok()) << before.status();
  // Told on b (its view has it a moment before its reporter tells it).
  std::vector<std::string> started;
  ASSERT_TRUE(AwaitEvent(b, cursor, before->id(), pm::v1::Event::KIND_STARTED, started));
  std::vector<std::string> seen;

  ASSERT_TRUE(etcd_->Pause().ok());
  // Both hosts find out through their own calls (keepalives every third
  // of the lease) and say so instead of answering stale states.
  ASSERT_TRUE(AwaitRecord(b, before->id(), [](const ProcessStatus& p) {
    return p.state() == ProcessStatus::STATE_UNKNOWN;
  }));
  EXPECT_THAT(b.registry->GetStatus(before->id())->state_reason(),
              HasSubstr("etcd unreachable"));
  // Told to b's watchers too, though b's watch of etcd stays open (a hung
  // etcd keeps its connections): the writer's failed calls tell.
  ASSERT_TRUE(AwaitEvent(b, cursor, before->id(), pm::v1::Event::KIND_UNKNOWN, seen));
  ASSERT_TRUE(a.cluster->AwaitChange([](const Cluster& c) { return !c.reachable(); },
                                     kPatience));
  // The gateway places Starts on this host alone, and knows why.
  const pm::internal::v1::ListNodesResponse nodes = a.registry->ListNodes();
  ASSERT_EQ(nodes.nodes_size(), 1);
  EXPECT_EQ(nodes.nodes(0).node(), "a");
  EXPECT_THAT(nodes.etcd_unreachable(), HasSubstr("etcd unreachable since"));
  // An unnamed process is recorded at once (its id is 122 random bits,
  // claimed once etcd is back); a named one is refused naming etcd, since
  // its name cannot be checked.
  absl::StatusOr<ProcessStatus> during = a.registry->CreateRecord(Create());
  ASSERT_TRUE(during.ok()) << during.status();
  absl::StatusOr<ProcessStatus> named = a.registry->CreateRecord(Create("during"));
  ASSERT_TRUE(absl::IsUnavailable(named.status())) << named.status();
  EXPECT_THAT(named.status().message(), HasSubstr(etcd_->endpoint()));
  // Refused at once, with what the writer last saw, not after a claim of
  // its own waited out its deadline (its error would name its "Txn").
  EXPECT_THAT(named.status().message(), Not(HasSubstr(": Txn: "))) << named.status();

  ASSERT_TRUE(etcd_->Resume().ok());
  // Nothing lost: the mirror is written again whole, b sees both.
  ASSERT_TRUE(AwaitRecord(b, during->id(), [](const ProcessStatus& p) {
    return p.state() == ProcessStatus::STATE_RUNNING;
  })) << "etcd says:\n" << etcd_->log();
  ASSERT_TRUE(AwaitRecord(b, before->id(), [](const ProcessStatus& p) {
    return p.state() == ProcessStatus::STATE_RUNNING;
  }));
  // Known again: told as well, once, after the unknown.
  ASSERT_TRUE(AwaitEvent(b, cursor, before->id(), pm::v1::Event::KIND_RUNNING, seen));
  EXPECT_THAT(seen, ::testing::ElementsAre("KIND_UNKNOWN STATE_UNKNOWN",
                                           "KIND_RUNNING STATE_RUNNING"));
  EXPECT_EQ(a.cluster->pending(), 0u);
  // And names are checked again.
  EXPECT_TRUE(a.registry->CreateRecord(Create("after")).ok());
}

// --- etcd over TLS with client certificates --------------------------------

// Runs certs/make_pki.sh (from the runfiles) into `dir`.
void MakePki(const std::string& dir) {
  const std::string script = absl::StrCat(getenv("TEST_SRCDIR"), "/pm/certs/make_pki.sh");
  const std::string command = absl::StrCat("bash '", script, "' '", dir, "'");
  ASSERT_EQ(system(command.c_str()), 0) << command;
}

// etcd as Kubernetes runs it: TLS, a client certificate from etcd's own CA
// required (EtcdServer's pki_dir, from certs/make_pki.sh). The plaintext
// etcd of ClusterTest stays, for a registry that expects TLS of it.
class ClusterTlsTest : public ClusterTest {
 protected:
  void SetUp() override {
    ASSERT_NO_FATAL_FAILURE(ClusterTest::SetUp());
    plaintext_etcd_ = std::move(etcd_);
    pki_ = dir_ + "/pki";
    ASSERT_NO_FATAL_FAILURE(MakePki(pki_));
    std::filesystem::create_directories(dir_ + "/tls-etcd");
    EtcdServer::Options options;
    options.dir = dir_ + "/tls-etcd";
    options.pki_dir = pki_;
    absl::StatusOr<std::unique_ptr<EtcdServer>> etcd = EtcdServer::Start(options);
    ASSERT_TRUE(etcd.ok()) << etcd.status();
    etcd_ = *std::move(etcd);
    tls_ = Tls("etcd-ca", "etcd-client");
  }

  // A three-member etcd over TLS for clients and peers, in <dir>/members;
  // empty (and a test failure) when it does not start.
  std::vector<std::unique_ptr<EtcdServer>> StartMembers() {
    std::filesystem::create_directories(dir_ + "/members");
    absl::StatusOr<std::vector<std::unique_ptr<EtcdServer>>> members =
        EtcdServer::StartCluster(dir_ + "/members", 3, pki_);
    EXPECT_TRUE(members.ok()) << members.status();
    if (!members.ok()) return {};
    return *std::move(members);
  }

  // TLS trusting <ca>.pem, presenting <cert>.pem and its key.
  EtcdTls Tls(const std::string& ca, const std::string& cert) const {
    EtcdTls tls;
    tls.ca_file = pki_ + "/" + ca + ".pem";
    tls.cert_file = pki_ + "/" + cert + ".pem";
    tls.key_file = pki_ + "/" + cert + ".key";
    return tls;
  }

  // A Cluster on `endpoints` with `tls`, never let in: Start's error, or
  // the error of a Claim, once its answers (EtcdUnreachable, the reason
  // of another host's STATE_UNKNOWN) say `why` too.
  absl::Status RefusedWith(const std::string& endpoints, const EtcdTls& tls,
                           const std::string& why) {
    Cluster::Options options = OptionsFor("x", endpoints);
    options.tls = tls;
    absl::StatusOr<std::unique_ptr<Cluster>> cluster =
        Cluster::Start(options, [] { return std::vector<ProcessStatus>(); });
    if (!cluster.ok()) return cluster.status();
    std::string unreachable;
    EXPECT_TRUE((*cluster)->AwaitChange(
        [&](const Cluster& c) {
          unreachable = c.EtcdUnreachable();
          return absl::StrContains(unreachable, why);
        },
        kPatience))
        << unreachable;
    EXPECT_FALSE((*cluster)->holds_lease());
    return (*cluster)->Claim("00000000-0000-4000-8000-000000000001", "web", "alice");
  }

  std::string pki_;
  std::unique_ptr<EtcdServer> plaintext_etcd_;
};

TEST_F(ClusterTlsTest, WithEtcdsClientCertificateHostsShareRecordsAndNames) {
  Host a = Join("a");
  Host b = Join("b");
  absl::StatusOr<ProcessStatus> web = a.registry->CreateRecord(Create("web"));
  ASSERT_TRUE(web.ok()) << web.status();
  ASSERT_TRUE(AwaitRecord(b, web->id(), [](const ProcessStatus& p) {
    return p.state() == ProcessStatus::STATE_RUNNING && p.node() == "a";
  })) << "etcd says:\n" << etcd_->log();
  absl::StatusOr<ProcessStatus> again = b.registry->CreateRecord(Create("web"));
  EXPECT_TRUE(absl::IsAlreadyExists(again.status())) << again.status();
}

TEST_F(ClusterTlsTest, AThreeMemberEtcdOverTlsForClientsAndPeersServesTheHosts) {
  std::vector<std::unique_ptr<EtcdServer>> members = StartMembers();
  ASSERT_EQ(members.size(), 3u);
  // One gRPC target of three addresses: every member's certificate is
  // checked for the one name "etcd".
  const std::string endpoints = EndpointsOf(members);
  Host a = Join("a", endpoints);
  Host b = Join("b", endpoints);
  absl::StatusOr<ProcessStatus> web = a.registry->CreateRecord(Create("web"));
  ASSERT_TRUE(web.ok()) << web.status();
  EXPECT_TRUE(AwaitRecord(b, web->id(), [](const ProcessStatus& p) {
    return p.state() == ProcessStatus::STATE_RUNNING;
  }));
}

// Members that go away over TLS end calls in ways gRPC 1.51's retry filter
// aborted the process on (etcd_tls.cc): the hosts live through it.
TEST_F(ClusterTlsTest, OverTlsLosingAMemberThenAllOfEtcdNeitherEndsAHostNorLosesARecord) {
  std::vector<std::unique_ptr<EtcdServer>> members = StartMembers();
  ASSERT_EQ(members.size(), 3u);
  const std::string endpoints = EndpointsOf(members);
  Host a = Join("a", endpoints);
  Host b = Join("b", endpoints);
  ASSERT_TRUE(members[0]->StepDownFor(*members[1]).ok());
  ASSERT_TRUE(members[0]->Kill().ok());
  absl::StatusOr<ProcessStatus> after = a.registry->CreateRecord(Create("after"));
  ASSERT_TRUE(after.ok()) << after.status();

  for (int i = 1; i < 3; ++i) ASSERT_TRUE(members[i]->Stop().ok());
  ASSERT_TRUE(a.cluster->AwaitChange([](const Cluster& c) { return !c.reachable(); },
                                     kPatience));
  absl::StatusOr<ProcessStatus> during = a.registry->CreateRecord(Create());
  ASSERT_TRUE(during.ok()) << during.status();
  EXPECT_THAT(a.cluster->EtcdUnreachable(), HasSubstr(" over TLS: "));

  for (const std::unique_ptr<EtcdServer>& member : members) {
    ASSERT_TRUE(member->Relaunch().ok());
  }
  for (const std::unique_ptr<EtcdServer>& member : members) {
    const absl::Status serving = member->WaitUntilServing();
    ASSERT_TRUE(serving.ok()) << serving;
  }
  for (const std::string& id : {after->id(), during->id()}) {
    EXPECT_TRUE(AwaitRecord(b, id, [](const ProcessStatus& p) {
      return p.state() == ProcessStatus::STATE_RUNNING;
    })) << id;
  }
}

TEST_F(ClusterTlsTest, EtcdRefusesAUsersCertificateFromTheGatewaysCa) {
  // client.pem is what a user of the gateway holds (signed by ca.pem).
  const absl::Status refused =
      RefusedWith(etcd_->endpoint(), Tls("etcd-ca", "client"), "TLS to etcd failed");
  EXPECT_TRUE(absl::IsUnavailable(refused)) << refused;
  EXPECT_THAT(refused.message(),
              HasSubstr(absl::StrCat("etcd at ", etcd_->endpoint(), " over TLS: ")));
  EXPECT_THAT(refused.message(),
              HasSubstr(absl::StrCat(
                  "TLS to etcd failed: etcd closed the connection in or right after "
                  "the handshake, as it does when it does not trust the client "
                  "certificate of --etcd_cert_file (it must be "
                  "signed by the CA of etcd's --trusted-ca-file), or when it serves "
                  "plaintext (http client URLs)")));
  EXPECT_THAT(refused.message(), Not(HasSubstr(pki_)));
}

TEST_F(ClusterTlsTest, EtcdRefusesAPlaintextRegistry) {
  const absl::Status refused =
      RefusedWith(etcd_->endpoint(), EtcdTls(), "requires TLS");
  EXPECT_TRUE(absl::IsUnavailable(refused)) << refused;
  EXPECT_THAT(refused.message(),
              HasSubstr(absl::StrCat("etcd at ", etcd_->endpoint(), " in plaintext: ")));
  EXPECT_THAT(refused.message(),
              HasSubstr("etcd closed the plaintext connection, as an etcd that requires "
                        "TLS (https client URLs) does: give --etcd_ca_file, "
                        "--etcd_cert_file and --etcd_key_file"));
}

TEST_F(ClusterTlsTest, EtcdRefusesAClientWithoutACertificateWhichARegistryCannotBe) {
  // etcd's side: TLS alone, no client certificate, does not open it.
  grpc::SslCredentialsOptions ca_only;
  absl::StatusOr<std::string> ca = ReadFile(pki_ + "/etcd-ca.pem");
  ASSERT_TRUE(ca.ok()) << ca.status();
  ca_only.pem_root_certs = *ca;
  grpc::ChannelArguments arguments;
  arguments.SetSslTargetNameOverride("etcd");
  auto kv = etcdserverpb::KV::NewStub(grpc::CreateCustomChannel(
      etcd_->endpoint(), grpc::SslCredentials(ca_only), arguments));
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  etcdserverpb::RangeRequest request;
  request.set_key("/pm/test/");
  etcdserverpb::RangeResponse response;
  const grpc::Status rpc = kv->Range(&context, request, &response);
  EXPECT_EQ(rpc.error_code(), grpc::StatusCode::UNAVAILABLE) << rpc.error_message();

  // The registry's side: a CA without a certificate and its key is no
  // setup it starts with.
  Cluster::Options options = OptionsFor("x", etcd_->endpoint());
  options.tls.ca_file = pki_ + "/etcd-ca.pem";
  absl::StatusOr<std::unique_ptr<Cluster>> cluster =
      Cluster::Start(options, [] { return std::vector<ProcessStatus>(); });
  EXPECT_TRUE(absl::IsInvalidArgument(cluster.status())) << cluster.status();
  EXPECT_EQ(cluster.status().message(),
            "--etcd_cert_file and --etcd_key_file are missing: TLS to etcd takes "
            "--etcd_ca_file, --etcd_cert_file and --etcd_key_file together (or none "
            "of them)");
}

TEST_F(ClusterTlsTest, ARegistryRefusesAnEtcdItCannotVerify) {
  // Trusting the gateway's CA instead of etcd's.
  absl::Status refused =
      RefusedWith(etcd_->endpoint(), Tls("ca", "etcd-client"), "TLS to etcd failed");
  EXPECT_TRUE(absl::IsUnavailable(refused)) << refused;
  EXPECT_THAT(refused.message(),
              HasSubstr("TLS to etcd failed: etcd's certificate is not "
                        "signed by the CA of --etcd_ca_file"));
  // The answer may reach a client of another host: it names flags, never
  // this host's files.
  EXPECT_THAT(refused.message(), Not(HasSubstr(pki_)));
  // A name etcd's certificate does not carry.
  EtcdTls other_name = tls_;
  other_name.server_name = "etcd.example.com";
  refused = RefusedWith(etcd_->endpoint(), other_name, "TLS to etcd failed");
  EXPECT_TRUE(absl::IsUnavailable(refused)) << refused;
  EXPECT_THAT(refused.message(),
              HasSubstr("TLS to etcd failed: etcd's certificate does not carry the name "
                        "\"etcd.example.com\" (--etcd_server_name; every member's must)"));
  // An etcd in plaintext.
  refused = RefusedWith(plaintext_etcd_->endpoint(), tls_, "TLS to etcd failed");
  EXPECT_TRUE(absl::IsUnavailable(refused)) << refused;
  EXPECT_THAT(refused.message(),
              HasSubstr(absl::StrCat("etcd at ", plaintext_etcd_->endpoint(),
                                     " over TLS: ")));
  EXPECT_THAT(refused.message(), HasSubstr("or when it serves plaintext (http client URLs)"));
}

TEST_F(ClusterTlsTest, ATlsFileThatCannotBeReadIsRefusedAtStartNamingIt) {
  EtcdTls missing = tls_;
  missing.cert_file = pki_ + "/no-such.pem";
  Cluster::Options options = OptionsFor("x", etcd_->endpoint());
  options.tls = missing;
  absl::StatusOr<std::unique_ptr<Cluster>> cluster =
      Cluster::Start(options, [] { return std::vector<ProcessStatus>(); });
  EXPECT_TRUE(absl::IsNotFound(cluster.status())) << cluster.status();
  EXPECT_THAT(cluster.status().message(), HasSubstr("--etcd_cert_file: "));
  EXPECT_THAT(cluster.status().message(), HasSubstr(missing.cert_file));

  // A key given as the certificate.
  options.tls = tls_;
  options.tls.cert_file = tls_.key_file;
  cluster = Cluster::Start(options, [] { return std::vector<ProcessStatus>(); });
  EXPECT_TRUE(absl::IsInvalidArgument(cluster.status())) << cluster.status();
  EXPECT_EQ(cluster.status().message(),
            absl::StrCat("--etcd_cert_file=", tls_.key_file, ": no PEM CERTIFICATE in it"));
}

}  // namespace
}  // namespace pm::registry