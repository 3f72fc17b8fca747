// The transition table of a process's lifecycle (see lifecycle.h): one row
// per legal move of one phase, then the few moves that need another phase
// to be in a given state.
#include "supervisor/lifecycle.h"

#include "absl/strings/str_cat.h"
#include "common/log.h"

namespace pm::supervisor {

namespace {

template <typename P>
struct Move {
  Event event;
  P from;
  P to;
};

constexpr Move<Phase> kPhaseMoves[] = {
    {Event::kLeaderReaped, Phase::kRunning, Phase::kReaping},
    {Event::kEndWritten, Phase::kReaping, Phase::kExited},
    {Event::kForgotten, Phase::kExited, Phase::kForgotten},
};

constexpr Move<RecordPhase> kRecordMoves[] = {
    {Event::kRecorded, RecordPhase::kCreating, RecordPhase::kRecorded},
    {Event::kAbandoned, RecordPhase::kCreating, RecordPhase::kAbandoned},
    // Shutdown abandoned it, then the registry refused the create too.
    {Event::kAbandoned, RecordPhase::kAbandoned, RecordPhase::kAbandoned},
    // Shutdown abandoned it while the create was on its way, and the
    // registry took it: it is on record after all, and told how it ended.
    {Event::kRecorded, RecordPhase::kAbandoned, RecordPhase::kRecorded},
    // An earlier supervisor's process, found again: on record already.
    {Event::kAdopted, RecordPhase::kCreating, RecordPhase::kRecorded},
};

constexpr Move<StopPhase> kStopMoves[] = {
    {Event::kStopRequested, StopPhase::kNone, StopPhase::kGrace},
    // Joins the stop in progress (its SIGKILL may come sooner).
    {Event::kStopRequested, StopPhase::kGrace, StopPhase::kGrace},
    {Event::kStopRequested, StopPhase::kKilling, StopPhase::kKilling},
    {Event::kGraceExpired, StopPhase::kGrace, StopPhase::kKilling},
    // Forced stops and trees already gone finish within their grace.
    {Event::kStopFinished, StopPhase::kGrace, StopPhase::kNone},
    {Event::kStopFinished, StopPhase::kKilling, StopPhase::kNone},
};

// The other phases an event needs, beyond the row of its own.
bool Permitted(const LifeState& s, Event event) {
  switch (event) {
    case Event::kStopRequested:
      // A Stop finds processes by id: only recorded, not forgotten ones.
      return s.record == RecordPhase::kRecorded && s.phase != Phase::kForgotten;
    case Event::kForgotten:
      // Forgotten is final: the registry has the record and no stop's
      // caller is still waiting.
      return s.record == RecordPhase::kRecorded && s.stop == StopPhase::kNone;
    case Event::kAdopted:
      // Adopted as it is found: running, before anything else happens.
      return s.phase == Phase::kRunning && s.stop == StopPhase::kNone;
    default:
      return true;
  }
}

template <typename P, size_t N>
bool Find(const Move<P> (&moves)[N], Event event, P from, P& to) {
  for (const Move<P>& move : moves) {
    if (move.event == event && move.from == from) {
      to = move.to;
      return true;
    }
  }
  return false;
}

}  // namespace

const char* PhaseName(Phase phase) {
  switch (phase) {
    case Phase::kRunning: return "Running";
    case Phase::kReaping: return "Reaping";
    case Phase::kExited: return "Exited";
    case Phase::kForgotten: return "Forgotten";
  }
  return "?";
}

const char* RecordPhaseName(RecordPhase phase) {
  switch (phase) {
    case RecordPhase::kCreating: return "Creating";
    case RecordPhase::kRecorded: return "Recorded";
    case RecordPhase::kAbandoned: return "Abandoned";
  }
  return "?";
}

const char* StopPhaseName(StopPhase phase) {
  switch (phase) {
    case StopPhase::kNone: return "NoStop";
    case StopPhase::kGrace: return "Grace";
    case StopPhase::kKilling: return "Killing";
  }
  return "?";
}

const char* EventName(Event event) {
  switch (event) {
    case Event::kRecorded: return "Recorded";
    case Event::kAbandoned: return "Abandoned";
    case Event::kStopRequested: return "StopRequested";
    case Event::kGraceExpired: return "GraceExpired";
    case Event::kStopFinished: return "StopFinished";
    case Event::kLeaderReaped: return "LeaderReaped";
    case Event::kEndWritten: return "EndWritten";
    case Event::kForgotten: return "Forgotten";
    case Event::kAdopted: return "Adopted";
  }
  return "?";
}

std::string LifeState::ToString() const {
  return absl::StrCat(PhaseName(phase), "/", RecordPhaseName(record), "/",
                      StopPhaseName(stop));
}

std::optional<LifeState> NextState(const LifeState& from, Event event) {
  if (!Permitted(from, event)) return std::nullopt;
  LifeState to = from;
  // Each event has rows in exactly one phase's table.
  if (Find(kPhaseMoves, event, from.phase, to.phase) ||
      Find(kRecordMoves, event, from.record, to.record) ||
      Find(kStopMoves, event, from.stop, to.stop)) {
    return to;
  }
  return std::nullopt;
}

bool Lifecycle::On(Event event, absl::string_view who) {
  std::optional<LifeState> next = NextState(state_, event);
  if (!next) {
    // A broken invariant: a debug build stops here, a release build keeps
    // serving the other processes (FATAL aborts once the line is written).
#ifdef NDEBUG
    constexpr LogSeverity kSeverity = LogSeverity::kError;
#else
    constexpr LogSeverity kSeverity = LogSeverity::kFatal;
#endif
    LogLine(kSeverity, __FILE__, __LINE__)
        << "illegal lifecycle event " << EventName(event) << " for "
        << (who.empty() ? "a process without an id" : who) << " in "
        << state_.ToString();
    return false;
  }
  state_ = *next;
  return true;
}

}  // namespace pm::supervisor
