// Names, labels, references (Resolve) and List's filters.
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "registry/registry.h"
#include "registry/test_util.h"

namespace pm::registry {
namespace {

using ::pm::internal::v1::CreateRecordRequest;
using ::pm::internal::v1::ResolveRequest;
using ::pm::internal::v1::UpdateRecordRequest;
using ::pm::v1::ProcessStatus;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::UnorderedElementsAre;

RegistryOptions Options(size_t max_ended_records = 10000) {
  RegistryOptions options;
  options.max_ended_records = max_ended_records;
  options.proc_root = ::testing::TempDir() + "/no_proc_here";
  return options;
}

CreateRecordRequest Create(const std::string& id, const std::string& name = "",
                           const std::string& owner_user = "") {
  CreateRecordRequest request;
  request.set_id(id);
  request.mutable_spec()->set_executable("sleep");
  request.mutable_spec()->set_name(name);
  request.set_resolved_executable("/usr/bin/sleep");
  request.set_pid(4242);
  request.set_owner_user(owner_user);
  return request;
}

UpdateRecordRequest Exited(const std::string& id) {
  UpdateRecordRequest request;
  request.set_id(id);
  request.set_state(ProcessStatus::STATE_EXITED);
  return request;
}

ResolveRequest Ref(const std::string& ref, const std::string& owner_user = "") {
  ResolveRequest request;
  request.set_ref(ref);
  request.set_owner_user(owner_user);
  return request;
}

constexpr char kA[] = "aaaa1111-0000-4000-8000-000000000001";
constexpr char kA2[] = "aaaa2222-0000-4000-8000-000000000002";
constexpr char kB[] = "bbbb1111-0000-4000-8000-000000000003";

TEST(RegistryNamesTest, NameAndLabelsAreKeptAndEchoed) {
  Registry registry(Options());
  CreateRecordRequest request = Create(kA, "web");
  (*request.mutable_spec()->mutable_labels())["app"] = "shop";
  ASSERT_TRUE(registry.CreateRecord(request).ok());
  absl::StatusOr<ProcessStatus> status = registry.GetStatus(kA);
  ASSERT_TRUE(status.ok());
  EXPECT_EQ(status->name(), "web");
  EXPECT_EQ(status->labels().at("app"), "shop");
}

TEST(RegistryNamesTest, ANameIsTakenOnceWhileItsRecordIsOnFile) {
  Registry registry(Options(/*max_ended_records=*/1));
  MustCreate(registry, Create(kA, "web"));
  absl::StatusOr<ProcessStatus> again = registry.CreateRecord(Create(kB, "web"));
  EXPECT_EQ(again.status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_THAT(again.status().message(), HasSubstr(kA));
  // Ended, the record still holds its name ...
  ASSERT_TRUE(registry.UpdateRecord(Exited(kA)).ok());
  EXPECT_EQ(registry.CreateRecord(Create(kB, "web")).status().code(),
            absl::StatusCode::kAlreadyExists);
  // ... until it is evicted (the cap is 1: the next end evicts it).
  MustCreate(registry, Create(kA2));
  ASSERT_TRUE(registry.UpdateRecord(Exited(kA2)).ok());
  EXPECT_TRUE(registry.CreateRecord(Create(kB, "web")).ok());
}

TEST(RegistryNamesTest, AMalformedNameOrLabelIsRefused) {
  Registry registry(Options());
  EXPECT_EQ(registry.CreateRecord(Create(kA, "no spaces")).status().code(),
            absl::StatusCode::kInvalidArgument);
  CreateRecordRequest request = Create(kA);
  (*request.mutable_spec()->mutable_labels())["bad key"] = "x";
  EXPECT_THAT(registry.CreateRecord(request).status().message(), HasSubstr("label key"));
}

TEST(RegistryNamesTest, ResolveTakesAFullIdThenANameThenAUniquePrefix) {
  Registry registry(Options());
  MustCreate(registry, Create(kA, "web"));
  MustCreate(registry, Create(kA2));
  MustCreate(registry, Create(kB, "aaaa"));  // a name that looks like a prefix
  EXPECT_EQ(registry.Resolve(Ref(kA))->id(), kA);
  EXPECT_EQ(registry.Resolve(Ref("web"))->id(), kA);
  EXPECT_EQ(registry.Resolve(Ref("aaaa2"))->id(), kA2);
  EXPECT_EQ(registry.Resolve(Ref("AAAA2"))->id(), kA2);  // hex in any case
  // A name wins over a prefix it also is.
  EXPECT_EQ(registry.Resolve(Ref("aaaa"))->id(), kB);
  absl::StatusOr<pm::internal::v1::ResolveResponse> ambiguous = registry.Resolve(Ref("aaa"));
  EXPECT_EQ(ambiguous.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(ambiguous.status().message(), HasSubstr("ambiguous"));
  EXPECT_THAT(ambiguous.status().message(), HasSubstr(absl::StrCat(kA, " (web)")));
  EXPECT_THAT(ambiguous.status().message(), HasSubstr(kA2));
  EXPECT_EQ(registry.Resolve(Ref("ccc")).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(registry.Resolve(Ref("nope")).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(registry.Resolve(Ref("../x")).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(registry.Resolve(Ref("")).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(RegistryNamesTest, NameOnlyMatchesNamesAlone) {
  Registry registry(Options());
  MustCreate(registry, Create(kA, "web"));
  ResolveRequest request = Ref("aaaa1");
  request.set_name_only(true);
  EXPECT_EQ(registry.Resolve(request).status().code(), absl::StatusCode::kNotFound);
  request.set_ref("web");
  EXPECT_EQ(registry.Resolve(request)->id(), kA);
}

TEST(RegistryNamesTest, ResolveForAUserSeesOnlyThatUsersRecords) {
  Registry registry(Options());
  MustCreate(registry, Create(kA, "web", "alice"));
  MustCreate(registry, Create(kA2, "", "bob"));
  // Bob's prefix is not ambiguous because of alice's process, and the
  // error of a shared prefix does not list her id to him.
  EXPECT_EQ(registry.Resolve(Ref("aaaa", "bob"))->id(), kA2);
  EXPECT_EQ(registry.Resolve(Ref("web", "bob")).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(registry.Resolve(Ref(kA, "bob")).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(registry.Resolve(Ref("web", "alice"))->id(), kA);
  EXPECT_EQ(registry.Resolve(Ref("aaaa")).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST(RegistryNamesTest, AnAmbiguousPrefixListsAtMostTenCandidates) {
  Registry registry(Options());
  for (int i = 0; i < 13; ++i) {
    MustCreate(registry, Create(absl::StrCat("cccc", absl::Hex(i, absl::kZeroPad4),
                                             "-0000-4000-8000-000000000000")));
  }
  absl::Status ambiguous = registry.Resolve(Ref("cc")).status();
  EXPECT_THAT(ambiguous.message(), HasSubstr("13 processes have it"));
  EXPECT_THAT(ambiguous.message(), HasSubstr("and 3 more"));
}

std::vector<std::string> Ids(const absl::StatusOr<pm::v1::ListResponse>& list) {
  std::vector<std::string> ids;
  EXPECT_TRUE(list.ok()) << list.status();
  if (!list.ok()) return ids;
  for (const ProcessStatus& status : list->processes()) ids.push_back(status.id());
  return ids;
}

TEST(RegistryNamesTest, ListFiltersByStateNameLabelsAndLimit) {
  Registry registry(Options());
  CreateRecordRequest web = Create(kA, "web");
  (*web.mutable_spec()->mutable_labels())["app"] = "shop";
  (*web.mutable_spec()->mutable_labels())["tier"] = "front";
  CreateRecordRequest db = Create(kA2, "db");
  (*db.mutable_spec()->mutable_labels())["app"] = "shop";
  MustCreate(registry, web);
  MustCreate(registry, db);
  MustCreate(registry, Create(kB));
  ASSERT_TRUE(registry.UpdateRecord(Exited(kA2)).ok());

  pm::v1::ListRequest request;
  request.add_label_selector("app=shop");
  EXPECT_THAT(Ids(registry.List(request)), UnorderedElementsAre(kA, kA2));
  request.add_label_selector("tier");
  EXPECT_THAT(Ids(registry.List(request)), ElementsAre(kA));

  request.Clear();
  request.add_states(ProcessStatus::STATE_RUNNING);
  request.add_states(ProcessStatus::STATE_STOPPING);
  EXPECT_THAT(Ids(registry.List(request)), UnorderedElementsAre(kA, kB));

  request.Clear();
  request.set_name("db");
  EXPECT_THAT(Ids(registry.List(request)), ElementsAre(kA2));

  request.Clear();
  request.set_limit(2);
  EXPECT_EQ(Ids(registry.List(request)).size(), 2u);

  request.Clear();
  request.add_label_selector("=x");
  EXPECT_EQ(registry.List(request).status().code(), absl::StatusCode::kInvalidArgument);
  request.Clear();
  request.add_states(static_cast<ProcessStatus::State>(77));
  EXPECT_EQ(registry.List(request).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(RegistryRemoveTest, AnEndedRecordGoesWithItsNameAndItsIdSaysSo) {
  Registry registry(Options());
  MustCreate(registry, Create(kA, "web", "alice"));
  MustCreate(registry, Create(kB, "db"));
  absl::StatusOr<ProcessStatus> live = registry.RemoveRecord(kA);
  EXPECT_EQ(live.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(live.status().message(), HasSubstr("has not ended"));
  ASSERT_TRUE(registry.UpdateRecord(Exited(kA)).ok());
  // Another user's record is as unknown.
  EXPECT_EQ(registry.RemoveRecord(kA, "bob").status().code(),
            absl::StatusCode::kNotFound);
  absl::StatusOr<ProcessStatus> removed = registry.RemoveRecord(kA, "alice");
  ASSERT_TRUE(removed.ok()) << removed.status();
  EXPECT_EQ(removed->id(), kA);
  EXPECT_EQ(removed->name(), "web");

  EXPECT_EQ(registry.size(), 1u);
  absl::StatusOr<ProcessStatus> gone = registry.GetStatus(kA);
  EXPECT_EQ(gone.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(gone.status().message(), HasSubstr("was removed"));
  EXPECT_EQ(registry.RemoveRecord(kA).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(registry.Resolve(Ref("web")).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(registry.Resolve(Ref("aaaa")).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_THAT(Ids(registry.List(pm::v1::ListRequest())), ElementsAre(kB));
  // The name is free; the id is never taken again.
  EXPECT_TRUE(registry.CreateRecord(Create(kA2, "web")).ok());
  EXPECT_EQ(registry.CreateRecord(Create(kA)).status().code(),
            absl::StatusCode::kAlreadyExists);
}

TEST(RegistryRemoveTest, ARemovedRecordLeavesTheEvictionQueue) {
  // Cap 1: had kA stayed queued, kB's end would "evict" a record that is
  // no longer there.
  Registry registry(Options(/*max_ended_records=*/1));
  MustCreate(registry, Create(kA));
  MustCreate(registry, Create(kB));
  ASSERT_TRUE(registry.UpdateRecord(Exited(kA)).ok());
  ASSERT_TRUE(registry.RemoveRecord(kA).ok());
  ASSERT_TRUE(registry.UpdateRecord(Exited(kB)).ok());
  EXPECT_TRUE(registry.GetStatus(kB).ok());
  MustCreate(registry, Create(kA2));
  ASSERT_TRUE(registry.UpdateRecord(Exited(kA2)).ok());
  EXPECT_THAT(registry.GetStatus(kB).status().message(), HasSubstr("evicted"));
  EXPECT_TRUE(registry.GetStatus(kA2).ok());
}

}  // namespace
}  // namespace pm::registry
