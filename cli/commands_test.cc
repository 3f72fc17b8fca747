#include "cli/commands.h"

#include <signal.h>

#include <condition_variable>
#include <mutex>
#include <sstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "common/proto_time.h"

namespace pm::cli {
namespace {

using ::pm::v1::OutputChunk;
using ::pm::v1::ProcessStatus;
using ::testing::_;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;
using ::testing::Return;
using ::testing::StartsWith;

constexpr char kId[] = "0b5e7c4a-8a3f-4a57-9d5e-1f2a3b4c5d6e";

class MockClient : public pm::Client {
 public:
  MOCK_METHOD(absl::StatusOr<pm::v1::StartResponse>, Start,
              (const pm::v1::StartRequest&), (override));
  MOCK_METHOD(absl::StatusOr<pm::v1::StopResponse>, Stop,
              (const pm::v1::StopRequest&), (override));
  MOCK_METHOD(absl::StatusOr<ProcessStatus>, GetStatus, (absl::string_view),
              (override));
  MOCK_METHOD(absl::StatusOr<pm::v1::ListResponse>, List, (), (override));
  MOCK_METHOD(absl::StatusOr<pm::v1::ListResponse>, List,
              (const pm::v1::ListRequest&), (override));
  MOCK_METHOD(std::unique_ptr<pm::OutputStream>, StreamOutput,
              (const pm::v1::StreamOutputRequest&), (override));
  MOCK_METHOD(absl::StatusOr<ProcessStatus>, Wait,
              (absl::string_view, absl::Duration), (override));
};

// The script of a fake output stream, shared by the test and the stream
// (which the command owns and destroys when it is done): scripted chunks,
// then either the end with `end`, or (when `hold`) a wait like a following
// stream's until End() or Cancel().
class StreamScript {
 public:
  StreamScript(std::vector<OutputChunk> chunks, absl::Status end, bool hold)
      : chunks_(std::move(chunks)), end_(std::move(end)), hold_(hold) {}

  bool Next(OutputChunk* chunk) {
    std::unique_lock<std::mutex> lock(mu_);
    if (next_ < chunks_.size()) {
      *chunk = chunks_[next_++];
      return true;
    }
    held_ = true;
    changed_.notify_all();
    changed_.wait(lock, [this] { return !hold_ || cancelled_; });
    return false;
  }
  void Cancel() {
    std::lock_guard<std::mutex> lock(mu_);
    cancelled_ = true;
    changed_.notify_all();
  }
  absl::Status Finish() {
    std::lock_guard<std::mutex> lock(mu_);
    return cancelled_ ? absl::CancelledError("cancelled") : end_;
  }

  // Waits until the reader has read every chunk and waits for more.
  void WaitUntilHeld() {
    std::unique_lock<std::mutex> lock(mu_);
    changed_.wait(lock, [this] { return held_; });
  }
  // The process ended: Next() returns false, Finish() `end`.
  void End() {
    std::lock_guard<std::mutex> lock(mu_);
    hold_ = false;
    changed_.notify_all();
  }
  bool cancelled() {
    std::lock_guard<std::mutex> lock(mu_);
    return cancelled_;
  }

 private:
  std::mutex mu_;
  std::condition_variable changed_;
  std::vector<OutputChunk> chunks_;
  size_t next_ = 0;
  absl::Status end_;
  bool hold_;
  bool held_ = false;
  bool cancelled_ = false;
};

class FakeStream : public pm::OutputStream {
 public:
  explicit FakeStream(std::shared_ptr<StreamScript> script)
      : script_(std::move(script)) {}
  bool Next(OutputChunk* chunk) override { return script_->Next(chunk); }
  void WaitUntilAttached() override {}
  void Cancel() override { script_->Cancel(); }
  absl::Status Finish() override { return script_->Finish(); }

 private:
  std::shared_ptr<StreamScript> script_;
};

OutputChunk Chunk(std::string data, uint64_t offset, uint64_t dropped = 0,
                  OutputChunk::Stream stream = OutputChunk::STREAM_STDOUT) {
  OutputChunk chunk;
  chunk.set_data(std::move(data));
  chunk.set_offset(offset);
  chunk.set_dropped_before(dropped);
  chunk.set_stream(stream);
  return chunk;
}

ProcessStatus Ended(ProcessStatus::State state, int code_or_signal) {
  ProcessStatus status;
  status.set_id(kId);
  status.set_state(state);
  status.set_executable("sh");
  if (state == ProcessStatus::STATE_EXITED)
    status.set_exit_code(code_or_signal);
  if (state == ProcessStatus::STATE_SIGNALED) status.set_signal(code_or_signal);
  status.set_termination(ProcessStatus::TERMINATION_BY_ITSELF);
  return status;
}

class CommandsTest : public ::testing::Test {
 protected:
  // Runs `pm <args>` against the mock client.
  int Pm(const std::vector<std::string>& args,
         std::vector<std::string> environment = {"HOME=/h"}) {
    GlobalOptions defaults;
    defaults.runtime_dir = "/run/pm-test";
    Context context{&out_, &err_, absl::UTCTimeZone(), &interrupts_};
    return RunCli(
        args, defaults, Environment{std::move(environment), "/h"}, context,
        [this](const Connection& connection)
            -> absl::StatusOr<std::unique_ptr<pm::Client>> {
          connected_to_ = connection.runtime_dir;
          connection_ = connection;
          return std::unique_ptr<pm::Client>(new ForwardingClient(client_));
        });
  }

  // Runs `pm <args>` on a thread of its own, for the commands that block.
  std::thread PmInBackground(std::vector<std::string> args) {
    return std::thread([this, args] { code_ = Pm(args); });
  }

  // Expects one StreamOutput call, answered by a stream playing the script.
  std::shared_ptr<StreamScript> ExpectStream(
      std::vector<OutputChunk> chunks, absl::Status end, bool hold,
      pm::v1::StreamOutputRequest* request) {
    auto script =
        std::make_shared<StreamScript>(std::move(chunks), std::move(end), hold);
    EXPECT_CALL(client_, StreamOutput(_))
        .WillOnce([request, script](const pm::v1::StreamOutputRequest& r)
                      -> std::unique_ptr<pm::OutputStream> {
          *request = r;
          return std::make_unique<FakeStream>(script);
        });
    return script;
  }

  // A pm::Client that forwards to the mock, which the test owns.
  class ForwardingClient : public pm::Client {
   public:
    explicit ForwardingClient(pm::Client& to) : to_(to) {}
    absl::StatusOr<pm::v1::StartResponse> Start(
        const pm::v1::StartRequest& r) override {
      return to_.Start(r);
    }
    absl::StatusOr<pm::v1::StopResponse> Stop(
        const pm::v1::StopRequest& r) override {
      return to_.Stop(r);
    }
    absl::StatusOr<ProcessStatus> GetStatus(absl::string_view id) override {
      return to_.GetStatus(id);
    }
    absl::StatusOr<pm::v1::ListResponse> List() override { return to_.List(); }
    absl::StatusOr<pm::v1::ListResponse> List(const pm::v1::ListRequest& r) override {
      return to_.List(r);
    }
    std::unique_ptr<pm::OutputStream> StreamOutput(
        const pm::v1::StreamOutputRequest& r) override {
      return to_.StreamOutput(r);
    }
    absl::StatusOr<ProcessStatus> Wait(absl::string_view id,
                                       absl::Duration timeout) override {
      return to_.Wait(id, timeout);
    }

   private:
    pm::Client& to_;
  };

  ::testing::StrictMock<MockClient> client_;
  std::ostringstream out_;
  std::ostringstream err_;
  Interrupts interrupts_;
  std::string connected_to_;
  Connection connection_;
  int code_ = -1;
};

TEST_F(CommandsTest, StartPrintsTheUuidAlone) {
  pm::v1::StartRequest sent;
  pm::v1::StartResponse response;
  response.set_id(kId);
  EXPECT_CALL(client_, Start(_)).WillOnce([&](const pm::v1::StartRequest& r) {
    sent = r;
    return response;
  });
  EXPECT_EQ(Pm({"start", "--env", "A=1", "--env", "B=2", "--", "sleep", "100"}),
            kExitOk);
  EXPECT_EQ(out_.str(), absl::StrCat(kId, "\n"));
  EXPECT_THAT(err_.str(), IsEmpty());
  EXPECT_EQ(connected_to_, "/run/pm-test");
  EXPECT_EQ(sent.executable(), "sleep");
  EXPECT_EQ(sent.env().size(), 2);
}

TEST_F(CommandsTest, StartAndListSendTheNodeGiven) {
  pm::v1::StartRequest started;
  pm::v1::StartResponse response;
  response.set_id(kId);
  EXPECT_CALL(client_, Start(_)).WillOnce([&](const pm::v1::StartRequest& r) {
    started = r;
    return response;
  });
  EXPECT_EQ(Pm({"start", "--node", "b", "--", "sleep", "100"}), kExitOk);
  EXPECT_EQ(started.node(), "b");

  pm::v1::ListRequest listed;
  EXPECT_CALL(client_, List(_)).WillOnce([&](const pm::v1::ListRequest& r) {
    listed = r;
    return pm::v1::ListResponse();
  });
  EXPECT_EQ(Pm({"list", "--node", "b"}), kExitOk);
  EXPECT_EQ(listed.node(), "b");
}

TEST_F(CommandsTest, StartJson) {
  pm::v1::StartResponse response;
  response.set_id(kId);
  EXPECT_CALL(client_, Start(_)).WillOnce(Return(response));
  EXPECT_EQ(Pm({"start", "--output=json", "--", "true"}), kExitOk);
  EXPECT_THAT(out_.str(), StartsWith(absl::StrCat("{\"id\":\"", kId, "\"")));
}

TEST_F(CommandsTest, StartFailureIsOneLineWithTheOsError) {
  EXPECT_CALL(client_, Start(_))
      .WillOnce(Return(absl::FailedPreconditionError(
          "execve(\"/nope\"): No such file or directory (ENOENT)")));
  EXPECT_EQ(Pm({"start", "--", "/nope"}), kExitFailed);
  EXPECT_THAT(out_.str(), IsEmpty());
  EXPECT_EQ(err_.str(),
            "pm: start /nope: execve(\"/nope\"): No such file or directory "
            "(ENOENT)\n");
}

TEST_F(CommandsTest, AStartOfAnExecutableInBytesNamesItReadably) {
  EXPECT_CALL(client_, Start(_))
      .WillOnce([](const pm::v1::StartRequest& request)
                    -> absl::StatusOr<pm::v1::StartResponse> {
        EXPECT_EQ(request.executable_bytes(), "/opt/caf\xe9");
        // A message holding the raw bytes, as a service other than pm's
        // own might send it.
        return absl::FailedPreconditionError("cannot run /opt/caf\xe9");
      });
  EXPECT_EQ(Pm({"start", "--", "/opt/caf\xe9"}), kExitFailed);
  EXPECT_EQ(err_.str(),
            "pm: start /opt/caf\\xe9: cannot run /opt/caf\\xe9\n");
}

TEST_F(CommandsTest, UnavailableStackGetsAHint) {
  EXPECT_CALL(client_, List(_))
      .WillOnce(Return(absl::UnavailableError(
          "registry is unavailable at /run/pm-test/registry.sock: failed")));
  EXPECT_EQ(Pm({"list"}), kExitFailed);
  EXPECT_EQ(err_.str(),
            "pm: list: registry is unavailable at /run/pm-test/registry.sock: "
            "failed (is the stack up? try 'make up')\n");
}

TEST_F(CommandsTest, StopPrintsTheFinalState) {
  pm::v1::StopRequest sent;
  pm::v1::StopResponse response;
  response.set_stopped(true);
  *response.mutable_status() = Ended(ProcessStatus::STATE_SIGNALED, 15);
  EXPECT_CALL(client_, Stop(_)).WillOnce([&](const pm::v1::StopRequest& r) {
    sent = r;
    return response;
  });
  EXPECT_EQ(Pm({"stop", "--grace", "2s", kId}), kExitOk);
  EXPECT_EQ(out_.str(), "killed by signal 15 (SIGTERM)\n");
  EXPECT_EQ(sent.id(), kId);
  EXPECT_EQ(sent.grace_period_ms(), 2000u);
}

TEST_F(CommandsTest, StopGraceDefaultsAndZero) {
  std::vector<pm::v1::StopRequest> sent;
  pm::v1::StopResponse response;
  response.set_stopped(true);
  *response.mutable_status() = Ended(ProcessStatus::STATE_EXITED, 0);
  EXPECT_CALL(client_, Stop(_))
      .Times(4)
      .WillRepeatedly([&](const pm::v1::StopRequest& r) {
        sent.push_back(r);
        return response;
      });
  EXPECT_EQ(Pm({"stop", kId}), kExitOk);
  EXPECT_EQ(Pm({"stop", "--grace=0", kId}), kExitOk);
  EXPECT_EQ(Pm({"stop", "--grace=0s", kId}), kExitOk);
  EXPECT_EQ(Pm({"stop", "--grace=100us", kId}), kExitOk);
  ASSERT_EQ(sent.size(), 4u);
  // 0 on the wire is the server's default.
  EXPECT_EQ(sent[0].grace_period_ms(), 0u);
  EXPECT_FALSE(sent[0].force());
  // An asked-for 0 is the immediate kill.
  EXPECT_TRUE(sent[1].force());
  EXPECT_TRUE(sent[2].force());
  // Under a millisecond is the shortest grace, not the default.
  EXPECT_FALSE(sent[3].force());
  EXPECT_EQ(sent[3].grace_period_ms(), 1u);
}

TEST_F(CommandsTest, StopThatDidNotStopExitsOneWithTheStatus) {
  pm::v1::StopResponse response;
  response.set_stopped(false);
  *response.mutable_status() = Ended(ProcessStatus::STATE_SIGNALED, 9);
  response.mutable_status()->set_pid(77);
  EXPECT_CALL(client_, Stop(_)).WillOnce(Return(response));
  EXPECT_EQ(Pm({"stop", kId}), kExitFailed);
  EXPECT_THAT(out_.str(), HasSubstr("pid:          77\n"));
  EXPECT_THAT(err_.str(), StartsWith(absl::StrCat(
                              "pm: stop ", kId, ": the process did not stop")));
}

TEST_F(CommandsTest, StopJson) {
  pm::v1::StopResponse response;
  response.set_stopped(true);
  *response.mutable_status() = Ended(ProcessStatus::STATE_EXITED, 0);
  EXPECT_CALL(client_, Stop(_)).WillOnce(Return(response));
  EXPECT_EQ(Pm({"stop", "--output=json", kId}), kExitOk);
  EXPECT_THAT(out_.str(), HasSubstr("\"stopped\":true"));
  EXPECT_THAT(out_.str(), HasSubstr("\"exitCode\":0"));
}

TEST_F(CommandsTest, StatusOfAnUnknownProcess) {
  EXPECT_CALL(client_, GetStatus(absl::string_view(kId)))
      .WillOnce(Return(
          absl::NotFoundError(absl::StrCat("no process with id ", kId))));
  EXPECT_EQ(Pm({"status", kId}), kExitFailed);
  EXPECT_EQ(err_.str(), absl::StrCat("pm: status ", kId,
                                     ": no process with id ", kId, "\n"));
}

TEST_F(CommandsTest, AnErrorLineShowsBytesThatAreNotUtf8Escaped) {
  EXPECT_CALL(client_, GetStatus(absl::string_view("caf\xe9")))
      .WillOnce(Return(absl::InvalidArgumentError(
          "id is not valid UTF-8 (byte 0xe9 at 3)")));
  EXPECT_EQ(Pm({"status", "caf\xe9"}), kExitFailed);
  EXPECT_EQ(err_.str(),
            "pm: status caf\\xe9: id is not valid UTF-8 (byte 0xe9 at 3)\n");
}

TEST_F(CommandsTest, StatusPrintsTheBlock) {
  EXPECT_CALL(client_, GetStatus(_))
      .WillOnce(Return(Ended(ProcessStatus::STATE_EXITED, 3)));
  EXPECT_EQ(Pm({"status", kId}), kExitOk);
  EXPECT_THAT(out_.str(), HasSubstr("exit:         exited with code 3\n"));
}

TEST_F(CommandsTest, StatusOfAProcessOnAnUnreachableHostSaysWhyAndWhatItWas) {
  ProcessStatus unknown = Ended(ProcessStatus::STATE_EXITED, 0);
  unknown.set_state(ProcessStatus::STATE_UNKNOWN);
  unknown.set_last_known_state(ProcessStatus::STATE_RUNNING);
  unknown.set_node("b");
  unknown.set_state_reason("host b unreachable since 2026-12-05T10:00:00Z");
  EXPECT_CALL(client_, GetStatus(_)).WillOnce(Return(unknown));
  EXPECT_EQ(Pm({"status", kId}), kExitOk);
  EXPECT_THAT(out_.str(), HasSubstr("node:         b\n"
                                    "state:        unknown\n"
                                    "state reason: host b unreachable since "
                                    "2026-12-05T10:00:00Z\n"
                                    "last known:   running\n"));
}

TEST_F(CommandsTest, ListShowsANodeColumnOnlyForACluster) {
  pm::v1::ListResponse list;
  *list.add_processes() = Ended(ProcessStatus::STATE_EXITED, 3);
  EXPECT_CALL(client_, List(_)).Times(2).WillRepeatedly([&](const pm::v1::ListRequest&) {
    return list;
  });
  EXPECT_EQ(Pm({"list"}), kExitOk);
  EXPECT_THAT(out_.str(), Not(HasSubstr("NODE")));
  out_.str("");
  list.mutable_processes(0)->set_node("a");
  EXPECT_EQ(Pm({"list"}), kExitOk);
  EXPECT_THAT(out_.str(), StartsWith("UUID"));
  EXPECT_THAT(out_.str(), HasSubstr("NAME  NODE  STATE"));
  EXPECT_THAT(out_.str(), HasSubstr(absl::StrCat(kId, "  -     a     exited")));
}

TEST_F(CommandsTest, ListPrintsTheTableAndJson) {
  pm::v1::ListResponse list;
  *list.add_processes() = Ended(ProcessStatus::STATE_EXITED, 3);
  EXPECT_CALL(client_, List(_)).Times(2).WillRepeatedly(Return(list));
  EXPECT_EQ(Pm({"ps"}), kExitOk);
  EXPECT_THAT(out_.str(), StartsWith("UUID  "));
  EXPECT_THAT(out_.str(), HasSubstr(absl::StrCat(kId, "  -     exited")));
  out_.str("");
  EXPECT_EQ(Pm({"list", "--output", "json"}), kExitOk);
  EXPECT_THAT(out_.str(), StartsWith("{\"processes\":[{"));
}

// What `pm list` asks for: the live processes by default (as `docker ps`),
// everything with --all, the filters as given; -q prints the ids alone.
TEST_F(CommandsTest, ListSendsItsFiltersAndQuietPrintsIdsAlone) {
  std::vector<pm::v1::ListRequest> seen;
  pm::v1::ListResponse list;
  *list.add_processes() = Ended(ProcessStatus::STATE_EXITED, 3);
  EXPECT_CALL(client_, List(_)).Times(3).WillRepeatedly(
      [&](const pm::v1::ListRequest& request) {
        seen.push_back(request);
        return list;
      });
  EXPECT_EQ(Pm({"list", "-q"}), kExitOk);
  EXPECT_EQ(out_.str(), absl::StrCat(kId, "\n"));
  EXPECT_EQ(Pm({"list", "--all"}), kExitOk);
  EXPECT_EQ(Pm({"list", "--filter", "label=app=web", "--filter=state=exited",
                "--filter", "name=db", "-n", "5"}),
            kExitOk);
  ASSERT_EQ(seen.size(), 3u);
  EXPECT_THAT(seen[0].states(), ElementsAre(ProcessStatus::STATE_RUNNING,
                                            ProcessStatus::STATE_STOPPING));
  EXPECT_THAT(seen[1].states(), IsEmpty());
  EXPECT_THAT(seen[2].states(), ElementsAre(ProcessStatus::STATE_EXITED));
  EXPECT_THAT(seen[2].label_selector(), ElementsAre("app=web"));
  EXPECT_EQ(seen[2].name(), "db");
  EXPECT_EQ(seen[2].limit(), 5u);
  // A filter pm cannot read is a usage error, before any call.
  EXPECT_EQ(Pm({"list", "--filter", "colour=red"}), kExitUsage);
  EXPECT_EQ(Pm({"list", "--filter", "state=sleeping"}), kExitUsage);
}

TEST_F(CommandsTest, LogsCopiesRawBytesAndReportsGaps) {
  pm::v1::StreamOutputRequest request;
  ExpectStream(
      {Chunk("out\n", 0), Chunk("err\n", 4, 0, OutputChunk::STREAM_STDERR),
       Chunk(std::string("\0bin\n", 5), 108, 100)},
      absl::OkStatus(), /*hold=*/false, &request);
  EXPECT_EQ(Pm({"logs", kId}), kExitOk);
  EXPECT_EQ(out_.str(), std::string("out\nerr\n\0bin\n", 13));
  EXPECT_EQ(err_.str(), "pm: [100 bytes not retained before offset 108]\n");
  EXPECT_EQ(request.id(), kId);
  EXPECT_TRUE(request.from_start());
  EXPECT_FALSE(request.follow());
}

TEST_F(CommandsTest, LogsTailNowFollows) {
  pm::v1::StreamOutputRequest request;
  ExpectStream({}, absl::OkStatus(), false, &request);
  EXPECT_EQ(Pm({"logs", "-f", "--tail=now", kId}), kExitOk);
  EXPECT_FALSE(request.from_start());
  EXPECT_TRUE(request.follow());
}

TEST_F(CommandsTest, LogsStreamErrorIsOneLine) {
  pm::v1::StreamOutputRequest request;
  ExpectStream({}, absl::NotFoundError("no output for process x"), false,
               &request);
  EXPECT_EQ(Pm({"logs", kId}), kExitFailed);
  EXPECT_EQ(err_.str(),
            absl::StrCat("pm: logs ", kId, ": no output for process x\n"));
}

// A stream that plays `script` from the start, for a sequence of calls.
std::unique_ptr<pm::OutputStream> Play(std::vector<OutputChunk> chunks,
                                       absl::Status end) {
  return std::make_unique<FakeStream>(
      std::make_shared<StreamScript>(std::move(chunks), std::move(end), false));
}

TEST_F(CommandsTest, LogsFollowResumesAfterTheLastBytePrinted) {
  std::vector<pm::v1::StreamOutputRequest> requests;
  EXPECT_CALL(client_, StreamOutput(_))
      .WillOnce([&](const pm::v1::StreamOutputRequest& r) {
        requests.push_back(r);
        return Play({Chunk("a\n", 0), Chunk("b\n", 2)},
                    absl::UnavailableError("log_store is unavailable at s: Socket closed"));
      })
      .WillOnce([&](const pm::v1::StreamOutputRequest& r) {
        requests.push_back(r);
        return Play({}, absl::UnavailableError("log_store is unavailable at s: "
                                               "Connection refused"));
      })
      // Back, but the supervisor has not opened the log there again yet.
      .WillOnce([&](const pm::v1::StreamOutputRequest& r) {
        requests.push_back(r);
        return Play({}, absl::NotFoundError("no output for process x"));
      })
      .WillOnce([&](const pm::v1::StreamOutputRequest& r) {
        requests.push_back(r);
        return Play({Chunk("c\n", 4), Chunk("e\n", 10, 4)}, absl::OkStatus());
      });
  EXPECT_EQ(Pm({"logs", "-f", kId}), kExitOk) << err_.str();
  EXPECT_EQ(out_.str(), "a\nb\nc\ne\n");
  // Said once, however many tries it took; the store's own gap as ever.
  EXPECT_EQ(err_.str(),
            "pm: output stream lost (UNAVAILABLE: log_store is unavailable at "
            "s: Socket closed); reconnecting\n"
            "pm: resumed at offset 4\n"
            "pm: [4 bytes not retained before offset 10]\n");
  ASSERT_EQ(requests.size(), 4u);
  EXPECT_FALSE(requests[0].has_from_offset());
  EXPECT_TRUE(requests[0].from_start());
  for (size_t i = 1; i < 4; ++i) {
    EXPECT_EQ(requests[i].from_offset(), 4u) << i;
    EXPECT_TRUE(requests[i].follow());
  }
}

OutputChunk RunStart(uint32_t run, uint64_t offset) {
  OutputChunk chunk;
  chunk.set_offset(offset);
  chunk.set_run_started(run);
  *chunk.mutable_time() = ToProtoTimestamp(absl::FromUnixSeconds(1700000000 + run));
  return chunk;
}

TEST_F(CommandsTest, LogsSaysEachRunStartOnceAcrossAReconnection) {
  EXPECT_CALL(client_, StreamOutput(_))
      .WillOnce([](const pm::v1::StreamOutputRequest&) {
        return Play({Chunk("a\n", 0), RunStart(2, 2), Chunk("b\n", 2)},
                    absl::UnavailableError("gone"));
      })
      // Resumed at offset 4, where run 3 started: the store sends its mark
      // again, then the bytes after it.
      .WillOnce([](const pm::v1::StreamOutputRequest&) {
        return Play({RunStart(3, 4)}, absl::UnavailableError("gone"));
      })
      .WillOnce([](const pm::v1::StreamOutputRequest&) {
        return Play({RunStart(3, 4), Chunk("c\n", 4)}, absl::OkStatus());
      });
  EXPECT_EQ(Pm({"logs", "-f", kId}), kExitOk) << err_.str();
  EXPECT_EQ(out_.str(), "a\nb\nc\n");
  EXPECT_EQ(err_.str(),
            "pm: [run 2 started at 2023-11-14T22:13:22.000000000Z]\n"
            "pm: output stream lost (UNAVAILABLE: gone); reconnecting\n"
            "pm: resumed at offset 4\n"
            "pm: [run 3 started at 2023-11-14T22:13:23.000000000Z]\n"
            "pm: output stream lost (UNAVAILABLE: gone); reconnecting\n"
            "pm: resumed at offset 4\n");
}

TEST_F(CommandsTest, LogsGivesUpAfterTheReconnectTimeout) {
  EXPECT_CALL(client_, StreamOutput(_)).WillOnce([](const pm::v1::StreamOutputRequest&) {
    return Play({Chunk("a\n", 0)}, absl::UnavailableError("gone"));
  });
  EXPECT_EQ(Pm({"logs", "-f", "--reconnect-timeout", "0", kId}), kExitFailed);
  EXPECT_EQ(out_.str(), "a\n");
  EXPECT_EQ(err_.str(),
            absl::StrCat("pm: output stream lost (UNAVAILABLE: gone); reconnecting\n"
                         "pm: logs ", kId,
                         ": output stream lost and not back within 0 "
                         "(--reconnect-timeout): gone (is the stack up? try "
                         "'make up')\n"));
}

TEST_F(CommandsTest, CtrlCWhileReconnectingEndsLogs) {
  std::mutex mu;
  std::condition_variable retried;
  int calls = 0;
  EXPECT_CALL(client_, StreamOutput(_))
      .WillRepeatedly([&](const pm::v1::StreamOutputRequest&) {
        std::lock_guard<std::mutex> lock(mu);
        ++calls;
        retried.notify_all();
        return Play({}, absl::UnavailableError("gone"));
      });
  std::thread pm = PmInBackground({"logs", "-f", kId});
  {
    std::unique_lock<std::mutex> lock(mu);
    retried.wait(lock, [&] { return calls >= 2; });
  }
  EXPECT_TRUE(interrupts_.Deliver(SIGINT));
  pm.join();
  EXPECT_EQ(code_, kExitInterrupted);
  EXPECT_EQ(err_.str(), "pm: output stream lost (UNAVAILABLE: gone); reconnecting\n");
}

TEST_F(CommandsTest, ReconnectTimeoutMustBeADuration) {
  EXPECT_EQ(Pm({"logs", "--reconnect-timeout=soon", kId}), kExitUsage);
  EXPECT_THAT(err_.str(),
              HasSubstr("--reconnect-timeout takes a duration like 500ms, 10s "
                        "or 1m, not \"soon\""));
}

TEST_F(CommandsTest, CtrlCEndsLogsFollowCleanly) {
  pm::v1::StreamOutputRequest request;
  std::shared_ptr<StreamScript> stream =
      ExpectStream({Chunk("tick\n", 0)}, absl::OkStatus(), true, &request);
  std::thread pm = PmInBackground({"logs", "-f", kId});
  stream->WaitUntilHeld();
  EXPECT_TRUE(interrupts_.Deliver(SIGINT));
  pm.join();
  EXPECT_EQ(code_, kExitInterrupted);
  EXPECT_TRUE(stream->cancelled());
  EXPECT_EQ(out_.str(), "tick\n");
  EXPECT_THAT(err_.str(), IsEmpty());
  // With the command done, Ctrl+C is no longer taken.
  EXPECT_FALSE(interrupts_.Deliver(SIGINT));
}

class RunExitTest : public CommandsTest,
                    public ::testing::WithParamInterface<
                        std::tuple<ProcessStatus::State, int, int>> {};

TEST_P(RunExitTest, RunExitsWithTheProcessCode) {
  const auto [state, value, want] = GetParam();
  pm::v1::StartResponse started;
  started.set_id(kId);
  EXPECT_CALL(client_, Start(_)).WillOnce(Return(started));
  pm::v1::StreamOutputRequest request;
  ExpectStream({Chunk("hello\n", 0)}, absl::OkStatus(), false, &request);
  EXPECT_CALL(client_, Wait(absl::string_view(kId), _))
      .WillOnce(Return(Ended(state, value)));
  EXPECT_EQ(Pm({"run", "--", "sh", "-c", "echo hello"}), want);
  EXPECT_EQ(out_.str(), "hello\n");
  EXPECT_THAT(err_.str(), IsEmpty());
  EXPECT_TRUE(request.from_start());
  EXPECT_TRUE(request.follow());
}

INSTANTIATE_TEST_SUITE_P(
    Codes, RunExitTest,
    ::testing::Values(std::make_tuple(ProcessStatus::STATE_EXITED, 0, 0),
                      std::make_tuple(ProcessStatus::STATE_EXITED, 3, 3),
                      std::make_tuple(ProcessStatus::STATE_SIGNALED, 9, 137)));

TEST_F(CommandsTest, CtrlCDuringRunStopsTheProcessAndKeepsStreaming) {
  pm::v1::StartResponse started;
  started.set_id(kId);
  EXPECT_CALL(client_, Start(_)).WillOnce(Return(started));
  pm::v1::StreamOutputRequest request;
  std::shared_ptr<StreamScript> stream =
      ExpectStream({Chunk("ready\n", 0)}, absl::OkStatus(), true, &request);
  pm::v1::StopRequest stop;
  EXPECT_CALL(client_, Stop(_)).WillOnce([&](const pm::v1::StopRequest& r) {
    stop = r;
    stream->End();  // the process ended: its stream drains and ends
    pm::v1::StopResponse response;
    response.set_stopped(true);
    *response.mutable_status() = Ended(ProcessStatus::STATE_SIGNALED, 15);
    return response;
  });
  EXPECT_CALL(client_, Wait(absl::string_view(kId), _))
      .WillOnce(Return(Ended(ProcessStatus::STATE_SIGNALED, 15)));
  std::thread pm = PmInBackground({"run", "--grace=1s", "--", "sleep", "100"});
  stream->WaitUntilHeld();
  EXPECT_TRUE(interrupts_.Deliver(SIGINT));
  pm.join();
  EXPECT_EQ(code_, 143);
  EXPECT_EQ(stop.id(), kId);
  EXPECT_EQ(stop.grace_period_ms(), 1000u);
  EXPECT_FALSE(stream->cancelled());
  EXPECT_EQ(out_.str(), "ready\n");
  EXPECT_THAT(err_.str(), HasSubstr(absl::StrCat("pm: stopping ", kId)));
}

TEST_F(CommandsTest, SecondCtrlCDuringRunIsLeftToTheWatcher) {
  pm::v1::StartResponse started;
  started.set_id(kId);
  EXPECT_CALL(client_, Start(_)).WillOnce(Return(started));
  pm::v1::StreamOutputRequest request;
  std::shared_ptr<StreamScript> stream =
      ExpectStream({}, absl::OkStatus(), true, &request);
  std::mutex mu;
  std::condition_variable stop_may_return;
  bool second_delivered = false;
  EXPECT_CALL(client_, Stop(_)).WillOnce([&](const pm::v1::StopRequest&) {
    // A stop still in its grace period when Ctrl+C comes again.
    std::unique_lock<std::mutex> lock(mu);
    stop_may_return.wait(lock, [&] { return second_delivered; });
    stream->End();
    pm::v1::StopResponse response;
    response.set_stopped(true);
    *response.mutable_status() = Ended(ProcessStatus::STATE_SIGNALED, 15);
    return response;
  });
  EXPECT_CALL(client_, Wait(_, _))
      .WillOnce(Return(Ended(ProcessStatus::STATE_SIGNALED, 15)));
  std::thread pm = PmInBackground({"run", "--", "sleep", "100"});
  stream->WaitUntilHeld();
  EXPECT_TRUE(interrupts_.Deliver(SIGINT));
  // Declined: main's watcher then ends pm with 130 at once.
  EXPECT_FALSE(interrupts_.Deliver(SIGINT));
  {
    std::lock_guard<std::mutex> lock(mu);
    second_delivered = true;
  }
  stop_may_return.notify_all();
  pm.join();
  EXPECT_EQ(code_, 143);
}

TEST_F(CommandsTest, CtrlCDuringRunsStartStopsTheProcessOnceStarted) {
  std::mutex mu;
  std::condition_variable changed;
  bool in_start = false;
  bool interrupted = false;
  EXPECT_CALL(client_, Start(_)).WillOnce([&](const pm::v1::StartRequest&) {
    std::unique_lock<std::mutex> lock(mu);
    in_start = true;
    changed.notify_all();
    changed.wait(lock, [&] { return interrupted; });
    pm::v1::StartResponse started;
    started.set_id(kId);
    return started;
  });
  pm::v1::StreamOutputRequest request;
  std::shared_ptr<StreamScript> stream =
      ExpectStream({}, absl::OkStatus(), true, &request);
  EXPECT_CALL(client_, Stop(_)).WillOnce([&](const pm::v1::StopRequest& r) {
    EXPECT_EQ(r.id(), kId);
    stream->End();
    pm::v1::StopResponse response;
    response.set_stopped(true);
    return response;
  });
  EXPECT_CALL(client_, Wait(_, _))
      .WillOnce(Return(Ended(ProcessStatus::STATE_SIGNALED, 15)));
  std::thread pm = PmInBackground({"run", "--", "sleep", "100"});
  {
    std::unique_lock<std::mutex> lock(mu);
    changed.wait(lock, [&] { return in_start; });
  }
  EXPECT_TRUE(interrupts_.Deliver(SIGINT));
  {
    std::lock_guard<std::mutex> lock(mu);
    interrupted = true;
  }
  changed.notify_all();
  pm.join();
  EXPECT_EQ(code_, 143);
}

TEST_F(CommandsTest, RunThatCannotStart) {
  EXPECT_CALL(client_, Start(_))
      .WillOnce(Return(absl::FailedPreconditionError("execve: ENOENT")));
  EXPECT_EQ(Pm({"run", "--", "/nope"}), kExitFailed);
  EXPECT_EQ(err_.str(), "pm: run /nope: execve: ENOENT\n");
}

TEST_F(CommandsTest, RunSendsTheLimitsAndSaysWhenTheOomKillerStruck) {
  pm::v1::StartRequest sent;
  pm::v1::StartResponse started;
  started.set_id(kId);
  EXPECT_CALL(client_, Start(_)).WillOnce([&](const pm::v1::StartRequest& r) {
    sent = r;
    return started;
  });
  pm::v1::StreamOutputRequest request;
  ExpectStream({}, absl::OkStatus(), false, &request);
  ProcessStatus ended = Ended(ProcessStatus::STATE_SIGNALED, 9);
  ended.set_oom_killed(true);
  ended.mutable_limits()->set_memory_bytes(32 << 20);
  ended.mutable_usage()->set_oom_kills(1);
  EXPECT_CALL(client_, Wait(absl::string_view(kId), _)).WillOnce(Return(ended));
  EXPECT_EQ(Pm({"run", "--memory", "32M", "--cpus=0.5", "--pids", "8",
                "--isolate=pid", "--", "hog"}),
            137);
  EXPECT_EQ(sent.limits().memory_bytes(), 32u << 20);
  EXPECT_EQ(sent.limits().cpus(), 0.5);
  EXPECT_EQ(sent.limits().pids(), 8u);
  EXPECT_THAT(sent.isolate(), ::testing::ElementsAre(pm::v1::ISOLATION_PID));
  EXPECT_EQ(err_.str(),
            absl::StrCat("pm: ", kId,
                         ": killed by the OOM killer (memory limit 32 MiB "
                         "reached)\n"));
}

TEST_F(CommandsTest, WaitSaysWhenTheOomKillerKilledPartOfTheTree) {
  ProcessStatus ended = Ended(ProcessStatus::STATE_EXITED, 137);
  ended.mutable_usage()->set_oom_kills(2);
  EXPECT_CALL(client_, Wait(absl::string_view(kId), _)).WillOnce(Return(ended));
  EXPECT_EQ(Pm({"wait", kId}), 137);
  EXPECT_EQ(out_.str(), "exited with code 137\n");
  EXPECT_EQ(err_.str(),
            absl::StrCat("pm: ", kId,
                         ": the OOM killer killed 2 processes of its tree "
                         "(out of memory)\n"));
}

TEST_F(CommandsTest, BadLimitsAreUsageErrors) {
  EXPECT_EQ(Pm({"run", "--memory", "lots", "--", "true"}), kExitUsage);
  EXPECT_THAT(err_.str(), StartsWith("pm: run: --memory takes a size like 256M"));
  EXPECT_THAT(err_.str(), HasSubstr("usage: pm run "));
  err_.str("");
  EXPECT_EQ(Pm({"start", "--isolate=pid,user", "--", "true"}), kExitUsage);
  EXPECT_THAT(err_.str(), StartsWith("pm: start: --isolate takes a comma-separated "
                                     "list of pid, net and mount"));
  EXPECT_EQ(connected_to_, "");
}

TEST_F(CommandsTest, GatewayFlagsReachTheConnector) {
  EXPECT_CALL(client_, List(_)).WillOnce(Return(pm::v1::ListResponse()));
  EXPECT_EQ(Pm({"list", "--gateway=gw.example:8443", "--ca", "ca.pem", "--cert",
                "c.pem", "--key", "c.key", "--user", "demo"},
               {"HOME=/h", "PM_PASSWORD=s3cret"}),
            kExitOk);
  ASSERT_TRUE(connection_.gateway.has_value());
  EXPECT_EQ(connection_.gateway->target, "gw.example:8443");
  EXPECT_EQ(connection_.gateway->ca_file, "ca.pem");
  EXPECT_EQ(connection_.gateway->cert_file, "c.pem");
  EXPECT_EQ(connection_.gateway->key_file, "c.key");
  EXPECT_EQ(connection_.gateway->user, "demo");
  EXPECT_EQ(connection_.gateway->password, "s3cret");
}

TEST_F(CommandsTest, GatewayRefusalsAreOneLineWithTheCode) {
  const std::vector<std::string> gateway = {
      "--gateway=gw:8443", "--ca=a", "--cert=b", "--key=c", "--user=demo"};
  auto with = [&](std::vector<std::string> args) {
    args.insert(args.end(), gateway.begin(), gateway.end());
    return args;
  };
  EXPECT_CALL(client_, List(_))
      .WillOnce(
          Return(absl::PermissionDeniedError("wrong user name or password")))
      .WillOnce(Return(absl::UnavailableError(
          "gateway is unavailable at gw:8443: failed to connect")));
  EXPECT_EQ(Pm(with({"list"}), {"PM_PASSWORD=nope"}), kExitFailed);
  EXPECT_EQ(err_.str(),
            "pm: list: PERMISSION_DENIED: wrong user name or password (check "
            "--user and the password in $PM_PASSWORD or --password_file)\n");
  err_.str("");
  EXPECT_EQ(Pm(with({"list"}), {"PM_PASSWORD=x"}), kExitFailed);
  EXPECT_EQ(err_.str(),
            "pm: list: gateway is unavailable at gw:8443: failed to connect "
            "(is the gateway up at gw:8443? do --ca, --cert and --key belong "
            "to its PKI?)\n");
}

TEST_F(CommandsTest, GatewayConnectFailureNamesTheGateway) {
  GlobalOptions defaults;
  defaults.runtime_dir = "/run/x";
  Context context{&out_, &err_, absl::UTCTimeZone(), &interrupts_};
  EXPECT_EQ(
      RunCli(
          {"--gateway", "gw:8443", "--ca", "/nope/ca.pem", "--cert", "c.pem",
           "--key", "c.key", "--user", "demo", "--password_file", "/p",
           "list"},
          defaults, Environment(), context,
          [](const Connection&) -> absl::StatusOr<std::unique_ptr<pm::Client>> {
            return absl::NotFoundError(
                "open(\"/nope/ca.pem\"): No such file or directory");
          }),
      kExitFailed);
  EXPECT_EQ(err_.str(),
            "pm: connecting to the gateway at gw:8443: open(\"/nope/ca.pem\"): "
            "No such file or directory\n");
}

TEST_F(CommandsTest, WaitAsksAgainAfterADeadlineAndExitsWithTheCode) {
  EXPECT_CALL(client_, Wait(absl::string_view(kId), _))
      .WillOnce(Return(absl::DeadlineExceededError("still running")))
      .WillOnce(Return(Ended(ProcessStatus::STATE_EXITED, 4)));
  EXPECT_EQ(Pm({"wait", kId}), 4);
  EXPECT_EQ(out_.str(), "exited with code 4\n");
}

TEST_F(CommandsTest, UsageErrorsExitTwoWithoutConnecting) {
  EXPECT_EQ(Pm({"stop"}), kExitUsage);
  EXPECT_EQ(err_.str(),
            "pm: stop: missing the process (its UUID, its name or a unique prefix of "
            "its UUID)\n"
            "usage: pm stop [--grace DURATION] [--output json] ID\n"
            "Run 'pm stop --help' for details.\n");
  err_.str("");
  EXPECT_EQ(Pm({}), kExitUsage);
  EXPECT_THAT(err_.str(), HasSubstr("usage: pm"));
  err_.str("");
  EXPECT_EQ(Pm({"bogus"}), kExitUsage);
  EXPECT_THAT(err_.str(), StartsWith("pm: unknown command \"bogus\"\n"));
  EXPECT_EQ(connected_to_, "");
  EXPECT_THAT(out_.str(), IsEmpty());
}

TEST_F(CommandsTest, HelpGoesToStdout) {
  EXPECT_EQ(Pm({"help"}), kExitOk);
  EXPECT_THAT(out_.str(), HasSubstr("Commands:"));
  out_.str("");
  EXPECT_EQ(Pm({"logs", "--help"}), kExitOk);
  EXPECT_THAT(out_.str(), StartsWith("usage: pm logs"));
  EXPECT_EQ(connected_to_, "");
}

// An id typed with a newline in it (pm status $'a\nb') cannot break the
// error onto two lines.
TEST_F(CommandsTest, AnIdWithANewlineStaysOnTheErrorsLine) {
  EXPECT_EQ(ErrorLine("status a\nb", absl::NotFoundError("no process has the id")),
            "pm: status a\\x0ab: no process has the id");
}

TEST_F(CommandsTest, ConnectFailureIsOneLine) {
  GlobalOptions defaults;
  defaults.runtime_dir = "/run/x";
  Context context{&out_, &err_, absl::UTCTimeZone(), &interrupts_};
  EXPECT_EQ(
      RunCli(
          {"list"}, defaults, Environment(), context,
          [](const Connection&) -> absl::StatusOr<std::unique_ptr<pm::Client>> {
            return absl::InternalError("no channel");
          }),
      kExitFailed);
  EXPECT_EQ(err_.str(), "pm: connecting to /run/x: no channel\n");
}

}  // namespace
}  // namespace pm::cli
