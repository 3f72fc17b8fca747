// EtcdRecordStore against a real single-member etcd (etcd_test_server.h):
// records and events round-trip byte for byte, a Write applies whole or
// not at all, loads are paged, a bad value is DATA_LOSS naming its key, and
// an etcd that does not answer is UNAVAILABLE (or DEADLINE_EXCEEDED) naming
// it. The Registry on this store: registry_store_test.cc.
#include "registry/etcd_record_store.h"

#include <grpcpp/grpcpp.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/exit_status.h"
#include "common/fd.h"
#include "etcd/etcdserver/etcdserverpb/rpc.grpc.pb.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "third_party/etcd/etcd_test_server.h"

namespace pm::registry {
namespace {

using ::pm::internal::v1::StoredRecord;
using ::pm::v1::ProcessStatus;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

// Safety nets for a loaded machine, not claims about speed.
constexpr absl::Duration kDeadline = absl::Seconds(60);
constexpr std::chrono::seconds kCallTimeout(60);

std::string TempDir(const std::string& name) {
  std::string dir = absl::StrCat(getenv("TEST_TMPDIR"), "/", name, ".XXXXXX");
  EXPECT_NE(mkdtemp(dir.data()), nullptr) << dir << ": " << strerror(errno);
  return dir;
}

StoredRecord Record(int n,
                    ProcessStatus::State state = ProcessStatus::STATE_RUNNING) {
  StoredRecord record;
  record.mutable_status()->set_id(
      absl::StrCat("00000000-0000-4000-8000-", absl::Dec(n, absl::kZeroPad12)));
  record.mutable_status()->set_state(state);
  record.mutable_status()->set_owner_user("alice");
  // Bytes a text key-value store might mangle: a NUL, non-ASCII UTF-8.
  record.mutable_status()->set_executable(
      absl::StrCat("/bin/x", std::string("\0\xc3\xa9", 3), n));
  record.set_boot_id("boot-1");
  record.set_created_order(static_cast<uint64_t>(n));
  return record;
}

pm::v1::Event Event(uint64_t sequence) {
  pm::v1::Event event;
  event.set_sequence(sequence);
  event.set_kind(pm::v1::Event::KIND_STARTED);
  event.mutable_status()->set_id(absl::StrCat("id-", sequence));
  return event;
}

RecordWrite W(std::vector<StoredRecord> put,
              std::vector<std::string> remove = {},
              std::vector<pm::v1::Event> events = {},
              uint64_t drop_events_below = 0) {
  return RecordWrite{std::move(put), std::move(remove), std::move(events),
                     drop_events_below};
}

// One etcd for the whole suite; each test has a key prefix of its own.
class EtcdRecordStoreTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    absl::StatusOr<std::unique_ptr<EtcdServer>> etcd =
        EtcdServer::Start(TempDir("etcd"));
    ASSERT_TRUE(etcd.ok()) << etcd.status();
    etcd_ = etcd->release();
  }

  static void TearDownTestSuite() {
    if (etcd_ == nullptr) return;
    absl::StatusOr<ExitStatus> end = etcd_->Stop();
    EXPECT_TRUE(end.ok()) << end.status();
    delete etcd_;
    etcd_ = nullptr;
  }

  void SetUp() override { ASSERT_NE(etcd_, nullptr); }

  void TearDown() override {
    if (HasFailure()) ADD_FAILURE() << "etcd's log:\n" << etcd_->log();
  }

  std::string Prefix() const {
    return absl::StrCat(
        "/pm/", ::testing::UnitTest::GetInstance()->current_test_info()->name(),
        "/");
  }

  EtcdRecordStore::Options StoreOptions() const {
    EtcdRecordStore::Options options;
    options.endpoints = etcd_->endpoint();
    options.prefix = Prefix();
    options.deadline = kDeadline;
    return options;
  }

  std::unique_ptr<EtcdRecordStore> Open(EtcdRecordStore::Options options) {
    absl::StatusOr<std::unique_ptr<EtcdRecordStore>> store =
        EtcdRecordStore::Open(options);
    EXPECT_TRUE(store.ok()) << store.status();
    return store.ok() ? *std::move(store) : nullptr;
  }
  std::unique_ptr<EtcdRecordStore> Open() { return Open(StoreOptions()); }

  // Writes `key` = `value` behind the store's back.
  void RawPut(const std::string& key, const std::string& value) {
    etcdserverpb::PutRequest request;
    request.set_key(key);
    request.set_value(value);
    etcdserverpb::PutResponse response;
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + kCallTimeout);
    grpc::Status rpc = etcdserverpb::KV::NewStub(etcd_->channel())
                           ->Put(&context, request, &response);
    ASSERT_TRUE(rpc.ok()) << rpc.error_message();
  }

  // The value of `key` as etcd has it ("" when absent).
  std::string RawGet(const std::string& key) {
    etcdserverpb::RangeRequest request;
    request.set_key(key);
    etcdserverpb::RangeResponse response;
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + kCallTimeout);
    grpc::Status rpc = etcdserverpb::KV::NewStub(etcd_->channel())
                           ->Range(&context, request, &response);
    EXPECT_TRUE(rpc.ok()) << rpc.error_message();
    return response.kvs().empty() ? "" : response.kvs(0).value();
  }

  static std::map<std::string, std::string> LoadById(EtcdRecordStore& store) {
    absl::StatusOr<std::vector<StoredRecord>> all = store.LoadAll();
    EXPECT_TRUE(all.ok()) << all.status();
    std::map<std::string, std::string> by_id;
    if (all.ok()) {
      for (const StoredRecord& record : *all) {
        by_id[record.status().id()] = record.SerializeAsString();
      }
    }
    return by_id;
  }

  static std::vector<uint64_t> LoadSequences(EtcdRecordStore& store) {
    absl::StatusOr<std::vector<pm::v1::Event>> events = store.LoadEvents();
    EXPECT_TRUE(events.ok()) << events.status();
    std::vector<uint64_t> sequences;
    if (events.ok()) {
      for (const pm::v1::Event& event : *events) {
        sequences.push_back(event.sequence());
      }
    }
    return sequences;
  }

  static EtcdServer* etcd_;
};

EtcdServer* EtcdRecordStoreTest::etcd_ = nullptr;

TEST_F(EtcdRecordStoreTest, RecordsRoundTripByteForByte) {
  std::unique_ptr<EtcdRecordStore> store = Open();
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(store->Write(W({Record(1), Record(2)})).ok());
  StoredRecord ended = Record(3, ProcessStatus::STATE_EXITED);
  ended.set_ended_order(7);
  ASSERT_TRUE(store->Write(W({ended})).ok());

  EXPECT_EQ(RawGet(Prefix() + "records/" + Record(1).status().id()),
            Record(1).SerializeAsString());
  std::map<std::string, std::string> by_id = LoadById(*store);
  ASSERT_EQ(by_id.size(), 3u);
  EXPECT_EQ(by_id.at(Record(1).status().id()), Record(1).SerializeAsString());
  EXPECT_EQ(by_id.at(Record(2).status().id()), Record(2).SerializeAsString());
  EXPECT_EQ(by_id.at(ended.status().id()), ended.SerializeAsString());
}

TEST_F(EtcdRecordStoreTest, PutsAndRemovesOfOneWriteApplyTogether) {
  std::unique_ptr<EtcdRecordStore> store = Open();
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(store->Write(W({Record(1), Record(2), Record(3)})).ok());
  StoredRecord replaced = Record(1, ProcessStatus::STATE_EXITED);
  // Replaces 1, drops 2 and an id never stored, stores 4, and 5 is put and
  // removed at once (ended and evicted): not stored.
  ASSERT_TRUE(store
                  ->Write(W({replaced, Record(4), Record(5)},
                            {Record(2).status().id(), "not-there",
                             Record(5).status().id()}))
                  .ok());
  std::map<std::string, std::string> by_id = LoadById(*store);
  ASSERT_EQ(by_id.size(), 3u);
  EXPECT_EQ(by_id.at(Record(1).status().id()), replaced.SerializeAsString());
  EXPECT_EQ(by_id.count(Record(3).status().id()), 1u);
  EXPECT_EQ(by_id.count(Record(4).status().id()), 1u);
}

TEST_F(EtcdRecordStoreTest, AWriteOverTheTxnCapIsRefusedAndAppliesNothing) {
  std::unique_ptr<EtcdRecordStore> store = Open();
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(store->Write(W({Record(1)})).ok());
  RecordWrite big;
  for (int i = 100; i < 300; ++i) big.put.push_back(Record(i));
  big.remove.push_back(Record(1).status().id());

  absl::Status refused = store->Write(big);
  EXPECT_EQ(refused.code(), absl::StatusCode::kInvalidArgument) << refused;
  EXPECT_THAT(refused.message(), HasSubstr("201 ops"));
  EXPECT_THAT(refused.message(), HasSubstr("cap of 128 ops"));
  EXPECT_THAT(refused.message(), HasSubstr(etcd_->endpoint()));
  EXPECT_THAT(LoadById(*store), ::testing::SizeIs(1));

  // With the store's own check lifted, etcd refuses the Txn itself, and
  // the ops before the one over its cap are not applied either.
  EtcdRecordStore::Options lifted = StoreOptions();
  lifted.max_txn_ops = 1000;
  std::unique_ptr<EtcdRecordStore> unchecked = Open(lifted);
  ASSERT_NE(unchecked, nullptr);
  absl::Status by_etcd = unchecked->Write(big);
  EXPECT_EQ(by_etcd.code(), absl::StatusCode::kInvalidArgument) << by_etcd;
  EXPECT_THAT(by_etcd.message(), HasSubstr("etcd at " + etcd_->endpoint()));
  EXPECT_THAT(by_etcd.message(), HasSubstr("too many operations"));
  std::map<std::string, std::string> after = LoadById(*store);
  ASSERT_EQ(after.size(), 1u);
  EXPECT_EQ(after.count(Record(1).status().id()), 1u);
}

TEST_F(EtcdRecordStoreTest, EventsLoadOldestFirstAndTheDropRemovesTheOlder) {
  EtcdRecordStore::Options options = StoreOptions();
  options.page_size = 3;  // several pages
  std::unique_ptr<EtcdRecordStore> store = Open(options);
  ASSERT_NE(store, nullptr);
  // Written out of order, and past a power of ten: key order must be
  // number order.
  ASSERT_TRUE(store->Write(W({}, {}, {Event(10), Event(9), Event(100)})).ok());
  ASSERT_TRUE(store->Write(W({Record(1)}, {}, {Event(1), Event(2)})).ok());
  ASSERT_TRUE(store->Write(W({}, {}, {Event(11), Event(12)})).ok());
  EXPECT_THAT(LoadSequences(*store), ElementsAre(1, 2, 9, 10, 11, 12, 100));

  // An event below the drop in the same write is not kept either.
  ASSERT_TRUE(
      store->Write(W({}, {}, {Event(5), Event(101)}, /*drop_events_below=*/11))
          .ok());
  EXPECT_THAT(LoadSequences(*store), ElementsAre(11, 12, 100, 101));
  EXPECT_EQ(RawGet(Prefix() + "events/00000000000000000101"),
            Event(101).SerializeAsString());
}

TEST_F(EtcdRecordStoreTest, LoadAllReadsEveryPage) {
  EtcdRecordStore::Options options = StoreOptions();
  options.page_size = 2;
  std::unique_ptr<EtcdRecordStore> store = Open(options);
  ASSERT_NE(store, nullptr);
  RecordWrite write;
  for (int i = 0; i < 7; ++i) write.put.push_back(Record(i));
  ASSERT_TRUE(store->Write(write).ok());
  EXPECT_THAT(LoadById(*store), ::testing::SizeIs(7));
}

TEST_F(EtcdRecordStoreTest, AValueThatIsNotARecordIsDataLossNamingItsKey) {
  std::unique_ptr<EtcdRecordStore> store = Open();
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(store->Write(W({Record(1)})).ok());
  const std::string key = Prefix() + "records/broken";
  RawPut(key, "\xff\xff\xff\xff");
  absl::Status status = store->LoadAll().status();
  EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss) << status;
  EXPECT_THAT(status.message(), HasSubstr(key));
  EXPECT_THAT(status.message(), HasSubstr(etcd_->endpoint()));

  // A record under another id's key is no better.
  const std::string moved = Prefix() + "records/" + Record(2).status().id();
  RawPut(key, "");
  ASSERT_TRUE(store->Write(W({}, {"broken"})).ok());
  RawPut(moved, Record(3).SerializeAsString());
  status = store->LoadAll().status();
  EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss) << status;
  EXPECT_THAT(status.message(), HasSubstr(moved));
}

TEST_F(EtcdRecordStoreTest, StoresOfOtherPrefixesAreApart) {
  std::unique_ptr<EtcdRecordStore> store = Open();
  ASSERT_NE(store, nullptr);
  EtcdRecordStore::Options other_options = StoreOptions();
  other_options.prefix = Prefix() + "other/";
  std::unique_ptr<EtcdRecordStore> other = Open(other_options);
  ASSERT_NE(other, nullptr);
  ASSERT_TRUE(store->Write(W({Record(1)}, {}, {Event(1)})).ok());
  ASSERT_TRUE(
      other->Write(W({Record(2)}, {}, {}, /*drop_events_below=*/5)).ok());
  std::map<std::string, std::string> mine = LoadById(*store);
  ASSERT_EQ(mine.size(), 1u);
  EXPECT_EQ(mine.count(Record(1).status().id()), 1u);
  EXPECT_THAT(LoadSequences(*store), ElementsAre(1));
  EXPECT_THAT(LoadById(*other), ::testing::SizeIs(1));
}

TEST_F(EtcdRecordStoreTest, AReopenedStoreLoadsWhatTheFirstWrote) {
  std::map<std::string, std::string> written;
  {
    std::unique_ptr<EtcdRecordStore> store = Open();
    ASSERT_NE(store, nullptr);
    ASSERT_TRUE(
        store->Write(W({Record(1), Record(2)}, {}, {Event(1), Event(2)})).ok());
    written = LoadById(*store);
  }
  std::unique_ptr<EtcdRecordStore> store = Open();
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(LoadById(*store), written);
  EXPECT_THAT(LoadSequences(*store), ElementsAre(1, 2));
}

// A TCP port on 127.0.0.1 where nothing listens: bound (so nobody else
// takes it while the test runs) but never listened on, so a connection is
// refused.
class UnusedPort {
 public:
  UnusedPort() : fd_(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) {
    sockaddr_in address = {};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t length = sizeof(address);
    EXPECT_EQ(bind(fd_.get(), reinterpret_cast<sockaddr*>(&address), length), 0)
        << strerror(errno);
    EXPECT_EQ(
        getsockname(fd_.get(), reinterpret_cast<sockaddr*>(&address), &length),
        0)
        << strerror(errno);
    endpoint_ = absl::StrCat("127.0.0.1:", ntohs(address.sin_port));
  }
  const std::string& endpoint() const { return endpoint_; }

 private:
  Fd fd_;
  std::string endpoint_;
};

TEST_F(EtcdRecordStoreTest, OpenWhereNothingAnswersIsUnavailableNamingIt) {
  UnusedPort nothing;
  EtcdRecordStore::Options options = StoreOptions();
  options.endpoints = nothing.endpoint();
  options.deadline = absl::Seconds(1);
  const absl::Time start = absl::Now();
  absl::StatusOr<std::unique_ptr<EtcdRecordStore>> store =
      EtcdRecordStore::Open(options);
  const absl::Duration took = absl::Now() - start;
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.status().code(), absl::StatusCode::kUnavailable)
      << store.status();
  EXPECT_THAT(store.status().message(), HasSubstr("etcd"));
  EXPECT_THAT(store.status().message(), HasSubstr(nothing.endpoint()));
  // It gives up at the deadline rather than waiting for etcd to come
  // (bounded generously: the machine may be loaded).
  EXPECT_LT(took, absl::Seconds(30));
}

TEST_F(EtcdRecordStoreTest, OpenTakesTheFirstEndpointThatAnswers) {
  UnusedPort nothing;
  EtcdRecordStore::Options options = StoreOptions();
  options.endpoints = absl::StrCat(nothing.endpoint(), ", ", etcd_->endpoint());
  options.deadline = absl::Seconds(1);
  std::unique_ptr<EtcdRecordStore> store = Open(options);
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(store->endpoint(), etcd_->endpoint());
  EXPECT_TRUE(store->Write(W({Record(1)})).ok());
}

TEST_F(EtcdRecordStoreTest, BadOptionsAreInvalidArgument) {
  EtcdRecordStore::Options options = StoreOptions();
  options.prefix = "/pm/no-slash";
  EXPECT_EQ(EtcdRecordStore::Open(options).status().code(),
            absl::StatusCode::kInvalidArgument);
  options = StoreOptions();
  options.endpoints = " , ";
  EXPECT_EQ(EtcdRecordStore::Open(options).status().code(),
            absl::StatusCode::kInvalidArgument);
}

// etcd gone after Open: a Write and a load fail with UNAVAILABLE naming
// etcd and its endpoint, at once rather than at the deadline.
TEST(EtcdRecordStoreDownTest, CallsAfterEtcdStoppedAreUnavailableNamingIt) {
  absl::StatusOr<std::unique_ptr<EtcdServer>> etcd =
      EtcdServer::Start(TempDir("etcd_down"));
  ASSERT_TRUE(etcd.ok()) << etcd.status();
  EtcdRecordStore::Options options;
  options.endpoints = (*etcd)->endpoint();
  options.prefix = "/pm/down/";
  options.deadline = kDeadline;
  absl::StatusOr<std::unique_ptr<EtcdRecordStore>> store =
      EtcdRecordStore::Open(options);
  ASSERT_TRUE(store.ok()) << store.status();
  ASSERT_TRUE((*store)->Write(W({Record(1)})).ok());
  absl::StatusOr<ExitStatus> end = (*etcd)->Stop();
  ASSERT_TRUE(end.ok()) << end.status();

  absl::Status written = (*store)->Write(W({Record(2)}));
  EXPECT_EQ(written.code(), absl::StatusCode::kUnavailable) << written;
  EXPECT_THAT(written.message(), HasSubstr("etcd at " + options.endpoints));
  absl::Status loaded = (*store)->LoadAll().status();
  EXPECT_EQ(loaded.code(), absl::StatusCode::kUnavailable) << loaded;
  EXPECT_THAT(loaded.message(), HasSubstr("etcd at " + options.endpoints));
}

// An etcd that takes the connection but does not answer (stopped with
// SIGSTOP, as a hung or partitioned member would be): a Write gives up at
// the deadline with DEADLINE_EXCEEDED naming etcd.
TEST(EtcdRecordStoreDownTest, AWriteToAHungEtcdEndsAtTheDeadline) {
  absl::StatusOr<std::unique_ptr<EtcdServer>> etcd =
      EtcdServer::Start(TempDir("etcd_hung"));
  ASSERT_TRUE(etcd.ok()) << etcd.status();
  EtcdRecordStore::Options options;
  options.endpoints = (*etcd)->endpoint();
  options.prefix = "/pm/hung/";
  options.deadline = absl::Seconds(2);  // what is tested, not a safety net
  absl::StatusOr<std::unique_ptr<EtcdRecordStore>> store =
      EtcdRecordStore::Open(options);
  ASSERT_TRUE(store.ok()) << store.status();
  ASSERT_TRUE((*store)->Write(W({Record(1)})).ok());
  ASSERT_TRUE((*etcd)->Pause().ok());

  absl::Status written = (*store)->Write(W({Record(2)}));
  EXPECT_EQ(written.code(), absl::StatusCode::kDeadlineExceeded) << written;
  EXPECT_THAT(written.message(), HasSubstr("etcd at " + options.endpoints));

  ASSERT_TRUE((*etcd)->Resume().ok());
  // Back: the store works again on the same channel.
  EXPECT_TRUE((*store)->Write(W({Record(3)})).ok());
}

}  // namespace
}  // namespace pm::registry
