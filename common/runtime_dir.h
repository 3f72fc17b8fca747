// The runtime directory holding every service's unix socket.
//
//   std::string dir = pm::DefaultRuntimeDir();       // or --runtime_dir
//   PM_RETURN_IF_ERROR(pm::EnsureRuntimeDir(dir));   // mkdir 0700
//   std::string path = pm::SocketPath(dir, pm::Service::kRegistry);
//   PM_RETURN_IF_ERROR(pm::ClaimSocketPath(path));   // stale socket removed
//
// The directory is created 0700 so only its owner can connect: the OS user
// is the authentication of the local sockets.
#ifndef PM_COMMON_RUNTIME_DIR_H_
#define PM_COMMON_RUNTIME_DIR_H_

#include <string>
#include "absl/strings/string_view.h"

#include "absl/status/status.h"

namespace pm {

enum class Service { kSupervisor, kRegistry, kLogStore, kGateway };

// "supervisor", "registry", "log_store", "gateway".
absl::string_view ServiceName(Service service);

// $PM_RUNTIME_DIR if set, else $XDG_RUNTIME_DIR/pm, else /tmp/pm-<uid>.
std::string DefaultRuntimeDir();

// Creates `dir` (and missing parents) with mode 0700. An existing directory
// must be owned by us and not reachable by others: FAILED_PRECONDITION
// otherwise, naming the path and what is wrong.
absl::Status EnsureRuntimeDir(const std::string& dir);

// What EnsureRuntimeDir and EnsureStateDir (common/state_dir.h) do, with
// `what` ("runtime dir", "state dir") naming the directory in errors.
absl::Status EnsurePrivateDir(const std::string& dir, absl::string_view what);

// <dir>/<service>.sock
std::string SocketPath(absl::string_view dir, Service service);

// "unix:<path>" for gRPC.
std::string UnixAddress(absl::string_view socket_path);

// Makes `socket_path` free to bind: a stale socket of a crashed run (nobody
// accepts on it) is removed; a live one is not stolen (ALREADY_EXISTS naming
// the path); a non-socket file there is FAILED_PRECONDITION.
absl::Status ClaimSocketPath(const std::string& socket_path);

}  // namespace pm

#endif  // PM_COMMON_RUNTIME_DIR_H_
