#include "testing/test_stack.h"

#include <stdlib.h>

#include <unistd.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace pm::testing {

TestStack::TestStack(ServiceFlags extra_args)
    : TestStack(TestStackOptions{std::move(extra_args)}) {}

TestStack::TestStack(TestStackOptions test_options) {
  // Under /tmp, not $TEST_TMPDIR: unix socket paths must fit in 108 bytes.
  char tmpl[] = "/tmp/pm_it.XXXXXX";
  if (mkdtemp(tmpl) == nullptr) {
    status_ = absl::InternalError("mkdtemp failed");
    return;
  }
  temp_dir_ = tmpl;
  runtime_dir_ = temp_dir_ + "/run";
  pm::stack::StackOptions options;
  options.runtime_dir = runtime_dir_;
  options.state_dir = temp_dir_ + "/state";
  options.extra_args = std::move(test_options.extra_args);
  options.on_death = test_options.on_death;
  options.observer = events_.Observer();
  absl::StatusOr<std::unique_ptr<pm::stack::Stack>> stack =
      pm::stack::Stack::Start(options);
  if (!stack.ok()) {
    status_ = stack.status();
    return;
  }
  stack_ = *std::move(stack);
  if (options.on_death == pm::stack::OnServiceDeath::kRestart) {
    supervision_ = std::thread([this] {
      absl::StatusOr<pm::stack::Stack::Event> ended = stack_->Run();
      EXPECT_TRUE(ended.ok()) << ended.status();
    });
  }
  absl::StatusOr<std::unique_ptr<pm::Client>> client =
      pm::Client::ConnectLocal(runtime_dir_);
  if (!client.ok()) {
    status_ = client.status();
    return;
  }
  client_ = *std::move(client);
}

TestStack::~TestStack() {
  client_.reset();
  if (supervision_.joinable()) {
    stack_->Quit();
    supervision_.join();
  }
  if (stack_) {
    absl::Status stopped = stack_->StopAll();
    // Every service must shut down cleanly on SIGTERM, every time.
    EXPECT_TRUE(stopped.ok()) << stopped;
    // And remove its socket.
    for (const auto& service : stack_->services()) {
      EXPECT_FALSE(std::filesystem::exists(service.socket)) << service.socket;
    }
  }
  if (!temp_dir_.empty()) {
    std::error_code ignored;
    std::filesystem::remove_all(temp_dir_, ignored);
  }
}

pid_t TestStack::pid(const std::string& service) const {
  for (const auto& s : stack_->services()) {
    if (s.name == service) return s.pid;
  }
  return -1;
}

pm::v1::StartRequest Command(const std::vector<std::string>& argv) {
  pm::v1::StartRequest request;
  request.set_executable(argv.at(0));
  for (size_t i = 1; i < argv.size(); ++i) request.add_args(argv[i]);
  return request;
}

pm::v1::StartRequest Shell(const std::string& script) {
  return Command({"/bin/sh", "-c", script});
}

pm::v1::StartResponse MustStart(pm::Client& client,
                                const pm::v1::StartRequest& request) {
  absl::StatusOr<pm::v1::StartResponse> started = client.Start(request);
  EXPECT_TRUE(started.ok()) << started.status();
  return started.ok() ? *started : pm::v1::StartResponse();
}

pm::v1::ProcessStatus MustGetStatus(pm::Client& client, const std::string& id) {
  absl::StatusOr<pm::v1::ProcessStatus> status = client.GetStatus(id);
  EXPECT_TRUE(status.ok()) << status.status();
  return status.ok() ? *status : pm::v1::ProcessStatus();
}

pm::v1::ProcessStatus MustWait(pm::Client& client, const std::string& id) {
  absl::StatusOr<pm::v1::ProcessStatus> status =
      client.Wait(id, absl::Seconds(60));
  EXPECT_TRUE(status.ok()) << status.status();
  return status.ok() ? *status : pm::v1::ProcessStatus();
}

pm::v1::StopResponse MustStop(pm::Client& client, const std::string& id,
                              uint32_t grace_ms) {
  pm::v1::StopRequest request;
  request.set_id(id);
  request.set_grace_period_ms(grace_ms);
  absl::StatusOr<pm::v1::StopResponse> stopped = client.Stop(request);
  EXPECT_TRUE(stopped.ok()) << stopped.status();
  return stopped.ok() ? *stopped : pm::v1::StopResponse();
}

std::string FollowUntil(pm::Client& client, const std::string& id,
                        const std::string& needle) {
  pm::v1::StreamOutputRequest request;
  request.set_id(id);
  request.set_from_start(true);
  request.set_follow(true);
  std::unique_ptr<pm::OutputStream> stream = client.StreamOutput(request);
  std::string seen;
  pm::v1::OutputChunk chunk;
  while (seen.find(needle) == std::string::npos && stream->Next(&chunk)) {
    seen += chunk.data();
  }
  stream->Cancel();
  stream->Finish().IgnoreError();
  return seen;
}

Output Drain(pm::OutputStream& stream) {
  Output output;
  pm::v1::OutputChunk chunk;
  bool first = true;
  while (stream.Next(&chunk)) {
    output.dropped += chunk.dropped_before();
    if (!first && chunk.offset() != output.next_offset + chunk.dropped_before()) {
      output.offsets_contiguous = false;
    }
    first = false;
    output.next_offset = chunk.offset() + chunk.data().size();
    output.all += chunk.data();
    if (chunk.stream() == pm::v1::OutputChunk::STREAM_STDOUT) {
      output.out += chunk.data();
    } else if (chunk.stream() == pm::v1::OutputChunk::STREAM_STDERR) {
      output.err += chunk.data();
    }
  }
  output.status = stream.Finish();
  return output;
}

Output ReadOutput(pm::Client& client, const std::string& id, bool follow) {
  pm::v1::StreamOutputRequest request;
  request.set_id(id);
  request.set_from_start(true);
  request.set_follow(follow);
  std::unique_ptr<pm::OutputStream> stream = client.StreamOutput(request);
  return Drain(*stream);
}

std::unique_ptr<Freezer> Freezer::Make() {
  const std::string dir = absl::StrCat("/sys/fs/cgroup/freezer/pm_test_", getpid());
  if (!std::filesystem::exists("/sys/fs/cgroup/freezer") || mkdir(dir.c_str(), 0755) != 0) {
    return nullptr;
  }
  return std::unique_ptr<Freezer>(new Freezer(dir));
}

Freezer::~Freezer() {
  Thaw();
  rmdir(dir_.c_str());
}

void Freezer::Freeze(pid_t pid) {
  std::ofstream(dir_ + "/cgroup.procs") << pid;
  std::ofstream(dir_ + "/freezer.state") << "FROZEN";
  // FREEZING until every task of it is frozen.
  std::string state;
  do {
    std::this_thread::yield();
    std::ifstream(dir_ + "/freezer.state") >> state;
  } while (state != "FROZEN");
}

void Freezer::Thaw() { std::ofstream(dir_ + "/freezer.state") << "THAWED"; }

}  // namespace pm::testing
