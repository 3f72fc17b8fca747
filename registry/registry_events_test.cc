// Events (Watch): what each change appends, the cursor, the cap, filters.
#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "registry/registry.h"
#include "registry/test_util.h"

namespace pm::registry {
namespace {

using ::pm::internal::v1::CreateRecordRequest;
using ::pm::internal::v1::UpdateRecordRequest;
using ::pm::v1::Event;
using ::pm::v1::ProcessStatus;
using ::testing::ElementsAre;

RegistryOptions Options(size_t max_events = 10000) {
  RegistryOptions options;
  options.max_events = max_events;
  options.proc_root = ::testing::TempDir() + "/no_proc_here";
  return options;
}

CreateRecordRequest Create(const std::string& id, const std::string& owner_user = "") {
  CreateRecordRequest request;
  request.set_id(id);
  request.mutable_spec()->set_executable("sleep");
  request.set_resolved_executable("/usr/bin/sleep");
  request.set_pid(4242);
  request.set_owner_user(owner_user);
  return request;
}

UpdateRecordRequest To(const std::string& id, ProcessStatus::State state) {
  UpdateRecordRequest request;
  request.set_id(id);
  request.set_state(state);
  if (state == ProcessStatus::STATE_SIGNALED) request.mutable_end()->set_signal(9);
  return request;
}

constexpr char kA[] = "aaaa1111-0000-4000-8000-000000000001";
constexpr char kB[] = "bbbb1111-0000-4000-8000-000000000002";

// Every event after `after` that `filter` lets through, with the missed
// counts the cursor met.
std::vector<std::string> Drain(const Registry& registry, uint64_t after,
                               const WatchFilter& filter = {},
                               uint64_t* missed = nullptr) {
  std::vector<std::string> seen;
  uint64_t cursor = after;
  while (true) {
    Registry::NextEventResult next = registry.NextEvent(cursor, filter);
    if (missed != nullptr) *missed += next.missed;
    cursor = next.cursor;
    if (!next.event) return seen;
    seen.push_back(absl::StrCat(next.event->sequence(), " ",
                                Event::Kind_Name(next.event->kind()), " ",
                                next.event->status().id().substr(0, 4)));
  }
}

TEST(RegistryEventsTest, EachChangeAppendsItsEventInOrder) {
  Registry registry(Options());
  int woken = 0;
  const uint64_t token = registry.AddWatcher([&] { ++woken; });
  MustCreate(registry, Create(kA));
  MustCreate(registry, Create(kB));
  ASSERT_TRUE(registry.UpdateRecord(To(kA, ProcessStatus::STATE_STOPPING)).ok());
  ASSERT_TRUE(registry.UpdateRecord(To(kA, ProcessStatus::STATE_SIGNALED)).ok());
  // A retried report changes nothing, and tells nothing.
  ASSERT_TRUE(registry.UpdateRecord(To(kA, ProcessStatus::STATE_SIGNALED)).ok());
  ASSERT_TRUE(registry.RemoveRecord(kA).ok());
  EXPECT_THAT(Drain(registry, 0),
              ElementsAre("1 KIND_STARTED aaaa", "2 KIND_STARTED bbbb",
                          "3 KIND_STOPPING aaaa", "4 KIND_SIGNALED aaaa",
                          "5 KIND_REMOVED aaaa"));
  EXPECT_THAT(Drain(registry, 3), ElementsAre("4 KIND_SIGNALED aaaa", "5 KIND_REMOVED aaaa"));
  EXPECT_EQ(registry.last_event_sequence(), 5u);
  EXPECT_EQ(woken, 5);
  registry.RemoveWatcher(token);
  MustCreate(registry, Create("cccc1111-0000-4000-8000-000000000003"));
  EXPECT_EQ(woken, 5);
}

// What a wake captured may go once RemoveWatcher returns: it waits for a
// wake that another thread is running. (A Watch's wake held only a weak
// pointer; a wake on the stack, as tests write them, raced its frame.)
TEST(RegistryEventsTest, RemoveWatcherWaitsForAWakeInFlightOnAnotherThread) {
  Registry registry(Options());
  absl::Notification entered;
  absl::Notification release;
  std::atomic<bool> finished{false};
  const uint64_t token = registry.AddWatcher([&] {
    if (entered.HasBeenNotified()) return;
    entered.Notify();
    release.WaitForNotification();
    finished = true;
  });
  std::thread changer([&] { MustCreate(registry, Create(kA)); });
  entered.WaitForNotification();
  absl::Notification removing;
  bool finished_when_removed = false;
  std::thread remover([&] {
    removing.Notify();
    registry.RemoveWatcher(token);
    finished_when_removed = finished;
  });
  removing.WaitForNotification();
  release.Notify();
  remover.join();
  changer.join();
  EXPECT_TRUE(finished_when_removed);
}

// A wake may remove itself, or change the registry; neither deadlocks. A
// removed wake is not run again; one whose change appended an event runs
// once more after it returns, so that event is not missed.
TEST(RegistryEventsTest, AWakeMayRemoveItselfOrChangeTheRegistry) {
  Registry registry(Options());
  int removing_runs = 0;
  uint64_t removing = 0;
  removing = registry.AddWatcher([&] {
    ++removing_runs;
    registry.RemoveWatcher(removing);
  });
  int changing_runs = 0;
  const uint64_t changing = registry.AddWatcher([&] {
    if (++changing_runs == 1) MustCreate(registry, Create(kB));
  });
  MustCreate(registry, Create(kA));
  EXPECT_EQ(removing_runs, 1);
  EXPECT_EQ(changing_runs, 2);
  EXPECT_EQ(registry.last_event_sequence(), 2u);
  registry.RemoveWatcher(changing);
}

TEST(RegistryEventsTest, FiltersSkipAndTheCapIsReportedAsMissed) {
  Registry registry(Options(/*max_events=*/3));
  MustCreate(registry, Create(kA, "alice"));
  MustCreate(registry, Create(kB, "bob"));
  ASSERT_TRUE(registry.UpdateRecord(To(kA, ProcessStatus::STATE_EXITED)).ok());
  ASSERT_TRUE(registry.UpdateRecord(To(kB, ProcessStatus::STATE_EXITED)).ok());
  // Four events, three kept: the first is missed by a watcher from 0.
  uint64_t missed = 0;
  EXPECT_THAT(Drain(registry, 0, {}, &missed),
              ElementsAre("2 KIND_STARTED bbbb", "3 KIND_EXITED aaaa",
                          "4 KIND_EXITED bbbb"));
  EXPECT_EQ(missed, 1u);
  WatchFilter bobs;
  bobs.owner_user = "bob";
  EXPECT_THAT(Drain(registry, 1, bobs), ElementsAre("2 KIND_STARTED bbbb", "4 KIND_EXITED bbbb"));
  pm::v1::WatchRequest request;
  request.set_id(kA);
  request.add_kinds(Event::KIND_EXITED);
  absl::StatusOr<WatchFilter> exits_of_a = ParseWatchFilter(request);
  ASSERT_TRUE(exits_of_a.ok()) << exits_of_a.status();
  EXPECT_THAT(Drain(registry, 0, *exits_of_a), ElementsAre("3 KIND_EXITED aaaa"));
  request.add_kinds(static_cast<Event::Kind>(99));
  EXPECT_EQ(ParseWatchFilter(request).status().code(), absl::StatusCode::kInvalidArgument);
  request.clear_kinds();
  request.set_id("nope");
  EXPECT_EQ(ParseWatchFilter(request).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(RegistryEventsTest, AnEndByTheOomKillerAlsoSaysOom) {
  Registry registry(Options());
  MustCreate(registry, Create(kA));
  UpdateRecordRequest oom = To(kA, ProcessStatus::STATE_SIGNALED);
  oom.mutable_end()->set_oom_killed(true);
  ASSERT_TRUE(registry.UpdateRecord(oom).ok());
  EXPECT_THAT(Drain(registry, 1), ElementsAre("2 KIND_SIGNALED aaaa", "3 KIND_OOM aaaa"));
}

}  // namespace
}  // namespace pm::registry
