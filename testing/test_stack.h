// TestStack: a private pm stack for one test, on a temporary runtime dir
// and state dir (temp_dir()/run, temp_dir()/state),
// brought up by the same code as `make up` (pm::stack::Stack), with a
// Library client connected to it.
//
//   TestStack stack(ServiceFlags{{"supervisor", {"--kill_timeout_ms=500"}}});
//   ASSERT_TRUE(stack.ok());
//   auto started = stack.client().Start(Command({"sleep", "100"}));
//   Output out = ReadOutput(stack.client(), started->id());
//
// By default nothing restarts a service that dies: a test kills and starts
// services itself (stack().KillService, RestartService). With
// OnServiceDeath::kRestart the harness runs the launcher's supervision
// (Stack::Run) on a thread of its own, as `make up` does: a service killed
// with stack().PostSignal comes back by itself, and events() says when
// (KillService and RestartService are refused then). A test that kills a
// service waits for it to be healthy again before it ends, so that the
// harness's last check (every socket removed at stop) holds.
//
//   TestStack stack(TestStackOptions{{}, pm::stack::OnServiceDeath::kRestart});
//   stack.stack().PostSignal("log_store", SIGKILL);
//   stack.events().WaitFor(pm::stack::StackEvent::Kind::kHealthy, 1, "log_store");
#ifndef PM_TESTING_TEST_STACK_H_
#define PM_TESTING_TEST_STACK_H_

#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "client/client.h"
#include "pm/v1/process_manager.pb.h"
#include "stack/event_recorder.h"
#include "stack/stack.h"

namespace pm::testing {

// Extra command-line flags per service name.
using ServiceFlags = std::map<std::string, std::vector<std::string>>;

struct TestStackOptions {
  ServiceFlags extra_args;
  pm::stack::OnServiceDeath on_death = pm::stack::OnServiceDeath::kStopAll;
};

class TestStack {
 public:
  explicit TestStack(ServiceFlags extra_args = {});
  explicit TestStack(TestStackOptions options);
  ~TestStack();

  bool ok() const { return status_.ok(); }
  const absl::Status& status() const { return status_; }
  pm::Client& client() { return *client_; }
  pm::stack::Stack& stack() { return *stack_; }
  const std::string& runtime_dir() const { return runtime_dir_; }
  const std::string& temp_dir() const { return temp_dir_; }
  // The pid of a running service (not with kRestart, where it changes).
  pid_t pid(const std::string& service) const;
  // What the supervision did (kRestart only).
  pm::stack::EventRecorder& events() { return events_; }

 private:
  pm::stack::EventRecorder events_;
  std::thread supervision_;
  absl::Status status_;
  std::string temp_dir_;
  std::string runtime_dir_;
  std::unique_ptr<pm::stack::Stack> stack_;
  std::unique_ptr<pm::Client> client_;
};

// A StartRequest for argv[0] with the rest as args.
pm::v1::StartRequest Command(const std::vector<std::string>& argv);
// `sh -c script`.
pm::v1::StartRequest Shell(const std::string& script);

// Library calls that must succeed: a failure is a test failure (EXPECT) and
// an empty result, so a test goes on to report what else is wrong.
pm::v1::StartResponse MustStart(pm::Client& client,
                                const pm::v1::StartRequest& request);
pm::v1::ProcessStatus MustGetStatus(pm::Client& client, const std::string& id);
// Waits (event: the registry's Wait) for the process to end; 60 s at most.
pm::v1::ProcessStatus MustWait(pm::Client& client, const std::string& id);
pm::v1::StopResponse MustStop(pm::Client& client, const std::string& id,
                              uint32_t grace_ms);
// Follows the output from the start until `needle` has appeared (or the
// output ended) and returns what was seen.
std::string FollowUntil(pm::Client& client, const std::string& id,
                        const std::string& needle);

struct Output {
  std::string all;     // stdout and stderr in arrival order
  std::string out;     // stdout only
  std::string err;     // stderr only
  uint64_t dropped = 0;
  uint64_t next_offset = 0;  // offset after the last chunk
  bool offsets_contiguous = true;
  absl::Status status;
};
// Reads a process's output from the start; with `follow`, to its end.
Output ReadOutput(pm::Client& client, const std::string& id, bool follow = true);
// Reads a stream to its end.
Output Drain(pm::OutputStream& stream);

// A v1 freezer cgroup of the test's own (freezer/pm_test_<pid>): a process
// frozen in it cannot die, not even of SIGKILL, until it is thawed.
//
//   std::unique_ptr<Freezer> freezer = Freezer::Make();
//   if (freezer == nullptr) GTEST_SKIP() << "no writable cgroup v1 freezer here";
//   freezer->Freeze(pid);  // returns once the kernel says FROZEN
class Freezer {
 public:
  // Null when this machine has no writable v1 freezer.
  static std::unique_ptr<Freezer> Make();
  // Thaws it and removes the cgroup.
  ~Freezer();
  // Moves `pid` into the cgroup and freezes it.
  void Freeze(pid_t pid);
  void Thaw();

 private:
  explicit Freezer(std::string dir) : dir_(std::move(dir)) {}
  std::string dir_;
};

}  // namespace pm::testing

#endif  // PM_TESTING_TEST_STACK_H_
