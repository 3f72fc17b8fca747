// Fuzzes what a gateway of a cluster reads of a call marked forwarded
// (gateway/forwarding.h: ReadForwarded in the auth processor, ForwardedOf in
// the handlers) with any metadata a client can send, on a connection whose
// client certificate is a peer's, a near miss's, garbage or none.
//
// Input: byte 0 picks the connection's certificate (0 none, 1 a peer's
// with OU=pm peer, 2 one with OU=pm peers, 3 the rest of the input as PEM),
// byte 1 whether this gateway is in a cluster (0: no); then metadata lines
// "key=value\n".
//
// Invariants besides "no crash, no sanitizer report":
//   - a call not marked forwarded is never refused for it, and has no
//     forwarded caller;
//   - a marked call is accepted only in a cluster, on the peer's
//     certificate, with each of the three headers exactly once, and on a
//     host's own certificate (CN=pm-node:NODE) only as NODE; refused
//     otherwise with PERMISSION_DENIED or UNAUTHENTICATED;
//   - what is accepted is what ForwardedOf gives the handlers, in printable
//     ASCII only.
#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "gateway/forwarding.h"
#include "testing/fuzz/fuzz_check.h"

namespace {

// Self-signed (only the subject is read here; the TLS handshake is what
// checks the chain): OU=pm peer, and a near miss, OU=pm peers.
constexpr char kPeerPem[] =
    "-----BEGIN CERTIFICATE-----\n"
    "MIIBvzCCAWWgAwIBAgIUWjaWWfhRc4DFYG40t9VeN6SkYGUwCgYIKoZIzj0EAwIw\n"
    "NTENMAsGA1UECgwEZnV6ejEQMA4GA1UECwwHcG0gcGVlcjESMBAGA1UEAwwJZnV6\n"
    "ei1wZWVyMB4XDTI2MTIwNjA0MTgyN1oXDTM2MTIwMzA0MTgyN1owNTENMAsGA1UE\n"
    "CgwEZnV6ejEQMA4GA1UECwwHcG0gcGVlcjESMBAGA1UEAwwJZnV6ei1wZWVyMFkw\n"
    "EwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEp+T9TbPtKwXIgVQJWH8ECefUu/xFpQHM\n"
    "8ilj0M5s/L3A2f6j+f+oK0b5KshFrVzsXkn0R1cTPvgHUz+3GNv3cKNTMFEwHQYD\n"
    "VR0OBBYEFHs0pdxcpCnLRlLEazWLkeR1Y7llMB8GA1UdIwQYMBaAFHs0pdxcpCnL\n"
    "RlLEazWLkeR1Y7llMA8GA1UdEwEB/wQFMAMBAf8wCgYIKoZIzj0EAwIDSAAwRQIh\n"
    "AOFQTbVavtMQy+SohiLkN8LL19GNpxAzubl5xIoojrAJAiAabaBsMHxI1AD3YG/k\n"
    "0yNiCjyMfKo1xLG+VRdfHQbBjQ==\n"
    "-----END CERTIFICATE-----\n";
constexpr char kNearMissPem[] =
    "-----BEGIN CERTIFICATE-----\n"
    "MIIBwjCCAWegAwIBAgIUbXdhmILBqVXw5syME692Acs8Dm4wCgYIKoZIzj0EAwIw\n"
    "NjENMAsGA1UECgwEZnV6ejERMA8GA1UECwwIcG0gcGVlcnMxEjAQBgNVBAMMCWZ1\n"
    "enotdXNlcjAeFw0yNjEyMDYwNDE4MjdaFw0zNjEyMDMwNDE4MjdaMDYxDTALBgNV\n"
    "BAoMBGZ1enoxETAPBgNVBAsMCHBtIHBlZXJzMRIwEAYDVQQDDAlmdXp6LXVzZXIw\n"
    "WTATBgcqhkjOPQIBBggqhkjOPQMBBwNCAAR0dDbFdA/sVqaQW82hZsRYO5tnhNMP\n"
    "EaLKJ2LIrYz+exL8z2gD/M7IJZPunmolTPAQx0xfgYdmmudNfUJ+fr4yo1MwUTAd\n"
    "BgNVHQ4EFgQUnId8usPnEb8NGNA6QzCYAAxU+oUwHwYDVR0jBBgwFoAUnId8usPn\n"
    "Eb8NGNA6QzCYAAxU+oUwDwYDVR0TAQH/BAUwAwEB/zAKBggqhkjOPQQDAgNJADBG\n"
    "AiEAzfiBb62TedWNFPdmGMuh0yqrxTsG6fb5XXBQ3XwSeFMCIQC0xLOkTmyOl9hW\n"
    "jrQKRTL4XNY6AqD6NBxydQrZmmHCzg==\n"
    "-----END CERTIFICATE-----\n";

bool Printable(absl::string_view text) {
  for (unsigned char c : text) {
    if (c < 0x20 || c >= 0x7f) return false;
  }
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  const int certificate = data[0] % 4;
  const std::string unit = data[1] == 0 ? "" : pm::gateway::kDefaultPeerUnit;
  absl::string_view rest(reinterpret_cast<const char*>(data) + 2, size - 2);
  std::string pem;
  if (certificate == 1) pem = kPeerPem;
  if (certificate == 2) pem = kNearMissPem;
  if (certificate == 3) pem = std::string(rest);

  std::vector<std::pair<std::string, std::string>> lines;
  for (absl::string_view line : absl::StrSplit(rest, '\n')) {
    std::pair<std::string, std::string> kv = absl::StrSplit(line, absl::MaxSplits('=', 1));
    lines.push_back(std::move(kv));
  }
  pm::gateway::CallMetadata metadata;
  std::map<std::string, int> count;
  for (const auto& [key, value] : lines) {
    metadata.emplace(grpc::string_ref(key.data(), key.size()),
                     grpc::string_ref(value.data(), value.size()));
    ++count[key];
  }
  const bool marked = count[std::string(pm::gateway::kForwardedByHeader)] > 0;

  absl::StatusOr<std::optional<pm::gateway::Forwarded>> read =
      pm::gateway::ReadForwarded(metadata, pem, "CN=whoever", unit);
  std::optional<pm::gateway::Forwarded> given = pm::gateway::ForwardedOf(metadata);
  if (!marked) {
    PM_FUZZ_CHECK(read.ok()) << read.status();
    PM_FUZZ_CHECK(!read->has_value());
    PM_FUZZ_CHECK(!given.has_value());
    return 0;
  }
  if (!read.ok()) {
    PM_FUZZ_CHECK(read.status().code() == absl::StatusCode::kPermissionDenied ||
                  read.status().code() == absl::StatusCode::kUnauthenticated)
        << read.status();
    return 0;
  }
  PM_FUZZ_CHECK(read->has_value());
  PM_FUZZ_CHECK(!unit.empty());
  PM_FUZZ_CHECK(certificate == 1 || certificate == 3) << certificate;
  for (absl::string_view key : {pm::gateway::kForwardedByHeader,
                                pm::gateway::kForwardedSubjectHeader,
                                pm::gateway::kForwardedPeerHeader}) {
    PM_FUZZ_CHECK(count[std::string(key)] == 1) << key;
  }
  // A host's own certificate (CN=pm-node:NODE) forwards only as NODE.
  absl::StatusOr<std::optional<std::string>> named = pm::gateway::CertificateNode(pem);
  PM_FUZZ_CHECK(named.ok()) << named.status();
  if (named->has_value()) {
    auto by = metadata.find(grpc::string_ref(pm::gateway::kForwardedByHeader.data(),
                                             pm::gateway::kForwardedByHeader.size()));
    PM_FUZZ_CHECK(absl::string_view(by->second.data(), by->second.size()) == **named);
  }
  const pm::gateway::Forwarded& forwarded = **read;
  PM_FUZZ_CHECK(given.has_value());
  PM_FUZZ_CHECK(given->node == forwarded.node && given->subject == forwarded.subject &&
                given->peer == forwarded.peer);
  PM_FUZZ_CHECK(Printable(forwarded.node) && Printable(forwarded.subject) &&
                Printable(forwarded.peer));
  return 0;
}
