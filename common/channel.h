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

// Before a call that fails fast (no wait_for_ready) on a channel that may
// have lost its peer: when `channel` is in TRANSIENT_FAILURE, waits until it
// is connected again, for at most the longest backoff of SetQuickReconnect
// and its jitter (1.25 s: within it a peer that is back is tried again);
// otherwise returns at once. The call made afterwards fails fast as before
// if the peer is still away, only up to 1.25 s later.
//
// Why: in gRPC 1.51 a channel in TRANSIENT_FAILURE fails every such call at
// once with its last connection error, and stays in that state until a new
// connection is READY. That connection (TCP or unix connect, TLS handshake,
// HTTP/2 SETTINGS) only advances when some thread polls the channel; a call
// that failed at once does not, so nothing does but gRPC's backup poller,
// every 5 s, one step per tick. A client retrying on one channel after a
// restart of its peer (`pm logs -f` through a restarted gateway) kept
// failing on "Connection refused" 15-20 s after the peer was back. The wait
// polls the channel (its completion queue joins the channel's pollsets), so
// the attempt advances at once, and it ends the moment the channel is READY.
void AwaitReconnect(grpc::Channel& channel);

// The integer arguments behind bulk streaming, for either end: a server
// sets the same ones (ConfigureServerBuilder). Messages up to
// kMaxMessageBytes.
inline constexpr int kMaxMessageBytes = 64 << 20;
const std::vector<std::pair<const char*, int>>& BulkTransferArguments();

}  // namespace pm

#endif  // PM_COMMON_CHANNEL_H_
