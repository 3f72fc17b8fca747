// The gateway under load, as many users at once would use it: run by
// gateway_harness (a private real stack and gateway on 127.0.0.1) with
// --extra_users, so several users share the gateway.
//
// Each user, on its own connection, at once with the others:
//   - starts processes that print a known text (`seq 1 N`), follows each
//     from its start and checks every byte arrived, in order, once;
//   - has many followers on one process at the same time, each checking
//     every byte;
//   - starts a sleeper and stops it;
//   - tries another user's process, which must not exist for it.
// Starts over the per-user rate cap are refused with RESOURCE_EXHAUSTED
// naming the flag and tried again later; no call may fail any other way.
// Then a burst: every user opens its cap of followers at once and cancels
// them, and the services' memory must come back near where it was.
//
// Bounded: fixed counts, every call with a deadline, loopback only. The
// figures (calls, bytes, refusals, memory of each service before, at the
// peak and after) are printed at the end for the README.
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/strings/ascii.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "client/client.h"
#include "common/fd.h"
#include "common/proc_test_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace pm::testing {
namespace {

using ::testing::HasSubstr;

constexpr absl::Duration kSafety = absl::Seconds(60);
// Per user.
constexpr int kSeqProcesses = 6;
constexpr int kSeqCount = 20000;   // `seq 1 20000`: 108,894 bytes
constexpr int kFollowers = 16;     // at once on one process
constexpr int kBurstStreams = 200; // at once, then cancelled

std::string Env(const char* name) {
  const char* value = getenv(name);
  return value != nullptr ? value : "";
}

std::string Seq(int n) {
  std::string out;
  for (int i = 1; i <= n; ++i) absl::StrAppend(&out, i, "\n");
  return out;
}

// "line 1\n" ... "line n\n", what the follower's writer prints.
std::string Lines(int n) {
  std::string out;
  for (int i = 1; i <= n; ++i) absl::StrAppend(&out, "line ", i, "\n");
  return out;
}

struct Tally {
  std::atomic<int64_t> calls{0};
  std::atomic<int64_t> bytes{0};
  std::atomic<int64_t> start_refusals{0};
  absl::Mutex mu;
  std::vector<std::string> failures ABSL_GUARDED_BY(mu);
  void Fail(std::string what) {
    absl::MutexLock lock(&mu);
    if (failures.size() < 20) failures.push_back(std::move(what));
  }
};

class LoadTest : public ::testing::Test {
 protected:
  void SetUp() override {
    target_ = Env("PM_GATEWAY_TARGET");
    certs_ = Env("PM_CERTS");
    password_file_ = Env("PM_PASSWORD_FILE");
    users_ = absl::StrSplit(Env("PM_USERS"), ' ', absl::SkipEmpty());
    for (absl::string_view entry :
         absl::StrSplit(Env("PM_SERVICE_PIDS"), ' ', absl::SkipEmpty())) {
      std::pair<std::string, std::string> kv = absl::StrSplit(entry, '=');
      int pid = 0;
      ASSERT_TRUE(absl::SimpleAtoi(kv.second, &pid)) << entry;
      pids_[kv.first] = pid;
    }
    ASSERT_FALSE(target_.empty() || users_.size() < 2 || pids_.size() < 4)
        << "run this under gateway_harness --extra_users=N";
  }

  std::unique_ptr<pm::Client> Connect(const std::string& user) {
    pm::RemoteOptions options;
    options.target = target_;
    options.ca_file = certs_ + "/ca.pem";
    options.cert_file = certs_ + "/client.pem";
    options.key_file = certs_ + "/client.key";
    options.user = user;
    options.password_file = password_file_;
    absl::StatusOr<std::unique_ptr<pm::Client>> client = pm::Client::ConnectRemote(options);
    EXPECT_TRUE(client.ok()) << client.status();
    return client.ok() ? *std::move(client) : nullptr;
  }

  std::map<std::string, int64_t> Rss() {
    std::map<std::string, int64_t> rss;
    for (const auto& [name, pid] : pids_) rss[name] = pm::ResidentKib(pid);
    return rss;
  }

  // Starts `request`; a refusal by the start-rate cap is retried after a
  // pause (that is what the cap asks a client to do), anything else fails.
  absl::StatusOr<pm::v1::StartResponse> Start(pm::Client& client,
                                              const pm::v1::StartRequest& request,
                                              Tally& tally) {
    const absl::Time deadline = absl::Now() + kSafety;
    while (true) {
      ++tally.calls;
      absl::StatusOr<pm::v1::StartResponse> started = client.Start(request);
      if (started.ok() || started.status().code() != absl::StatusCode::kResourceExhausted ||
          absl::Now() > deadline) {
        return started;
      }
      EXPECT_THAT(started.status().message(),
                  HasSubstr("--max_starts_per_second_per_user"));
      ++tally.start_refusals;
      absl::SleepFor(absl::Milliseconds(100));  // back off, as the cap asks
    }
  }

  // Reads `id` from its start to its end and checks it is `expected`.
  void FollowAndCheck(pm::Client& client, const std::string& id,
                      const std::string& expected, Tally& tally) {
    ++tally.calls;
    pm::v1::StreamOutputRequest request;
    request.set_id(id);
    request.set_from_start(true);
    request.set_follow(true);
    std::unique_ptr<pm::OutputStream> stream = client.StreamOutput(request);
    std::string seen;
    uint64_t next = 0;
    pm::v1::OutputChunk chunk;
    while (stream->Next(&chunk)) {
      if (chunk.offset() != next || chunk.dropped_before() != 0) {
        tally.Fail(absl::StrCat(id, ": chunk at ", chunk.offset(), " after ", next,
                                ", dropped ", chunk.dropped_before()));
      }
      next = chunk.offset() + chunk.data().size();
      seen += chunk.data();
    }
    absl::Status end = stream->Finish();
    tally.bytes += seen.size();
    if (!end.ok()) tally.Fail(absl::StrCat(id, ": stream ended with ", end.ToString()));
    if (seen != expected) {
      tally.Fail(absl::StrCat(id, ": ", seen.size(), " bytes, not the ",
                              expected.size(), " expected"));
    }
  }

  void OneUser(const std::string& user, const std::string& others_id,
               std::string* own_id, Tally& tally) {
    std::unique_ptr<pm::Client> client = Connect(user);
    if (client == nullptr) return tally.Fail(user + ": cannot connect");
    const std::string expected = Seq(kSeqCount);
    pm::v1::StartRequest seq;
    seq.set_executable("seq");
    seq.add_args("1");
    seq.add_args(absl::StrCat(kSeqCount));
    for (int i = 0; i < kSeqProcesses; ++i) {
      absl::StatusOr<pm::v1::StartResponse> started = Start(*client, seq, tally);
      if (!started.ok()) return tally.Fail(user + ": start: " + started.status().ToString());
      if (i == 0) *own_id = started->id();
      FollowAndCheck(*client, started->id(), expected, tally);
    }
    // Many followers of one process at once.
    pm::v1::StartRequest slow;
    slow.set_executable("sh");
    slow.add_args("-c");
    slow.add_args("i=1; while [ $i -le 3000 ]; do echo \"line $i\"; i=$((i+1)); done");
    const std::string slow_expected = Lines(3000);
    absl::StatusOr<pm::v1::StartResponse> writer = Start(*client, slow, tally);
    if (!writer.ok()) return tally.Fail(user + ": start: " + writer.status().ToString());
    std::vector<std::thread> followers;
    for (int i = 0; i < kFollowers; ++i) {
      followers.emplace_back([&] { FollowAndCheck(*client, writer->id(), slow_expected, tally); });
    }
    for (std::thread& t : followers) t.join();
    // A sleeper, stopped.
    pm::v1::StartRequest sleeper;
    sleeper.set_executable("sleep");
    sleeper.add_args("600");
    absl::StatusOr<pm::v1::StartResponse> sleeping = Start(*client, sleeper, tally);
    if (!sleeping.ok()) return tally.Fail(user + ": start: " + sleeping.status().ToString());
    pm::v1::StopRequest stop;
    stop.set_id(sleeping->id());
    stop.set_grace_period_ms(2000);
    ++tally.calls;
    absl::StatusOr<pm::v1::StopResponse> stopped = client->Stop(stop);
    if (!stopped.ok() || !stopped->stopped()) {
      tally.Fail(user + ": stop: " + stopped.status().ToString());
    }
    // Another user's process does not exist for this one.
    if (!others_id.empty()) {
      ++tally.calls;
      absl::Status other = client->GetStatus(others_id).status();
      if (other.code() != absl::StatusCode::kNotFound) {
        tally.Fail(user + ": another user's process answered " + other.ToString());
      }
    }
  }

  std::string target_, certs_, password_file_;
  std::vector<std::string> users_;
  std::map<std::string, int> pids_;
};

TEST_F(LoadTest, ManyUsersAtOnceLoseNoByteAndFailOnlyByTheCaps) {
  const std::map<std::string, int64_t> before = Rss();
  Tally tally;
  const absl::Time began = absl::Now();

  // A first process per user, so each can try another's.
  std::vector<std::string> first_ids(users_.size());
  {
    std::vector<std::thread> threads;
    for (size_t i = 0; i < users_.size(); ++i) {
      threads.emplace_back([&, i] { OneUser(users_[i], "", &first_ids[i], tally); });
    }
    for (std::thread& t : threads) t.join();
  }
  {
    std::vector<std::thread> threads;
    for (size_t i = 0; i < users_.size(); ++i) {
      threads.emplace_back([&, i] {
        std::string unused;
        OneUser(users_[i], first_ids[(i + 1) % users_.size()], &unused, tally);
      });
    }
    for (std::thread& t : threads) t.join();
  }
  const absl::Duration work = absl::Now() - began;
  {
    absl::MutexLock lock(&tally.mu);
    EXPECT_THAT(tally.failures, ::testing::IsEmpty());
  }
  const int64_t expected_bytes =
      2 * static_cast<int64_t>(users_.size()) *
      (kSeqProcesses * static_cast<int64_t>(Seq(kSeqCount).size()) + kFollowers * static_cast<int64_t>(Lines(3000).size()));
  EXPECT_EQ(tally.bytes.load(), expected_bytes);

  // The burst: every user holds kBurstStreams followers of a sleeper at
  // once, then cancels them all.
  std::map<std::string, int64_t> peak;
  {
    std::vector<std::unique_ptr<pm::Client>> clients;
    std::vector<std::unique_ptr<pm::OutputStream>> streams;
    pm::v1::StartRequest sleeper;
    sleeper.set_executable("sleep");
    sleeper.add_args("600");
    std::vector<std::string> sleepers;
    for (const std::string& user : users_) {
      clients.push_back(Connect(user));
      ASSERT_NE(clients.back(), nullptr);
      absl::StatusOr<pm::v1::StartResponse> started = Start(*clients.back(), sleeper, tally);
      ASSERT_TRUE(started.ok()) << started.status();
      sleepers.push_back(started->id());
      pm::v1::StreamOutputRequest follow;
      follow.set_id(started->id());
      follow.set_from_start(true);
      follow.set_follow(true);
      for (int i = 0; i < kBurstStreams; ++i) {
        streams.push_back(clients.back()->StreamOutput(follow));
      }
    }
    for (auto& stream : streams) stream->WaitUntilAttached();
    peak = Rss();
    for (auto& stream : streams) stream->Cancel();
    pm::v1::OutputChunk chunk;
    for (auto& stream : streams) {
      EXPECT_FALSE(stream->Next(&chunk));
      EXPECT_EQ(stream->Finish().code(), absl::StatusCode::kCancelled);
    }
    for (size_t i = 0; i < sleepers.size(); ++i) {
      pm::v1::StopRequest stop;
      stop.set_id(sleepers[i]);
      ASSERT_TRUE(clients[i]->Stop(stop).ok());
    }
  }

  // Memory comes back: each service within kSlackKib of where it began.
  // Polled, since giving memory back has no event to wait on; bounded.
  constexpr int64_t kSlackKib = 24 * 1024;
  std::map<std::string, int64_t> after = Rss();
  const absl::Time settle_deadline = absl::Now() + absl::Seconds(30);
  auto settled = [&] {
    for (const auto& [name, kib] : after) {
      if (kib > before.at(name) + kSlackKib) return false;
    }
    return true;
  };
  while (!settled() && absl::Now() < settle_deadline) {
    absl::SleepFor(absl::Milliseconds(500));
    after = Rss();
  }
  std::string figures = absl::StrCat(
      users_.size(), " users, ", tally.calls.load(), " calls in ",
      absl::FormatDuration(work), ", ", tally.bytes.load(), " bytes checked, ",
      tally.start_refusals.load(), " starts refused by the rate cap (retried); "
      "RSS KiB before / burst of ", users_.size() * kBurstStreams,
      " streams / after:");
  for (const auto& [name, kib] : before) {
    absl::StrAppend(&figures, " ", name, " ", kib, "/", peak[name], "/", after[name]);
  }
  fprintf(stderr, "load: %s\n", figures.c_str());
  EXPECT_TRUE(settled()) << figures;
}

}  // namespace
}  // namespace pm::testing
