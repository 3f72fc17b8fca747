// The Registry's records without a server: ids, validation, transitions,
// ordering, eviction. The live /proc view is covered by proc_reader_test.
#include "registry/registry.h"
#include "registry/metrics.h"
#include "registry/test_util.h"

#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/proto_time.h"
#include "common/utf8_fields.h"
#include "common/uuid.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace pm::registry {
namespace {

using ::pm::internal::v1::CreateRecordRequest;
using ::pm::internal::v1::UpdateRecordRequest;
using ::pm::v1::ProcessStatus;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;

constexpr char kUnknownId[] = "0b7e3d1c-6a1f-4e8e-9f3c-2d6a5b4c3d2e";

// Pids here are made up, so /proc is pointed at a directory without them:
// these tests must not read a stranger's process.
RegistryOptions Options(size_t max_ended_records = 10000) {
  RegistryOptions options;
  options.max_ended_records = max_ended_records;
  options.proc_root = ::testing::TempDir() + "/no_proc_here";
  return options;
}

const absl::Time kT0 = absl::FromUnixSeconds(1700000000);

CreateRecordRequest Create(absl::Time started_at = kT0, int32_t pid = 4242) {
  CreateRecordRequest request;
  request.mutable_spec()->set_executable("sleep");
  request.mutable_spec()->add_args("1000");
  request.mutable_spec()->add_args("two words");
  request.mutable_spec()->set_working_dir("/tmp");
  request.set_resolved_executable("/usr/bin/sleep");
  request.set_pid(pid);
  request.set_start_ticks(123456);
  *request.mutable_started_at() = ToProtoTimestamp(started_at);
  request.set_owner("alice (CN=laptop)");
  request.set_owner_user("alice");
  return request;
}

UpdateRecordRequest Update(const std::string& id, ProcessStatus::State state) {
  UpdateRecordRequest request;
  request.set_id(id);
  request.set_state(state);
  return request;
}

UpdateRecordRequest Exited(const std::string& id, int32_t code,
                           absl::Time ended_at = kT0 + absl::Seconds(90)) {
  UpdateRecordRequest request = Update(id, ProcessStatus::STATE_EXITED);
  request.mutable_end()->set_exit_code(code);
  *request.mutable_end()->mutable_ended_at() = ToProtoTimestamp(ended_at);
  request.mutable_end()->set_termination(ProcessStatus::TERMINATION_BY_ITSELF);
  request.mutable_end()->set_output_bytes(4096);
  return request;
}

TEST(RegistryTest, ListOfOneOwnerCopiesOnlyThatOwnersRecords) {
  Registry registry(Options());
  const std::string alices = MustCreate(registry, Create(kT0));
  CreateRecordRequest bob = Create(kT0 + absl::Seconds(1));
  bob.set_owner_user("bob");
  const std::string bobs = MustCreate(registry, bob);
  CreateRecordRequest local = Create(kT0 + absl::Seconds(2));
  local.clear_owner_user();
  const std::string locals = MustCreate(registry, local);
  auto ids = [](const pm::v1::ListResponse& list) {
    std::vector<std::string> out;
    for (const ProcessStatus& status : list.processes()) out.push_back(status.id());
    return out;
  };
  EXPECT_THAT(ids(registry.List("alice")), ElementsAre(alices));
  EXPECT_THAT(ids(registry.List("bob")), ElementsAre(bobs));
  EXPECT_THAT(ids(registry.List("nobody")), IsEmpty());
  EXPECT_THAT(ids(registry.List()), ElementsAre(locals, bobs, alices));
}

// What a restarted supervisor re-adopts: the records that have not ended,
// oldest first, with the start time and cgroup that name their processes.
TEST(RegistryTest, ListLiveGivesTheRecordsNotEndedWithTheirStartTicksAndCgroup) {
  Registry registry(Options());
  CreateRecordRequest first = Create(kT0, 100);
  first.mutable_cgroup()->set_unified("/sys/fs/cgroup/pm/1.1");
  first.mutable_cgroup()->mutable_v1()->insert({"memory", "/sys/fs/cgroup/memory/pm/1.1"});
  const std::string running = MustCreate(registry, first);
  const std::string ended = MustCreate(registry, Create(kT0 + absl::Seconds(1), 101));
  const std::string stopping = MustCreate(registry, Create(kT0 + absl::Seconds(2), 102));
  ASSERT_TRUE(registry.UpdateRecord(Exited(ended, 0)).ok());
  ASSERT_TRUE(registry.UpdateRecord(Update(stopping, ProcessStatus::STATE_STOPPING)).ok());

  std::vector<pm::internal::v1::StoredRecord> live = registry.ListLive();
  ASSERT_EQ(live.size(), 2u);
  EXPECT_EQ(live[0].status().id(), running);
  EXPECT_EQ(live[0].status().pid(), 100);
  EXPECT_EQ(live[0].start_ticks(), 123456u);
  EXPECT_EQ(live[0].cgroup().unified(), "/sys/fs/cgroup/pm/1.1");
  EXPECT_EQ(live[0].cgroup().v1().at("memory"), "/sys/fs/cgroup/memory/pm/1.1");
  EXPECT_EQ(live[1].status().id(), stopping);
  EXPECT_EQ(live[1].status().state(), ProcessStatus::STATE_STOPPING);
}

TEST(RegistryTest, CreateRecordMintsAVersion4IdAndKeepsTheSpec) {
  Registry registry(Options());
  absl::StatusOr<ProcessStatus> created = registry.CreateRecord(Create());
  ASSERT_TRUE(created.ok()) << created.status();

  const std::string& id = created->id();
  EXPECT_TRUE(ValidateProcessId(id).ok()) << id;
  EXPECT_EQ(id[14], '4') << id;  // version
  EXPECT_THAT(std::string("89ab"), HasSubstr(std::string(1, id[19]))) << id;
  EXPECT_EQ(created->state(), ProcessStatus::STATE_RUNNING);
  EXPECT_EQ(created->pid(), 4242);
  EXPECT_EQ(created->executable(), "sleep");
  EXPECT_THAT(created->args(), ElementsAre("1000", "two words"));
  EXPECT_EQ(created->working_dir(), "/tmp");
  EXPECT_EQ(created->resolved_executable(), "/usr/bin/sleep");
  EXPECT_EQ(created->owner(), "alice (CN=laptop)");
  EXPECT_EQ(created->owner_user(), "alice");
  EXPECT_EQ(FromProtoTimestamp(created->started_at()), kT0);

  absl::StatusOr<ProcessStatus> got = registry.GetStatus(id);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->id(), id);
  EXPECT_EQ(got->state(), ProcessStatus::STATE_RUNNING);
  EXPECT_THAT(got->args(), ElementsAre("1000", "two words"));
  EXPECT_FALSE(got->has_ended_at());
}

TEST(RegistryTest, IdsAreDistinct) {
  Registry registry(Options());
  std::set<std::string> ids;
  for (int i = 0; i < 200; ++i) ids.insert(MustCreate(registry, Create()));
  EXPECT_EQ(ids.size(), 200u);
}

TEST(RegistryTest, CreateRecordRejectsANonPositivePid) {
  Registry registry(Options());
  for (int32_t pid : {0, -1}) {
    absl::StatusOr<ProcessStatus> created =
        registry.CreateRecord(Create(kT0, pid));
    EXPECT_EQ(created.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(created.status().message(), HasSubstr("pid must be > 0"));
  }
  EXPECT_EQ(registry.size(), 0u);
}

TEST(RegistryTest, CreateRecordRejectsAnEmptyExecutable) {
  Registry registry(Options());
  CreateRecordRequest request = Create();
  request.mutable_spec()->clear_executable();
  absl::StatusOr<ProcessStatus> created = registry.CreateRecord(request);
  EXPECT_EQ(created.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(created.status().message(), HasSubstr("executable is empty"));
}

TEST(RegistryTest, CommandThatIsNotUtf8IsEchoedInTheBytesFields) {
  Registry registry(Options());
  CreateRecordRequest request = Create();
  pm::v1::StartRequest& spec = *request.mutable_spec();
  spec.clear_args();
  spec.add_args_bytes("-c");
  spec.add_args_bytes("caf\xe9");
  spec.clear_working_dir();
  spec.set_working_dir_bytes("/tmp/\xe9t\xe9");
  request.clear_resolved_executable();
  request.set_resolved_executable_bytes("/opt/\xff/sleep");
  absl::StatusOr<ProcessStatus> created = registry.CreateRecord(request);
  ASSERT_TRUE(created.ok()) << created.status();

  absl::StatusOr<ProcessStatus> got = registry.GetStatus(created->id());
  ASSERT_TRUE(got.ok()) << got.status();
  // What is UTF-8 stays in the string fields, so old clients see it.
  EXPECT_EQ(got->executable(), "sleep");
  EXPECT_TRUE(got->executable_bytes().empty());
  EXPECT_THAT(got->args(), IsEmpty());
  EXPECT_THAT(got->args_bytes(), ElementsAre("-c", "caf\xe9"));
  EXPECT_TRUE(got->working_dir().empty());
  EXPECT_EQ(got->working_dir_bytes(), "/tmp/\xe9t\xe9");
  EXPECT_TRUE(got->resolved_executable().empty());
  EXPECT_EQ(got->resolved_executable_bytes(), "/opt/\xff/sleep");
  // Every client can parse the answer.
  EXPECT_TRUE(CheckUtf8Fields(*got).ok());
  EXPECT_TRUE(CheckUtf8Fields(registry.List()).ok());

  // A bytes form sent for what is UTF-8 is echoed as a string.
  CreateRecordRequest utf8 = Create();
  utf8.mutable_spec()->clear_executable();
  utf8.mutable_spec()->set_executable_bytes("caf\xc3\xa9");
  absl::StatusOr<ProcessStatus> text = registry.CreateRecord(utf8);
  ASSERT_TRUE(text.ok()) << text.status();
  EXPECT_EQ(text->executable(), "caf\xc3\xa9");
  EXPECT_TRUE(text->executable_bytes().empty());
}

TEST(RegistryTest, CreateRecordRefusesBothFormsOfAField) {
  Registry registry(Options());
  CreateRecordRequest request = Create();
  request.mutable_spec()->add_args_bytes("x");
  absl::StatusOr<ProcessStatus> created = registry.CreateRecord(request);
  EXPECT_EQ(created.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(created.status().message(),
              HasSubstr("spec: args and args_bytes are both set"));

  request = Create();
  request.set_resolved_executable_bytes("/usr/bin/sleep");
  created = registry.CreateRecord(request);
  EXPECT_EQ(created.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(created.status().message(),
              HasSubstr("resolved_executable and resolved_executable_bytes"));
}

TEST(RegistryTest, StartedAtDefaultsToNow) {
  Registry registry(Options());
  CreateRecordRequest request = Create();
  request.clear_started_at();
  const absl::Time before = absl::Now();
  absl::StatusOr<ProcessStatus> created = registry.CreateRecord(request);
  const absl::Time after = absl::Now();
  ASSERT_TRUE(created.ok()) << created.status();
  EXPECT_GE(FromProtoTimestamp(created->started_at()), before);
  EXPECT_LE(FromProtoTimestamp(created->started_at()), after);
}

TEST(RegistryTest, TheEnvIsNeitherKeptNorEchoed) {
  Registry registry(Options());
  CreateRecordRequest request = Create();
  (*request.mutable_spec()->mutable_env())["API_TOKEN"] = "hunter2-secret";
  absl::StatusOr<ProcessStatus> created = registry.CreateRecord(request);
  ASSERT_TRUE(created.ok()) << created.status();
  absl::StatusOr<ProcessStatus> got = registry.GetStatus(created->id());
  ASSERT_TRUE(got.ok()) << got.status();

  EXPECT_THAT(created->SerializeAsString(), Not(HasSubstr("hunter2")));
  EXPECT_THAT(got->SerializeAsString(), Not(HasSubstr("hunter2")));
  EXPECT_THAT(registry.List().SerializeAsString(), Not(HasSubstr("hunter2")));
  EXPECT_THAT(registry.List().SerializeAsString(), Not(HasSubstr("API_TOKEN")));
}

TEST(RegistryTest, AnUnknownIdIsNotFound) {
  Registry registry(Options());
  MustCreate(registry, Create());

  absl::StatusOr<ProcessStatus> got = registry.GetStatus(kUnknownId);
  EXPECT_EQ(got.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(got.status().message(),
              HasSubstr(std::string("no process with id ") + kUnknownId));

  absl::StatusOr<ProcessStatus> updated =
      registry.UpdateRecord(Update(kUnknownId, ProcessStatus::STATE_STOPPING));
  EXPECT_EQ(updated.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(updated.status().message(), HasSubstr("no process with id"));
}

TEST(RegistryTest, AMalformedIdIsInvalidArgument) {
  Registry registry(Options());
  for (const char* id : {"", "42", "not-a-uuid",
                         "0b7e3d1c-6a1f-4e8e-9f3c-2d6a5b4c3d2e-extra"}) {
    absl::StatusOr<ProcessStatus> got = registry.GetStatus(id);
    EXPECT_EQ(got.status().code(), absl::StatusCode::kInvalidArgument) << id;
    EXPECT_THAT(got.status().message(), HasSubstr("malformed process id"));

    absl::StatusOr<ProcessStatus> updated =
        registry.UpdateRecord(Update(id, ProcessStatus::STATE_STOPPING));
    EXPECT_EQ(updated.status().code(), absl::StatusCode::kInvalidArgument)
        << id;
  }
}

TEST(RegistryTest, AnUpperCaseIdFindsTheRecord) {
  Registry registry(Options());
  const std::string id = MustCreate(registry, Create());
  std::string upper = id;
  for (char& c : upper) c = static_cast<char>(toupper(c));
  absl::StatusOr<ProcessStatus> got = registry.GetStatus(upper);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->id(), id);
}

TEST(RegistryTest, AStopCanBeginAndGiveUp) {
  Registry registry(Options());
  const std::string id = MustCreate(registry, Create());

  absl::StatusOr<ProcessStatus> stopping =
      registry.UpdateRecord(Update(id, ProcessStatus::STATE_STOPPING));
  ASSERT_TRUE(stopping.ok()) << stopping.status();
  EXPECT_EQ(stopping->state(), ProcessStatus::STATE_STOPPING);
  EXPECT_EQ(stopping->executable(), "sleep");  // the full status comes back

  absl::StatusOr<ProcessStatus> running =
      registry.UpdateRecord(Update(id, ProcessStatus::STATE_RUNNING));
  ASSERT_TRUE(running.ok()) << running.status();
  EXPECT_EQ(running->state(), ProcessStatus::STATE_RUNNING);
  EXPECT_EQ(registry.GetStatus(id)->state(), ProcessStatus::STATE_RUNNING);
}

TEST(RegistryTest, ARepeatedLiveStateIsANoOp) {
  Registry registry(Options());
  const std::string id = MustCreate(registry, Create());
  ASSERT_TRUE(
      registry.UpdateRecord(Update(id, ProcessStatus::STATE_STOPPING)).ok());
  absl::StatusOr<ProcessStatus> again =
      registry.UpdateRecord(Update(id, ProcessStatus::STATE_STOPPING));
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->state(), ProcessStatus::STATE_STOPPING);
}

TEST(RegistryTest, ExitedKeepsTheExitAndFreezesTheRunTime) {
  Registry registry(Options());
  const std::string id = MustCreate(registry, Create());

  absl::StatusOr<ProcessStatus> ended = registry.UpdateRecord(Exited(id, 3));
  ASSERT_TRUE(ended.ok()) << ended.status();
  EXPECT_EQ(ended->state(), ProcessStatus::STATE_EXITED);
  EXPECT_EQ(ended->exit_code(), 3);
  EXPECT_EQ(ended->signal(), 0);
  EXPECT_EQ(FromProtoTimestamp(ended->ended_at()), kT0 + absl::Seconds(90));
  EXPECT_EQ(ended->termination(), ProcessStatus::TERMINATION_BY_ITSELF);
  EXPECT_EQ(ended->output_bytes(), 4096u);
  EXPECT_EQ(ended->run_time().seconds(), 90);
  EXPECT_EQ(ended->run_time().nanos(), 0);

  absl::StatusOr<ProcessStatus> got = registry.GetStatus(id);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->state(), ProcessStatus::STATE_EXITED);
  EXPECT_EQ(got->exit_code(), 3);
  EXPECT_EQ(got->run_time().seconds(), 90);
}

TEST(RegistryTest, SignaledKeepsTheSignalAndCoreDump) {
  Registry registry(Options());
  const std::string id = MustCreate(registry, Create());
  ASSERT_TRUE(
      registry.UpdateRecord(Update(id, ProcessStatus::STATE_STOPPING)).ok());

  UpdateRecordRequest killed = Update(id, ProcessStatus::STATE_SIGNALED);
  killed.mutable_end()->set_signal(9);
  killed.mutable_end()->set_core_dumped(true);
  killed.mutable_end()->set_termination(ProcessStatus::TERMINATION_KILLED);
  const absl::Time before = absl::Now();
  absl::StatusOr<ProcessStatus> ended = registry.UpdateRecord(killed);
  ASSERT_TRUE(ended.ok()) << ended.status();
  EXPECT_EQ(ended->state(), ProcessStatus::STATE_SIGNALED);
  EXPECT_EQ(ended->signal(), 9);
  EXPECT_TRUE(ended->core_dumped());
  EXPECT_EQ(ended->termination(), ProcessStatus::TERMINATION_KILLED);
  // No ended_at given: the registry's clock.
  EXPECT_GE(FromProtoTimestamp(ended->ended_at()), before);
}

TEST(RegistryTest, RunTimeGrowsWhileRunning) {
  Registry registry(Options());
  const std::string id =
      MustCreate(registry, Create(absl::Now() - absl::Hours(1)));
  absl::StatusOr<ProcessStatus> got = registry.GetStatus(id);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_GE(got->run_time().seconds(), 3600);
  EXPECT_LT(got->run_time().seconds(), 3600 + 600);
}

TEST(RegistryTest, RepeatingTheSameFinalUpdateIsOk) {
  Registry registry(Options());
  const std::string id = MustCreate(registry, Create());
  absl::StatusOr<ProcessStatus> first = registry.UpdateRecord(Exited(id, 0));
  ASSERT_TRUE(first.ok()) << first.status();

  absl::StatusOr<ProcessStatus> again = registry.UpdateRecord(Exited(id, 0));
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->SerializeAsString(), first->SerializeAsString());

  // A retry that leaves ended_at to the registry matches too.
  UpdateRecordRequest without_time = Exited(id, 0);
  without_time.mutable_end()->clear_ended_at();
  EXPECT_TRUE(registry.UpdateRecord(without_time).ok());
}

// The supervisor sends states without waiting for each answer: one that
// arrives after a newer one (by sequence) is answered and ignored, so a
// "stopping" overtaken by the exit neither fails nor undoes it.
TEST(RegistryTest, AnUpdateOvertakenByANewerOneIsIgnored) {
  Registry registry(Options());
  const std::string id = MustCreate(registry, Create());
  UpdateRecordRequest exited = Exited(id, 3);
  exited.set_sequence(2);
  ASSERT_TRUE(registry.UpdateRecord(exited).ok());
  UpdateRecordRequest stopping = Update(id, ProcessStatus::STATE_STOPPING);
  stopping.set_sequence(1);
  absl::StatusOr<ProcessStatus> late = registry.UpdateRecord(stopping);
  ASSERT_TRUE(late.ok()) << late.status();
  EXPECT_EQ(late->state(), ProcessStatus::STATE_EXITED);
  EXPECT_EQ(late->exit_code(), 3);

  // In order, each applies.
  const std::string other = MustCreate(registry, Create());
  stopping.set_id(other);
  stopping.set_sequence(1);
  EXPECT_EQ(registry.UpdateRecord(stopping)->state(), ProcessStatus::STATE_STOPPING);
  UpdateRecordRequest running = Update(other, ProcessStatus::STATE_RUNNING);
  running.set_sequence(2);
  EXPECT_EQ(registry.UpdateRecord(running)->state(), ProcessStatus::STATE_RUNNING);
  running.set_state(ProcessStatus::STATE_STOPPING);
  running.set_sequence(2);  // not above the last applied: ignored
  EXPECT_EQ(registry.UpdateRecord(running)->state(), ProcessStatus::STATE_RUNNING);
}

// Runs come only to a record with a restart policy, and never go back.
TEST(RegistryTest, RunUpdatesNeedAPolicyAndGoOnlyForwards) {
  Registry registry(Options());
  const std::string plain = MustCreate(registry, Create());
  UpdateRecordRequest run2 = Update(plain, ProcessStatus::STATE_RUNNING);
  run2.mutable_run()->set_run(2);
  run2.mutable_run()->set_restarts(1);
  run2.mutable_run()->set_pid(5000);
  absl::StatusOr<ProcessStatus> refused = registry.UpdateRecord(run2);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(refused.status().message(), HasSubstr("has no restart policy"));

  CreateRecordRequest with_policy = Create();
  with_policy.mutable_spec()->mutable_restart()->set_policy(
      pm::v1::RestartPolicy::POLICY_ALWAYS);
  const std::string restarting = MustCreate(registry, with_policy);
  run2.set_id(restarting);
  absl::StatusOr<ProcessStatus> second = registry.UpdateRecord(run2);
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_EQ(second->run(), 2u);
  EXPECT_EQ(second->pid(), 5000);
  UpdateRecordRequest back = run2;
  back.mutable_run()->set_run(1);
  back.set_state(ProcessStatus::STATE_STOPPING);
  absl::StatusOr<ProcessStatus> backwards = registry.UpdateRecord(back);
  EXPECT_EQ(backwards.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(backwards.status().message(), HasSubstr("is at run 2, not back at run 1"));
}

TEST(RegistryTest, AnEndedRecordIsFinal) {
  Registry registry(Options());
  const std::string id = MustCreate(registry, Create());
  ASSERT_TRUE(registry.UpdateRecord(Exited(id, 3)).ok());

  absl::StatusOr<ProcessStatus> revived =
      registry.UpdateRecord(Update(id, ProcessStatus::STATE_RUNNING));
  EXPECT_EQ(revived.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(revived.status().message(), HasSubstr("EXITED (exit code 3)"));
  EXPECT_THAT(revived.status().message(), HasSubstr("cannot become RUNNING"));

  absl::StatusOr<ProcessStatus> stopping =
      registry.UpdateRecord(Update(id, ProcessStatus::STATE_STOPPING));
  EXPECT_EQ(stopping.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(stopping.status().message(), HasSubstr("cannot become STOPPING"));

  absl::StatusOr<ProcessStatus> other_code =
      registry.UpdateRecord(Exited(id, 4));
  EXPECT_EQ(other_code.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(other_code.status().message(),
              HasSubstr("cannot become EXITED (exit code 4)"));

  UpdateRecordRequest signaled = Update(id, ProcessStatus::STATE_SIGNALED);
  signaled.mutable_end()->set_signal(15);
  absl::StatusOr<ProcessStatus> other_end = registry.UpdateRecord(signaled);
  EXPECT_EQ(other_end.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(other_end.status().message(),
              HasSubstr("cannot become SIGNALED (signal 15)"));

  absl::StatusOr<ProcessStatus> got = registry.GetStatus(id);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->state(), ProcessStatus::STATE_EXITED);
  EXPECT_EQ(got->exit_code(), 3);
}

TEST(RegistryTest, MalformedUpdatesAreInvalidArgument) {
  Registry registry(Options());
  const std::string id = MustCreate(registry, Create());

  absl::StatusOr<ProcessStatus> unspecified =
      registry.UpdateRecord(Update(id, ProcessStatus::STATE_UNSPECIFIED));
  EXPECT_EQ(unspecified.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(unspecified.status().message(), HasSubstr("STATE_UNSPECIFIED"));

  absl::StatusOr<ProcessStatus> bad_code =
      registry.UpdateRecord(Exited(id, 256));
  EXPECT_EQ(bad_code.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(bad_code.status().message(), HasSubstr("0..255, got 256"));

  absl::StatusOr<ProcessStatus> no_signal =
      registry.UpdateRecord(Update(id, ProcessStatus::STATE_SIGNALED));
  EXPECT_EQ(no_signal.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(no_signal.status().message(), HasSubstr("signal must be > 0"));

  EXPECT_EQ(registry.GetStatus(id)->state(), ProcessStatus::STATE_RUNNING);
}

TEST(RegistryTest, ListIsEmptyAtFirst) {
  Registry registry(Options());
  EXPECT_THAT(registry.List().processes(), IsEmpty());
}

TEST(RegistryTest, ListIsNewestFirst) {
  Registry registry(Options());
  const std::string middle =
      MustCreate(registry, Create(kT0 + absl::Seconds(1)));
  const std::string oldest = MustCreate(registry, Create(kT0));
  const std::string tie_first =
      MustCreate(registry, Create(kT0 + absl::Seconds(5)));
  const std::string tie_second =
      MustCreate(registry, Create(kT0 + absl::Seconds(5)));
  const std::string newest =
      MustCreate(registry, Create(kT0 + absl::Seconds(9)));
  ASSERT_TRUE(registry.UpdateRecord(Exited(middle, 0)).ok());

  EXPECT_THAT(ListedIds(registry),
              ElementsAre(newest, tie_second, tie_first, middle, oldest));
  EXPECT_EQ(registry.List().processes(3).state(),
            ProcessStatus::STATE_EXITED);
}

TEST(RegistryTest, EvictionDropsTheRecordThatEndedFirstAndKeepsLiveOnes) {
  Registry registry(Options(/*max_ended_records=*/2));
  const std::string live = MustCreate(registry, Create(kT0));
  const std::string a = MustCreate(registry, Create(kT0 + absl::Seconds(1)));
  const std::string b = MustCreate(registry, Create(kT0 + absl::Seconds(2)));
  const std::string c = MustCreate(registry, Create(kT0 + absl::Seconds(3)));
  // b ends first, though a started before it.
  ASSERT_TRUE(registry.UpdateRecord(Exited(b, 0)).ok());
  ASSERT_TRUE(registry.UpdateRecord(Exited(a, 0)).ok());
  EXPECT_EQ(registry.size(), 4u);

  ASSERT_TRUE(registry.UpdateRecord(Exited(c, 0)).ok());
  EXPECT_EQ(registry.size(), 3u);
  EXPECT_EQ(registry.GetStatus(b).status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(registry.GetStatus(a).ok());
  EXPECT_TRUE(registry.GetStatus(c).ok());
  EXPECT_TRUE(registry.GetStatus(live).ok());
  EXPECT_THAT(ListedIds(registry), ElementsAre(c, a, live));
}

// Every path that looks an id up says the record was evicted, and by which
// cap, rather than that it never existed.
TEST(RegistryTest, AnEvictedIdIsNotFoundSayingItWasEvictedAndByWhichCap) {
  Registry registry(Options(/*max_ended_records=*/1));
  const std::string a = MustCreate(registry, Create());
  ASSERT_TRUE(registry.UpdateRecord(Exited(a, 0)).ok());
  const std::string b = MustCreate(registry, Create());
  ASSERT_TRUE(registry.UpdateRecord(Exited(b, 0)).ok());  // evicts a
  const std::string evicted = absl::StrCat(
      "process ", a, " ended and its record was evicted (cap --max_ended_records=1)");

  absl::Status status = registry.GetStatus(a).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(status.message(), evicted);
  // Ids are found in any case.
  std::string upper = a;
  for (char& c : upper) c = absl::ascii_toupper(static_cast<unsigned char>(c));
  EXPECT_THAT(registry.GetStatus(upper).status().message(),
              HasSubstr("its record was evicted"));
  absl::StatusOr<ProcessStatus> waited;
  registry.Wait(a, [&](absl::StatusOr<ProcessStatus> r) { waited = r; });
  EXPECT_EQ(waited.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(waited.status().message(), evicted);
  status = registry.UpdateRecord(Exited(a, 0)).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(status.message(), evicted);

  // An id never seen is still just unknown.
  EXPECT_EQ(registry.GetStatus(kUnknownId).status().message(),
            absl::StrCat("no process with id ", kUnknownId));
}

// The evicted ids are remembered up to their own cap, oldest forgotten
// first: then the id is merely unknown again.
TEST(RegistryTest, EvictedIdsAreRememberedUpToTheirCapOldestFirst) {
  RegistryOptions options = Options(/*max_ended_records=*/0);
  options.evicted_ids_kept = 2;
  Registry registry(options);
  std::vector<std::string> ids;
  for (int i = 0; i < 3; ++i) {
    ids.push_back(MustCreate(registry, Create()));
    ASSERT_TRUE(registry.UpdateRecord(Exited(ids.back(), 0)).ok());
  }
  EXPECT_EQ(registry.GetStatus(ids[0]).status().message(),
            absl::StrCat("no process with id ", ids[0]));
  EXPECT_THAT(registry.GetStatus(ids[1]).status().message(),
              HasSubstr("ended and its record was evicted (cap --max_ended_records=0)"));
  EXPECT_THAT(registry.GetStatus(ids[2]).status().message(),
              HasSubstr("ended and its record was evicted"));
}

TEST(RegistryTest, AnEvictedIdIsNeverTakenAgain) {
  Registry registry(Options(/*max_ended_records=*/0));
  CreateRecordRequest request = Create();
  request.set_id(kUnknownId);
  ASSERT_TRUE(registry.CreateRecord(request).ok());
  ASSERT_TRUE(registry.UpdateRecord(Exited(kUnknownId, 0)).ok());  // evicted
  absl::Status again = registry.CreateRecord(request).status();
  EXPECT_EQ(again.code(), absl::StatusCode::kAlreadyExists);
  EXPECT_THAT(again.message(), HasSubstr("was on record (ended, evicted)"));
}

TEST(RegistryTest, LiveRecordsAreNeverEvicted) {
  Registry registry(Options(/*max_ended_records=*/1));
  std::vector<std::string> live;
  for (int i = 0; i < 50; ++i) live.push_back(MustCreate(registry, Create()));
  for (int i = 0; i < 10; ++i) {
    const std::string id = MustCreate(registry, Create());
    ASSERT_TRUE(registry.UpdateRecord(Exited(id, 0)).ok());
  }
  EXPECT_EQ(registry.size(), 51u);
  for (const std::string& id : live) EXPECT_TRUE(registry.GetStatus(id).ok());
}

TEST(RegistryTest, WithACapOfZeroTheFinalUpdateStillAnswers) {
  Registry registry(Options(/*max_ended_records=*/0));
  const std::string id = MustCreate(registry, Create());
  absl::StatusOr<ProcessStatus> ended = registry.UpdateRecord(Exited(id, 7));
  ASSERT_TRUE(ended.ok()) << ended.status();
  EXPECT_EQ(ended->exit_code(), 7);
  EXPECT_EQ(registry.size(), 0u);
}

TEST(RegistryTest, ConcurrentWritersAndReadersKeepEveryRecord) {
  Registry registry(Options(/*max_ended_records=*/1000));
  constexpr int kThreads = 8;
  constexpr int kPerThread = 100;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&registry] {
      for (int i = 0; i < kPerThread; ++i) {
        absl::StatusOr<ProcessStatus> created =
            registry.CreateRecord(Create());
        ASSERT_TRUE(created.ok()) << created.status();
        ASSERT_TRUE(registry
                        .UpdateRecord(Update(created->id(),
                                             ProcessStatus::STATE_STOPPING))
                        .ok());
        if (i % 2 == 0) {
          ASSERT_TRUE(registry.UpdateRecord(Exited(created->id(), 0)).ok());
        }
        registry.List();
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  EXPECT_EQ(registry.size(), static_cast<size_t>(kThreads * kPerThread));
  EXPECT_EQ(registry.List().processes_size(), kThreads * kPerThread);
}

TEST(RegistryTest, LimitsIsolationAndCgroupAreKept) {
  Registry registry(Options());
  CreateRecordRequest request = Create();
  request.mutable_spec()->mutable_limits()->set_memory_bytes(1 << 20);
  request.mutable_spec()->add_isolate(pm::v1::ISOLATION_NET);
  request.mutable_cgroup()->set_unified("/sys/fs/cgroup/pm/1.1");
  absl::StatusOr<ProcessStatus> created = registry.CreateRecord(request);
  ASSERT_TRUE(created.ok());
  EXPECT_EQ(created->limits().memory_bytes(), 1u << 20);
  EXPECT_THAT(created->isolation(), ElementsAre(pm::v1::ISOLATION_NET));
  EXPECT_EQ(created->cgroup(), "/sys/fs/cgroup/pm/1.1");

  // A v1-only host names its freezer cgroup.
  CreateRecordRequest v1 = Create();
  (*v1.mutable_cgroup()->mutable_v1())["freezer"] = "/sys/fs/cgroup/freezer/pm/1.2";
  (*v1.mutable_cgroup()->mutable_v1())["memory"] = "/sys/fs/cgroup/memory/pm/1.2";
  EXPECT_EQ(registry.CreateRecord(v1)->cgroup(), "/sys/fs/cgroup/freezer/pm/1.2");
}

TEST(RegistryTest, LiveUsageComesFromTheCgroupAndFinalUsageFromTheUpdate) {
  // A fake cgroup2 directory with the files the kernel would have.
  const std::string dir = ::testing::TempDir() + "/fake_cgroup";
  std::filesystem::create_directories(dir);
  std::ofstream(dir + "/memory.current") << "8192\n";
  std::ofstream(dir + "/pids.current") << "3\n";
  std::ofstream(dir + "/cpu.stat") << "usage_usec 1500000\n";
  Registry registry(Options());
  CreateRecordRequest request = Create();
  request.mutable_cgroup()->set_unified(dir);
  const std::string id = MustCreate(registry, request);

  absl::StatusOr<ProcessStatus> live = registry.GetStatus(id);
  ASSERT_TRUE(live.ok());
  EXPECT_EQ(live->usage().memory_bytes(), 8192u);
  EXPECT_EQ(live->usage().tasks(), 3u);
  EXPECT_EQ(live->usage().cpu_time().seconds(), 1);
  // List stays cheap: no cgroup reads.
  EXPECT_FALSE(registry.List().processes(0).has_usage());

  UpdateRecordRequest end = Update(id, ProcessStatus::STATE_SIGNALED);
  end.mutable_end()->set_signal(9);
  end.mutable_end()->mutable_usage()->set_oom_kills(1);
  end.mutable_end()->mutable_usage()->set_memory_peak_bytes(1 << 20);
  end.mutable_end()->set_oom_killed(true);
  end.mutable_end()->set_end_reason("killed by signal 9 (SIGKILL): the OOM killer ended it");
  ASSERT_TRUE(registry.UpdateRecord(end).ok());
  absl::StatusOr<ProcessStatus> ended = registry.GetStatus(id);
  ASSERT_TRUE(ended.ok());
  // The final usage, not the (still there) cgroup's.
  EXPECT_EQ(ended->usage().memory_peak_bytes(), 1u << 20);
  EXPECT_FALSE(ended->usage().has_memory_bytes());
  EXPECT_TRUE(ended->oom_killed());
  EXPECT_THAT(ended->end_reason(), HasSubstr("OOM killer"));
  std::filesystem::remove_all(dir);
}

TEST(RegistryTest, CreateRecordTakesTheCallersIdOnce) {
  Registry registry(Options());
  CreateRecordRequest request = Create();
  request.set_id("0B7E3D1C-6A1F-4E8E-9F3C-2D6A5B4C3D2E");
  absl::StatusOr<ProcessStatus> created = registry.CreateRecord(request);
  ASSERT_TRUE(created.ok()) << created.status();
  EXPECT_EQ(created->id(), "0b7e3d1c-6a1f-4e8e-9f3c-2d6a5b4c3d2e");
  EXPECT_EQ(registry.CreateRecord(request).status().code(),
            absl::StatusCode::kAlreadyExists);
  request.set_id("nope");
  EXPECT_EQ(registry.CreateRecord(request).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(RegistryWaitTest, AnsweredWhenTheRecordEnds) {
  Registry registry(Options());
  const std::string id = MustCreate(registry, Create());
  std::vector<absl::StatusOr<ProcessStatus>> answers;
  registry.Wait(id, [&](absl::StatusOr<ProcessStatus> r) { answers.push_back(r); });
  ASSERT_TRUE(registry.UpdateRecord(Update(id, ProcessStatus::STATE_STOPPING)).ok());
  EXPECT_THAT(answers, IsEmpty());
  ASSERT_TRUE(registry.UpdateRecord(Exited(id, 7)).ok());
  ASSERT_EQ(answers.size(), 1u);
  ASSERT_TRUE(answers[0].ok());
  EXPECT_EQ(answers[0]->state(), ProcessStatus::STATE_EXITED);
  EXPECT_EQ(answers[0]->exit_code(), 7);
}

TEST(RegistryWaitTest, AnsweredWhenTheSupervisorReportsTheRecordLost) {
  Registry registry(Options(/*max_ended_records=*/1));
  const std::string id = MustCreate(registry, Create());
  ASSERT_TRUE(registry.UpdateRecord(Update(id, ProcessStatus::STATE_STOPPING)).ok());
  std::vector<absl::StatusOr<ProcessStatus>> answers;
  registry.Wait(id, [&](absl::StatusOr<ProcessStatus> r) { answers.push_back(r); });
  ASSERT_TRUE(registry.UpdateRecord(Update(id, ProcessStatus::STATE_LOST)).ok());
  ASSERT_EQ(answers.size(), 1u);
  ASSERT_TRUE(answers[0].ok()) << answers[0].status();
  EXPECT_EQ(answers[0]->state(), ProcessStatus::STATE_LOST);
  EXPECT_THAT(answers[0]->end_reason(), HasSubstr("its supervisor found neither"));
  EXPECT_TRUE(answers[0]->has_ended_at());
  // Final: it cannot exit after all, and a retry of the same report is ok.
  absl::StatusOr<ProcessStatus> late = registry.UpdateRecord(Exited(id, 0));
  EXPECT_EQ(late.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(late.status().message(), HasSubstr("ended as LOST"));
  EXPECT_TRUE(registry.UpdateRecord(Update(id, ProcessStatus::STATE_LOST)).ok());
  // And it counts as ended for eviction.
  const std::string next = MustCreate(registry, Create());
  ASSERT_TRUE(registry.UpdateRecord(Exited(next, 0)).ok());
  EXPECT_EQ(registry.GetStatus(id).status().code(), absl::StatusCode::kNotFound);
}

TEST(RegistryWaitTest, AnsweredAtOnceWhenEndedOrUnknown) {
  Registry registry(Options());
  const std::string id = MustCreate(registry, Create());
  ASSERT_TRUE(registry.UpdateRecord(Exited(id, 2)).ok());
  absl::StatusOr<ProcessStatus> ended;
  EXPECT_EQ(registry.Wait(id, [&](absl::StatusOr<ProcessStatus> r) { ended = r; }), 0u);
  ASSERT_TRUE(ended.ok());
  EXPECT_EQ(ended->exit_code(), 2);

  absl::StatusOr<ProcessStatus> unknown;
  registry.Wait(kUnknownId, [&](absl::StatusOr<ProcessStatus> r) { unknown = r; });
  EXPECT_EQ(unknown.status().code(), absl::StatusCode::kNotFound);
}

TEST(RegistryWaitTest, ACancelledWaitIsNotCalled) {
  Registry registry(Options());
  const std::string id = MustCreate(registry, Create());
  int calls = 0;
  uint64_t token = registry.Wait(id, [&](absl::StatusOr<ProcessStatus>) { ++calls; });
  ASSERT_NE(token, 0u);
  registry.CancelWait(id, token);
  ASSERT_TRUE(registry.UpdateRecord(Exited(id, 0)).ok());
  EXPECT_EQ(calls, 0);
}

// Processes by state on /metrics: counted at each scrape, every state
// shown, zeros included.
TEST(RegistryTest, MetricsCountTheRecordsByStateAtEachRender) {
  Registry registry(Options());
  metrics::Registry metrics;
  ExportMetrics(registry, metrics);
  EXPECT_THAT(metrics.Render(), HasSubstr("pm_registry_processes{state=\"running\"} 0\n"));
  EXPECT_THAT(metrics.Render(), HasSubstr("pm_registry_processes{state=\"backoff\"} 0\n"));
  const std::string ended = MustCreate(registry, Create(kT0, 100));
  MustCreate(registry, Create(kT0 + absl::Seconds(1), 101));
  ASSERT_TRUE(registry.UpdateRecord(Exited(ended, 3)).ok());
  const std::string text = metrics.Render();
  EXPECT_THAT(text, HasSubstr("pm_registry_processes{state=\"running\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("pm_registry_processes{state=\"exited\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("pm_registry_processes{state=\"lost\"} 0\n"));
}

}  // namespace
}  // namespace pm::registry
