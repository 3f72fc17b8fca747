// Basic auth on top of mutual TLS, checked before any handler runs.
//
//   auto users = pm::gateway::UserStore::Open(users_file);
//   std::shared_ptr<grpc::ServerCredentials> creds = ...TLS...;
//   creds->SetAuthMetadataProcessor(
//       std::make_shared<pm::gateway::BasicAuthProcessor>(users->get(),
//                                                         &throttle, audit));
//   ...
//   // in a handler:
//   Caller caller = pm::gateway::RemoteCaller(*context, *users);
//
// The processor runs in gRPC's auth filter, before the call is routed, so a
// refused call never reaches a handler (a server interceptor would run too
// late for that). It reads `authorization: Basic base64(user:password)`:
//   - missing, repeated or malformed header -> UNAUTHENTICATED
//   - unknown user or wrong password        -> PERMISSION_DENIED
//     (the design doc's "HTTP 403")
//   - too many wrong passwords lately for the user or from the client's
//     certificate                           -> PERMISSION_DENIED, at once
//     and without checking (see auth_throttle.h)
// Error messages never hold the password. Any client-sent `pm-owner` or
// `pm-owner-user` header is consumed (only the gateway says who owns a
// process). A call marked forwarded by another host's gateway is refused
// (PERMISSION_DENIED) unless its certificate is a peer's (forwarding.h);
// one that is has the forwarded caller's certificate subject stand for its
// own in the throttle's key, the log and the audit.
//
// Identity is per call, never per connection. gRPC gives every call of a
// connection the same AuthContext, so the processor writes nothing into it
// (adding a property there from two calls at once corrupted memory, and the
// first call's user stuck to the connection). Instead the header stays in
// the call's own metadata: every call that reaches a handler on the TCP
// port carries exactly one authorization header, the one the processor has
// verified for that call, and RemoteCaller reads the user from it.
#ifndef PM_GATEWAY_BASIC_AUTH_H_
#define PM_GATEWAY_BASIC_AUTH_H_

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <grpcpp/security/auth_context.h>
#include <grpcpp/security/auth_metadata_processor.h>
#include <grpcpp/server_context.h>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "gateway/audit_log.h"
#include "gateway/auth_throttle.h"
#include "gateway/forwarding.h"
#include "gateway/trusted_cas.h"
#include "gateway/users.h"

namespace pm::gateway {

struct BasicCredentials {
  std::string user;
  std::string password;
};

// Parses an `authorization` header value "Basic <base64(user:password)>"
// (scheme case-insensitive). UNAUTHENTICATED saying what is wrong, without
// echoing the value.
absl::StatusOr<BasicCredentials> ParseBasicAuth(absl::string_view header);

// "Basic <base64(user:password)>" (for clients and tests).
std::string BasicAuthHeader(absl::string_view user, absl::string_view password);

class BasicAuthProcessor final : public grpc::AuthMetadataProcessor {
 public:
  // All must outlive the processor (and so the server); `audit` may be null.
  // `peer_unit`: in a cluster, the OU of the certificates whose calls may
  // be marked forwarded (forwarding.h); empty: none may. `cas`: in a
  // cluster with a peer CA (trusted_cas.h), which CA must have signed the
  // client's certificate: the peers' for a forwarded call, the users' for
  // any other; null: either CA the handshake trusts.
  BasicAuthProcessor(UserStore* users, AuthThrottle* throttle, AuditLog* audit,
                     std::string peer_unit = "", TrustedCas* cas = nullptr)
      : users_(users),
        throttle_(throttle),
        audit_(audit),
        peer_unit_(std::move(peer_unit)),
        cas_(cas) {}

  // Blocking: PBKDF2 takes tens of milliseconds, so gRPC runs Process on
  // its own thread pool rather than on a transport thread.
  bool IsBlocking() const override { return true; }

  grpc::Status Process(const InputMetadata& auth_metadata,
                       grpc::AuthContext* context,
                       OutputMetadata* consumed_auth_metadata,
                       OutputMetadata* response_metadata) override;

 private:
  // `forwarded` (as ReadForwarded read it) when the CA that signed the
  // connection's certificate may make this call; PERMISSION_DENIED naming
  // the certificate otherwise. Only with `cas_`.
  absl::StatusOr<std::optional<Forwarded>> CheckSigner(std::optional<Forwarded> forwarded,
                                                       const grpc::AuthContext& context,
                                                       const std::string& subject);

  static constexpr int kConcurrentChecks = 2;
  bool SlotFree() const ABSL_SHARED_LOCKS_REQUIRED(checks_mu_) {
    return checks_running_ < kConcurrentChecks;
  }

  // The throttle, then PBKDF2 (unless the cache says yes by now).
  absl::Status CheckThrottled(const BasicCredentials& credentials,
                              const std::vector<std::string>& keys);
  // PERMISSION_DENIED "too many failed logins" when a key is blocked now
  // (logged and audited once per block); nullopt when none is.
  std::optional<grpc::Status> RefuseIfBlocked(const std::vector<std::string>& keys,
                                              absl::string_view user,
                                              const std::string& subject,
                                              const InputMetadata& metadata);
  // The one authorization header, parsed; UNAUTHENTICATED saying why not.
  static absl::StatusOr<BasicCredentials> CredentialsOf(const InputMetadata& metadata);
  static grpc::Status Accept(const InputMetadata& metadata, OutputMetadata* consumed);
  static std::string TooMany(absl::Duration wait);
  // Logs and audits a refusal (`suppressed`: quiet refusals before it).
  grpc::Status Refuse(grpc::StatusCode code, std::string message,
                      absl::string_view user, const std::string& subject,
                      const InputMetadata& metadata, uint64_t suppressed = 0);

  UserStore* users_;
  AuthThrottle* throttle_;
  AuditLog* audit_;
  const std::string peer_unit_;
  TrustedCas* const cas_;
  absl::Mutex checks_mu_;
  int checks_running_ ABSL_GUARDED_BY(checks_mu_) = 0;
};

// Who makes a call.
struct Caller {
  // The authenticated user; empty for the trusted local socket.
  std::string user;
  // The client certificate's subject (escaped); empty when local. For a
  // call another host's gateway forwarded, the caller's there.
  std::string subject;
  // gRPC's peer string, e.g. "ipv4:127.0.0.1:51234"; for a forwarded call,
  // the caller's at the forwarding host, then " through host NODE".
  std::string peer;
  // The host that forwarded the call; empty when it came straight here.
  std::string forwarded_by;
  // Sees and acts on every process: an admin user, or a local caller.
  bool admin = false;
  // On the local unix socket: no user, no caps. (Not "no user": a remote
  // call always has one, and one without must get nothing.)
  bool local = false;
  // The call's verified authorization header, as the client sent it: what
  // a call forwarded to another host of the cluster carries (the owner's
  // gateway checks it again). Never logged.
  std::string authorization;
  // The owner recorded for a process started on this call: "USER (SUBJECT)",
  // e.g. "demo (CN=pm-client,O=pm dev)"; "" when local.
  std::string Owner() const;
  // Whether this caller may see and act on `owner_user`'s process.
  bool MaySee(absl::string_view owner_user) const {
    return admin || (!user.empty() && owner_user == user);
  }
};

// The caller of a call on the TCP port, where the processor above has
// verified the call's one authorization header: the user named there, the
// connection's certificate subject, and whether `users` marks the user
// admin.
Caller RemoteCaller(const grpc::CallbackServerContext& context, UserStore& users);
// A caller on the local unix socket (the runtime dir is 0700): an admin.
Caller LocalCaller(const grpc::CallbackServerContext& context);

// Printable ASCII kept, everything else (and '\') as \xNN: safe in
// metadata, logs and owner strings.
std::string Printable(absl::string_view text);

}  // namespace pm::gateway

#endif  // PM_GATEWAY_BASIC_AUTH_H_
