#include "cli/command_tree.h"

#include <algorithm>
#include <functional>
#include <utility>

#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "cli/limits.h"
#include "common/exit_status.h"
#include "common/names.h"
#include "common/output_request.h"
#include "common/proto_time.h"
#include "common/restart_policy.h"
#include "common/stop_request.h"
#include "common/version.h"

namespace pm::cli {
namespace {

// Help lines end before this column.
constexpr size_t kHelpWidth = 79;

// What the overview's usage says; every command's own is generated.
constexpr char kUsage[] =
    "usage: pm [--runtime_dir DIR] COMMAND [FLAGS] [ARGS...]\n"
    "       pm --gateway HOST:PORT --ca FILE --cert FILE --key FILE --user "
    "NAME\n"
    "          [--password_file FILE] COMMAND [FLAGS] [ARGS...]\n";

// ---------------------------------------------------------------------------
// Typed values. A flag's reader runs once parsing is done, on the last value
// given (or every value, for a repeated flag); a bad value throws, and
// ParseInvocation shows the message as it is.

[[noreturn]] void Refuse(absl::string_view message) {
  throw CLI::ValidationError(std::string(message));
}

template <typename T>
T Checked(absl::StatusOr<T> parsed) {
  if (!parsed.ok()) Refuse(parsed.status().message());
  return *std::move(parsed);
}

using Reader = std::function<void(const std::string&)>;
using RepeatedReader = std::function<void(const std::vector<std::string>&)>;

CLI::Option* Value(CLI::App* app, const std::string& names,
                   const std::string& type, const std::string& help,
                   Reader read) {
  return app->add_option_function<std::string>(names, std::move(read), help)
      ->type_name(type);
}

// A flag that may be given again and again; each value is kept, in order.
CLI::Option* Repeated(CLI::App* app, const std::string& names,
                      const std::string& type, const std::string& help,
                      RepeatedReader read) {
  return app
      ->add_option_function<std::vector<std::string>>(names, std::move(read),
                                                      help)
      ->type_name(type)
      ->allow_extra_args(false)
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
}

CLI::Option* Text(CLI::App* app, const std::string& names,
                  const std::string& type, const std::string& help,
                  absl::optional<std::string>& out) {
  return Value(app, names, type, help,
               [&out](const std::string& value) { out = value; });
}

CLI::Option* Bool(CLI::App* app, const std::string& names,
                  const std::string& help, bool& out) {
  return app->add_flag(names, out, help);
}

// A duration: "10s", "500ms", "1m30s", or a bare number of seconds; not
// negative.
absl::StatusOr<absl::Duration> ParseDurationFlag(absl::string_view flag,
                                                 absl::string_view value) {
  absl::Duration duration;
  int64_t seconds = 0;
  if (absl::SimpleAtoi(value, &seconds)) {
    duration = absl::Seconds(seconds);
  } else if (!absl::ParseDuration(value, &duration)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--", flag, " takes a duration like 500ms, 10s or 1m, "
                     "not \"", value, "\""));
  }
  if (duration < absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--", flag, " ", value, " is out of range"));
  }
  return duration;
}

absl::StatusOr<absl::Duration> ParseGrace(absl::string_view value) {
  absl::StatusOr<absl::Duration> grace = ParseDurationFlag("grace", value);
  if (grace.ok() && *grace > absl::Milliseconds(kMaxGracePeriodMs)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--grace ", value, " is above the maximum, ",
        absl::FormatDuration(absl::Milliseconds(kMaxGracePeriodMs)),
        " (--grace 0 kills at once)"));
  }
  return grace;
}

// --since and --until: a duration ago, or an RFC 3339 time.
absl::StatusOr<absl::Time> ParseWhen(absl::string_view flag,
                                     absl::string_view value) {
  absl::Time time;
  std::string error;
  if (absl::ParseTime(absl::RFC3339_full, value, &time, &error)) return time;
  absl::Duration ago;
  int64_t seconds = 0;
  if (absl::SimpleAtoi(value, &seconds)) {
    ago = absl::Seconds(seconds);
  } else if (!absl::ParseDuration(value, &ago)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--", flag, " takes a duration ago (10m, 1h30m) or an RFC 3339 time "
        "(2026-12-04T08:00:00Z), not \"", value, "\""));
  }
  if (ago < absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--", flag, " ", value, " is in the future"));
  }
  return absl::Now() - ago;
}

absl::StatusOr<TailFlag> ParseTail(absl::string_view value) {
  if (value == "all") return TailFlag{TailFlag::kAll, 0};
  if (value == "now") return TailFlag{TailFlag::kNow, 0};
  uint64_t lines = 0;
  if (!absl::SimpleAtoi(value, &lines) || lines > kMaxTailLines) {
    return absl::InvalidArgumentError(
        absl::StrCat("--tail takes a number of lines (0 to ", kMaxTailLines,
                     "), all or now, not \"", value, "\""));
  }
  return TailFlag{TailFlag::kLines, lines};
}

absl::StatusOr<OutputFormat> ParseOutput(absl::string_view value) {
  if (value == "text") return OutputFormat::kText;
  if (value == "json") return OutputFormat::kJson;
  return absl::InvalidArgumentError(
      absl::StrCat("--output must be text or json, not \"", value, "\""));
}

// A whole number of at least `least`, for --last and --after.
template <typename T>
absl::StatusOr<T> ParseCount(absl::string_view flag, absl::string_view what,
                             absl::string_view value, T least) {
  T number = 0;
  if (!absl::SimpleAtoi(value, &number) || number < least) {
    return absl::InvalidArgumentError(
        absl::StrCat("--", flag, " takes ", what, ", not \"", value, "\""));
  }
  return number;
}

// ---------------------------------------------------------------------------
// The flags several commands share.

constexpr char kReconnectHelp[] =
    "If the output stream is lost (the log_store or the gateway restarts),\n"
    "pm says so on stderr, reconnects and resumes after the last byte it\n"
    "printed: no byte twice; bytes the store lost meanwhile are announced\n"
    "as any gap is. It gives up after --reconnect-timeout (60s).";

// The paragraph of start's and run's help on --memory, --cpus, --pids,
// --io-weight and --isolate.
constexpr char kLimitsHelp[] =
    "Limits (--memory, --cpus, --pids, --io-weight) hold for the process and\n"
    "every process it starts, through its cgroup. A limit the host cannot\n"
    "enforce fails the start, naming what is missing: none is ever ignored.\n"
    "A process past --memory is killed by the OOM killer (exit 137), which\n"
    "`pm status` shows. --isolate gives it namespaces of its own.";

constexpr char kIdHelp[] =
    "the process: its UUID, its name or a unique prefix of its UUID";

void OutputFlag(CLI::App* app, Arguments& a) {
  Value(app, "--output", "json",
        "json prints the reply in protobuf's JSON mapping, for scripts "
        "(default text)",
        [&a](const std::string& v) { a.output = Checked(ParseOutput(v)); });
}

void GraceFlag(CLI::App* app, Arguments& a, absl::string_view what) {
  Value(app, "--grace", "DURATION",
        absl::StrCat("time between SIGTERM and SIGKILL ", what,
                     ": 500ms, 10s, 1m (default 10s; at most 1h; 0: SIGKILL "
                     "to the whole tree at once, no SIGTERM)"),
        [&a](const std::string& v) { a.invocation.grace = Checked(ParseGrace(v)); });
}

void ReconnectFlag(CLI::App* app, Arguments& a) {
  Value(app, "--reconnect-timeout,--reconnect_timeout", "DURATION",
        "when the output stream is lost (the log_store or the gateway "
        "restarts), how long to try to get it back, resuming after the last "
        "byte printed (default 60s; 0: give up at once)",
        [&a](const std::string& v) {
          a.invocation.reconnect_timeout =
              Checked(ParseDurationFlag("reconnect-timeout", v));
        });
}

void IdOperand(CLI::App* app, Arguments& a) {
  app->add_option("ID", a.invocation.id, kIdHelp)->type_name("ID");
}

// start's and run's flags, and the command they run.
void StartFlags(CLI::App* app, Arguments& a) {
  pm::v1::StartRequest& start = a.invocation.start;
  Value(app, "--name", "NAME",
        "a name for the process, unique among the processes on record (1 to "
        "64 of A-Z a-z 0-9 _ . -); every command that takes an ID takes it",
        [&start](const std::string& name) {
          if (absl::Status valid = ValidateName(name); !valid.ok()) {
            Refuse(absl::StrCat("--name: ", valid.message()));
          }
          start.set_name(name);
        });
  Repeated(app, "--label", "KEY=VALUE",
           "a label to select the process by (`pm list --filter "
           "label=KEY=VALUE`; repeatable)",
           [&start](const std::vector<std::string>& labels) {
             for (const std::string& label : labels) {
               const size_t eq = label.find('=');
               if (eq == std::string::npos) {
                 Refuse(absl::StrCat("--label takes KEY=VALUE, not \"", label,
                                     "\""));
               }
               (*start.mutable_labels())[label.substr(0, eq)] =
                   label.substr(eq + 1);
             }
             if (absl::Status valid = ValidateLabels(start.labels());
                 !valid.ok()) {
               Refuse(absl::StrCat("--label: ", valid.message()));
             }
           });
  Value(app, "--node", "NAME",
        "in a cluster: the host to run it on, as its pm's --node names it "
        "(default: the host whose pm takes the call); a host's own sockets "
        "take only its own name: for another host, go through a gateway of "
        "the cluster (--gateway)",
        [&start](const std::string& node) {
          if (absl::Status valid = ValidateNodeName(node); !valid.ok()) {
            Refuse(absl::StrCat("--node: ", valid.message()));
          }
          start.set_node(node);
        });
  Repeated(app, "--env", "K=V",
           "set a variable of the process's environment (repeatable); --env "
           "K copies K from pm's own environment",
           [&a](const std::vector<std::string>& env) { a.env = env; });
  Bool(app, "--inherit-env,--inherit_env",
       "start from pm's own environment (--env then adds or overrides)",
       a.inherit_env);
  Repeated(app, "--env-file,--env_file", "FILE",
           "variables from FILE, one K=V per line (K alone copies it from "
           "pm's environment; blank lines and lines starting with # are "
           "skipped), before --env (repeatable)",
           [&a](const std::vector<std::string>& files) { a.env_files = files; });
  Text(app, "--cwd", "DIR",
       "the working directory (relative to the current one); default: the "
       "current one (through --gateway: /)",
       a.cwd);
  pm::v1::Limits& limits = *start.mutable_limits();
  Value(app, "--memory", "SIZE",
        "memory limit (RAM and swap) of the process and its descendants: "
        "bytes, or K, M, G with binary units (256M, 1.5G); past it the OOM "
        "killer ends a process",
        [&limits](const std::string& v) {
          limits.set_memory_bytes(Checked(ParseByteSize("--memory", v)));
        });
  Value(app, "--cpus", "N",
        absl::StrCat("CPU limit in cores, ", kMinCpus, " to ", kMaxCpus,
                     ": 0.5 is half a core, 2 two cores"),
        [&limits](const std::string& v) { limits.set_cpus(Checked(ParseCpus(v))); });
  Value(app, "--pids", "N",
        "most tasks (processes and threads) alive at once; fork and clone "
        "fail beyond it",
        [&limits](const std::string& v) { limits.set_pids(Checked(ParsePids(v))); });
  Value(app, "--io-weight,--io_weight", "N",
        absl::StrCat("relative IO weight, ", kMinIoWeight, " to ",
                     kMaxIoWeight, " (the kernel's default is 100)"),
        [&limits](const std::string& v) {
          limits.set_io_weight(Checked(ParseIoWeight(v)));
        });
  Repeated(app, "--isolate", "pid,net,mount",
           "namespaces of its own, comma-separated (repeatable): pid (it is "
           "PID 1 and sees only its own processes; implies mount), net (only "
           "a loopback interface), mount (private mounts)",
           [&start](const std::vector<std::string>& lists) {
             for (const std::string& list : lists) {
               if (absl::Status added = AddIsolation(list, start); !added.ok()) {
                 Refuse(added.message());
               }
             }
           });
  pm::v1::RestartPolicy& restart = *start.mutable_restart();
  Value(app, "--restart", "POLICY",
        "start it again when it ends: no (the default), on-failure (a "
        "non-zero exit or a signal that was not pm's stop) or always (any "
        "end but pm's stop); first after 100ms, doubling to 30s",
        [&restart](const std::string& v) {
          if (v == "no" || v == "never") {
            restart.set_policy(pm::v1::RestartPolicy::POLICY_NEVER);
          } else if (v == "on-failure") {
            restart.set_policy(pm::v1::RestartPolicy::POLICY_ON_FAILURE);
          } else if (v == "always") {
            restart.set_policy(pm::v1::RestartPolicy::POLICY_ALWAYS);
          } else {
            Refuse(absl::StrCat("--restart takes no, on-failure or always, not \"", v, "\""));
          }
        });
  Value(app, "--max-restarts,--max_restarts", "N",
        "with --restart: give up after N restarts within --restart-window "
        "(default: no cap)",
        [&restart](const std::string& v) {
          restart.set_max_restarts(
              Checked(ParseCount<uint32_t>("max-restarts", "a number of restarts", v, 0)));
        });
  Value(app, "--restart-window,--restart_window", "DURATION",
        "with --max-restarts: the window they are counted in (default: the "
        "process's whole life)",
        [&restart](const std::string& v) {
          *restart.mutable_window() =
              ToProtoDuration(Checked(ParseDurationFlag("restart-window", v)));
        });
  Value(app, "--restart-delay,--restart_delay", "DURATION",
        "with --restart: the first delay before a restart (default 100ms; 0: "
        "at once), doubled for each one after it",
        [&restart](const std::string& v) {
          *restart.mutable_first_delay() =
              ToProtoDuration(Checked(ParseDurationFlag("restart-delay", v)));
        });
  Value(app, "--restart-max-delay,--restart_max_delay", "DURATION",
        "with --restart: the longest delay (default 30s)",
        [&restart](const std::string& v) {
          *restart.mutable_max_delay() =
              ToProtoDuration(Checked(ParseDurationFlag("restart-max-delay", v)));
        });
  app->add_option("COMMAND", a.command_line,
                  "the executable (a path, or a name looked up on the "
                  "process's PATH) and its arguments")
      ->type_name("-- EXECUTABLE [ARGS...]");
  // The first word that is not a flag begins the command: `pm start sleep
  // 1` and `pm start sh -c 'exit 3'` need no `--`.
  app->positionals_at_end();
}

// ---------------------------------------------------------------------------
// The commands.

struct CommandDoc {
  const char* name;
  Command command;
  const char* summary;
  std::string details;
  std::vector<std::string> examples;
  const char* alias = nullptr;
};

// Which commands a tree declares: every one, or the one a word names.
struct Wanted {
  absl::string_view only;  // empty: every command
  bool Has(const CommandDoc& doc) const {
    return only.empty() || only == doc.name ||
           (doc.alias != nullptr && only == doc.alias);
  }
};

// The command `doc` declares, or null when the tree is not for it.
CLI::App* AddCommand(CLI::App& root, Arguments& a, const Wanted& wanted,
                     const CommandDoc& doc) {
  if (!wanted.Has(doc)) return nullptr;
  CLI::App* app = root.add_subcommand(
      doc.name, absl::StrCat(doc.summary, "\n\n", doc.details));
  if (doc.alias != nullptr) app->alias(doc.alias);
  app->footer(absl::StrJoin(doc.examples, "\n"));
  app->fallthrough();  // the global flags, after the command
  const Command command = doc.command;
  const std::string name = doc.name;
  app->preparse_callback([&a, app, command, name](size_t) {
    a.command = command;
    a.command_name = name;
    a.prints_json = app->get_option_no_throw("--output") != nullptr;
  });
  return app;
}

void DeclareCommands(CLI::App& root, Arguments& a, const Wanted& wanted) {
  if (CLI::App* start = AddCommand(
      root, a, wanted,
      {"start", Command::kStart, "start a process and print its UUID",
       "Starts EXECUTABLE with ARGS and prints the new process's UUID alone "
       "on\n"
       "stdout, so that id=$(pm start -- sleep 100) works. EXECUTABLE is a "
       "path\n"
       "or a name looked up on the process's PATH. Everything after -- (or\n"
       "after the first word that is not a flag) is the command, verbatim:\n"
       "arguments, --env values and --cwd reach the process as the bytes\n"
       "given, UTF-8 or not (caf\\xe9 in Latin-1 stays one byte 0xe9).\n"
       "\n"
       "The process's environment is only what --env gives (and a default\n"
       "PATH) unless --inherit-env copies pm's own first ($PM_PASSWORD "
       "aside).\n"
       "If the process cannot be started, for example because EXECUTABLE "
       "does\n"
       "not exist, nothing is started and the OS error is printed.\n"
       "\n" + std::string(kLimitsHelp),
       {"id=$(pm start --name web --label app=shop -- python3 -m http.server)",
        "pm start --memory 256M --cpus 0.5 --env-file .env -- ./worker"}})) {
    StartFlags(start, a);
    OutputFlag(start, a);
  }

  if (CLI::App* run = AddCommand(
      root, a, wanted,
      {"run", Command::kRun,
       "start a process, print its output, exit with its exit code",
       "Starts a process as `pm start` does, prints its output (stdout and\n"
       "stderr, from the first byte) on stdout as it comes, and exits with "
       "the\n"
       "process's own exit code, or 128+N when signal N killed it, like\n"
       "`docker run`.\n"
       "\n"
       "Ctrl+C stops the process (SIGTERM, then SIGKILL after --grace) and\n"
       "keeps printing its output until it has ended; pm then exits with its\n"
       "code (143 for SIGTERM). A second Ctrl+C leaves at once (exit 130) and\n"
       "lets the stop carry on. If pm itself fails, it prints why and exits "
       "1.\n"
       "\n" + std::string(kReconnectHelp) + "\n\n" + std::string(kLimitsHelp) +
           "\nWhen the OOM killer ended the process or one of its "
           "descendants, pm\n"
           "says so on stderr.",
       {"pm run --env GREETING=hi -- sh -c 'echo \"$GREETING\"; exit 3'",
        "pm run --rm --memory 1G --isolate=pid,net -- make test"}})) {
    StartFlags(run, a);
    Bool(run, "--rm",
         "remove the process's record and output once it has ended",
         a.invocation.remove_after);
    GraceFlag(run, a, "when Ctrl+C stops the process");
    ReconnectFlag(run, a);
  }

  if (CLI::App* stop = AddCommand(
      root, a, wanted,
      {"stop", Command::kStop, "stop a process: SIGTERM, grace period, SIGKILL",
       "Stops a process and its whole process group: SIGTERM, then SIGKILL\n"
       "once the grace period has passed. Prints how the process ended, e.g.\n"
       "\"killed by signal 15 (SIGTERM)\" or \"exited with code 0\" (at once "
       "for\n"
       "a process that had already ended). If it would not stop (a member of\n"
       "its group outlived SIGKILL), prints its status and exits 1.\n"
       "\n"
       "A stop can always be escalated: another `pm stop` with a shorter\n"
       "--grace while one is in progress brings its SIGKILL forward, and\n"
       "--grace 0 kills the whole tree at once; every waiting stop then\n"
       "prints how the process ended.",
       {"pm stop web", "pm stop --grace 0 \"$id\""}})) {
    GraceFlag(stop, a, "of this stop");
    OutputFlag(stop, a);
    IdOperand(stop, a);
  }

  if (CLI::App* status = AddCommand(
      root, a, wanted,
      {"status", Command::kStatus,
       "show a process's state, exit, resources and /proc status",
       "Shows a process's record: state, pid, command, start time, run time,\n"
       "how it ended (exit code or signal, core dump, whether a stop ended "
       "it),\n"
       "its output size, its limits and namespaces, the resource usage of "
       "its\n"
       "whole tree (memory now and at peak, CPU time, tasks, OOM kills, "
       "limit\n"
       "hits, CPU throttling) and, while it runs, its memory, threads and "
       "the\n"
       "fields of /proc/PID/status. A process the OOM killer ended, or one\n"
       "whose descendants it killed, gets an \"OOM:\" line near the top.\n"
       "\n"
       "In a cluster, \"node:\" names the host it is on; while that host is\n"
       "unreachable its state is unknown, with why and since when (\"state\n"
       "reason:\") and the state its host last reported (\"last known:\").",
       {"pm status web", "pm status --output json 3f2a"}})) {
    OutputFlag(status, a);
    IdOperand(status, a);
  }

  if (CLI::App* list = AddCommand(
      root, a, wanted,
      {"list", Command::kList, "list the processes, newest first",
       "Lists the running processes (and those being stopped), newest "
       "first:\n"
       "UUID, name, state, pid, exit code (or the signal that killed it), "
       "start\n"
       "time and command. --all lists every process on record, ended ones "
       "too.\n"
       "\n"
       "Filters (repeatable; a process must match them all, and two state=\n"
       "filters mean either state): state=STATE (running, stopping, exited,\n"
       "signaled, lost, backoff, unknown; implies --all), name=NAME,\n"
       "node=NAME (as --node), label=KEY=VALUE (the label has that value) or\n"
       "label=KEY (the label is set).\n"
       "\n"
       "In a cluster, a NODE column after NAME says which host each process\n"
       "is on, and --node lists one host's alone. A process whose host is\n"
       "unreachable is in state unknown; `pm status` says since when and what\n"
       "its state was.",
       {"pm list --filter label=app=web --filter state=running",
        "pm rm $(pm ps -aq --filter state=exited)",
        "pm list --all --node b"},
       "ps"})) {
    Bool(list, "-a,--all", "every process on record, not only the live ones",
         a.all);
    Repeated(list, "--filter", "FILTER",
             "state=STATE, name=NAME, node=NAME, label=KEY=VALUE or label=KEY "
             "(repeatable)",
             [&a](const std::vector<std::string>& f) { a.filters = f; });
    Value(list, "--node", "NAME",
          "in a cluster: only the processes on this host (as its pm's --node "
          "names it)",
          [&a](const std::string& node) {
            if (absl::Status valid = ValidateNodeName(node); !valid.ok()) {
              Refuse(absl::StrCat("--node: ", valid.message()));
            }
            a.invocation.list.set_node(node);
          });
    Value(list, "-n,--last", "N", "only the N newest",
          [&a](const std::string& v) {
            a.invocation.list.set_limit(Checked(
                ParseCount<uint32_t>("last", "a number above 0", v, 1)));
          });
    Bool(list, "-q,--quiet", "print the UUIDs alone, one per line",
         a.invocation.quiet);
    OutputFlag(list, a);
  }

  if (CLI::App* logs = AddCommand(
      root, a, wanted,
      {"logs", Command::kLogs, "print a process's output (stdout and stderr)",
       "Prints a process's output, stdout and stderr both, as raw bytes on\n"
       "stdout. Without -f: everything retained so far, then exits. With -f:\n"
       "also what the process writes next, until it has ended and its "
       "output\n"
       "is drained, or until Ctrl+C (exit 130).\n"
       "\n"
       "Output over the output store's cap is not retained. It is never\n"
       "skipped silently: a notice \"pm: [N bytes not retained before "
       "offset\n"
       "X]\" goes to stderr where bytes are missing.\n"
       "\n" + std::string(kReconnectHelp),
       {"pm logs -f web", "pm logs --tail 20 --since 10m -t --stderr web"}})) {
    ReconnectFlag(logs, a);
    Bool(logs, "-f,--follow",
         "keep printing new output until the process has ended",
         a.invocation.follow);
    Bool(logs, "--from-start,--from_start",
         "begin at the oldest retained byte (the default)", a.from_start);
    Value(logs, "--tail", "N",
          "only the last N lines (all: everything; now: only what the process "
          "writes from now on, with -f)",
          [&a](const std::string& v) { a.tail = Checked(ParseTail(v)); });
    Value(logs, "--since", "WHEN",
          "only output read since WHEN: a duration ago (10m, 1h30m) or an RFC "
          "3339 time (2026-12-04T08:00:00Z)",
          [&a](const std::string& v) {
            a.invocation.since = Checked(ParseWhen("since", v));
          });
    Value(logs, "--until", "WHEN",
          "only output read until WHEN (as --since); ends a follow there",
          [&a](const std::string& v) {
            a.invocation.until = Checked(ParseWhen("until", v));
          });
    Bool(logs, "-t,--timestamps",
         "begin each line with the time it was read (RFC 3339, UTC)",
         a.invocation.timestamps);
    Bool(logs, "--stdout", "only the process's stdout", a.invocation.stdout_only);
    Bool(logs, "--stderr", "only the process's stderr", a.invocation.stderr_only);
    IdOperand(logs, a);
  }

  if (CLI::App* wait = AddCommand(
      root, a, wanted,
      {"wait", Command::kWait,
       "wait for a process to end, exit with its exit code",
       "Waits until a process has ended, prints how it ended and exits with\n"
       "its exit code, or 128+N when signal N killed it.",
       {"pm wait \"$id\" && echo done"}})) {
    OutputFlag(wait, a);
    IdOperand(wait, a);
  }

  if (CLI::App* kill = AddCommand(
      root, a, wanted,
      {"kill", Command::kKill, "send a signal to a process (default SIGKILL)",
       "Sends SIGNAL to a running process's whole process group, or with\n"
       "--leader to the process pm started alone. SIGNAL is a number or a\n"
       "name as kill(1) takes it: 15, TERM, SIGTERM, HUP, RTMIN+3. The\n"
       "default is KILL, as `docker kill`. Prints the process's UUID. Unlike\n"
       "`pm stop` it sends one signal and returns: nothing waits for the\n"
       "process to end. A process that has ended gets nothing (exit 1).",
       {"pm kill -s HUP web"}})) {
    Value(kill, "-s,--signal", "SIGNAL",
          "the signal, by number or name (default KILL)",
          [&a](const std::string& v) {
            absl::StatusOr<int> sig = ParseSignal(v);
            if (!sig.ok()) Refuse(absl::StrCat("--signal: ", sig.status().message()));
            a.invocation.signal = *sig;
          });
    Bool(kill, "--leader", "only the process pm started, not its process group",
         a.invocation.leader_only);
    OutputFlag(kill, a);
    IdOperand(kill, a);
  }

  if (CLI::App* rm = AddCommand(
      root, a, wanted,
      {"rm", Command::kRm, "remove ended processes: their records and output",
       "Deletes each process's record and its retained output. Its UUID "
       "then\n"
       "answers \"was removed\", and its name is free for a new process. A\n"
       "process that has not ended is refused unless -f, which kills its\n"
       "whole tree at once (SIGKILL) first. Prints each UUID removed; exits "
       "1\n"
       "if any could not be.",
       {"pm rm web", "pm rm -f \"$id\""}})) {
    Bool(rm, "-f,--force", "kill a running process first", a.invocation.force);
    OutputFlag(rm, a);
    rm->add_option("ID", a.invocation.ids, kIdHelp)->type_name("ID...");
  }

  if (CLI::App* prune = AddCommand(
      root, a, wanted,
      {"prune", Command::kPrune, "remove every ended process (records and output)",
       "Removes every process that has ended (exited, signaled or lost), as\n"
       "`pm rm` does for each, and prints their UUIDs and how many. Through\n"
       "a gateway, only the caller's own.",
       {"pm prune"}})) {
    OutputFlag(prune, a);
  }

  if (CLI::App* events = AddCommand(
      root, a, wanted,
      {"events", Command::kEvents,
       "print the processes' state changes as they happen",
       "Prints one line per event until Ctrl+C (exit 130): its sequence\n"
       "number, time, kind (started, stopping, running, exited, signaled,\n"
       "lost, oom, removed), the process's UUID and name, and how it ended.\n"
       "--after N first prints the retained events after sequence N (0: all\n"
       "retained), so a script that saw N resumes with no gap; events no\n"
       "longer retained are announced on stderr. With --output json, each\n"
       "event is a line of JSON.\n"
       "\n"
       "Filters (repeatable, all must match): id=ID (a UUID, name or "
       "prefix),\n"
       "name=NAME, label=KEY=VALUE or label=KEY, kind=KIND (repeatable: "
       "any).\n"
       "\n" + std::string(kReconnectHelp),
       {"pm events --filter label=app=web --filter kind=exited",
        "pm events --after 0 --output json"}})) {
    Repeated(events, "--filter", "FILTER",
             "id=ID, name=NAME, label=KEY[=VALUE] or kind=KIND (repeatable)",
             [&a](const std::vector<std::string>& f) { a.filters = f; });
    Value(events, "--after", "SEQUENCE",
          "begin after this sequence number (0: every retained event)",
          [&a](const std::string& v) {
            a.invocation.watch.set_after_sequence(
                Checked(ParseCount<uint64_t>("after", "a sequence number", v, 0)));
          });
    ReconnectFlag(events, a);
    OutputFlag(events, a);
  }

  if (CLI::App* completion = AddCommand(
      root, a, wanted,
      {"completion", Command::kCompletion, "print a shell completion script",
       "Prints a script that completes pm's commands, their flags and the\n"
       "flags' values (signals, policies, states, files), and the names and\n"
       "UUIDs of the processes on record (from `pm list --all`, with the\n"
       "global flags typed on the line), for SHELL; bash is the one there is.\n"
       "The Debian package installs it; by hand, add the line of the example\n"
       "to ~/.bashrc.",
       {"source <(pm completion bash)"}})) {
    completion
        ->add_option_function<std::string>(
            "SHELL",
            [&a](const std::string& shell) {
              if (shell != "bash") {
                Refuse(absl::StrCat("no script for \"", shell,
                                    "\" (there is one for bash)"));
              }
              a.help_topic = shell;
            },
            "the shell: bash")
        ->required()
        ->type_name("SHELL");
  }

  if (CLI::App* help = AddCommand(
      root, a, wanted,
      {"help", Command::kHelp, "show the help of a command",
       "Shows the help of COMMAND, or the overview of every command.",
       {"pm help logs"}})) {
    help->add_option("COMMAND", a.help_topic, "a command's name")
        ->type_name("[COMMAND]");
  }
}

void DeclareGlobalFlags(CLI::App& root, Arguments& a) {
  Text(&root, "--runtime_dir,--runtime-dir", "DIR",
       "the directory of the services' unix sockets (default: "
       "$PM_RUNTIME_DIR, else $XDG_RUNTIME_DIR/pm, else /tmp/pm-UID)",
       a.runtime_dir);
  Text(&root, "--gateway", "HOST:PORT",
       "go through the pm gateway at HOST:PORT (mutual TLS and a user's "
       "password) instead of the local sockets; needs the flags below",
       a.gateway);
  Text(&root, "--ca", "FILE",
       "with --gateway: the CA certificate (PEM) the gateway's certificate "
       "chains to",
       a.ca_file);
  Text(&root, "--cert", "FILE",
       "with --gateway: this client's certificate (PEM)", a.cert_file);
  Text(&root, "--key", "FILE",
       "with --gateway: this client's private key (PEM)", a.key_file);
  Text(&root, "--user", "NAME", "with --gateway: the user name", a.user);
  Text(&root, "--password_file,--password-file", "FILE",
       "with --gateway: the file whose first line is the password (default: "
       "the password in $PM_PASSWORD; there is no --password flag)",
       a.password_file);
  Value(&root, "--output", "text|json",
        "json prints the reply in protobuf's JSON mapping, for scripts (the "
        "commands whose help shows --output)",
        [&a](const std::string& v) { a.output = Checked(ParseOutput(v)); });
  Bool(&root, "--version", "print pm's version and exit", a.version);
}

// ---------------------------------------------------------------------------
// Help, from the declarations.

// Whether `option` takes a value (not a bool flag).
bool TakesValue(const CLI::Option& option) {
  return option.get_items_expected_max() != 0;
}

// The first long name ("--inherit-env"), with its one-letter alias first.
std::string FlagName(const CLI::Option& option) {
  if (option.get_positional()) return option.get_type_name();
  std::string name;
  if (!option.get_snames().empty()) {
    absl::StrAppend(&name, "-", option.get_snames()[0], ", ");
  }
  if (!option.get_lnames().empty()) {
    absl::StrAppend(&name, "--", option.get_lnames()[0]);
  }
  if (TakesValue(option)) {
    absl::StrAppend(&name, " ", option.get_type_name());
  }
  return name;
}

// The flags of `app` (not the global ones), help last.
std::vector<const CLI::Option*> FlagsOf(const CLI::App& app) {
  std::vector<const CLI::Option*> flags;
  for (const CLI::Option* option : app.get_options()) {
    if (option->get_positional() || option == app.get_help_ptr()) continue;
    flags.push_back(option);
  }
  if (app.get_help_ptr() != nullptr) flags.push_back(app.get_help_ptr());
  return flags;
}

std::vector<const CLI::Option*> OperandsOf(const CLI::App& app) {
  std::vector<const CLI::Option*> operands;
  for (const CLI::Option* option : app.get_options()) {
    if (option->get_positional()) operands.push_back(option);
  }
  return operands;
}

// `words` joined by spaces and wrapped before kHelpWidth, the lines after
// the first indented to `column`, where the first begins.
std::string Wrap(const std::vector<std::string>& words, size_t column) {
  std::string out;
  size_t used = column;
  bool first = true;
  for (absl::string_view word : words) {
    if (!first && used + 1 + word.size() > kHelpWidth) {
      absl::StrAppend(&out, "\n", std::string(column, ' '));
      used = column;
      first = true;
    }
    absl::StrAppend(&out, first ? "" : " ", word);
    used += (first ? 0 : 1) + word.size();
    first = false;
  }
  return out;
}

std::string Wrap(absl::string_view text, size_t column) {
  const std::vector<std::string> words =
      absl::StrSplit(text, ' ', absl::SkipEmpty());
  return Wrap(words, column);
}

// "  -f, --follow      keep printing ..." for each, their help in one column.
std::string FlagLines(const std::vector<const CLI::Option*>& options) {
  size_t width = 0;
  for (const CLI::Option* option : options) {
    width = std::max(width, FlagName(*option).size());
  }
  const size_t column = 2 + width + 2;
  std::string text;
  for (const CLI::Option* option : options) {
    const std::string name = FlagName(*option);
    absl::StrAppend(&text, "  ", name, std::string(width - name.size() + 2, ' '),
                    Wrap(option->get_description(), column), "\n");
  }
  return text;
}

// "[-f|--follow]", "[--tail N]", "ID": the words of the usage line.
std::vector<std::string> Synopsis(const CLI::App& app) {
  std::vector<std::string> words;
  for (const CLI::Option* option : FlagsOf(app)) {
    if (option == app.get_help_ptr()) continue;
    std::string word = "[";
    if (!option->get_snames().empty()) {
      absl::StrAppend(&word, "-", option->get_snames()[0], "|");
    }
    absl::StrAppend(&word, "--", option->get_lnames()[0]);
    if (TakesValue(*option)) {
      absl::StrAppend(&word, " ", option->get_type_name());
    }
    absl::StrAppend(&word, "]");
    if (option->get_multi_option_policy() == CLI::MultiOptionPolicy::TakeAll) {
      absl::StrAppend(&word, "...");
    }
    words.push_back(std::move(word));
  }
  for (const CLI::Option* operand : OperandsOf(app)) {
    words.push_back(operand->get_type_name());
  }
  return words;
}

std::string UsageLine(const CLI::App& app) {
  const std::string head = absl::StrCat("usage: pm ", app.get_name(), " ");
  return absl::StrCat(head, Wrap(Synopsis(app), head.size()), "\n");
}

std::string Summary(const CLI::App& app) {
  const std::string& description = app.get_description();
  return description.substr(0, description.find("\n\n"));
}

std::string Details(const CLI::App& app) {
  const std::string& description = app.get_description();
  const size_t blank = description.find("\n\n");
  return blank == std::string::npos ? "" : description.substr(blank + 2);
}

std::string Examples(const CLI::App& app) {
  std::string text;
  for (absl::string_view line :
       absl::StrSplit(app.get_footer(), '\n', absl::SkipEmpty())) {
    absl::StrAppend(&text, "  ", line, "\n");
  }
  return text;
}

std::string CommandHelp(const CLI::App& app) {
  std::string aliases;
  if (!app.get_aliases().empty()) {
    aliases = absl::StrCat(" ", absl::StrJoin(app.get_aliases(), ", "));
  }
  std::string operands;
  for (const CLI::Option* operand : OperandsOf(app)) {
    operands += FlagLines({operand});
  }
  return absl::StrCat(
      UsageLine(app), "\n", Details(app), aliases.empty() ? "" : "\n\nAlias:",
      aliases,
      "\n\nFlags:\n", FlagLines(FlagsOf(app)),
      operands.empty() ? "" : "\nArguments:\n", operands,
      "\nThe global flags (--runtime_dir, or --gateway and its --ca, --cert,\n"
      "--key, --user, --password_file) go before or after the command; see\n"
      "'pm help'.\n\nExamples:\n",
      Examples(app));
}

std::string Overview(const CLI::App& root) {
  std::string commands;
  size_t width = 0;
  for (const CLI::App* command : root.get_subcommands({})) {
    width = std::max(width, command->get_name().size());
  }
  for (const CLI::App* command : root.get_subcommands({})) {
    std::string summary = Summary(*command);
    if (!command->get_aliases().empty()) {
      absl::StrAppend(&summary, " (alias: ",
                      absl::StrJoin(command->get_aliases(), ", "), ")");
    }
    absl::StrAppend(&commands, "  ", command->get_name(),
                    std::string(width - command->get_name().size() + 2, ' '),
                    Wrap(summary, width + 4), "\n");
  }
  return absl::StrCat(root.get_description(), "\n\n", kUsage,
                      "\nCommands:\n", commands,
                      "\nGlobal flags (before or after the command):\n",
                      FlagLines(FlagsOf(root)), "\n", root.get_footer());
}

const CLI::App* FindCommand(const CLI::App& root, absl::string_view word) {
  for (const CLI::App* command : root.get_subcommands({})) {
    if (command->check_name(std::string(word))) return command;
  }
  return nullptr;
}

// A tree for help alone, its values bound to nothing that is read: of the
// command `only` names, or the whole tree ("" or a word that names none).
struct HelpTree {
  explicit HelpTree(absl::string_view only)
      : root(MakeCommandTree(arguments, only)) {}
  Arguments arguments;
  std::unique_ptr<CLI::App> root;
};

}  // namespace

std::unique_ptr<CLI::App> MakeCommandTree(Arguments& arguments,
                                          absl::string_view only) {
  auto root = std::make_unique<CLI::App>(
      "pm starts, stops, inspects and reads the output of Linux processes,\n"
      "each named by a UUID. It talks to the local pm services over the unix\n"
      "sockets in the runtime dir (start them with `make up`), or with\n"
      "--gateway to a pm gateway over mutual TLS, as a user with a password.",
      "pm");
  root->footer(
      "Environment:\n"
      "  PM_PASSWORD     the password for --gateway, when --password_file is\n"
      "                  not given (pm does not pass it on with "
      "--inherit-env)\n"
      "  PM_RUNTIME_DIR  the default of --runtime_dir\n"
      "\n"
      "Exit codes: 0 success, 1 a failed operation, 2 bad usage, 130 Ctrl+C;\n"
      "run and wait exit with the process's code (128+N when signal N killed\n"
      "it).\n"
      "\n"
      "Examples:\n"
      "  id=$(pm start -- sleep 100)\n"
      "  pm logs -f \"$id\"\n"
      "  pm stop --grace 2s \"$id\"\n"
      "  pm list\n"
      "  pm --gateway=localhost:8080 --ca certs/dev/ca.pem \\\n"
      "     --cert certs/dev/client.pem --key certs/dev/client.key \\\n"
      "     --user demo --password_file certs/dev/demo.password list\n"
      "\n"
      "Run 'pm help COMMAND' or 'pm COMMAND --help' for a command's flags.\n");
  root->set_help_flag("-h,--help", "show this help");
  // As gflags and getopt: a flag given twice means its last value.
  root->option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  // One command per line; a second command word is an argument.
  root->require_subcommand(0, 1);
  DeclareGlobalFlags(*root, arguments);
  DeclareCommands(*root, arguments, Wanted{only});
  if (!only.empty() && root->get_subcommands({}).empty()) {
    // `only` names no command: the whole tree, for its error.
    DeclareCommands(*root, arguments, Wanted{});
  }
  return root;
}

absl::optional<std::string> CommandName(absl::string_view word) {
  if (word.empty()) return absl::nullopt;
  const HelpTree tree(word);
  const CLI::App* command = FindCommand(*tree.root, word);
  if (command == nullptr) return absl::nullopt;
  return command->get_name();
}

std::string UsageText(absl::string_view command) {
  const HelpTree tree(command);
  const CLI::App* app = FindCommand(*tree.root, command);
  if (app == nullptr) {
    return absl::StrCat(kUsage, "\nRun 'pm help' for the commands.\n");
  }
  return absl::StrCat(UsageLine(*app), "Run 'pm ", app->get_name(),
                      " --help' for details.\n");
}

std::string HelpText(absl::string_view command) {
  const HelpTree tree(command);
  const CLI::App* app = FindCommand(*tree.root, command);
  return app == nullptr ? Overview(*tree.root) : CommandHelp(*app);
}

std::string CommandListMarkdown() {
  std::string table =
      "| command | what it does |\n"
      "|---|---|\n";
  const HelpTree tree("");
  for (const CLI::App* command : tree.root->get_subcommands({})) {
    std::string name = command->get_name();  // and its aliases
    for (const std::string& alias : command->get_aliases()) {
      absl::StrAppend(&name, "`, `pm ", alias);
    }
    absl::StrAppend(&table, "| `pm ", name, "` | ", Summary(*command), " |\n");
  }
  return table;
}

namespace {

// The words of a proto enum's values, lower case, without its prefix and
// UNSPECIFIED: "running", "exited", ... for STATE_.
std::vector<std::string> EnumWords(const google::protobuf::EnumDescriptor* e,
                                   absl::string_view prefix) {
  std::vector<std::string> words;
  for (int i = 0; i < e->value_count(); ++i) {
    absl::string_view name = e->value(i)->name();
    if (!absl::ConsumePrefix(&name, prefix) || name == "UNSPECIFIED") continue;
    words.push_back(absl::AsciiStrToLower(name));
  }
  return words;
}

// Every name of `option` as typed: "-s", "--signal".
std::vector<std::string> TypedNames(const CLI::Option& option) {
  std::vector<std::string> names;
  for (const std::string& s : option.get_snames()) names.push_back("-" + s);
  for (const std::string& l : option.get_lnames()) names.push_back("--" + l);
  return names;
}

// The shell code that sets COMPREPLY to the values of a flag or operand of
// `type` (its type name), completing "$cur"; empty when its values are
// free text.
std::string ValuesOf(absl::string_view command, absl::string_view type) {
  auto words = [](const std::vector<std::string>& w) {
    return absl::StrCat("COMPREPLY=($(compgen -W '", absl::StrJoin(w, " "),
                        "' -- \"$cur\"))");
  };
  if (type == "FILE") return "COMPREPLY=($(compgen -f -- \"$cur\"))";
  if (type == "DIR") return "COMPREPLY=($(compgen -d -- \"$cur\"))";
  if (type == "SIGNAL") {
    // As kill(1) takes them: HUP or SIGHUP.
    return "COMPREPLY=($(compgen -W \"$(compgen -A signal; compgen -A signal | "
           "sed 's/^SIG//')\" -- \"$cur\"))";
  }
  if (type == "POLICY") return words({"no", "on-failure", "always"});
  if (type == "json" || type == "text|json") return words({"text", "json"});
  if (type == "pid,net,mount") return words({"pid", "net", "mount"});
  if (type == "ID" || type == "ID...") {
    return "COMPREPLY=($(compgen -W \"$(_pm_processes \"${pm[@]}\")\" -- \"$cur\"))";
  }
  if (type == "[COMMAND]") return "COMPREPLY=($(compgen -W \"$_pm_commands\" -- \"$cur\"))";
  if (type == "SHELL") return words({"bash"});
  if (type == "-- EXECUTABLE [ARGS...]") {
    return "COMPREPLY=($(compgen -c -- \"$cur\" | sort -u))";
  }
  if (type == "FILTER" && command == "list") {
    std::vector<std::string> filters;
    for (const std::string& state :
         EnumWords(pm::v1::ProcessStatus::State_descriptor(), "STATE_")) {
      filters.push_back("state=" + state);
    }
    filters.insert(filters.end(), {"name=", "node=", "label="});
    return words(filters);
  }
  if (type == "FILTER" && command == "events") {
    std::vector<std::string> filters;
    for (const std::string& kind :
         EnumWords(pm::v1::Event::Kind_descriptor(), "KIND_")) {
      filters.push_back("kind=" + kind);
    }
    filters.insert(filters.end(), {"id=", "name=", "label="});
    return words(filters);
  }
  return "";
}

// The script's fixed part: finds the command word and the value flag before
// the cursor in the line as typed (COMP_LINE split on blanks: bash's own
// words split "--output=json" and "HOST:PORT" apart), then asks the
// generated functions.
constexpr absl::string_view kCompletionBody = R"(
# The names and UUIDs on record, from the pm being completed with the
# global flags of the line: "$@" is that pm and its flags.
_pm_processes() {
  "$@" list --all 2>/dev/null | awk 'NR > 1 { print $1; if ($2 != "-") print $2 }'
}

_pm() {
  local line=${COMP_LINE:0:COMP_POINT}
  local -a words
  read -ra words <<< "$line"
  [[ $line =~ [[:space:]]$ || ${#words[@]} -eq 0 ]] && words+=("")
  local last=$((${#words[@]} - 1))
  local cur=${words[last]} flag=""
  local -a pm=("${words[0]}")
  local command="" operands=0 dashdash=0 i word
  for ((i = 1; i < last; i++)); do
    word=${words[i]}
    if ((dashdash)); then
      ((operands++))
      continue
    fi
    if [[ $word == -- ]]; then
      dashdash=1
      continue
    fi
    if [[ $word == -?* ]]; then
      if [[ $word != *=* ]] && _pm_takes_value "$command" "$word"; then
        if _pm_takes_value "" "$word"; then pm+=("$word" "${words[i+1]}"); fi
        ((i++))
        [[ $i -eq $last ]] && flag=$word
      elif [[ $word == *=* ]] && _pm_takes_value "" "${word%%=*}"; then
        pm+=("$word")
      fi
      continue
    fi
    if [[ -z $command ]]; then
      command=$word
    else
      ((operands++))
      # start and run: the first word that is not a flag begins the command.
      [[ $command == start || $command == run ]] && dashdash=1
    fi
  done
  COMPREPLY=()
  if [[ -n $flag ]]; then
    _pm_value "$command" "$flag"
    return
  fi
  if [[ $cur == --*=* && $dashdash -eq 0 ]]; then
    flag=${cur%%=*}
    cur=${cur#*=}
    _pm_value "$command" "$flag"
    return
  fi
  if [[ -z $command ]]; then
    if [[ $cur == -* ]]; then
      COMPREPLY=($(compgen -W "$_pm_global_flags --help" -- "$cur"))
    else
      COMPREPLY=($(compgen -W "$_pm_commands" -- "$cur"))
    fi
    return
  fi
  if [[ $cur == -* && $dashdash -eq 0 ]]; then
    COMPREPLY=($(compgen -W "$(_pm_flags "$command") $_pm_global_flags --help" -- "$cur"))
    return
  fi
  if ((dashdash)) && [[ $command == start || $command == run ]]; then
    if ((operands == 0)); then
      COMPREPLY=($(compgen -c -- "$cur" | sort -u))
    else
      COMPREPLY=($(compgen -f -- "$cur"))
    fi
    return
  fi
  _pm_operand "$command" "$operands"
}

complete -F _pm pm
)";

}  // namespace

std::string BashCompletion() {
  const HelpTree tree("");
  const CLI::App& root = *tree.root;
  std::string script = absl::StrCat(
      "# bash completion for pm, made by `pm completion bash` (",
      pm::VersionLine(), ").\n# Load it with: source <(pm completion bash)\n\n");
  std::vector<std::string> commands;
  for (const CLI::App* command : root.get_subcommands({})) {
    commands.push_back(command->get_name());
    for (const std::string& alias : command->get_aliases()) commands.push_back(alias);
  }
  std::vector<std::string> globals;
  // "command|" (or "|" for a global flag) -> the case arm of its values.
  std::vector<std::pair<std::string, std::string>> value_arms;
  std::vector<std::string> value_patterns;  // "command:--flag"
  for (const CLI::Option* option : root.get_options()) {
    if (option->get_lnames().empty() && option->get_snames().empty()) continue;
    for (const std::string& name : TypedNames(*option)) {
      if (name == "-h" || name == "--help") continue;
      globals.push_back(name);
      if (TakesValue(*option)) {
        value_patterns.push_back(absl::StrCat("*:", name));
        value_arms.push_back({absl::StrCat("*:", name),
                              ValuesOf("", option->get_type_name())});
      }
    }
  }
  absl::StrAppend(&script, "_pm_commands='", absl::StrJoin(commands, " "), "'\n",
                  "_pm_global_flags='", absl::StrJoin(globals, " "), "'\n\n");
  std::string flags_fn = "# The flags of command $1.\n_pm_flags() {\n  case $1 in\n";
  std::string operand_fn =
      "# Completes operand $2 (0 for the first) of command $1.\n"
      "_pm_operand() {\n  case $1 in\n";
  for (const CLI::App* command : root.get_subcommands({})) {
    std::vector<std::string> names = {command->get_name()};
    for (const std::string& alias : command->get_aliases()) names.push_back(alias);
    const std::string arm = absl::StrJoin(names, "|");
    std::vector<std::string> flags;
    std::string operand;
    for (const CLI::Option* option : command->get_options()) {
      if (option->get_positional()) {
        operand = ValuesOf(command->get_name(), option->get_type_name());
        continue;
      }
      for (const std::string& name : TypedNames(*option)) {
        if (name == "-h" || name == "--help") continue;
        flags.push_back(name);
        if (TakesValue(*option)) {
          for (const std::string& n : names) {
            value_patterns.push_back(absl::StrCat(n, ":", name));
            value_arms.push_back({absl::StrCat(n, ":", name),
                                  ValuesOf(command->get_name(), option->get_type_name())});
          }
        }
      }
    }
    absl::StrAppend(&flags_fn, "    ", arm, ") echo '", absl::StrJoin(flags, " "),
                    "' ;;\n");
    if (!operand.empty()) {
      // Commands of one operand complete only the first.
      const bool many = command->get_name() == "rm" || command->get_name() == "start" ||
                        command->get_name() == "run";
      absl::StrAppend(&operand_fn, "    ", arm, ") ",
                      many ? "" : "(($2 == 0)) && ", operand, " ;;\n");
    }
  }
  absl::StrAppend(&flags_fn, "  esac\n}\n\n");
  absl::StrAppend(&operand_fn, "  esac\n}\n\n");
  std::string takes =
      "# Whether flag $2 of command $1 (\"\" for the global ones) takes a value.\n"
      "_pm_takes_value() {\n  case $1:$2 in\n    ";
  absl::StrAppend(&takes, absl::StrJoin(value_patterns, "|"),
                  ") return 0 ;;\n  esac\n  return 1\n}\n\n");
  std::string value_fn =
      "# Completes the value of flag $2 of command $1.\n_pm_value() {\n  case $1:$2 in\n";
  for (const auto& [pattern, code] : value_arms) {
    absl::StrAppend(&value_fn, "    ", pattern, ") ", code.empty() ? ":" : code, " ;;\n");
  }
  absl::StrAppend(&value_fn, "  esac\n}\n");
  absl::StrAppend(&script, flags_fn, operand_fn, takes, value_fn, kCompletionBody);
  return script;
}

}  // namespace pm::cli
