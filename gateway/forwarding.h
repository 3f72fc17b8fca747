// A call one gateway of a cluster forwards to another (issue 17; README,
// "Running on several hosts"), and who may forward one.
//
// The forwarding gateway has checked the caller's password and certificate;
// it sends the caller's own authorization header (the owner's gateway
// checks it again, against the same users file) and says, in headers of its
// own, which host forwards the call and the caller's certificate subject
// and address as it saw them. The owner's gateway believes those headers
// only on a connection whose client certificate is a peer certificate: one
// its CA signed with the cluster's organizational unit (`OU=pm peer` by
// default, the gateway's --peer_unit). A user's certificate that sends them
// is refused, so no user can pose as another user's certificate, and the
// login throttle, the owner on record and the audit log name the caller's
// certificate, never the forwarding gateway's.
//
//   // forwarding:
//   AddForwardHeaders(caller, "a", &client_context);
//   // receiving, in the auth processor:
//   absl::StatusOr<std::optional<Forwarded>> forwarded =
//       ReadForwarded(metadata, peer_pem, peer_unit);
#ifndef PM_GATEWAY_FORWARDING_H_
#define PM_GATEWAY_FORWARDING_H_

#include <map>
#include <optional>
#include <string>

#include <grpcpp/grpcpp.h>
#include <grpcpp/support/string_ref.h>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace pm::gateway {

// The host that forwarded the call (its node).
inline constexpr absl::string_view kForwardedByHeader = "pm-forwarded-by";
// The caller's client certificate subject, as the forwarding gateway saw it.
inline constexpr absl::string_view kForwardedSubjectHeader = "pm-forwarded-subject";
// The caller's address (gRPC's peer string) at the forwarding gateway.
inline constexpr absl::string_view kForwardedPeerHeader = "pm-forwarded-peer";
// The organizational unit of a peer certificate unless --peer_unit says
// otherwise (certs/make_pki.sh makes peer.pem with it).
inline constexpr char kDefaultPeerUnit[] = "pm peer";

// Who a forwarded call is from.
struct Forwarded {
  std::string node;     // the forwarding host
  std::string subject;  // the caller's certificate subject there
  std::string peer;     // the caller's address there
};

// Whether the PEM certificate's subject holds an OU attribute equal to
// `unit` (exactly; any of several). INVALID_ARGUMENT when the PEM does not
// parse.
absl::StatusOr<bool> CertificateHasUnit(absl::string_view pem, absl::string_view unit);

// A peer certificate may be one host's rather than the whole cluster's:
// its subject's CN is "pm-node:" and the host's node (as Kubernetes names a
// kubelet's "system:node:NAME"). A call it marks forwarded must say that
// host forwards it, and a gateway refuses to start on another host's.
inline constexpr absl::string_view kNodeNamePrefix = "pm-node:";

// The node a certificate names (kNodeNamePrefix), nullopt when it names
// none (a peer certificate of the whole cluster, as the dev PKI's
// peer.pem). INVALID_ARGUMENT when the PEM does not parse or it names two.
absl::StatusOr<std::optional<std::string>> CertificateNode(absl::string_view pem);

using CallMetadata = std::multimap<grpc::string_ref, grpc::string_ref>;

// Whether the call is marked forwarded, and from whom. nullopt: it is not.
// PERMISSION_DENIED, saying why, when it is marked but may not be: this
// gateway is in no cluster (`peer_unit` empty), or the connection's client
// certificate (`peer_pem`, its subject `peer_subject` for the message) is
// not a peer certificate of `peer_unit`, or is one host's
// (CertificateNode) and the call says another forwards it. UNAUTHENTICATED when a peer's
// forwarded call lacks a header or repeats one.
absl::StatusOr<std::optional<Forwarded>> ReadForwarded(const CallMetadata& metadata,
                                                       absl::string_view peer_pem,
                                                       absl::string_view peer_subject,
                                                       absl::string_view peer_unit);

// The forwarded headers of a call the auth processor has let through (it
// ran ReadForwarded): nullopt when the call is not marked forwarded. Bytes
// outside printable ASCII are written \xNN (a peer's gateway sends none).
std::optional<Forwarded> ForwardedOf(const CallMetadata& metadata);

// Marks `context` forwarded by host `node` on behalf of a caller with
// certificate subject `subject` at address `peer`.
void AddForwardHeaders(const std::string& node, const std::string& subject,
                       const std::string& peer, grpc::ClientContext* context);

}  // namespace pm::gateway

#endif  // PM_GATEWAY_FORWARDING_H_
