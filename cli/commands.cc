#include "cli/commands.h"

#include <algorithm>
#include <atomic>
#include <mutex>
#include <thread>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "cli/command_tree.h"
#include "cli/follow.h"
#include "cli/format.h"
#include "common/proto_time.h"
#include "common/command_line.h"
#include "common/utf8.h"
#include "common/version.h"

namespace pm::cli {
namespace {

using pm::v1::ProcessStatus;

// One Wait call's bound; `pm wait` asks again until the process ends.
constexpr absl::Duration kWaitSlice = absl::Hours(1);

int Fail(const Context& context, absl::string_view what,
         const absl::Status& status) {
  *context.err << ErrorLine(what, status, context.gateway) << "\n";
  return kExitFailed;
}

// Says on stderr what the OOM killer did to the process's tree, if anything:
// an exit code of 137 alone does not tell.
void ReportOom(const Context& context, const ProcessStatus& status) {
  const std::string oom = DescribeOom(status);
  if (!oom.empty()) {
    *context.err << "pm: " << status.id() << ": " << oom << "\n";
  }
}

// Prints `message` as JSON on its own line.
int PrintJson(const Context& context, absl::string_view what,
              const google::protobuf::Message& message) {
  absl::StatusOr<std::string> json = ToJson(message);
  if (!json.ok()) return Fail(context, what, json.status());
  *context.out << *json << "\n";
  return kExitOk;
}

absl::StatusOr<ProcessStatus> WaitForEnd(pm::Client& client,
                                         const std::string& id) {
  while (true) {
    absl::StatusOr<ProcessStatus> status = client.Wait(id, kWaitSlice);
    if (status.ok() ||
        status.status().code() != absl::StatusCode::kDeadlineExceeded) {
      return status;
    }
  }
}

pm::v1::StopRequest StopRequestFor(
    const std::string& id, const absl::optional<absl::Duration>& grace) {
  pm::v1::StopRequest request;
  request.set_id(id);
  if (!grace) return request;  // 0 on the wire: the supervisor's default
  if (*grace == absl::ZeroDuration()) {
    // An asked-for 0 is no grace at all: SIGKILL to the whole tree at once.
    request.set_force(true);
  } else {
    // Below a millisecond is the shortest grace there is, not the default.
    request.set_grace_period_ms(static_cast<uint32_t>(
        std::max<int64_t>(1, absl::ToInt64Milliseconds(*grace))));
  }
  return request;
}

int Start(const Invocation& invocation, pm::Client& client,
          const Context& context) {
  const std::string what = absl::StrCat("start ", ExecutableOf(invocation.start));
  absl::StatusOr<pm::v1::StartResponse> started =
      client.Start(invocation.start);
  if (!started.ok()) return Fail(context, what, started.status());
  if (invocation.output == OutputFormat::kJson) {
    return PrintJson(context, what, *started);
  }
  *context.out << started->id() << "\n";
  return kExitOk;
}

int Stop(const Invocation& invocation, pm::Client& client,
         const Context& context) {
  const std::string what = absl::StrCat("stop ", invocation.id);
  const pm::v1::StopRequest request = StopRequestFor(invocation.id, invocation.grace);
  absl::StatusOr<pm::v1::StopResponse> stopped = client.Stop(request);
  if (!stopped.ok()) return Fail(context, what, stopped.status());
  if (invocation.output == OutputFormat::kJson) {
    const int printed = PrintJson(context, what, *stopped);
    if (printed != kExitOk) return printed;
  } else if (stopped->stopped()) {
    *context.out << DescribeEnd(stopped->status());
    if (stopped->status().termination() == ProcessStatus::TERMINATION_KILLED) {
      *context.out << " after the grace period";
    } else if (stopped->status().termination() == ProcessStatus::TERMINATION_FORCED &&
               !request.force()) {
      // This caller asked for a grace; another's forced stop cut it short.
      *context.out << " by a forced stop";
    }
    *context.out << "\n";
  } else {
    *context.out << FormatStatusBlock(stopped->status(), context.time_zone);
  }
  if (!stopped->stopped()) {
    *context.err << "pm: " << what
                 << ": the process did not stop: members of its process "
                    "group are still alive ("
                 << DescribeEnd(stopped->status()) << ")\n";
    return kExitFailed;
  }
  return kExitOk;
}

int Status(const Invocation& invocation, pm::Client& client,
           const Context& context) {
  const std::string what = absl::StrCat("status ", invocation.id);
  absl::StatusOr<ProcessStatus> status = client.GetStatus(invocation.id);
  if (!status.ok()) return Fail(context, what, status.status());
  if (invocation.output == OutputFormat::kJson) {
    return PrintJson(context, what, *status);
  }
  *context.out << FormatStatusBlock(*status, context.time_zone);
  return kExitOk;
}

int List(const Invocation& invocation, pm::Client& client,
         const Context& context) {
  absl::StatusOr<pm::v1::ListResponse> list = client.List(invocation.list);
  if (!list.ok()) return Fail(context, "list", list.status());
  if (invocation.output == OutputFormat::kJson) {
    return PrintJson(context, "list", *list);
  }
  if (invocation.quiet) {
    for (const ProcessStatus& process : list->processes()) {
      *context.out << process.id() << "\n";
    }
    return kExitOk;
  }
  *context.out << FormatTable(*list, context.time_zone);
  return kExitOk;
}

int Logs(const Invocation& invocation, pm::Client& client,
         const Context& context) {
  // A name or a prefix is resolved once: a stream that is lost and
  // resumed goes on with the same process.
  absl::StatusOr<std::string> id = client.Resolve(invocation.id);
  if (!id.ok()) return Fail(context, absl::StrCat("logs ", invocation.id), id.status());
  pm::v1::StreamOutputRequest request;
  request.set_id(*id);
  request.set_from_start(invocation.from_start);
  request.set_follow(invocation.follow);
  if (invocation.tail_lines) request.set_tail_lines(*invocation.tail_lines);
  if (invocation.since) *request.mutable_since() = ToProtoTimestamp(*invocation.since);
  if (invocation.until) *request.mutable_until() = ToProtoTimestamp(*invocation.until);
  if (invocation.stdout_only) request.add_streams(pm::v1::OutputChunk::STREAM_STDOUT);
  if (invocation.stderr_only) request.add_streams(pm::v1::OutputChunk::STREAM_STDERR);
  OutputFollower follower(client, context, invocation.reconnect_timeout);
  follower.set_timestamps(invocation.timestamps);
  std::atomic<int> interrupted_by{0};
  absl::Status streamed;
  {
    // Ctrl+C ends the stream, on the server too; Copy then returns.
    InterruptScope scope(*context.interrupts, [&](int signal) {
      interrupted_by = signal;
      follower.Cancel();
      return true;
    });
    streamed = follower.Copy(request);
  }
  // Ended on purpose: no error, the shell's code for the signal (130).
  if (interrupted_by != 0) return 128 + interrupted_by;
  if (!streamed.ok()) {
    return Fail(context, absl::StrCat("logs ", invocation.id), streamed);
  }
  return kExitOk;
}

// The stop that run's first Ctrl+C sends, on a thread of its own: the
// watcher must stay free for a second Ctrl+C, and the main thread keeps
// printing the output of the stopping process.
class StopOnInterrupt {
 public:
  StopOnInterrupt(pm::Client& client, pm::v1::StopRequest request,
                  const Context& context)
      : client_(client), context_(context), request_(std::move(request)) {}
  ~StopOnInterrupt() { Join(); }

  // The interrupt handler: the first Ctrl+C stops the process (once it has
  // an id: a Ctrl+C during Start is remembered); a second one is declined,
  // so the watcher ends pm at once. The stop carries on in the supervisor,
  // which does not need this connection to finish it.
  bool OnInterrupt() {
    std::lock_guard<std::mutex> lock(mu_);
    if (interrupted_) return false;
    interrupted_ = true;
    if (!request_.id().empty()) LaunchLocked();
    return true;
  }

  // The process has started as `id`.
  void Started(const std::string& id) {
    std::lock_guard<std::mutex> lock(mu_);
    request_.set_id(id);
    if (interrupted_) LaunchLocked();
  }

  // Waits for the stop, if one was sent, and warns if it failed.
  void Join() {
    std::thread thread;
    {
      std::lock_guard<std::mutex> lock(mu_);
      thread = std::move(thread_);
    }
    if (!thread.joinable()) return;
    thread.join();
    if (!result_.ok()) {
      *context_.err << ErrorLine(absl::StrCat("stop ", request_.id()),
                                 result_.status(), context_.gateway)
                    << "\n";
    }
  }

 private:
  void LaunchLocked() {
    *context_.err << "pm: stopping " << request_.id()
                  << " (Ctrl+C again to leave without waiting)\n";
    thread_ = std::thread(
        [this, request = request_] { result_ = client_.Stop(request); });
  }

  pm::Client& client_;
  const Context& context_;
  std::mutex mu_;
  pm::v1::StopRequest request_;
  bool interrupted_ = false;
  std::thread thread_;
  // Written by the thread, read after joining it.
  absl::StatusOr<pm::v1::StopResponse> result_;
};

int Run(const Invocation& invocation, pm::Client& client,
        const Context& context) {
  StopOnInterrupt stopper(client, StopRequestFor("", invocation.grace),
                          context);
  absl::Status streamed;
  std::string id;
  {
    InterruptScope scope(*context.interrupts,
                         [&](int) { return stopper.OnInterrupt(); });
    absl::StatusOr<pm::v1::StartResponse> started =
        client.Start(invocation.start);
    if (!started.ok()) {
      return Fail(context, absl::StrCat("run ", ExecutableOf(invocation.start)),
                  started.status());
    }
    id = started->id();
    stopper.Started(id);
    pm::v1::StreamOutputRequest request;
    request.set_id(id);
    request.set_from_start(true);
    request.set_follow(true);
    OutputFollower follower(client, context, invocation.reconnect_timeout);
    streamed = follower.Copy(request);
  }
  stopper.Join();
  if (!streamed.ok()) {
    return Fail(context, absl::StrCat("output of ", id), streamed);
  }
  // The stream ends once the process has ended and its output is drained,
  // so this Wait answers at once.
  absl::StatusOr<ProcessStatus> ended = WaitForEnd(client, id);
  if (!ended.ok()) {
    return Fail(context, absl::StrCat("wait ", id), ended.status());
  }
  ReportOom(context, *ended);
  if (invocation.remove_after) {
    pm::v1::RemoveRequest remove;
    remove.set_id(id);
    absl::StatusOr<pm::v1::RemoveResponse> removed = client.Remove(remove);
    // The process's own exit code still stands; the failed removal is said.
    if (!removed.ok()) Fail(context, absl::StrCat("rm ", id), removed.status());
  }
  return ShellExitCode(*ended);
}

int Wait(const Invocation& invocation, pm::Client& client,
         const Context& context) {
  const std::string what = absl::StrCat("wait ", invocation.id);
  absl::StatusOr<ProcessStatus> ended = WaitForEnd(client, invocation.id);
  if (!ended.ok()) return Fail(context, what, ended.status());
  if (invocation.output == OutputFormat::kJson) {
    const int printed = PrintJson(context, what, *ended);
    if (printed != kExitOk) return printed;
  } else {
    *context.out << DescribeEnd(*ended) << "\n";
    ReportOom(context, *ended);
  }
  return ShellExitCode(*ended);
}

int Kill(const Invocation& invocation, pm::Client& client,
         const Context& context) {
  const std::string what = absl::StrCat("kill ", invocation.id);
  pm::v1::SignalRequest request;
  request.set_id(invocation.id);
  request.set_signal(invocation.signal);
  request.set_leader_only(invocation.leader_only);
  absl::StatusOr<pm::v1::SignalResponse> sent = client.Signal(request);
  if (!sent.ok()) return Fail(context, what, sent.status());
  if (invocation.output == OutputFormat::kJson) {
    return PrintJson(context, what, *sent);
  }
  *context.out << sent->status().id() << "\n";
  return kExitOk;
}

// Removes `ids` one by one, printing each id removed (with --output json,
// each RemoveResponse on a line); an error is printed and the rest are still
// tried. `gone_ok`: an id removed meanwhile is no error (a prune racing
// another prune).
int RemoveEach(const std::vector<std::string>& ids, bool force, bool gone_ok,
               OutputFormat output, pm::Client& client, const Context& context,
               int* removed) {
  int code = kExitOk;
  for (const std::string& ref : ids) {
    const std::string what = absl::StrCat("rm ", ref);
    pm::v1::RemoveRequest request;
    request.set_id(ref);
    request.set_force(force);
    absl::StatusOr<pm::v1::RemoveResponse> done = client.Remove(request);
    if (!done.ok()) {
      if (gone_ok && done.status().code() == absl::StatusCode::kNotFound) continue;
      code = Fail(context, what, done.status());
      continue;
    }
    ++*removed;
    if (output == OutputFormat::kJson) {
      if (PrintJson(context, what, *done) != kExitOk) code = kExitFailed;
    } else {
      *context.out << done->status().id() << "\n";
    }
  }
  return code;
}

int Rm(const Invocation& invocation, pm::Client& client,
       const Context& context) {
  int removed = 0;
  return RemoveEach(invocation.ids, invocation.force, /*gone_ok=*/false,
                    invocation.output, client, context, &removed);
}

int Prune(const Invocation& invocation, pm::Client& client,
          const Context& context) {
  pm::v1::ListRequest ended;
  for (ProcessStatus::State state :
       {ProcessStatus::STATE_EXITED, ProcessStatus::STATE_SIGNALED,
        ProcessStatus::STATE_LOST}) {
    ended.add_states(state);
  }
  absl::StatusOr<pm::v1::ListResponse> list = client.List(ended);
  if (!list.ok()) return Fail(context, "prune", list.status());
  std::vector<std::string> ids;
  for (const ProcessStatus& process : list->processes()) {
    ids.push_back(process.id());
  }
  int removed = 0;
  const int code =
      RemoveEach(ids, /*force=*/false, /*gone_ok=*/true, invocation.output,
                 client, context, &removed);
  if (invocation.output == OutputFormat::kText) {
    *context.err << "pm: removed " << removed << " ended process"
                 << (removed == 1 ? "" : "es") << "\n";
  }
  return code;
}

// One event as a line: "SEQ TIME KIND ID NAME END", then in a cluster
// "node=NODE" (an unknown state: its reason first, in parentheses).
std::string FormatEvent(const pm::v1::Event& event) {
  const ProcessStatus& status = event.status();
  const std::string kind_name = pm::v1::Event::Kind_Name(event.kind());
  absl::string_view kind = kind_name;
  absl::ConsumePrefix(&kind, "KIND_");
  std::string line = absl::StrCat(
      event.sequence(), " ",
      absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", FromProtoTimestamp(event.time()),
                       absl::UTCTimeZone()),
      " ", absl::AsciiStrToLower(kind), " ", status.id(), " ",
      status.name().empty() ? "-" : status.name());
  if (event.kind() == pm::v1::Event::KIND_EXITED ||
      event.kind() == pm::v1::Event::KIND_SIGNALED ||
      event.kind() == pm::v1::Event::KIND_LOST ||
      event.kind() == pm::v1::Event::KIND_OOM) {
    absl::StrAppend(&line, " ", DescribeEnd(status));
  }
  if (event.kind() == pm::v1::Event::KIND_UNKNOWN) {
    absl::StrAppend(&line, " (", status.state_reason(), ")");
  }
  // A cluster: the host it runs on.
  if (!status.node().empty()) absl::StrAppend(&line, " node=", status.node());
  return line;
}

// Follows the events until Ctrl+C; a lost stream is opened again after the
// last sequence printed (50 ms apart, doubling to 1 s, for at most the
// reconnect timeout), so nothing is printed twice and nothing is skipped.
int Events(const Invocation& invocation, pm::Client& client,
           const Context& context) {
  pm::v1::WatchRequest request = invocation.watch;
  if (!request.id().empty()) {
    absl::StatusOr<std::string> id = client.Resolve(request.id());
    if (!id.ok()) return Fail(context, "events", id.status());
    request.set_id(*id);
  }
  std::atomic<int> interrupted_by{0};
  std::mutex mu;
  pm::EventStream* current = nullptr;
  InterruptScope scope(*context.interrupts, [&](int signal) {
    interrupted_by = signal;
    std::lock_guard<std::mutex> lock(mu);
    if (current != nullptr) current->Cancel();
    return true;
  });
  absl::Duration delay = absl::Milliseconds(50);
  absl::Time lost_since = absl::InfiniteFuture();
  while (interrupted_by == 0) {
    std::unique_ptr<pm::EventStream> stream = client.Watch(request);
    {
      std::lock_guard<std::mutex> lock(mu);
      current = stream.get();
    }
    if (interrupted_by != 0) stream->Cancel();
    pm::v1::Event event;
    while (stream->Next(&event)) {
      if (lost_since != absl::InfiniteFuture()) {
        *context.err << "pm: resumed after event " << request.after_sequence() << "\n";
        lost_since = absl::InfiniteFuture();
        delay = absl::Milliseconds(50);
      }
      if (event.missed_before() > 0) {
        *context.err << "pm: [" << event.missed_before()
                     << " events no longer retained before " << event.sequence()
                     << "]\n";
      }
      if (invocation.output == OutputFormat::kJson) {
        absl::StatusOr<std::string> json = ToJson(event);
        if (!json.ok()) return Fail(context, "events", json.status());
        *context.out << *json << "\n";
      } else {
        *context.out << FormatEvent(event) << "\n";
      }
      context.out->flush();
      request.set_after_sequence(event.sequence());
    }
    absl::Status ended = stream->Finish();
    {
      std::lock_guard<std::mutex> lock(mu);
      current = nullptr;
    }
    if (interrupted_by != 0) break;
    if (ended.code() != absl::StatusCode::kUnavailable) {
      return Fail(context, "events", ended.ok() ? absl::UnavailableError("the stream ended") : ended);
    }
    if (lost_since == absl::InfiniteFuture()) {
      lost_since = absl::Now();
      *context.err << "pm: event stream lost (" << ended.ToString() << "); reconnecting\n";
      // From where it was: what comes meanwhile is read on resumption.
      if (!request.has_after_sequence()) request.set_after_sequence(0);
    }
    if (absl::Now() - lost_since > invocation.reconnect_timeout) {
      return Fail(context, "events",
                  absl::UnavailableError(absl::StrCat(
                      "event stream lost and not back within ",
                      absl::FormatDuration(invocation.reconnect_timeout),
                      " (--reconnect-timeout): ", ended.message())));
    }
    absl::SleepFor(delay);
    delay = std::min(delay * 2, absl::Seconds(1));
  }
  return 128 + interrupted_by;
}

}  // namespace

std::string ErrorLine(absl::string_view raw_what, const absl::Status& status,
                      absl::string_view gateway) {
  // A line of text: an id or executable typed in Latin-1, or with a
  // newline in it, shows as \xNN.
  const std::string what = OneLine(raw_what);
  std::string why = status.message().empty()
                        ? absl::StatusCodeToString(status.code())
                        : EscapeInvalidUtf8(absl::StrReplaceAll(
                              status.message(), {{"\n", "; "}}));
  const absl::StatusCode code = status.code();
  if (gateway.empty()) {
    if (code == absl::StatusCode::kUnavailable) {
      absl::StrAppend(&why, " (is the stack up? try 'make up')");
    }
    return absl::StrCat("pm: ", what, ": ", why);
  }
  if (code == absl::StatusCode::kUnavailable) {
    absl::StrAppend(&why, " (is the gateway up at ", gateway,
                    "? do --ca, --cert and --key belong to its PKI?)");
  } else if (code == absl::StatusCode::kPermissionDenied ||
             code == absl::StatusCode::kUnauthenticated) {
    // The gateway's refusal of this login, not of the operation: say so.
    why = absl::StrCat(absl::StatusCodeToString(code), ": ", why,
                       " (check --user and the password in $",
                       kPasswordVariable, " or --password_file)");
  }
  return absl::StrCat("pm: ", what, ": ", why);
}

absl::StatusOr<std::unique_ptr<pm::Client>> Connect(
    const Connection& connection) {
  if (connection.gateway) return pm::Client::ConnectRemote(*connection.gateway);
  // A command makes a call or two and exits: no gRPC runtime for them.
  return pm::Client::ConnectLocal(connection.runtime_dir, {.one_shot = true});
}

namespace {

// help, --version and completion.
int PrintAbout(const Invocation& invocation, const Context& context) {
  if (invocation.command == Command::kVersion) {
    *context.out << pm::VersionLine() << "\n";
  } else if (invocation.command == Command::kCompletion) {
    *context.out << BashCompletion();
  } else {
    *context.out << HelpText(invocation.help_topic);
  }
  return kExitOk;
}

}  // namespace

int Execute(const Invocation& invocation, pm::Client& client,
            const Context& context) {
  switch (invocation.command) {
    case Command::kStart:
      return Start(invocation, client, context);
    case Command::kRun:
      return Run(invocation, client, context);
    case Command::kStop:
      return Stop(invocation, client, context);
    case Command::kStatus:
      return Status(invocation, client, context);
    case Command::kList:
      return List(invocation, client, context);
    case Command::kLogs:
      return Logs(invocation, client, context);
    case Command::kWait:
      return Wait(invocation, client, context);
    case Command::kKill:
      return Kill(invocation, client, context);
    case Command::kRm:
      return Rm(invocation, client, context);
    case Command::kPrune:
      return Prune(invocation, client, context);
    case Command::kEvents:
      return Events(invocation, client, context);
    case Command::kHelp:
    case Command::kVersion:
    case Command::kCompletion:
      return PrintAbout(invocation, context);
  }
  return kExitOk;
}

int RunCli(const std::vector<std::string>& args, const GlobalOptions& defaults,
           const Environment& environment, const Context& context,
           const Connector& connect) {
  if (args.empty()) {
    *context.err << HelpText("");
    return kExitUsage;
  }
  std::string command;
  absl::StatusOr<Invocation> invocation =
      ParseInvocation(args, defaults, environment, &command);
  if (!invocation.ok()) {
    *context.err << "pm: " << invocation.status().message() << "\n"
                 << UsageText(command);
    return kExitUsage;
  }
  if (invocation->command == Command::kHelp ||
      invocation->command == Command::kVersion ||
      invocation->command == Command::kCompletion) {
    return PrintAbout(*invocation, context);  // no connection needed
  }
  Context connected = context;
  if (invocation->connection.gateway) {
    connected.gateway = invocation->connection.gateway->target;
  }
  absl::StatusOr<std::unique_ptr<pm::Client>> client =
      connect(invocation->connection);
  if (!client.ok()) {
    return Fail(
        connected,
        absl::StrCat("connecting to ", invocation->connection.Describe()),
        client.status());
  }
  const int code = Execute(*invocation, **client, connected);
  if (context.keep_client != nullptr) *context.keep_client = *std::move(client);
  return code;
}

}  // namespace pm::cli
