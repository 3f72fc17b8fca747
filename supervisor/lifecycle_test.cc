#include "supervisor/lifecycle.h"

#include <optional>
#include <vector>

#include "gtest/gtest.h"

namespace pm::supervisor {
namespace {

constexpr Phase kPhases[] = {Phase::kRunning, Phase::kReaping, Phase::kExited,
                             Phase::kForgotten};
constexpr RecordPhase kRecords[] = {RecordPhase::kCreating,
                                    RecordPhase::kRecorded,
                                    RecordPhase::kAbandoned};
constexpr StopPhase kStops[] = {StopPhase::kNone, StopPhase::kGrace,
                                StopPhase::kKilling};
constexpr Event kEvents[] = {
    Event::kRecorded,     Event::kAbandoned,    Event::kStopRequested,
    Event::kGraceExpired, Event::kStopFinished, Event::kLeaderReaped,
    Event::kEndWritten,   Event::kForgotten,    Event::kAdopted};

std::vector<LifeState> AllStates() {
  std::vector<LifeState> all;
  for (Phase phase : kPhases) {
    for (RecordPhase record : kRecords) {
      for (StopPhase stop : kStops) all.push_back(LifeState{phase, record, stop});
    }
  }
  return all;
}

// The specification, written out move by move: what each event does, and
// from which states. Everything else must be refused.
std::optional<LifeState> Expected(const LifeState& s, Event event) {
  LifeState to = s;
  const bool recorded = s.record == RecordPhase::kRecorded;
  switch (event) {
    case Event::kLeaderReaped:
      if (s.phase != Phase::kRunning) return std::nullopt;
      to.phase = Phase::kReaping;
      return to;
    case Event::kEndWritten:
      if (s.phase != Phase::kReaping) return std::nullopt;
      to.phase = Phase::kExited;
      return to;
    case Event::kForgotten:
      if (s.phase != Phase::kExited || !recorded ||
          s.stop != StopPhase::kNone) {
        return std::nullopt;
      }
      to.phase = Phase::kForgotten;
      return to;
    case Event::kRecorded:
      if (recorded) return std::nullopt;
      to.record = RecordPhase::kRecorded;
      return to;
    case Event::kAbandoned:
      if (recorded) return std::nullopt;
      to.record = RecordPhase::kAbandoned;
      return to;
    case Event::kStopRequested:
      if (!recorded || s.phase == Phase::kForgotten) return std::nullopt;
      if (s.stop == StopPhase::kNone) to.stop = StopPhase::kGrace;
      return to;
    case Event::kGraceExpired:
      if (s.stop != StopPhase::kGrace) return std::nullopt;
      to.stop = StopPhase::kKilling;
      return to;
    case Event::kStopFinished:
      if (s.stop == StopPhase::kNone) return std::nullopt;
      to.stop = StopPhase::kNone;
      return to;
    case Event::kAdopted:
      if (s.phase != Phase::kRunning || s.record != RecordPhase::kCreating ||
          s.stop != StopPhase::kNone) {
        return std::nullopt;
      }
      to.record = RecordPhase::kRecorded;
      return to;
  }
  return std::nullopt;
}

TEST(LifecycleTest, TheTableAcceptsEveryLegalMoveAndRefusesEveryOther) {
  int legal = 0;
  for (const LifeState& from : AllStates()) {
    for (Event event : kEvents) {
      std::optional<LifeState> expected = Expected(from, event);
      std::optional<LifeState> got = NextState(from, event);
      SCOPED_TRACE(::testing::Message()
                   << EventName(event) << " in " << from.ToString());
      ASSERT_EQ(got.has_value(), expected.has_value());
      if (expected) {
        ++legal;
        EXPECT_EQ(got->ToString(), expected->ToString());
      }
    }
  }
  EXPECT_GT(legal, 0);
}

TEST(LifecycleTest, RefusesMovesThatWouldBreakTheInvariants) {
  const LifeState running{Phase::kRunning, RecordPhase::kRecorded,
                          StopPhase::kNone};
  // A leader is reaped once, and its end is written only after that.
  EXPECT_FALSE(NextState({Phase::kReaping, RecordPhase::kRecorded,
                          StopPhase::kNone},
                         Event::kLeaderReaped));
  EXPECT_FALSE(NextState(running, Event::kEndWritten));
  // Nothing is forgotten while it runs, while a stop's callers wait, or
  // before the registry has it.
  EXPECT_FALSE(NextState(running, Event::kForgotten));
  EXPECT_FALSE(NextState({Phase::kExited, RecordPhase::kRecorded,
                          StopPhase::kKilling},
                         Event::kForgotten));
  EXPECT_FALSE(NextState({Phase::kExited, RecordPhase::kCreating,
                          StopPhase::kNone},
                         Event::kForgotten));
  EXPECT_FALSE(NextState({Phase::kExited, RecordPhase::kAbandoned,
                          StopPhase::kNone},
                         Event::kForgotten));
  // A stop needs a process a Stop can find.
  EXPECT_FALSE(NextState({Phase::kRunning, RecordPhase::kCreating,
                          StopPhase::kNone},
                         Event::kStopRequested));
  EXPECT_FALSE(NextState({Phase::kRunning, RecordPhase::kAbandoned,
                          StopPhase::kNone},
                         Event::kStopRequested));
  EXPECT_FALSE(NextState({Phase::kForgotten, RecordPhase::kRecorded,
                          StopPhase::kNone},
                         Event::kStopRequested));
  // The SIGKILL comes once, from the grace period; a stop ends once.
  EXPECT_FALSE(NextState(running, Event::kGraceExpired));
  EXPECT_FALSE(NextState({Phase::kRunning, RecordPhase::kRecorded,
                          StopPhase::kKilling},
                         Event::kGraceExpired));
  EXPECT_FALSE(NextState(running, Event::kStopFinished));
  // A record is made once and never abandoned once made.
  EXPECT_FALSE(NextState(running, Event::kRecorded));
  EXPECT_FALSE(NextState(running, Event::kAbandoned));
}

TEST(LifecycleTest, AStoppedProcessWalksThroughItsNamedPhases) {
  Lifecycle life;
  EXPECT_EQ(life.state().ToString(), "Running/Creating/NoStop");
  EXPECT_FALSE(life.recorded());
  ASSERT_TRUE(life.On(Event::kRecorded, "test"));
  ASSERT_TRUE(life.On(Event::kStopRequested, "test"));
  EXPECT_TRUE(life.stopping());
  ASSERT_TRUE(life.On(Event::kGraceExpired, "test"));
  EXPECT_EQ(life.stop(), StopPhase::kKilling);
  ASSERT_TRUE(life.On(Event::kLeaderReaped, "test"));
  EXPECT_TRUE(life.reaped());
  EXPECT_TRUE(life.reaping());
  EXPECT_FALSE(life.end_written());
  ASSERT_TRUE(life.On(Event::kEndWritten, "test"));
  EXPECT_FALSE(life.reaping());
  EXPECT_TRUE(life.end_written());
  EXPECT_FALSE(life.may_forget());  // its stop's callers still wait
  ASSERT_TRUE(life.On(Event::kStopFinished, "test"));
  EXPECT_TRUE(life.may_forget());
  ASSERT_TRUE(life.On(Event::kForgotten, "test"));
  EXPECT_EQ(life.state().ToString(), "Forgotten/Recorded/NoStop");
  EXPECT_FALSE(life.may_forget());
}

TEST(LifecycleTest, AProcessThatEndsBeforeItsRecordIsForgottenOnlyOnceRecorded) {
  Lifecycle life;
  ASSERT_TRUE(life.On(Event::kLeaderReaped, "test"));
  ASSERT_TRUE(life.On(Event::kEndWritten, "test"));
  EXPECT_FALSE(life.may_forget());
  ASSERT_TRUE(life.On(Event::kRecorded, "test"));
  EXPECT_TRUE(life.may_forget());
}

TEST(LifecycleTest, AShutdownAbandonedProcessWhoseRecordCameAnywayIsRecorded) {
  Lifecycle life;
  ASSERT_TRUE(life.On(Event::kAbandoned, "test"));
  EXPECT_TRUE(life.abandoned());
  ASSERT_TRUE(life.On(Event::kRecorded, "test"));
  EXPECT_TRUE(life.recorded());
  EXPECT_FALSE(life.abandoned());
}

TEST(LifecycleTest, AnIllegalEventIsRefusedAndDiesInDebugBuilds) {
  Lifecycle life;
  const LifeState before = life.state();
  // Debug builds abort naming the event and the state; release builds log
  // it, refuse it and keep the state.
  EXPECT_DEBUG_DEATH(
      { EXPECT_FALSE(life.On(Event::kEndWritten, "pid 42")); },
      "illegal lifecycle event EndWritten for pid 42 in Running/Creating/NoStop");
  EXPECT_EQ(life.state(), before);
  // A process that failed before it had an id is still named.
  EXPECT_DEBUG_DEATH({ EXPECT_FALSE(life.On(Event::kForgotten, "")); },
                     "illegal lifecycle event Forgotten for a process without "
                     "an id in Running/Creating/NoStop");
  EXPECT_EQ(life.state(), before);
}

}  // namespace
}  // namespace pm::supervisor
