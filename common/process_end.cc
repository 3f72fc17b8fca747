#include "common/process_end.h"

namespace pm {

using ::pm::internal::v1::ProcessEnd;
using ::pm::v1::ProcessStatus;

bool IsEndState(ProcessStatus::State state) {
  return state == ProcessStatus::STATE_EXITED ||
         state == ProcessStatus::STATE_SIGNALED ||
         state == ProcessStatus::STATE_LOST;
}

ProcessEnd ProcessEndOf(const ProcessStatus& status) {
  ProcessEnd end;
  end.set_exit_code(status.exit_code());
  end.set_signal(status.signal());
  end.set_core_dumped(status.core_dumped());
  if (status.has_ended_at()) *end.mutable_ended_at() = status.ended_at();
  end.set_termination(status.termination());
  end.set_output_bytes(status.output_bytes());
  if (status.has_usage()) *end.mutable_usage() = status.usage();
  end.set_oom_killed(status.oom_killed());
  end.set_end_reason(status.end_reason());
  return end;
}

void ApplyProcessEnd(const ProcessEnd& end, ProcessStatus& status) {
  status.set_exit_code(end.exit_code());
  status.set_signal(end.signal());
  status.set_core_dumped(end.core_dumped());
  if (end.has_ended_at()) {
    *status.mutable_ended_at() = end.ended_at();
  } else {
    status.clear_ended_at();
  }
  status.set_termination(end.termination());
  status.set_output_bytes(end.output_bytes());
  if (end.has_usage()) {
    *status.mutable_usage() = end.usage();
  } else {
    status.clear_usage();
  }
  status.set_oom_killed(end.oom_killed());
  status.set_end_reason(end.end_reason());
}

}  // namespace pm
