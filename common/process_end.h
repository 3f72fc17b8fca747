// The end of a process as one value: pm.internal.v1.ProcessEnd, taken from
// and applied to the public pm.v1.ProcessStatus, whose end fields (exit
// code, signal, core dumped, ended_at, termination, output bytes, usage,
// oom_killed, end_reason) are its public form. The supervisor sends it in
// its final update, the registry applies it to the record; neither copies
// the fields one by one.
//
//   pm::internal::v1::UpdateRecordRequest update;
//   *update.mutable_end() = pm::ProcessEndOf(status);     // supervisor
//   ...
//   pm::ApplyProcessEnd(update.end(), record);            // registry
#ifndef PM_COMMON_PROCESS_END_H_
#define PM_COMMON_PROCESS_END_H_

#include "pm/internal/v1/internal.pb.h"
#include "pm/v1/process_manager.pb.h"

namespace pm {

// Whether `state` is a final one: EXITED, SIGNALED or LOST.
bool IsEndState(pm::v1::ProcessStatus::State state);

// The end fields of `status` (whatever its state; all zero while it runs).
pm::internal::v1::ProcessEnd ProcessEndOf(const pm::v1::ProcessStatus& status);

// Sets the end fields of `status` from `end`: each one, so a field unset in
// `end` is cleared in `status` (ended_at and usage included). The state is
// not touched.
void ApplyProcessEnd(const pm::internal::v1::ProcessEnd& end,
                     pm::v1::ProcessStatus& status);

}  // namespace pm

#endif  // PM_COMMON_PROCESS_END_H_
