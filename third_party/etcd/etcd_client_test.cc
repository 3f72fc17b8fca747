// etcd's v3 API through the C++ stubs of :etcd_cc_grpc, against a real
// single-member etcd from Debian's etcd-server package that each test starts
// (etcd_test_server.h) on free loopback ports, with its data dir under
// $TEST_TMPDIR. These are the calls pm's records on etcd (issue 17) stand
// on: Put and Range, a compare-and-put Txn that creates a key only once (how
// a unique id is claimed), a lease whose revocation deletes its keys (how a
// host's records go when the host does), and a Watch that sees a Put.
#include <signal.h>
#include <stdlib.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <utility>

#include <grpcpp/grpcpp.h>

#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/exit_status.h"
#include "etcd/etcdserver/etcdserverpb/rpc.grpc.pb.h"
#include "gtest/gtest.h"
#include "third_party/etcd/etcd_test_server.h"

namespace pm {
namespace {

using ::etcdserverpb::Compare;
using ::etcdserverpb::KV;
using ::etcdserverpb::Lease;
using ::etcdserverpb::Watch;

// Safety net for a loaded machine, not a claim about speed.
constexpr std::chrono::seconds kCallTimeout(60);

void SetCallDeadline(grpc::ClientContext& context) {
  context.set_deadline(std::chrono::system_clock::now() + kCallTimeout);
}

// The first key after every key that starts with `prefix`: [prefix, end)
// is a prefix scan (etcd's clientv3.GetPrefixRangeEnd). `prefix` must not
// end in 0xff.
std::string PrefixEnd(std::string prefix) {
  prefix.back() = static_cast<char>(prefix.back() + 1);
  return prefix;
}

class EtcdClientTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string dir = absl::StrCat(
        getenv("TEST_TMPDIR"), "/",
        ::testing::UnitTest::GetInstance()->current_test_info()->name(),
        ".XXXXXX");
    ASSERT_NE(mkdtemp(dir.data()), nullptr) << dir << ": " << strerror(errno);
    absl::StatusOr<std::unique_ptr<EtcdServer>> etcd = EtcdServer::Start(dir);
    ASSERT_TRUE(etcd.ok()) << etcd.status();
    etcd_ = std::move(*etcd);
    kv_ = KV::NewStub(etcd_->channel());
    lease_ = Lease::NewStub(etcd_->channel());
    watch_ = Watch::NewStub(etcd_->channel());
  }

  // A clean stop is part of every test: SIGTERM ends etcd.
  void TearDown() override {
    if (etcd_ == nullptr) return;
    kv_.reset();
    lease_.reset();
    watch_.reset();
    absl::StatusOr<ExitStatus> end = etcd_->Stop();
    ASSERT_TRUE(end.ok()) << end.status();
    EXPECT_EQ(*end, ExitStatus::Signaled(SIGTERM)) << end->ToString();
    if (HasFailure()) ADD_FAILURE() << "etcd's log:\n" << etcd_->log();
  }

  // Put(key, value [, lease]); the revision the Put made.
  int64_t Put(const std::string& key, const std::string& value,
              int64_t lease = 0) {
    etcdserverpb::PutRequest request;
    request.set_key(key);
    request.set_value(value);
    request.set_lease(lease);
    etcdserverpb::PutResponse response;
    grpc::ClientContext context;
    SetCallDeadline(context);
    grpc::Status rpc = kv_->Put(&context, request, &response);
    EXPECT_TRUE(rpc.ok()) << "Put " << key << ": " << rpc.error_message();
    return response.header().revision();
  }

  // Range over [key, range_end), or of `key` alone.
  etcdserverpb::RangeResponse Range(const std::string& key,
                                    const std::string& range_end = "") {
    etcdserverpb::RangeRequest request;
    request.set_key(key);
    request.set_range_end(range_end);
    etcdserverpb::RangeResponse response;
    grpc::ClientContext context;
    SetCallDeadline(context);
    grpc::Status rpc = kv_->Range(&context, request, &response);
    EXPECT_TRUE(rpc.ok()) << "Range " << key << ": " << rpc.error_message();
    return response;
  }

  // If `key` does not exist, puts `value` there; else reads it. How pm
  // claims an id: exactly one of several racing claims succeeds, and the
  // others learn the winner's value in the same round trip.
  etcdserverpb::TxnResponse CreateIfAbsent(const std::string& key,
                                           const std::string& value) {
    etcdserverpb::TxnRequest request;
    Compare* absent = request.add_compare();
    absent->set_key(key);
    absent->set_target(Compare::CREATE);
    absent->set_result(Compare::EQUAL);
    absent->set_create_revision(0);  // never created, or deleted since
    etcdserverpb::PutRequest* put =
        request.add_success()->mutable_request_put();
    put->set_key(key);
    put->set_value(value);
    request.add_failure()->mutable_request_range()->set_key(key);
    etcdserverpb::TxnResponse response;
    grpc::ClientContext context;
    SetCallDeadline(context);
    grpc::Status rpc = kv_->Txn(&context, request, &response);
    EXPECT_TRUE(rpc.ok()) << "Txn on " << key << ": " << rpc.error_message();
    return response;
  }

  std::unique_ptr<EtcdServer> etcd_;
  std::unique_ptr<KV::Stub> kv_;
  std::unique_ptr<Lease::Stub> lease_;
  std::unique_ptr<Watch::Stub> watch_;
};

TEST_F(EtcdClientTest, RangeReadsBackWhatPutWrote) {
  const int64_t revision = Put("pm-test/records/1", "one");
  Put("pm-test/records/2", "two");
  Put("pm-test/recordsX", "outside the prefix");

  etcdserverpb::RangeResponse one = Range("pm-test/records/1");
  ASSERT_EQ(one.kvs_size(), 1);
  EXPECT_EQ(one.kvs(0).key(), "pm-test/records/1");
  EXPECT_EQ(one.kvs(0).value(), "one");
  EXPECT_EQ(one.kvs(0).create_revision(), revision);
  EXPECT_EQ(one.kvs(0).version(), 1);

  etcdserverpb::RangeResponse all =
      Range("pm-test/records/", PrefixEnd("pm-test/records/"));
  EXPECT_EQ(all.count(), 2);
  ASSERT_EQ(all.kvs_size(), 2);
  EXPECT_EQ(all.kvs(0).value(), "one");
  EXPECT_EQ(all.kvs(1).value(), "two");

  EXPECT_EQ(Range("pm-test/records/3").kvs_size(), 0);
}

TEST_F(EtcdClientTest, CompareAndPutCreatesAKeyOnlyOnce) {
  etcdserverpb::TxnResponse first = CreateIfAbsent("pm-test/ids/7", "host-a");
  EXPECT_TRUE(first.succeeded());
  ASSERT_EQ(first.responses_size(), 1);
  EXPECT_TRUE(first.responses(0).has_response_put());

  etcdserverpb::TxnResponse second = CreateIfAbsent("pm-test/ids/7", "host-b");
  EXPECT_FALSE(second.succeeded());
  ASSERT_EQ(second.responses_size(), 1);
  ASSERT_EQ(second.responses(0).response_range().kvs_size(), 1);
  EXPECT_EQ(second.responses(0).response_range().kvs(0).value(), "host-a");

  etcdserverpb::RangeResponse stored = Range("pm-test/ids/7");
  ASSERT_EQ(stored.kvs_size(), 1);
  EXPECT_EQ(stored.kvs(0).value(), "host-a");
  EXPECT_EQ(stored.kvs(0).version(), 1) << "the losing claim wrote";
}

TEST_F(EtcdClientTest, RevokingALeaseDeletesTheKeysPutWithIt) {
  etcdserverpb::LeaseGrantResponse granted;
  {
    etcdserverpb::LeaseGrantRequest request;
    // Long enough that only the revocation can delete the key.
    request.set_ttl(600);
    grpc::ClientContext context;
    SetCallDeadline(context);
    grpc::Status rpc = lease_->LeaseGrant(&context, request, &granted);
    ASSERT_TRUE(rpc.ok()) << rpc.error_message();
  }
  ASSERT_NE(granted.id(), 0) << granted.error();
  EXPECT_EQ(granted.ttl(), 600);

  Put("pm-test/hosts/b", "alive", granted.id());
  Put("pm-test/hosts/c", "not leased");
  etcdserverpb::RangeResponse leased = Range("pm-test/hosts/b");
  ASSERT_EQ(leased.kvs_size(), 1);
  EXPECT_EQ(leased.kvs(0).lease(), granted.id());
  {
    etcdserverpb::LeaseTimeToLiveRequest request;
    request.set_id(granted.id());
    request.set_keys(true);
    etcdserverpb::LeaseTimeToLiveResponse response;
    grpc::ClientContext context;
    SetCallDeadline(context);
    grpc::Status rpc = lease_->LeaseTimeToLive(&context, request, &response);
    ASSERT_TRUE(rpc.ok()) << rpc.error_message();
    ASSERT_EQ(response.keys_size(), 1);
    EXPECT_EQ(response.keys(0), "pm-test/hosts/b");
  }

  etcdserverpb::LeaseRevokeRequest revoke;
  revoke.set_id(granted.id());
  {
    etcdserverpb::LeaseRevokeResponse response;
    grpc::ClientContext context;
    SetCallDeadline(context);
    grpc::Status rpc = lease_->LeaseRevoke(&context, revoke, &response);
    ASSERT_TRUE(rpc.ok()) << rpc.error_message();
  }
  EXPECT_EQ(Range("pm-test/hosts/b").kvs_size(), 0);
  EXPECT_EQ(Range("pm-test/hosts/c").kvs_size(), 1);
  {
    etcdserverpb::LeaseRevokeResponse response;
    grpc::ClientContext context;
    SetCallDeadline(context);
    grpc::Status rpc = lease_->LeaseRevoke(&context, revoke, &response);
    EXPECT_EQ(rpc.error_code(), grpc::StatusCode::NOT_FOUND);
    EXPECT_TRUE(absl::StrContains(rpc.error_message(), "lease not found"))
        << rpc.error_message();
  }
}

TEST_F(EtcdClientTest, AWatchSeesAPutMadeAfterItWasCreated) {
  grpc::ClientContext context;
  SetCallDeadline(context);
  auto stream = watch_->Watch(&context);

  etcdserverpb::WatchRequest request;
  request.mutable_create_request()->set_key("pm-test/events/");
  request.mutable_create_request()->set_range_end(
      PrefixEnd("pm-test/events/"));
  ASSERT_TRUE(stream->Write(request));
  etcdserverpb::WatchResponse created;
  ASSERT_TRUE(stream->Read(&created)) << stream->Finish().error_message();
  ASSERT_TRUE(created.created());
  // Only now is a Put sure to come after the watch's start.
  const int64_t revision = Put("pm-test/events/exit-1", "exited with code 0");

  etcdserverpb::WatchResponse notified;
  ASSERT_TRUE(stream->Read(&notified)) << stream->Finish().error_message();
  EXPECT_EQ(notified.watch_id(), created.watch_id());
  ASSERT_EQ(notified.events_size(), 1);
  const mvccpb::Event& event = notified.events(0);
  EXPECT_EQ(event.type(), mvccpb::Event::PUT);
  EXPECT_EQ(event.kv().key(), "pm-test/events/exit-1");
  EXPECT_EQ(event.kv().value(), "exited with code 0");
  EXPECT_EQ(event.kv().mod_revision(), revision);

  // etcd keeps a watch stream open after the client's half-close; cancel.
  context.TryCancel();
  EXPECT_EQ(stream->Finish().error_code(), grpc::StatusCode::CANCELLED);
}

}  // namespace
}  // namespace pm
