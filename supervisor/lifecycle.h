// The lifecycle of one managed process: named phases, the events that move
// them, and one table that says which moves are legal.
//
//   Lifecycle life;                       // Running, Creating, no stop
//   life.On(Event::kRecorded, "pid 42");  // the registry has its record
//   life.On(Event::kStopRequested, ...);  // Stopping: SIGTERM, grace timer
//   if (life.reaped()) ...
//
// A process's state is three phases, because three facts about it change
// independently of each other (s6-supervise keeps one state per service;
// here each axis is a small state × event table of its own):
//
//   Phase (the leader):   Running --LeaderReaped--> Reaping --EndWritten-->
//                         Exited --Forgotten--> Forgotten
//     Reaping: the leader is reaped but its end is not written into the
//     status yet: the janitor thread holds its cgroup (final usage, rmdir).
//     Exited: its end is known; its tree (the cgroup), its output and the
//     registry's copy of its end may still be draining. Forgotten: nothing
//     is left to do, a Stop no longer finds it.
//
//   RecordPhase (the registry): Creating --Recorded--> Recorded
//                               Creating --Abandoned--> Abandoned
//                               Creating --Adopted--> Recorded
//     Adopted: a process an earlier supervisor started, whose shim said
//     Hello to this one (or, its shim gone, found alive by pid and start
//     time): its record exists already. Only while it runs and no stop of
//     this supervisor's is in progress.
//     The leader can exit before the registry answers the create (the
//     record then carries the end at once), so this is not a step of the
//     Phase. Abandoned: the registry refused it or the supervisor shut down
//     first: it is killed and its output dropped. A create already sent
//     when shutdown abandoned it may still succeed: Abandoned --Recorded-->
//     Recorded, and the registry is told how it ended.
//
//   StopPhase (a stop in progress): None --StopRequested--> Grace
//     --GraceExpired--> Killing --StopFinished--> None. A stop can start
//     before or after the leader's end (its tree may outlive it), but only
//     for a recorded process (a Stop finds processes by id).
//
// The named states of the issue are combinations: Spawned = Running ×
// Creating; Running; Stopping = Running × Grace; Killing; Exited; Forgotten
// (= Forgotten × Recorded × None); Abandoned.
//
// Not phases, and kept beside them in the Process: how far the registry's
// copy lags behind (updates in flight, a retry pending) is orthogonal to
// the process's life; which signals a stop sent the leader (for its
// `termination`); and the resources that drain on their own, in any order
// (the output, until its shim says Closed; the cgroup).
#ifndef PM_SUPERVISOR_LIFECYCLE_H_
#define PM_SUPERVISOR_LIFECYCLE_H_

#include <optional>
#include <string>

#include "absl/strings/string_view.h"

namespace pm::supervisor {

enum class Phase { kRunning, kReaping, kExited, kForgotten };
enum class RecordPhase { kCreating, kRecorded, kAbandoned };
enum class StopPhase { kNone, kGrace, kKilling };

enum class Event {
  kRecorded,       // the registry created the record
  kAbandoned,      // the registry refused it, or shutdown came first
  kStopRequested,  // a caller or the shutdown asked for a stop
  kGraceExpired,   // the grace period is over: SIGKILL
  kStopFinished,   // the tree is gone, or the kill timed out: answered
  kLeaderReaped,   // waitid took the leader's exit
  kEndWritten,     // its end is in the status (and its cgroup back, if any)
  kForgotten,      // everything is with the registry and on disk
  kAdopted,        // found again after a restart, its record on file
};

const char* PhaseName(Phase phase);
const char* RecordPhaseName(RecordPhase phase);
const char* StopPhaseName(StopPhase phase);
const char* EventName(Event event);

// The three phases at one instant.
struct LifeState {
  Phase phase = Phase::kRunning;
  RecordPhase record = RecordPhase::kCreating;
  StopPhase stop = StopPhase::kNone;

  bool operator==(const LifeState& other) const {
    return phase == other.phase && record == other.record && stop == other.stop;
  }
  // "Running/Recorded/Grace".
  std::string ToString() const;
};

// The transition table: the state `event` leads to from `from`, or nullopt
// if the event is illegal there. Pure; every legal move is a row of it.
std::optional<LifeState> NextState(const LifeState& from, Event event);

// One process's phases, moved only through On.
class Lifecycle {
 public:
  // Moves by `event` if the table allows it (true). An illegal event is a
  // broken invariant: it is logged with `who` (the process) and the state,
  // the state is left as it was (false), and a debug build dies.
  bool On(Event event, absl::string_view who);

  const LifeState& state() const { return state_; }
  Phase phase() const { return state_.phase; }
  StopPhase stop() const { return state_.stop; }
  // The leader is reaped (its pidfd is gone; never signal its pid).
  bool reaped() const { return state_.phase != Phase::kRunning; }
  // Between the reaping and the end written: the janitor may hold the
  // cgroup, which then counts as not gone and is not signalled.
  bool reaping() const { return state_.phase == Phase::kReaping; }
  // The leader's end is written into the status (and its cgroup, if the
  // janitor held it, is back).
  bool end_written() const {
    return state_.phase == Phase::kExited || state_.phase == Phase::kForgotten;
  }
  bool recorded() const { return state_.record == RecordPhase::kRecorded; }
  bool abandoned() const { return state_.record == RecordPhase::kAbandoned; }
  bool stopping() const { return state_.stop != StopPhase::kNone; }
  // Nothing in its life is left to happen: the leader's end is written and
  // told to a registry that has its record, and no stop is in progress.
  // (Whether its resources have drained is the caller's to check.)
  bool may_forget() const {
    return state_.phase == Phase::kExited &&
           state_.record == RecordPhase::kRecorded &&
           state_.stop == StopPhase::kNone;
  }

 private:
  LifeState state_;
};

}  // namespace pm::supervisor

#endif  // PM_SUPERVISOR_LIFECYCLE_H_
