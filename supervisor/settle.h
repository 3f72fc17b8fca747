// The registry's update for a process whose supervisor restarted: from the
// end its shim reports (in a Hello or an Exited message, or left in its
// exit file), or LOST when neither the shim nor an exit file is found.
//
//   // after the wait for Hellos, for each record still RUNNING/STOPPING:
//   pm::internal::v1::UpdateRecordRequest update =
//       SettleUnadopted(record, state_dir);   // EXITED, SIGNALED or LOST
//
// Internal to the supervisor.
#ifndef PM_SUPERVISOR_SETTLE_H_
#define PM_SUPERVISOR_SETTLE_H_

#include <string>

#include "common/exit_status.h"
#include "shim/exit_file.h"
#include "pm/internal/v1/internal.pb.h"
#include "pm/v1/process_manager.pb.h"

namespace pm::supervisor {

// The final update of the process `record` names, from the `end` its shim
// reported: EXITED or SIGNALED with its code or signal, end time and output
// end. Which signals pm sent is not known across the restart, so the
// termination is read from the record's state: RUNNING ended by itself; a
// stop in progress (STOPPING) ended it after SIGTERM, or killed it if the
// signal is SIGKILL. The end_reason says it in plain words.
pm::internal::v1::UpdateRecordRequest UpdateOfShimEnd(
    const pm::v1::ProcessStatus& record, const shim::ProcessEnd& end);

// The final update of a process no shim reconnected for: from its exit file
// (UpdateOfShimEnd) if there is one, else LOST with an end_reason saying
// that neither its shim nor its exit file was found (or why the exit file
// could not be read).
pm::internal::v1::UpdateRecordRequest SettleUnadopted(
    const pm::v1::ProcessStatus& record, const std::string& state_dir);

// Closes the output in `dir` (ProcessOutputDir) of a process whose shim
// died before it wrote the end record, as the shim would have (a reader
// waits for that record), after cutting a torn tail. Nothing happens to an
// output already closed. The end offset, or 0 (logged) if the output
// cannot be opened. Only once the shim is surely gone: it is the
// directory's one writer.
uint64_t CloseOutputOfDeadShim(const std::string& dir);

}  // namespace pm::supervisor

#endif  // PM_SUPERVISOR_SETTLE_H_
