// The Registry with a RecordStore: every create, update and eviction is in
// the store before the call returns, a reopened registry serves what the
// last one answered, a record still running in an earlier boot comes back
// LOST, and a failed write changes nothing.
#include <stdlib.h>

#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "common/proto_time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "registry/registry.h"
#include "common/exit_status.h"
#include "common/status_core.h"
#include "registry/sqlite_record_store.h"
#include "registry/test_util.h"

namespace pm::registry {
namespace {

using ::pm::internal::v1::CreateRecordRequest;
using ::pm::internal::v1::StoredRecord;
using ::pm::internal::v1::UpdateRecordRequest;
using ::pm::v1::ProcessStatus;
using ::testing::HasSubstr;

const absl::Time kT0 = absl::FromUnixSeconds(1700000000);

class RegistryStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = absl::StrCat(getenv("TEST_TMPDIR"), "/reg.XXXXXX");
    dir_ = mkdtemp(tmpl.data());
    SetBootId("11111111-2222-3333-4444-555555555555");
  }

  void SetBootId(const std::string& id) {
    std::ofstream(dir_ + "/boot_id") << id << "\n";
  }

  RegistryOptions Options(size_t max_ended_records = 10000) const {
    RegistryOptions options;
    options.max_ended_records = max_ended_records;
    options.proc_root = dir_ + "/no_proc_here";
    options.boot_id_path = dir_ + "/boot_id";
    return options;
  }

  std::string dir_;
};

// The backends every test of RegistryOnStoreTest runs on (a RecordStore
// added later joins them here).
enum class Backend { kSqlite };

std::string BackendName(const ::testing::TestParamInfo<Backend>&) { return "Sqlite"; }

// The Registry on each RecordStore: SQLite in the test's dir.
class RegistryOnStoreTest : public RegistryStoreTest,
                            public ::testing::WithParamInterface<Backend> {
 protected:

  // A registry on the test's store (the previous one must be gone: the
  // SQLite store holds its file exclusively).
  std::unique_ptr<Registry> Open(size_t max_ended_records = 10000) {
    absl::StatusOr<std::unique_ptr<RecordStore>> store = OpenStore();
    EXPECT_TRUE(store.ok()) << store.status();
    if (!store.ok()) return nullptr;
    auto registry = Registry::Open(Options(max_ended_records), *std::move(store));
    EXPECT_TRUE(registry.ok()) << registry.status();
    return registry.ok() ? *std::move(registry) : nullptr;
  }

 private:
  absl::StatusOr<std::unique_ptr<RecordStore>> OpenStore() {
    return SqliteRecordStore::Open(dir_ + "/registry.sqlite");
  }
};

INSTANTIATE_TEST_SUITE_P(Backends, RegistryOnStoreTest,
                         ::testing::Values(Backend::kSqlite),
                         BackendName);

CreateRecordRequest Create(int n) {
  CreateRecordRequest request;
  request.mutable_spec()->set_executable("sleep");
  request.mutable_spec()->add_args("1000");
  request.set_pid(4242 + n);
  request.set_start_ticks(123456);
  *request.mutable_started_at() = ToProtoTimestamp(kT0 + absl::Seconds(n));
  request.set_owner_user(n % 2 == 0 ? "alice" : "bob");
  request.mutable_cgroup()->set_unified("/sys/fs/cgroup/pm/x");
  return request;
}

UpdateRecordRequest Update(const std::string& id, ProcessStatus::State state) {
  UpdateRecordRequest request;
  request.set_id(id);
  request.set_state(state);
  return request;
}

UpdateRecordRequest Exited(const std::string& id, int code) {
  UpdateRecordRequest request = Update(id, ProcessStatus::STATE_EXITED);
  request.mutable_end()->set_exit_code(code);
  *request.mutable_end()->mutable_ended_at() =
      ToProtoTimestamp(kT0 + absl::Seconds(100));
  request.mutable_end()->set_end_reason(absl::StrCat("exited with code ", code));
  request.mutable_end()->set_output_bytes(77);
  return request;
}

TEST_P(RegistryOnStoreTest, CreatesUpdatesAndEvictionsSurviveAReopen) {
  std::string running, stopping, exited, evicted;
  std::vector<std::string> listed;
  {
    std::unique_ptr<Registry> registry = Open(/*max_ended_records=*/1);
    ASSERT_NE(registry, nullptr);
    running = MustCreate(*registry, Create(1));
    stopping = MustCreate(*registry, Create(2));
    evicted = MustCreate(*registry, Create(3));
    exited = MustCreate(*registry, Create(4));
    ASSERT_TRUE(registry->UpdateRecord(
        Update(stopping, ProcessStatus::STATE_STOPPING)).ok());
    ASSERT_TRUE(registry->UpdateRecord(Exited(evicted, 1)).ok());
    ASSERT_TRUE(registry->UpdateRecord(Exited(exited, 3)).ok());  // evicts
    listed = ListedIds(*registry);
  }
  std::unique_ptr<Registry> registry = Open(/*max_ended_records=*/1);
  ASSERT_NE(registry, nullptr);
  EXPECT_EQ(registry->size(), 3u);
  EXPECT_EQ(ListedIds(*registry), listed);  // same order: newest first
  EXPECT_EQ(registry->GetStatus(running)->state(), ProcessStatus::STATE_RUNNING);
  EXPECT_EQ(registry->GetStatus(stopping)->state(),
            ProcessStatus::STATE_STOPPING);
  absl::StatusOr<ProcessStatus> ended = registry->GetStatus(exited);
  ASSERT_TRUE(ended.ok()) << ended.status();
  EXPECT_EQ(ended->state(), ProcessStatus::STATE_EXITED);
  EXPECT_EQ(ended->exit_code(), 3);
  EXPECT_EQ(ended->output_bytes(), 77u);
  EXPECT_EQ(ended->end_reason(), "exited with code 3");
  EXPECT_EQ(ended->run_time().seconds(), 96);
  EXPECT_EQ(ended->cgroup(), "/sys/fs/cgroup/pm/x");
  EXPECT_EQ(registry->GetStatus(evicted).status().code(),
            absl::StatusCode::kNotFound);
  // The eviction order survives too: the next end evicts `exited`.
  ASSERT_TRUE(registry->UpdateRecord(Exited(running, 0)).ok());
  EXPECT_EQ(registry->GetStatus(exited).status().code(),
            absl::StatusCode::kNotFound);
  // A retried final update after the restart still matches.
  EXPECT_TRUE(registry->UpdateRecord(Exited(running, 0)).ok());
}

TEST_P(RegistryOnStoreTest, NamesAndLabelsSurviveAReopen) {
  std::string web;
  {
    std::unique_ptr<Registry> registry = Open();
    ASSERT_NE(registry, nullptr);
    CreateRecordRequest request = Create(1);
    request.mutable_spec()->set_name("web");
    (*request.mutable_spec()->mutable_labels())["app"] = "shop";
    web = MustCreate(*registry, request);
  }
  std::unique_ptr<Registry> registry = Open();
  ASSERT_NE(registry, nullptr);
  pm::internal::v1::ResolveRequest ref;
  ref.set_ref("web");
  absl::StatusOr<pm::internal::v1::ResolveResponse> resolved = registry->Resolve(ref);
  ASSERT_TRUE(resolved.ok()) << resolved.status();
  EXPECT_EQ(resolved->id(), web);
  EXPECT_EQ(registry->GetStatus(web)->labels().at("app"), "shop");
  // Still taken.
  CreateRecordRequest again = Create(2);
  again.mutable_spec()->set_name("web");
  EXPECT_EQ(registry->CreateRecord(again).status().code(),
            absl::StatusCode::kAlreadyExists);
  // And a prefix of the id resolves from the reloaded index.
  ref.set_ref(web.substr(0, 8));
  EXPECT_EQ(registry->Resolve(ref)->id(), web);
}

TEST_P(RegistryOnStoreTest, ARemovedRecordStaysGoneAfterAReopen) {
  std::string kept, removed;
  {
    std::unique_ptr<Registry> registry = Open();
    ASSERT_NE(registry, nullptr);
    kept = MustCreate(*registry, Create(1));
    CreateRecordRequest named = Create(2);
    named.mutable_spec()->set_name("web");
    removed = MustCreate(*registry, named);
    ASSERT_TRUE(registry->UpdateRecord(Exited(removed, 0)).ok());
    ASSERT_TRUE(registry->RemoveRecord(removed).ok());
  }
  std::unique_ptr<Registry> registry = Open();
  ASSERT_NE(registry, nullptr);
  EXPECT_EQ(registry->size(), 1u);
  EXPECT_TRUE(registry->GetStatus(kept).ok());
  EXPECT_EQ(registry->GetStatus(removed).status().code(),
            absl::StatusCode::kNotFound);
  CreateRecordRequest again = Create(3);
  again.mutable_spec()->set_name("web");
  EXPECT_TRUE(registry->CreateRecord(again).ok());
}

TEST_P(RegistryOnStoreTest, EventsAndTheirNumberingSurviveAReopen) {
  std::string id;
  {
    std::unique_ptr<Registry> registry = Open();
    ASSERT_NE(registry, nullptr);
    id = MustCreate(*registry, Create(1));
    ASSERT_TRUE(registry->UpdateRecord(Exited(id, 0)).ok());
  }
  std::unique_ptr<Registry> registry = Open();
  ASSERT_NE(registry, nullptr);
  EXPECT_EQ(registry->last_event_sequence(), 2u);
  Registry::NextEventResult first = registry->NextEvent(0, {});
  ASSERT_TRUE(first.event.has_value());
  EXPECT_EQ(first.event->kind(), pm::v1::Event::KIND_STARTED);
  EXPECT_EQ(first.event->status().id(), id);
  Registry::NextEventResult second = registry->NextEvent(1, {});
  ASSERT_TRUE(second.event.has_value());
  EXPECT_EQ(second.event->kind(), pm::v1::Event::KIND_EXITED);
  // The numbering goes on from there.
  MustCreate(*registry, Create(2));
  EXPECT_EQ(registry->last_event_sequence(), 3u);
}

TEST_P(RegistryOnStoreTest, TheCapIsAppliedToTheStoredRowsAtLoad) {
  {
    std::unique_ptr<Registry> registry = Open(/*max_ended_records=*/10);
    ASSERT_NE(registry, nullptr);
    for (int i = 0; i < 5; ++i) {
      ASSERT_TRUE(registry->UpdateRecord(Exited(MustCreate(*registry, Create(i)), 0)).ok());
    }
  }
  {
    std::unique_ptr<Registry> registry = Open(/*max_ended_records=*/2);
    ASSERT_NE(registry, nullptr);
    EXPECT_EQ(registry->size(), 2u);
  }
  std::unique_ptr<Registry> registry = Open(/*max_ended_records=*/10);
  ASSERT_NE(registry, nullptr);
  EXPECT_EQ(registry->size(), 2u);  // the evicted rows were deleted
}

TEST_P(RegistryOnStoreTest, ARunningRecordOfAnEarlierBootIsLost) {
  std::string running, stopping, exited;
  {
    std::unique_ptr<Registry> registry = Open();
    ASSERT_NE(registry, nullptr);
    running = MustCreate(*registry, Create(1));
    stopping = MustCreate(*registry, Create(2));
    exited = MustCreate(*registry, Create(3));
    ASSERT_TRUE(registry->UpdateRecord(
        Update(stopping, ProcessStatus::STATE_STOPPING)).ok());
    ASSERT_TRUE(registry->UpdateRecord(Exited(exited, 3)).ok());
  }
  SetBootId("99999999-2222-3333-4444-555555555555");  // the host rebooted
  for (int reopen = 0; reopen < 2; ++reopen) {  // and it is stored so
    std::unique_ptr<Registry> registry = Open();
    ASSERT_NE(registry, nullptr);
    for (const std::string& id : {running, stopping}) {
      absl::StatusOr<ProcessStatus> lost = registry->GetStatus(id);
      ASSERT_TRUE(lost.ok()) << lost.status();
      EXPECT_EQ(lost->state(), ProcessStatus::STATE_LOST);
      EXPECT_THAT(lost->end_reason(), HasSubstr("the host restarted"));
      EXPECT_THAT(lost->end_reason(), HasSubstr("11111111-2222"));
      EXPECT_FALSE(lost->has_ended_at());
      // Ended: Wait answers at once.
      bool waited = false;
      registry->Wait(id, [&](absl::StatusOr<ProcessStatus> status) {
        waited = status.ok() && status->state() == ProcessStatus::STATE_LOST;
      });
      EXPECT_TRUE(waited);
    }
    EXPECT_EQ(registry->GetStatus(exited)->state(), ProcessStatus::STATE_EXITED);
  }
}

TEST_P(RegistryOnStoreTest, ARunningRecordOfThisBootStaysRunning) {
  std::string id;
  {
    std::unique_ptr<Registry> registry = Open();
    ASSERT_NE(registry, nullptr);
    id = MustCreate(*registry, Create(1));
  }
  std::unique_ptr<Registry> registry = Open();
  ASSERT_NE(registry, nullptr);
  EXPECT_EQ(registry->GetStatus(id)->state(), ProcessStatus::STATE_RUNNING);
}

TEST_P(RegistryOnStoreTest, ConcurrentCreatesAreAllStored) {
  constexpr int kThreads = 8;
  constexpr int kEach = 50;
  {
    std::unique_ptr<Registry> registry = Open();
    ASSERT_NE(registry, nullptr);
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&registry, t] {
        for (int i = 0; i < kEach; ++i) {
          const std::string id = MustCreate(*registry, Create(t * kEach + i));
          if (i % 2 == 0) {
            EXPECT_TRUE(registry->UpdateRecord(Exited(id, i % 256)).ok());
          }
        }
      });
    }
    for (std::thread& thread : threads) thread.join();
  }
  std::unique_ptr<Registry> registry = Open();
  ASSERT_NE(registry, nullptr);
  EXPECT_EQ(registry->size(), static_cast<size_t>(kThreads * kEach));
  int ended = 0;
  const pm::v1::ListResponse list = registry->List();
  for (const ProcessStatus& status : list.processes()) {
    ended += status.state() == ProcessStatus::STATE_EXITED;
  }
  EXPECT_EQ(ended, kThreads * kEach / 2);
}

// A store whose writes fail from a point on (a full disk).
class FailingStore : public RecordStore {
 public:
  absl::Status Write(const RecordWrite& write) override {
    if (fail) return absl::ResourceExhaustedError("disk full");
    puts.insert(puts.end(), write.put.begin(), write.put.end());
    writes.push_back(write);
    return absl::OkStatus();
  }
  absl::StatusOr<std::vector<StoredRecord>> LoadAll() override {
    return std::vector<StoredRecord>();
  }
  bool fail = false;
  std::vector<StoredRecord> puts;
  std::vector<RecordWrite> writes;
};

TEST_F(RegistryStoreTest, AFailedWriteChangesNothingAndIsReturned) {
  auto owned = std::make_unique<FailingStore>();
  FailingStore* store = owned.get();
  auto registry = Registry::Open(Options(), std::move(owned));
  ASSERT_TRUE(registry.ok()) << registry.status();
  const std::string id = MustCreate(**registry, Create(1));
  ASSERT_EQ(store->puts.size(), 1u);
  EXPECT_EQ(store->puts[0].boot_id(), "11111111-2222-3333-4444-555555555555");

  store->fail = true;
  absl::StatusOr<ProcessStatus> created = (*registry)->CreateRecord(Create(2));
  EXPECT_EQ(created.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(created.status().message(), HasSubstr("disk full"));
  EXPECT_EQ((*registry)->size(), 1u);
  absl::StatusOr<ProcessStatus> updated =
      (*registry)->UpdateRecord(Exited(id, 3));
  // UNAVAILABLE: the supervisor retries it.
  EXPECT_EQ(updated.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ((*registry)->GetStatus(id)->state(), ProcessStatus::STATE_RUNNING);

  store->fail = false;  // the supervisor's retry then lands
  ASSERT_TRUE((*registry)->UpdateRecord(Exited(id, 3)).ok());
  EXPECT_EQ((*registry)->GetStatus(id)->state(), ProcessStatus::STATE_EXITED);
  EXPECT_EQ(store->puts.back().status().state(), ProcessStatus::STATE_EXITED);
  EXPECT_EQ(store->puts.back().ended_order(), 1u);
}

// The supervisor may retry an update with the same sequence: one whose
// write failed was not applied, so the retry must not be taken for a
// duplicate of it.
TEST_F(RegistryStoreTest, AnUpdateWhoseWriteFailedIsAppliedWhenRetriedWithItsSequence) {
  auto owned = std::make_unique<FailingStore>();
  FailingStore* store = owned.get();
  auto registry = Registry::Open(Options(), std::move(owned));
  ASSERT_TRUE(registry.ok()) << registry.status();
  const std::string id = MustCreate(**registry, Create(1));
  UpdateRecordRequest exited = Exited(id, 4);
  exited.set_sequence(7);
  store->fail = true;
  EXPECT_EQ((*registry)->UpdateRecord(exited).status().code(),
            absl::StatusCode::kUnavailable);
  store->fail = false;
  absl::StatusOr<ProcessStatus> retried = (*registry)->UpdateRecord(exited);
  ASSERT_TRUE(retried.ok()) << retried.status();
  EXPECT_EQ(retried->state(), ProcessStatus::STATE_EXITED);
  EXPECT_EQ(retried->exit_code(), 4);
  EXPECT_EQ(store->puts.back().sequence(), 7u);
}

TEST_F(RegistryStoreTest, AnEndAndTheEvictionItCausesAreOneWrite) {
  auto owned = std::make_unique<FailingStore>();
  FailingStore* store = owned.get();
  auto registry = Registry::Open(Options(/*max_ended_records=*/1), std::move(owned));
  ASSERT_TRUE(registry.ok()) << registry.status();
  const std::string first = MustCreate(**registry, Create(1));
  const std::string second = MustCreate(**registry, Create(2));
  ASSERT_TRUE((*registry)->UpdateRecord(Exited(first, 0)).ok());
  ASSERT_TRUE((*registry)->UpdateRecord(Exited(second, 0)).ok());
  ASSERT_EQ(store->writes.size(), 4u);  // two creates, two ends
  const RecordWrite& last = store->writes.back();
  ASSERT_EQ(last.put.size(), 1u);
  EXPECT_EQ(last.put[0].status().id(), second);
  EXPECT_EQ(last.put[0].ended_order(), 2u);
  EXPECT_THAT(last.remove, ::testing::ElementsAre(first));
}

TEST_F(RegistryStoreTest, AMissingBootIdFileIsAnErrorNamingIt) {
  RegistryOptions options = Options();
  options.boot_id_path = dir_ + "/nope";
  auto registry = Registry::Open(options, std::make_unique<FailingStore>());
  ASSERT_FALSE(registry.ok());
  EXPECT_THAT(registry.status().message(), HasSubstr(dir_ + "/nope"));
}

}  // namespace
}  // namespace pm::registry
