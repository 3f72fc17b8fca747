// Signal and Remove.
//   Signal          one signal to a live process: its group (through the
//                   pidfd while the leader lives, as every signal here), or
//                   its leader alone (the pidfd only). A process this
//                   supervisor does not hold is answered from its record.
//   Remove          an ended process's record (the registry's
//                   RemoveRecord) and its directory in the state dir (the
//                   janitor deletes it). Not forced, a live one is refused
//                   and an ended one still draining (its output, its final
//                   update) is waited for; forced, a forced Stop comes first.
#include <errno.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <filesystem>
#include <memory>
#include <system_error>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/proto_time.h"
#include "common/exit_status.h"
#include "common/log.h"
#include "common/state_layout.h"
#include "common/status.h"
#include "common/uuid.h"
#include "supervisor/async_ops.h"
#include "supervisor/process.h"
#include "supervisor/supervisor.h"

namespace pm::supervisor {

using pm::v1::ProcessStatus;

namespace {

absl::StatusOr<int> SignalOf(const pm::v1::SignalRequest& request) {
  if (request.signal() != 0 && !request.signal_name().empty()) {
    return absl::InvalidArgumentError(
        "give signal or signal_name, not both");
  }
  if (!request.signal_name().empty()) return ParseSignal(request.signal_name());
  if (request.signal() == 0) {
    return absl::InvalidArgumentError(
        "no signal given (signal or signal_name)");
  }
  return ParseSignal(absl::StrCat(request.signal()));
}

absl::Status HasEnded(const ProcessStatus& status) {
  return absl::FailedPreconditionError(absl::StrCat(
      "process ", status.id(), " has ended",
      status.end_reason().empty() ? "" : absl::StrCat(" (", status.end_reason(), ")"),
      ": nothing was sent"));
}

}  // namespace

bool Supervisor::AwaitingAdoption(const std::string& id) const {
  return !live_records_known_ || unclaimed_.contains(id);
}

void Supervisor::RecordOf(const std::string& id, RecordCallback then) {
  struct Call {
    grpc::ClientContext context;
    pm::v1::GetStatusRequest request;
    ProcessStatus response;
  };
  auto call = std::make_shared<Call>();
  call->request.set_id(id);
  call->context.set_deadline(
      absl::ToChronoTime(absl::Now() + options_.backend_timeout));
  auto shared_then = std::make_shared<RecordCallback>(std::move(then));
  PendingAsyncOps().Begin();
  registry_->async()->GetStatus(
      &call->context, &call->request, &call->response,
      [this, call, shared_then](grpc::Status rpc) {
        absl::StatusOr<ProcessStatus> result = call->response;
        if (!rpc.ok()) result = RegistryError(FromGrpcStatus(rpc));
        if (!loop_.Post([shared_then, result] { (*shared_then)(result); })) {
          (*shared_then)(absl::UnavailableError("supervisor is shutting down"));
        }
        PendingAsyncOps().End();
      });
}

absl::Status Supervisor::RegistryError(const absl::Status& status) const {
  if (status.code() != absl::StatusCode::kUnavailable) return status;
  return absl::UnavailableError(absl::StrCat("registry is unavailable at ",
                                             options_.registry_socket, ": ",
                                             status.message()));
}

void Supervisor::Signal(const pm::v1::SignalRequest& request,
                        SignalCallback done) {
  absl::StatusOr<int> sig = SignalOf(request);
  if (!sig.ok()) {
    done(sig.status());
    return;
  }
  if (absl::Status valid = ValidateProcessId(request.id()); !valid.ok()) {
    done(valid);
    return;
  }
  auto shared_done = std::make_shared<SignalCallback>(std::move(done));
  const bool posted = loop_.Post([this, id = absl::AsciiStrToLower(request.id()),
                                  sig = *sig, leader_only = request.leader_only(),
                                  shared_done] {
    SignalCallback& done = *shared_done;
    auto it = by_id_.find(id);
    if (it == by_id_.end()) {
      if (AwaitingAdoption(id)) {
        done(absl::UnavailableError(absl::StrCat(
            "process ", id, " is being re-adopted by a restarted supervisor; "
            "try again in a moment")));
        return;
      }
      RecordOf(id, [id, shared_done](absl::StatusOr<ProcessStatus> record) {
        if (!record.ok()) {
          (*shared_done)(record.status());
        } else if (Ended(*record)) {
          (*shared_done)(HasEnded(*record));
        } else {
          (*shared_done)(absl::FailedPreconditionError(absl::StrCat(
              "process ", id, " is on record as running but this supervisor "
              "does not hold it (it outlived an earlier supervisor)")));
        }
      });
      return;
    }
    ProcessPtr p = it->second;
    if (p->in_backoff) {
      done(absl::FailedPreconditionError(absl::StrCat(
          "process ", id, " is between two runs (run ", p->status.run() + 1,
          " starts at ",
          absl::FormatTime(absl::RFC3339_full, FromProtoTimestamp(p->status.next_start()),
                           absl::UTCTimeZone()),
          "): nothing was sent")));
      return;
    }
    if (p->life.reaped() || Ended(p->status) || !p->pidfd.valid()) {
      done(HasEnded(p->status));
      return;
    }
    if (leader_only) {
      if (syscall(SYS_pidfd_send_signal, p->pidfd.get(), sig, nullptr, 0) != 0) {
        if (errno == ESRCH) {
          done(HasEnded(p->status));
        } else {
          done(ErrnoError("pidfd_send_signal",
                          absl::StrCat("pid ", p->pid, ", ", SignalName(sig))));
        }
        return;
      }
    } else {
      SignalGroup(*p, sig);
    }
    PM_LOG(INFO) << "sent " << SignalName(sig) << " to "
                 << (leader_only ? "the leader " : "the group of ") << "pid "
                 << p->pid << " (" << id << ")";
    pm::v1::SignalResponse response;
    *response.mutable_status() = p->status;
    response.set_signal(sig);
    done(response);
  });
  if (!posted) (*shared_done)(absl::UnavailableError("supervisor is shutting down"));
}

void Supervisor::Remove(const pm::v1::RemoveRequest& request,
                        RemoveCallback done) {
  if (absl::Status valid = ValidateProcessId(request.id()); !valid.ok()) {
    done(valid);
    return;
  }
  const std::string id = absl::AsciiStrToLower(request.id());
  auto shared_done = std::make_shared<RemoveCallback>(std::move(done));
  if (request.force()) {
    // A forced Stop finds the process wherever it is (held, waiting for
    // its re-adoption, or only on record) and answers at once for one that
    // has ended.
    pm::v1::StopRequest stop;
    stop.set_id(id);
    stop.set_force(true);
    Stop(stop, [this, id, shared_done](absl::StatusOr<pm::v1::StopResponse> stopped) {
      if (!stopped.ok() && stopped.status().code() != absl::StatusCode::kNotFound) {
        (*shared_done)(stopped.status());
        return;
      }
      if (stopped.ok() && !stopped->stopped()) {
        (*shared_done)(absl::FailedPreconditionError(absl::StrCat(
            "process ", id, " was killed but its tree is not gone yet (",
            stopped->status().end_reason(), "); nothing was removed")));
        return;
      }
      if (!loop_.Post([this, id, shared_done] { RemoveWhenDrained(id, shared_done); })) {
        (*shared_done)(absl::UnavailableError("supervisor is shutting down"));
      }
    });
    return;
  }
  if (!loop_.Post([this, id, shared_done] { RemoveWhenDrained(id, shared_done); })) {
    (*shared_done)(absl::UnavailableError("supervisor is shutting down"));
  }
}

void Supervisor::RemoveWhenDrained(const std::string& id,
                                   std::shared_ptr<RemoveCallback> done) {
  auto it = by_id_.find(id);
  if (it == by_id_.end()) {
    RemoveRecordAndDir(id, std::move(done));
    return;
  }
  ProcessPtr p = it->second;
  if (!p->life.reaped() || !Ended(p->status)) {
    (*done)(absl::FailedPreconditionError(absl::StrCat(
        "process ", id, " is running: stop it first, or remove it with force")));
    return;
  }
  if (p->cgroup && p->cgroup->Populated()) {
    (*done)(absl::FailedPreconditionError(absl::StrCat(
        "process ", id, " has ended but its tree still runs (in its cgroup ",
        p->status.cgroup(), "): stop it, or remove it with force")));
    return;
  }
  // Ended, its tree gone: what is left (its output's close, its final
  // update) drains by itself, soon.
  p->on_forgotten.push_back([this, id, done](absl::Status forgotten) {
    if (!forgotten.ok()) {
      (*done)(forgotten);
      return;
    }
    RemoveRecordAndDir(id, done);
  });
}

void Supervisor::RemoveRecordAndDir(const std::string& id,
                                    std::shared_ptr<RemoveCallback> done) {
  struct Call {
    grpc::ClientContext context;
    pm::internal::v1::RemoveRecordRequest request;
    ProcessStatus response;
  };
  auto call = std::make_shared<Call>();
  call->request.set_id(id);
  call->context.set_deadline(
      absl::ToChronoTime(absl::Now() + options_.backend_timeout));
  PendingAsyncOps().Begin();
  registry_->async()->RemoveRecord(
      &call->context, &call->request, &call->response,
      [this, call, done](grpc::Status rpc) {
        if (!rpc.ok()) {
          (*done)(RegistryError(FromGrpcStatus(rpc)));
          PendingAsyncOps().End();
          return;
        }
        // The record is gone: so goes its directory (output, exit file,
        // shim log), off the loop. A failure is logged; the record stays
        // removed (a later total-cap pass still bounds what is left).
        const std::string dir = ProcessDir(options_.shim.state_dir, call->request.id());
        auto remove_dir = [dir, call, done] {
          std::error_code error;
          std::filesystem::remove_all(dir, error);
          if (error) {
            PM_LOG(WARNING) << "removing " << dir << ": " << error.message();
          }
          pm::v1::RemoveResponse response;
          *response.mutable_status() = call->response;
          (*done)(response);
        };
        if (options_.shim.state_dir.empty() || !janitor_.Post(remove_dir)) {
          pm::v1::RemoveResponse response;
          *response.mutable_status() = call->response;
          (*done)(response);
        }
        PendingAsyncOps().End();
      });
}

}  // namespace pm::supervisor
