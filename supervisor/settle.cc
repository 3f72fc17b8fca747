#include "supervisor/settle.h"

#include <signal.h>

#include <optional>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/log.h"
#include "segment_log/writer.h"
#include "common/proto_time.h"
#include "common/state_layout.h"
#include "shim/exit_file.h"
#include "supervisor/end_reason.h"

namespace pm::supervisor {

using pm::v1::ProcessStatus;

pm::internal::v1::UpdateRecordRequest UpdateOfShimEnd(
    const ProcessStatus& record, const shim::ProcessEnd& end) {
  ProcessStatus::Termination termination = ProcessStatus::TERMINATION_BY_ITSELF;
  if (record.state() == ProcessStatus::STATE_STOPPING) {
    termination = end.status.kind == ExitStatus::Kind::kSignaled &&
                          end.status.signal == SIGKILL
                      ? ProcessStatus::TERMINATION_KILLED
                      : ProcessStatus::TERMINATION_AFTER_SIGTERM;
  }
  pm::internal::v1::UpdateRecordRequest update;
  update.set_id(record.id());
  pm::internal::v1::ProcessEnd& to = *update.mutable_end();
  if (end.status.kind == ExitStatus::Kind::kExited) {
    update.set_state(ProcessStatus::STATE_EXITED);
    to.set_exit_code(end.status.code);
  } else {
    update.set_state(ProcessStatus::STATE_SIGNALED);
    to.set_signal(end.status.signal);
    to.set_core_dumped(end.status.core_dumped);
  }
  *to.mutable_ended_at() = ToProtoTimestamp(end.ended);
  to.set_termination(termination);
  to.set_output_bytes(end.output_end);
  to.set_end_reason(DescribeEnd(end.status, termination, /*oom_killed=*/false,
                                pm::v1::ResourceUsage(), record.limits()));
  return update;
}

namespace {

// With a restart policy, the exit file names the last run and whether the
// cap gave it up: the record's run, restarts and end reason follow it. The
// end of the run before it is not in the file: a last_run of an earlier
// run than that one goes.
void AddRunsOfExitFile(const ProcessStatus& record, const shim::ExitRecord& exit,
                       pm::internal::v1::UpdateRecordRequest& update) {
  pm::internal::v1::RunUpdate& run = *update.mutable_run();
  run.set_run(*exit.run);
  run.set_restarts(*exit.run - 1);
  run.set_pid(*exit.run == record.run() ? record.pid() : 0);
  *run.mutable_started_at() = record.started_at();
  // The record's last run stays when it is still the last (the record is of
  // the exit's run: running then, or waiting after it as a stop ended it)
  // or the run just before the exit's.
  if (record.has_last_run() &&
      (*exit.run == record.run() || record.last_run().run() + 1 == *exit.run)) {
    *run.mutable_last_run() = record.last_run();
  }
  run.set_gave_up(exit.gave_up);
  if (exit.gave_up) {
    update.mutable_end()->set_end_reason(absl::StrCat(
        update.end().end_reason(), GivenUpSuffix(*exit.run - 1, record.restart())));
  }
}

}  // namespace

pm::internal::v1::UpdateRecordRequest SettleUnadopted(
    const ProcessStatus& record, const std::string& state_dir) {
  const std::string dir = ProcessDir(state_dir, record.id());
  absl::StatusOr<std::optional<shim::ExitRecord>> end = shim::ReadExitFile(dir);
  if (end.ok() && end->has_value()) {
    pm::internal::v1::UpdateRecordRequest update = UpdateOfShimEnd(record, (*end)->end);
    if ((*end)->run) AddRunsOfExitFile(record, **end, update);
    return update;
  }
  pm::internal::v1::UpdateRecordRequest update;
  update.set_id(record.id());
  update.set_state(ProcessStatus::STATE_LOST);
  update.mutable_end()->set_end_reason(
      end.ok() ? absl::StrCat("its supervisor restarted and found neither its "
                              "shim nor an exit file in ", dir)
               : absl::StrCat("its supervisor restarted, found no shim, and "
                              "could not read its exit file: ", end.status().ToString()));
  return update;
}

uint64_t CloseOutputOfDeadShim(const std::string& dir) {
  absl::StatusOr<std::unique_ptr<segment_log::Writer>> writer =
      segment_log::Writer::Open(dir, segment_log::WriterOptions());
  if (!writer.ok()) {
    PM_LOG(WARNING) << "cannot close the output of a dead shim: "
                    << writer.status();
    return 0;
  }
  if (absl::Status closed = (*writer)->Close(absl::Now()); !closed.ok()) {
    PM_LOG(WARNING) << "cannot close the output of a dead shim: " << closed;
  }
  return (*writer)->end_offset();
}

}  // namespace pm::supervisor
