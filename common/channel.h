// Channels between pm's processes over unix sockets.
//
//   auto stub = Registry::NewStub(pm::UnixChannel(registry_socket));
//
// Local services restart in well under a second, so reconnect backoff is
// short (100 ms, at most 1 s) instead of gRPC's default (1 s growing to
// 120 s): a call made just after a service came back must not fail fast for
// minutes. Messages up to 64 MiB (output chunks are at most 1 MiB).
#ifndef PM_COMMON_CHANNEL_H_
#define PM_COMMON_CHANNEL_H_

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <grpcpp/grpcpp.h>

namespace pm {

std::shared_ptr<grpc::Channel> UnixChannel(const std::string& socket_path);

// The arguments for streaming output in bulk on any channel (the unix ones
// above, the Library's TLS channel to the gateway): messages up to 64 MiB,
// large reads and frames, an 8 MiB stream window. Output is sent in
// messages of up to 1 MiB; with gRPC's defaults (8 KiB reads, a 64 KiB
// window grown by probing) each would take many reads and round trips.
grpc::ChannelArguments BulkChannelArguments();

// Reconnects quickly after the peer restarted: 100 ms, growing to at most
// 1 s (gRPC's default starts at 1 s and grows to 120 s, so a follower
// retrying after a restart of a service or of the gateway would wait for
// many seconds after it was back). The unix channels above have it; the
// Library's channel to the gateway too.
void SetQuickReconnect(grpc::ChannelArguments& args);

// The integer arguments behind bulk streaming, for either end: a server
// sets the same ones (ConfigureServerBuilder). Messages up to
// kMaxMessageBytes.
inline constexpr int kMaxMessageBytes = 64 << 20;
const std::vector<std::pair<const char*, int>>& BulkTransferArguments();

}  // namespace pm

#endif  // PM_COMMON_CHANNEL_H_
