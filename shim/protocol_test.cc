#include "shim/protocol.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <string>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace pm::shim {
namespace {

constexpr char kUuid[] = "0b5e0c2a-8d1f-4c3e-9a7b-6f2d1e0c9b8a";
const absl::Time kWhen = absl::FromUnixNanos(1764700000123456789);

Spawn FullSpawn() {
  Spawn m;
  m.uuid = kUuid;
  m.command = {"printf", {"%s", "caf\xe9", ""}, {{"LANG", "C"}, {"X", "a=b"}}, "/tmp"};
  m.isolation = kIsolatePid | kIsolateNet;
  m.file_limit = rlimit{1024, 4096};
  m.cgroup2_dir = 0;
  m.cgroup2_join = CgroupJoinRef{1, "/sys/fs/cgroup/pm/x/cgroup.procs"};
  m.cgroup_joins = {{2, "/sys/fs/cgroup/memory/pm/x/cgroup.procs"}};
  return m;
}

Message RoundTrip(const Message& message, size_t fds) {
  absl::StatusOr<std::string> bytes = Encode(message);
  EXPECT_TRUE(bytes.ok()) << bytes.status();
  absl::StatusOr<Message> back = Decode(*bytes, fds);
  EXPECT_TRUE(back.ok()) << back.status();
  return back.ok() ? *back : Message{};
}

TEST(ProtocolTest, SpawnRoundTripsEveryField) {
  const Spawn spawn = FullSpawn();
  Message back = RoundTrip(spawn, 3);
  const Spawn* got = std::get_if<Spawn>(&back);
  ASSERT_NE(got, nullptr);
  EXPECT_EQ(got->uuid, spawn.uuid);
  EXPECT_EQ(got->command.executable, "printf");
  EXPECT_EQ(got->command.args, spawn.command.args);
  EXPECT_EQ(got->command.env, spawn.command.env);
  EXPECT_EQ(got->command.working_dir, "/tmp");
  EXPECT_EQ(got->isolation, spawn.isolation);
  ASSERT_TRUE(got->file_limit.has_value());
  EXPECT_EQ(got->file_limit->rlim_cur, 1024u);
  EXPECT_EQ(got->file_limit->rlim_max, 4096u);
  EXPECT_EQ(got->cgroup2_dir, spawn.cgroup2_dir);
  EXPECT_EQ(got->cgroup2_join, spawn.cgroup2_join);
  EXPECT_EQ(got->cgroup_joins, spawn.cgroup_joins);
}

TEST(ProtocolTest, RepliesRoundTrip) {
  Message back = RoundTrip(Spawned{4242, 987654321, "/usr/bin/printf"}, 1);
  ASSERT_TRUE(std::holds_alternative<Spawned>(back));
  EXPECT_EQ(std::get<Spawned>(back).pid, 4242);
  EXPECT_EQ(std::get<Spawned>(back).start_ticks, 987654321u);
  EXPECT_EQ(std::get<Spawned>(back).executable, "/usr/bin/printf");

  back = RoundTrip(SpawnFailed{absl::StatusCode::kFailedPrecondition, "execve(\"/nope\")"}, 0);
  ASSERT_TRUE(std::holds_alternative<SpawnFailed>(back));
  EXPECT_EQ(std::get<SpawnFailed>(back).code, absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(std::get<SpawnFailed>(back).message, "execve(\"/nope\")");

  const ProcessEnd end{ExitStatus::Signaled(6, true), kWhen, 77};
  back = RoundTrip(Exited{end, std::nullopt, false}, 0);
  ASSERT_TRUE(std::holds_alternative<Exited>(back));
  EXPECT_EQ(std::get<Exited>(back).end, end);

  back = RoundTrip(
      Hello{kUuid, 99, 5, std::nullopt, 12, std::nullopt, std::nullopt, std::nullopt, false}, 1);
  ASSERT_TRUE(std::holds_alternative<Hello>(back));
  EXPECT_FALSE(std::get<Hello>(back).end.has_value());
  EXPECT_EQ(std::get<Hello>(back).output_end, 12u);

  back = RoundTrip(Hello{kUuid, 99, 5, end, 100, std::nullopt, std::nullopt, std::nullopt, false}, 0);
  ASSERT_TRUE(std::holds_alternative<Hello>(back));
  EXPECT_EQ(std::get<Hello>(back).end, end);
  EXPECT_EQ(std::get<Hello>(back).output_end, 100u);

  back = RoundTrip(Closed{100}, 0);
  ASSERT_TRUE(std::holds_alternative<Closed>(back));
  EXPECT_EQ(std::get<Closed>(back), (Closed{100, 0, 0}));
  back = RoundTrip(Closed{100, 7, 9}, 0);
  ASSERT_TRUE(std::holds_alternative<Closed>(back));
  EXPECT_EQ(std::get<Closed>(back), (Closed{100, 7, 9}));
  // Nothing dropped: the datagram an older supervisor reads.
  EXPECT_EQ(Encode(Closed{100, 0, 0})->size(), 8u + 6u + 8u);

  back = RoundTrip(ForkShim{kUuid}, 1);
  ASSERT_TRUE(std::holds_alternative<ForkShim>(back));
  EXPECT_EQ(std::get<ForkShim>(back).uuid, kUuid);

  back = RoundTrip(ShimForked{31337}, 1);
  ASSERT_TRUE(std::holds_alternative<ShimForked>(back));
  EXPECT_EQ(std::get<ShimForked>(back).pid, 31337);
}


void ExpectRefused(absl::string_view datagram, size_t fds, absl::string_view fragment) {
  absl::StatusOr<Message> got = Decode(datagram, fds);
  ASSERT_FALSE(got.ok()) << "accepted; wanted an error with " << fragment;
  EXPECT_EQ(got.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(got.status().message().find(fragment), std::string::npos) << got.status();
}

std::string Header(uint16_t version, uint16_t type, uint32_t length) {
  std::string out;
  for (uint64_t v : {uint64_t{version}, uint64_t{type}}) {
    out.push_back(static_cast<char>(v));
    out.push_back(static_cast<char>(v >> 8));
  }
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>(length >> (8 * i)));
  return out;
}

// The zygote's messages are checked as strictly: the control link or the
// pidfd they carry, and an id that can name a directory.
TEST(ProtocolTest, ForkShimAndShimForkedCarryOneFdAndAForkShimAUuid) {
  ExpectRefused(*Encode(ForkShim{kUuid}), 0, "ForkShim carries 1 fds, got 0");
  ExpectRefused(*Encode(ShimForked{7}), 2, "ShimForked carries 1 fds, got 2");
  ExpectRefused(*Encode(ForkShim{"../../etc/passwd"}), 1, "the uuid is not 36 characters");
  EXPECT_EQ(MessageName(Message(ForkShim{kUuid})), "ForkShim");
  EXPECT_EQ(MessageName(Message(ShimForked{1})), "ShimForked");
}

TEST(ProtocolTest, DecoderRefusesTruncatedOversizedAndUnknownMessages) {
  const std::string good = *Encode(Closed{5});
  ExpectRefused("", 0, "truncated header (0 of 8 bytes)");
  ExpectRefused(good.substr(0, 5), 0, "truncated header");
  ExpectRefused(good.substr(0, good.size() - 1), 0, "the header says");
  ExpectRefused(good + "x", 0, "the header says");
  ExpectRefused(std::string(kMaxMessageBytes + 1, 'x'), 0, "over the limit");
  ExpectRefused(Header(2, 6, 0), 0, "version 2");
  ExpectRefused(Header(1, 12, 0), 0, "unknown type 12");
  ExpectRefused(Header(1, 0, 0), 0, "unknown type 0");
  // A field header cut short, and a field running past the end.
  ExpectRefused(Header(1, 6, 3) + "abc", 0, "cut short");
  ExpectRefused(Header(1, 6, 7) + std::string("\x11\x00\xff\x00\x00\x00x", 7), 0,
                "runs past the end");
  // A field the type does not have, a field given twice, a wrong size.
  std::string closed_with_pid = *Encode(Spawned{1, 2, "x"});
  closed_with_pid[2] = 6;  // retype a Spawned as Closed
  ExpectRefused(closed_with_pid, 0, "unknown field 11");
  ExpectRefused(Header(1, 6, 28) + good.substr(8) + good.substr(8), 0, "given 2 times");
  std::string short_value = Header(1, 6, 10) + std::string("\x11\x00\x04\x00\x00\x00" "abcd", 10);
  ExpectRefused(short_value, 0, "is 4 bytes, want 8");
  // A required field missing.
  ExpectRefused(Header(1, 6, 0), 0, "field 17 missing");
}

TEST(ProtocolTest, DecoderChecksTheFdsAgainstTheMessage) {
  ExpectRefused(*Encode(Spawned{1, 2, "x"}), 0, "Spawned carries 1 fds, got 0");
  ExpectRefused(*Encode(Closed{1}), 1, "Closed carries 0 fds, got 1");
  ExpectRefused(*Encode(Hello{kUuid, 1, 2, std::nullopt, 0, std::nullopt, std::nullopt,
                              std::nullopt, false}),
                0,
                "Hello carries 1 fds");
  ExpectRefused(*Encode(FullSpawn()), 2, "fd index 2 but 2 fds attached");
  ExpectRefused(*Encode(FullSpawn()), 4, "attached fd 3 is not named");
  Spawn twice = FullSpawn();
  twice.cgroup_joins[0].fd_index = 0;
  ExpectRefused(*Encode(twice), 3, "fd index 0 used twice");
}

TEST(ProtocolTest, DecoderRefusesABadCommand) {
  Spawn m = FullSpawn();
  m.command.executable = "";
  ExpectRefused(*Encode(m), 3, "the executable is empty");
  m = FullSpawn();
  m.command.args.push_back(std::string("a\0b", 3));
  ExpectRefused(*Encode(m), 3, "an argument contains a NUL byte");
  m = FullSpawn();
  m.command.env.push_back({"LANG", "again"});
  ExpectRefused(*Encode(m), 3, "an env name is given twice");
  m = FullSpawn();
  m.command.env.push_back({"", "x"});
  ExpectRefused(*Encode(m), 3, "NAME=VALUE");
  m = FullSpawn();
  m.uuid = "not-a-uuid";
  ExpectRefused(*Encode(m), 3, "uuid");
  m = FullSpawn();
  m.isolation = 8;
  ExpectRefused(*Encode(m), 3, "unknown isolation bits 8");
  m = FullSpawn();
  m.file_limit = rlimit{10, 5};
  ExpectRefused(*Encode(m), 3, "soft is above its hard");
}

TEST(ProtocolTest, EncoderRefusesAMessageOverTheLimit) {
  Spawn m = FullSpawn();
  m.command.args.push_back(std::string(kMaxMessageBytes, 'a'));
  absl::StatusOr<std::string> bytes = Encode(m);
  ASSERT_FALSE(bytes.ok());
  EXPECT_EQ(bytes.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(bytes.status().message().find("over the limit of 196608"), std::string::npos)
      << bytes.status();
}

int OpenFdCount() {
  int count = 0;
  for (int fd = 0; fd < 1024; ++fd) count += fcntl(fd, F_GETFD) >= 0;
  return count;
}

TEST(ProtocolTest, MessagesAndFdsCrossASeqpacketSocket) {
  int sv[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
  Fd a(sv[0]), b(sv[1]);
  absl::StatusOr<Fd> null = Fd::Open("/dev/null", O_RDONLY);
  ASSERT_TRUE(null.ok());
  const int before = OpenFdCount();
  const int fd = null->get();
  ASSERT_TRUE(SendMessage(a.get(), Spawned{7, 8, "/bin/true"}, {&fd, 1}).ok());
  absl::StatusOr<Received> got = ReceiveMessage(b.get());
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_TRUE(std::holds_alternative<Spawned>(got->message));
  ASSERT_EQ(got->fds.size(), 1u);
  struct stat sa, sb;
  ASSERT_EQ(fstat(fd, &sa), 0);
  ASSERT_EQ(fstat(got->fds[0].get(), &sb), 0);
  EXPECT_EQ(sa.st_ino, sb.st_ino);
  EXPECT_EQ(fcntl(got->fds[0].get(), F_GETFD) & FD_CLOEXEC, FD_CLOEXEC);

  // A refused message still owns (and closes) the fds that came with it.
  ASSERT_TRUE(SendMessage(a.get(), Closed{1}, {&fd, 1}).ok());
  got = ReceiveMessage(b.get());
  ASSERT_FALSE(got.ok());
  EXPECT_NE(got.status().message().find("Closed carries 0 fds, got 1"), std::string::npos);
  EXPECT_EQ(OpenFdCount(), before);

  a.reset();
  got = ReceiveMessage(b.get());
  EXPECT_EQ(got.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(got.status().message().find("end of stream"), std::string::npos);
}

// --- Commands too large for a datagram, in a sealed memfd ------------------

Spawn HugeSpawn() {
  Spawn m;
  m.uuid = kUuid;
  m.command.executable = "/bin/sh";
  m.command.args = {"-c", "exit 0", std::string(100000, 'a'), std::string(100000, 'b')};
  m.command.env = {{"BIG", std::string(100000, 'c')}};
  m.cgroup2_dir = 0;
  return m;
}

TEST(ProtocolTest, ACommandTooLargeForADatagramTravelsInASealedMemfd) {
  Spawn spawn = HugeSpawn();
  ASSERT_EQ(Encode(spawn).status().code(), absl::StatusCode::kInvalidArgument);
  absl::StatusOr<std::optional<Fd>> memfd = SpillLargeCommand(spawn, 1);
  ASSERT_TRUE(memfd.ok()) << memfd.status();
  ASSERT_TRUE(memfd->has_value());
  EXPECT_EQ(spawn.command_memfd, 1u);

  Message back = RoundTrip(spawn, 2);
  Spawn* got = std::get_if<Spawn>(&back);
  ASSERT_NE(got, nullptr);
  EXPECT_EQ(got->command_memfd, 1u);
  EXPECT_TRUE(got->command.executable.empty());  // not in the datagram
  std::vector<Fd> fds;
  fds.emplace_back(open("/dev/null", O_RDONLY | O_CLOEXEC));
  fds.push_back(std::move(**memfd));
  ASSERT_TRUE(LoadSpawnCommand(*got, fds).ok());
  EXPECT_EQ(got->command.executable, "/bin/sh");
  EXPECT_EQ(got->command.args, HugeSpawn().command.args);
  EXPECT_EQ(got->command.env, HugeSpawn().command.env);
}

TEST(ProtocolTest, ACommandThatFitsStaysInTheDatagram) {
  Spawn spawn = FullSpawn();
  absl::StatusOr<std::optional<Fd>> memfd = SpillLargeCommand(spawn, 3);
  ASSERT_TRUE(memfd.ok()) << memfd.status();
  EXPECT_FALSE(memfd->has_value());
  EXPECT_FALSE(spawn.command_memfd.has_value());
}

TEST(ProtocolTest, ASpawnWithBothAMemfdAndCommandFieldsIsRefused) {
  // Encode leaves the command out when there is a memfd: splice one in.
  Spawn spawn = HugeSpawn();
  spawn.command = {"true", {}, {}, ""};
  spawn.command_memfd = 1;
  absl::StatusOr<std::string> bytes = Encode(spawn);
  ASSERT_TRUE(bytes.ok());
  std::string field;
  field += std::string("\x02\x00\x04\x00\x00\x00true", 10);  // executable "true"
  std::string datagram = *bytes + field;
  const uint32_t body = static_cast<uint32_t>(datagram.size() - kHeaderBytes);
  memcpy(datagram.data() + 4, &body, 4);  // little-endian hosts only
  absl::StatusOr<Message> decoded = Decode(datagram, 2);
  EXPECT_EQ(decoded.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(decoded.status().message(),
            "shim message: field 2 with the command in a memfd");
}

TEST(ProtocolTest, AnUnsealedMemfdIsRefused) {
  Fd memfd(memfd_create("test", MFD_CLOEXEC | MFD_ALLOW_SEALING));
  absl::StatusOr<std::string> bytes = EncodeCommand({"true", {}, {}, ""});
  ASSERT_TRUE(bytes.ok());
  ASSERT_EQ(write(memfd.get(), bytes->data(), bytes->size()),
            static_cast<ssize_t>(bytes->size()));
  absl::StatusOr<CommandLine> command = ReadSealedCommand(memfd.get());
  EXPECT_EQ(command.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(command.status().message(), "shim message: the command memfd is not sealed (seals 0)");
}

TEST(ProtocolTest, AFileThatIsNotAMemfdIsRefusedNamingTheCall) {
  Fd file(open("/dev/null", O_RDONLY | O_CLOEXEC));
  absl::StatusOr<CommandLine> command = ReadSealedCommand(file.get());
  EXPECT_FALSE(command.ok());
  EXPECT_NE(command.status().message().find(
                "the command fd is not a memfd: fcntl(F_GET_SEALS)"),
            absl::string_view::npos)
      << command.status();
}

TEST(ProtocolTest, AMemfdLargerThanTheLimitIsRefusedUnread) {
  Fd memfd(memfd_create("test", MFD_CLOEXEC | MFD_ALLOW_SEALING));
  // Sparse: no memory is spent on it.
  ASSERT_EQ(ftruncate(memfd.get(), static_cast<off_t>(kMaxCommandBytes + 1)), 0);
  ASSERT_EQ(fcntl(memfd.get(), F_ADD_SEALS, F_SEAL_WRITE | F_SEAL_SHRINK | F_SEAL_GROW), 0);
  absl::StatusOr<CommandLine> command = ReadSealedCommand(memfd.get());
  EXPECT_EQ(command.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(command.status().message(),
            absl::StrCat("shim message: a command memfd of ", kMaxCommandBytes + 1,
                         " bytes, over the limit of ", kMaxCommandBytes));
}

TEST(ProtocolTest, ACommandMemfdIsDecodedAsStrictlyAsADatagram) {
  // Only command fields, and by the same rules.
  EXPECT_EQ(DecodeCommandBytes(std::string("\x01\x00\x01\x00\x00\x00x", 7)).status().message(),
            "shim message: unknown field 1 for this message type");
  EXPECT_EQ(DecodeCommandBytes(std::string("\x02\x00\x00\x00\x00\x00", 6)).status().message(),
            "shim message: the executable is empty");
  EXPECT_EQ(DecodeCommandBytes(std::string("\x02\x00\x09\x00\x00\x00x", 7)).status().message(),
            "shim message: field 2 of 9 bytes runs past the end");
}

TEST(ProtocolTest, RestartsRoundTrip) {
  Spawn spawn = FullSpawn();
  RestartPolicy policy;
  policy.when = RestartPolicy::When::kOnFailure;
  policy.first_delay = absl::Milliseconds(250);
  policy.max_delay = absl::Seconds(60);
  policy.reset_after = absl::Seconds(5);
  policy.max_restarts = 3;
  policy.window = absl::Minutes(2);
  spawn.restart = policy;
  Message back = RoundTrip(spawn, 3);
  ASSERT_TRUE(std::holds_alternative<Spawn>(back));
  EXPECT_EQ(std::get<Spawn>(back).restart, policy);
  EXPECT_FALSE(std::get<Spawn>(RoundTrip(FullSpawn(), 3)).restart.has_value());

  back = RoundTrip(NoRestart{}, 0);
  EXPECT_TRUE(std::holds_alternative<NoRestart>(back));

  const ProcessEnd end{ExitStatus::Exited(3), kWhen, 40};
  back = RoundTrip(Restarting{2, end, kWhen + absl::Milliseconds(200)}, 0);
  ASSERT_TRUE(std::holds_alternative<Restarting>(back));
  EXPECT_EQ(std::get<Restarting>(back).run, 2u);
  EXPECT_EQ(std::get<Restarting>(back).end, end);
  EXPECT_EQ(std::get<Restarting>(back).next_start, kWhen + absl::Milliseconds(200));

  back = RoundTrip(RunStarted{3, 777, 12345, "/bin/sh"}, 1);
  ASSERT_TRUE(std::holds_alternative<RunStarted>(back));
  EXPECT_EQ(std::get<RunStarted>(back).run, 3u);
  EXPECT_EQ(std::get<RunStarted>(back).pid, 777);
  EXPECT_EQ(std::get<RunStarted>(back).start_ticks, 12345u);
  EXPECT_EQ(std::get<RunStarted>(back).executable, "/bin/sh");

  back = RoundTrip(Exited{end, 4, true}, 0);
  ASSERT_TRUE(std::holds_alternative<Exited>(back));
  EXPECT_EQ(std::get<Exited>(back).run, 4u);
  EXPECT_TRUE(std::get<Exited>(back).gave_up);

  // Waiting for its next run: the ended run's end, and when the next starts.
  back = RoundTrip(Hello{kUuid, 99, 5, end, 40, 2, kWhen + absl::Seconds(1), std::nullopt, false}, 0);
  ASSERT_TRUE(std::holds_alternative<Hello>(back));
  EXPECT_EQ(std::get<Hello>(back).run, 2u);
  EXPECT_EQ(std::get<Hello>(back).next_start, kWhen + absl::Seconds(1));

  // Run 3 running: how run 2 ended (its time and status; no output end).
  Hello later{kUuid, 99, 5, std::nullopt, 40, 3, std::nullopt, std::nullopt, false};
  later.previous_end = ProcessEnd{ExitStatus::Signaled(9, false), kWhen, 0};
  back = RoundTrip(later, 1);
  ASSERT_TRUE(std::holds_alternative<Hello>(back));
  EXPECT_EQ(std::get<Hello>(back).previous_end, later.previous_end);
  EXPECT_FALSE(std::get<Hello>(back).gave_up);

  // Given up: its last run's end, for good.
  Hello given_up{kUuid, 99, 5, end, 40, 4, std::nullopt, std::nullopt, false};
  given_up.gave_up = true;
  back = RoundTrip(given_up, 0);
  ASSERT_TRUE(std::holds_alternative<Hello>(back));
  EXPECT_TRUE(std::get<Hello>(back).gave_up);
  EXPECT_FALSE(std::get<Hello>(back).previous_end.has_value());
  // Given up at run 4: how run 3 ended too.
  given_up.previous_end = ProcessEnd{ExitStatus::Exited(2), kWhen, 0};
  back = RoundTrip(given_up, 0);
  ASSERT_TRUE(std::holds_alternative<Hello>(back));
  EXPECT_EQ(std::get<Hello>(back).previous_end, given_up.previous_end);
}

TEST(ProtocolTest, BadRestartsAreRefused) {
  Spawn spawn = FullSpawn();
  spawn.restart = RestartPolicy{};
  spawn.restart->first_delay = absl::Seconds(2);
  spawn.restart->max_delay = absl::Seconds(1);
  ExpectRefused(*Encode(spawn), 3, "first restart delay is above the largest");
  spawn.restart->max_delay = kMaxRestartDuration + absl::Seconds(1);
  ExpectRefused(*Encode(spawn), 3, "is over");
  const ProcessEnd end{ExitStatus::Exited(1), kWhen, 0};
  ExpectRefused(*Encode(RunStarted{1, 7, 1, "/x"}), 1, "run after the first");
  ExpectRefused(*Encode(RunStarted{2, 7, 1, "/x"}), 0, "RunStarted carries 1 fds");
  ExpectRefused(*Encode(Restarting{0, end, kWhen}), 0, "run 0");
  ExpectRefused(*Encode(Hello{kUuid, 1, 2, std::nullopt, 0, 2, kWhen, std::nullopt, false}), 1,
                "next start but no ended run");
  ExpectRefused(*Encode(NoRestart{}), 1, "NoRestart carries 0 fds");
  Hello first_run{kUuid, 1, 2, std::nullopt, 0, 1, std::nullopt, std::nullopt, false};
  first_run.previous_end = end;  // run 1 has no run before it
  ExpectRefused(*Encode(first_run), 1, "previous run's end but no later run");
  Hello between{kUuid, 1, 2, end, 0, 3, kWhen, std::nullopt, false};
  between.previous_end = end;  // between runs `end` is the last run's
  ExpectRefused(*Encode(between), 0, "previous run's end but no later run");
  Hello waiting{kUuid, 1, 2, end, 0, 2, kWhen, std::nullopt, false};
  waiting.gave_up = true;  // a run follows: not given up
  ExpectRefused(*Encode(waiting), 0, "gave up without a run that ended for good");
  // An unknown policy byte: patch the encoded field of a valid one.
  Spawn valid = FullSpawn();
  valid.restart = RestartPolicy{};
  std::string bytes = *Encode(valid);
  bytes[bytes.size() - 40] = 7;
  ExpectRefused(bytes, 3, "unknown restart policy 7");
}

}  // namespace
}  // namespace pm::shim
