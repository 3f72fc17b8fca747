#include "testing/test_network.h"

#include <dirent.h>
#include <fcntl.h>
#include <sched.h>
#include <spawn.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <iostream>
#include <optional>
#include <random>
#include <set>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/exit_status.h"
#include "common/fd.h"
#include "common/status_core.h"

extern char** environ;

namespace pm::testing {
namespace {

// Debian's iproute2 and util-linux.
constexpr char kIp[] = "/usr/sbin/ip";
constexpr char kNsenter[] = "/usr/bin/nsenter";
// Where `ip netns add` names a namespace.
constexpr char kNetnsDir[] = "/run/netns";
// Every namespace of these tests is named pm-test-<pid>-<token>-<host>.
constexpr char kNamePrefix[] = "pm-test-";
// The private network (nothing else is on it: the bridge is in the test's
// own namespace, so any subnet would do).
constexpr char kSubnet[] = "10.213.0";
constexpr char kBridge[] = "pm-br";

}  // namespace

absl::Status RunCommand(const std::vector<std::string>& argv) {
  PM_ASSIGN_OR_RETURN(Pipe out, MakePipe());
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&actions, out.write.get(), STDOUT_FILENO);
  posix_spawn_file_actions_adddup2(&actions, out.write.get(), STDERR_FILENO);
  std::vector<char*> pointers;
  for (const std::string& arg : argv) pointers.push_back(const_cast<char*>(arg.c_str()));
  pointers.push_back(nullptr);
  pid_t pid = -1;
  const int err =
      posix_spawn(&pid, argv[0].c_str(), &actions, nullptr, pointers.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  out.write.reset();
  const std::string command = absl::StrJoin(argv, " ");
  if (err != 0) return ErrnoError("posix_spawn", command, err);
  absl::StatusOr<std::string> printed = ReadToEnd(out.read.get(), command);
  siginfo_t info = {};
  while (waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED) != 0) {
    if (errno != EINTR) return ErrnoError("waitid", command);
  }
  const ExitStatus end = ExitStatus::FromSiginfo(info);
  if (!(end == ExitStatus::Exited(0))) {
    return absl::FailedPreconditionError(absl::StrCat(
        "`", command, "` ", end.ToString(), ": ", printed.ok() ? *printed : ""));
  }
  return absl::OkStatus();
}

namespace {

absl::Status CheckTool(const char* path, const char* package) {
  if (access(path, X_OK) != 0) {
    return absl::FailedPreconditionError(
        absl::StrCat(path, " cannot be run (", ErrnoName(errno),
                     "): the test needs Debian's ", package, " package"));
  }
  return absl::OkStatus();
}

// A network namespace's identity: the device and inode of a file that
// names it (/proc/<pid>/ns/net, /run/netns/<name>).
using NetnsId = std::pair<dev_t, ino_t>;

absl::StatusOr<NetnsId> NetnsAt(const std::string& path) {
  struct stat st = {};
  if (stat(path.c_str(), &st) != 0) return ErrnoError("stat", path);
  return std::make_pair(st.st_dev, st.st_ino);
}

absl::StatusOr<NetnsId> NetnsOf(const std::string& pid) {
  return NetnsAt(absl::StrCat("/proc/", pid, "/ns/net"));
}

// Deletes the namespaces that runs of these tests left behind when they
// were killed (their pid is gone), so that they do not pile up.
void DeleteLeftovers() {
  DIR* dir = opendir(kNetnsDir);
  if (dir == nullptr) return;
  std::vector<std::string> stale;
  while (dirent* entry = readdir(dir)) {
    absl::string_view name = entry->d_name;
    if (!absl::ConsumePrefix(&name, kNamePrefix)) continue;
    const std::vector<absl::string_view> parts = absl::StrSplit(name, '-');
    int pid = 0;
    if (parts.size() < 3 || !absl::SimpleAtoi(parts[0], &pid) || pid <= 0) continue;
    if (access(absl::StrCat("/proc/", pid).c_str(), F_OK) != 0) {
      stale.emplace_back(entry->d_name);
    }
  }
  closedir(dir);
  for (const std::string& name : stale) {
    const absl::Status deleted = RunCommand({kIp, "netns", "delete", name});
    std::cerr << "deleted the namespace " << name << " of an earlier run that was killed"
              << (deleted.ok() ? "" : absl::StrCat(": ", deleted.ToString())) << "\n";
  }
}

// Set by EnterPrivateNetwork: the namespace this process left, which
// Create() checks it is no longer in.
std::optional<NetnsId> left_netns;

std::string RunToken() {
  std::random_device random;
  return absl::StrCat(absl::Hex(random() & 0xffffff, absl::kZeroPad6));
}

}  // namespace

absl::Status EnterPrivateNetwork() {
  PM_RETURN_IF_ERROR(CheckTool(kIp, "iproute2"));
  PM_ASSIGN_OR_RETURN(NetnsId before, NetnsOf("self"));
  if (unshare(CLONE_NEWNET) != 0) {
    return Annotate(ErrnoError("unshare", "CLONE_NEWNET"),
                    "a network namespace of the test's own (run as root)");
  }
  left_netns = before;
  return RunCommand({kIp, "link", "set", "lo", "up"});
}

absl::StatusOr<std::unique_ptr<TestNetwork>> TestNetwork::Create(
    const std::vector<std::string>& hosts) {
  PM_RETURN_IF_ERROR(CheckTool(kIp, "iproute2"));
  PM_RETURN_IF_ERROR(CheckTool(kNsenter, "util-linux"));
  PM_ASSIGN_OR_RETURN(NetnsId mine, NetnsOf("self"));
  if (!left_netns.has_value() || mine == *left_netns) {
    return absl::FailedPreconditionError(
        "the test network is made in the test's own network namespace, and "
        "this process is in the machine's: call EnterPrivateNetwork() first");
  }
  DeleteLeftovers();
  PM_RETURN_IF_ERROR(RunCommand({kIp, "link", "add", kBridge, "type", "bridge"}));
  PM_RETURN_IF_ERROR(
      RunCommand({kIp, "addr", "add", absl::StrCat(kSubnet, ".1/24"), "dev", kBridge}));
  PM_RETURN_IF_ERROR(RunCommand({kIp, "link", "set", kBridge, "up"}));
  // Deletes whatever was made if a step below fails.
  std::unique_ptr<TestNetwork> network(new TestNetwork());
  const std::string run = absl::StrCat(kNamePrefix, getpid(), "-", RunToken(), "-");
  for (size_t i = 0; i < hosts.size(); ++i) {
    const std::string netns = run + hosts[i];
    const std::string veth = absl::StrCat("pm-v", i);
    const std::string address = absl::StrCat(kSubnet, ".", i + 2);
    PM_RETURN_IF_ERROR(RunCommand({kIp, "netns", "add", netns}));
    network->hosts_[hosts[i]] = Host{netns, address};
    PM_RETURN_IF_ERROR(RunCommand(
        {kIp, "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", netns}));
    PM_RETURN_IF_ERROR(RunCommand({kIp, "link", "set", veth, "master", kBridge, "up"}));
    PM_RETURN_IF_ERROR(
        RunCommand({kIp, "-n", netns, "addr", "add", address + "/24", "dev", "eth0"}));
    PM_RETURN_IF_ERROR(RunCommand({kIp, "-n", netns, "link", "set", "eth0", "up"}));
    PM_RETURN_IF_ERROR(RunCommand({kIp, "-n", netns, "link", "set", "lo", "up"}));
  }
  return network;
}

TestNetwork::~TestNetwork() {
  KillEverythingInside();
  for (const auto& [host, info] : hosts_) {
    const absl::Status deleted = RunCommand({kIp, "netns", "delete", info.netns});
    if (!deleted.ok()) std::cerr << "host " << host << ": " << deleted << "\n";
  }
}

void TestNetwork::KillEverythingInside() const {
  std::set<NetnsId> ours;
  for (const auto& [host, info] : hosts_) {
    absl::StatusOr<NetnsId> id = NetnsAt(absl::StrCat(kNetnsDir, "/", info.netns));
    if (id.ok()) ours.insert(*id);
  }
  DIR* proc = opendir("/proc");
  if (proc == nullptr) return;
  while (dirent* entry = readdir(proc)) {
    int pid = 0;
    if (!absl::SimpleAtoi(entry->d_name, &pid)) continue;
    absl::StatusOr<NetnsId> id = NetnsOf(entry->d_name);
    if (!id.ok() || ours.count(*id) == 0) continue;
    // Through a pidfd, opened before the namespace is checked again: the
    // pid cannot be reused in between.
    const int pidfd = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
    if (pidfd < 0) continue;
    absl::StatusOr<NetnsId> again = NetnsOf(entry->d_name);
    if (again.ok() && ours.count(*again) != 0) {
      std::cerr << "killing pid " << pid << ", left in a namespace of the test\n";
      syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, nullptr, 0);
    }
    close(pidfd);
  }
  closedir(proc);
}

std::string TestNetwork::address(const std::string& host) const {
  auto it = hosts_.find(host);
  return it == hosts_.end() ? "" : it->second.address;
}

std::vector<std::string> TestNetwork::prefix(const std::string& host) const {
  auto it = hosts_.find(host);
  if (it == hosts_.end()) return {};
  return {kNsenter, absl::StrCat("--net=", kNetnsDir, "/", it->second.netns), "--"};
}

}  // namespace pm::testing
