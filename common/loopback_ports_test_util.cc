#include "common/loopback_ports_test_util.h"

#include <netinet/in.h>
#include <sys/socket.h>

#include "common/fd.h"
#include "common/status_core.h"

namespace pm {

absl::StatusOr<std::vector<int>> FreeLoopbackPorts(int count) {
  // Held until every port is known, so that the kernel hands out distinct
  // ones.
  std::vector<Fd> sockets;
  std::vector<int> ports;
  for (int i = 0; i < count; ++i) {
    Fd fd(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!fd) return ErrnoError("socket", "AF_INET");
    sockaddr_in address = {};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t length = sizeof(address);
    if (bind(fd.get(), reinterpret_cast<sockaddr*>(&address), length) != 0) {
      return ErrnoError("bind", "127.0.0.1:0");
    }
    if (getsockname(fd.get(), reinterpret_cast<sockaddr*>(&address), &length) != 0) {
      return ErrnoError("getsockname", "127.0.0.1:0");
    }
    ports.push_back(ntohs(address.sin_port));
    sockets.push_back(std::move(fd));
  }
  return ports;
}

}  // namespace pm
