#include "common/channel.h"

#include <chrono>

#include "common/runtime_dir.h"

namespace pm {
namespace {

constexpr int kMaxReconnectBackoffMs = 1000;

}  // namespace

const std::vector<std::pair<const char*, int>>& BulkTransferArguments() {
  // Large reads and frames and a wide stream window: output is pushed in
  // messages of up to 1 MiB over a local socket. With gRPC's defaults (8 KiB
  // reads, a 64 KiB window grown by probing) per-slice and window-update
  // overhead caps a capture far below what the pipe allows.
  static const auto* const args = new std::vector<std::pair<const char*, int>>{
      {GRPC_ARG_TCP_READ_CHUNK_SIZE, 1 << 20},
      {GRPC_ARG_TCP_MIN_READ_CHUNK_SIZE, 256 << 10},
      {GRPC_ARG_TCP_MAX_READ_CHUNK_SIZE, 4 << 20},
      {GRPC_ARG_HTTP2_STREAM_LOOKAHEAD_BYTES, 8 << 20},
      {GRPC_ARG_HTTP2_MAX_FRAME_SIZE, 1 << 20},
  };
  return *args;
}

grpc::ChannelArguments BulkChannelArguments() {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(kMaxMessageBytes);
  args.SetMaxSendMessageSize(kMaxMessageBytes);
  for (const auto& [key, value] : BulkTransferArguments()) args.SetInt(key, value);
  return args;
}

void SetQuickReconnect(grpc::ChannelArguments& args) {
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, kMaxReconnectBackoffMs);
}

void AwaitReconnect(grpc::Channel& channel) {
  // GetState(true) also asks an IDLE channel to connect; only a channel that
  // has failed to connect is waited for (IDLE and CONNECTING queue the call,
  // which then polls the channel itself).
  if (channel.GetState(/*try_to_connect=*/true) != GRPC_CHANNEL_TRANSIENT_FAILURE) {
    return;
  }
  // The longest backoff, and its jitter (gRPC's is 20%) with some room.
  channel.WaitForConnected(std::chrono::system_clock::now() +
                           std::chrono::milliseconds(kMaxReconnectBackoffMs * 5 / 4));
}

std::shared_ptr<grpc::Channel> UnixChannel(const std::string& socket_path) {
  grpc::ChannelArguments args = BulkChannelArguments();
  // A restarted service is found again within a second.
  SetQuickReconnect(args);
  // Not a backoff in gRPC 1.51: the time one connection attempt may take,
  // HTTP/2 SETTINGS included. It was 100 ms, and under load (thousands of
  // calls at once, or a sanitizer build) the handshake took longer: the
  // attempt was dropped and every call queued on the channel failed
  // UNAVAILABLE at once. A service that is down refuses the connect at once
  // anyway (no socket, or ECONNREFUSED), so this only bounds a slow one.
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 5000);
  return grpc::CreateCustomChannel(UnixAddress(socket_path),
                                   grpc::InsecureChannelCredentials(), args);
}

}  // namespace pm
