#include "common/runtime_dir.h"

#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>

#include "absl/strings/str_cat.h"
#include "common/fd.h"
#include "common/status.h"

namespace pm {

absl::string_view ServiceName(Service service) {
  switch (service) {
    case Service::kSupervisor:
      return "supervisor";
    case Service::kRegistry:
      return "registry";
    case Service::kLogStore:
      return "log_store";
    case Service::kGateway:
      return "gateway";
  }
  return "unknown";
}

std::string DefaultRuntimeDir() {
  if (const char* dir = getenv("PM_RUNTIME_DIR"); dir != nullptr && *dir) {
    return dir;
  }
  if (const char* xdg = getenv("XDG_RUNTIME_DIR"); xdg != nullptr && *xdg) {
    return absl::StrCat(xdg, "/pm");
  }
  return absl::StrCat("/tmp/pm-", getuid());
}

absl::Status EnsureRuntimeDir(const std::string& dir) {
  return EnsurePrivateDir(dir, "runtime dir");
}

absl::Status EnsurePrivateDir(const std::string& dir, absl::string_view what) {
  if (dir.empty()) return absl::InvalidArgumentError(absl::StrCat("empty ", what));
  // Parents first (like mkdir -p); only the last component gets 0700 checks.
  for (size_t pos = dir.find('/', 1); pos != std::string::npos;
       pos = dir.find('/', pos + 1)) {
    std::string parent = dir.substr(0, pos);
    if (mkdir(parent.c_str(), 0755) != 0 && errno != EEXIST) {
      return ErrnoError("mkdir", parent);
    }
  }
  if (mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
    return ErrnoError("mkdir", dir);
  }
  struct stat st;
  if (lstat(dir.c_str(), &st) != 0) return ErrnoError("lstat", dir);
  if (!S_ISDIR(st.st_mode)) {
    return absl::FailedPreconditionError(
        absl::StrCat(what, " ", dir, " is not a directory"));
  }
  if (st.st_uid != getuid()) {
    return absl::FailedPreconditionError(absl::StrCat(
        what, " ", dir, " is owned by uid ", st.st_uid, ", not by us (",
        getuid(), ")"));
  }
  if ((st.st_mode & 077) != 0 && chmod(dir.c_str(), 0700) != 0) {
    return ErrnoError("chmod", dir);
  }
  return absl::OkStatus();
}

std::string SocketPath(absl::string_view dir, Service service) {
  return absl::StrCat(dir, "/", ServiceName(service), ".sock");
}

std::string UnixAddress(absl::string_view socket_path) {
  return absl::StrCat("unix:", socket_path);
}

absl::Status ClaimSocketPath(const std::string& socket_path) {
  struct sockaddr_un addr = {};
  addr.sun_family = AF_UNIX;
  if (socket_path.size() >= sizeof(addr.sun_path)) {
    return absl::InvalidArgumentError(
        absl::StrCat("socket path ", socket_path, " is longer than ",
                     sizeof(addr.sun_path) - 1, " bytes"));
  }
  struct stat st;
  if (lstat(socket_path.c_str(), &st) != 0) {
    if (errno == ENOENT) return absl::OkStatus();
    return ErrnoError("lstat", socket_path);
  }
  if (!S_ISSOCK(st.st_mode)) {
    return absl::FailedPreconditionError(
        absl::StrCat(socket_path, " exists and is not a socket"));
  }
  std::memcpy(addr.sun_path, socket_path.c_str(), socket_path.size());
  Fd sock(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!sock) return ErrnoError("socket", "AF_UNIX");
  if (connect(sock.get(), reinterpret_cast<struct sockaddr*>(&addr),
              sizeof(addr)) == 0) {
    return absl::AlreadyExistsError(absl::StrCat(
        "another server is listening on ", socket_path, "; not taking it"));
  }
  if (errno != ECONNREFUSED) return ErrnoError("connect", socket_path);
  // Nobody accepts: a stale socket of a crashed run.
  if (unlink(socket_path.c_str()) != 0 && errno != ENOENT) {
    return ErrnoError("unlink", socket_path);
  }
  return absl::OkStatus();
}

}  // namespace pm
