// How a process ended, in plain words, for ProcessStatus.end_reason.
//
//   std::string text = DescribeEnd(exit, status.termination(),
//                                  /*oom_killed=*/true, usage, limits);
//   // "killed by signal 9 (SIGKILL): the OOM killer ended it (memory limit
//   //  32 MiB reached)"
#ifndef PM_SUPERVISOR_END_REASON_H_
#define PM_SUPERVISOR_END_REASON_H_

#include <cstdint>
#include <string>

#include "common/exit_status.h"
#include "pm/v1/process_manager.pb.h"

namespace pm::supervisor {

// "32 MiB", "1.5 GiB", "1000 bytes".
std::string FormatBytes(uint64_t bytes);

// The exit ("exited with code 3", "killed by signal 15 (SIGTERM)") and
// why: the stop's SIGTERM, the stop's kill after the grace period, or the
// OOM killer (with the memory limit when there was one). OOM kills of other
// processes of the tree are added when usage counts them.
std::string DescribeEnd(const ExitStatus& exit,
                        pm::v1::ProcessStatus::Termination termination,
                        bool oom_killed, const pm::v1::ResourceUsage& usage,
                        const pm::v1::Limits& limits);

// What a process given up by its restart policy adds to its end reason:
// "; given up after 3 restarts (3 within 1m)".
std::string GivenUpSuffix(uint32_t restarts, const pm::v1::RestartPolicy& policy);

}  // namespace pm::supervisor

#endif  // PM_SUPERVISOR_END_REASON_H_
