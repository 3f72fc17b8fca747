#include "stack/dev_certs.h"

#include <fcntl.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/rand.h>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "common/exit_status.h"
#include "common/fd.h"
#include "common/status.h"
#include "gateway/users.h"

extern char** environ;

namespace pm::stack {
namespace {

bool Exists(const std::string& path) { return access(path.c_str(), F_OK) == 0; }

absl::Status RunScript(const std::string& script, const std::string& dir) {
  std::vector<std::string> args = {"/bin/bash", script, dir};
  std::vector<char*> argv;
  for (std::string& arg : args) argv.push_back(arg.data());
  argv.push_back(nullptr);
  // The launcher blocks SIGINT/SIGTERM for its signalfd; the script gets
  // the default mask.
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t empty;
  sigemptyset(&empty);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK);
  posix_spawnattr_setsigmask(&attr, &empty);
  pid_t pid = -1;
  int err = posix_spawn(&pid, argv[0], nullptr, &attr, argv.data(), environ);
  posix_spawnattr_destroy(&attr);
  if (err != 0) return ErrnoError("posix_spawn", script, err);
  siginfo_t info = {};
  while (waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED) != 0) {
    if (errno != EINTR) return ErrnoError("waitid", script);
  }
  ExitStatus exit = ExitStatus::FromSiginfo(info);
  if (!(exit == ExitStatus::Exited(0))) {
    return absl::InternalError(
        absl::StrCat(script, " ", dir, ": ", exit.ToString()));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> NewPassword() {
  unsigned char bytes[18];
  if (RAND_bytes(bytes, sizeof(bytes)) != 1) {
    return absl::InternalError("RAND_bytes failed");
  }
  return absl::WebSafeBase64Escape(
      absl::string_view(reinterpret_cast<char*>(bytes), sizeof(bytes)));
}

absl::Status WriteSecret(const std::string& path, const std::string& text) {
  PM_ASSIGN_OR_RETURN(Fd fd, Fd::Open(path, O_WRONLY | O_CREAT | O_EXCL, 0600));
  if (write(fd.get(), text.data(), text.size()) !=
      static_cast<ssize_t>(text.size())) {
    return ErrnoError("write", path);
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> ReadSecret(const std::string& path) {
  PM_ASSIGN_OR_RETURN(Fd fd, Fd::Open(path, O_RDONLY));
  char buffer[256] = {};
  ssize_t n = read(fd.get(), buffer, sizeof(buffer) - 1);
  if (n < 0) return ErrnoError("read", path);
  std::string text(buffer, static_cast<size_t>(n));
  if (size_t end = text.find_first_of("\r\n"); end != std::string::npos) {
    text.resize(end);
  }
  return text;
}

}  // namespace

GatewayOptions DevCredentials::GatewayFlags(const std::string& listen) const {
  GatewayOptions options;
  options.listen = listen;
  options.ca_file = File("ca.pem");
  options.cert_file = File("server.pem");
  options.key_file = File("server.key");
  options.users_file = users_file;
  options.peer_cert_file = File("peer.pem");
  options.peer_key_file = File("peer.key");
  options.peer_ca_file = File("peer-ca.pem");
  return options;
}

absl::StatusOr<DevCredentials> EnsureDevCredentials(const std::string& dir,
                                                    const std::string& pki_script) {
  DevCredentials dev;
  dev.dir = dir;
  dev.password_file = dev.File("demo.password");
  dev.users_file = dev.File("users");
  // A dir made before the peer CA and etcd certificates were is made anew.
  if (!Exists(dev.File("ca.pem")) || !Exists(dev.File("server.key")) ||
      !Exists(dev.File("peer-ca.pem")) || !Exists(dev.File("peer.key")) ||
      !Exists(dev.File("etcd-client.key"))) {
    PM_RETURN_IF_ERROR(RunScript(pki_script, dir));
    dev.created = true;
  }
  if (!Exists(dev.password_file)) {
    PM_ASSIGN_OR_RETURN(std::string password, NewPassword());
    PM_RETURN_IF_ERROR(WriteSecret(dev.password_file, password + "\n"));
    unlink(dev.users_file.c_str());  // its demo entry is stale now
    dev.created = true;
  }
  if (!Exists(dev.users_file)) {
    PM_ASSIGN_OR_RETURN(std::string password, ReadSecret(dev.password_file));
    pm::gateway::UserTable users;
    PM_ASSIGN_OR_RETURN(users[dev.user].hash, pm::gateway::HashPassword(password));
    PM_RETURN_IF_ERROR(pm::gateway::WriteUsersFile(dev.users_file, users));
    dev.created = true;
  }
  return dev;
}

}  // namespace pm::stack
