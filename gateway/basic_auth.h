// Basic auth on top of mutual TLS, checked before any handler runs.
//
//   auto users = pm::gateway::UserStore::Open(users_file);
//   std::shared_ptr<grpc::ServerCredentials> creds = ...TLS...;
//   creds->SetAuthMetadataProcessor(
//       std::make_shared<pm::gateway::BasicAuthProcessor>(users->get()));
//   ...
//   // in a handler:
//   std::string owner = pm::gateway::OwnerOf(*context->auth_context());
//
// The processor runs in gRPC's auth filter, before the call is routed, so a
// refused call never reaches a handler (a server interceptor would run too
// late for that). It reads `authorization: Basic base64(user:password)`:
//   - missing, repeated or malformed header -> UNAUTHENTICATED
//   - unknown user or wrong password        -> PERMISSION_DENIED
//     (the design doc's "HTTP 403")
// On success the header is consumed (handlers never see it), any
// client-sent `pm-owner` header is consumed too (only the gateway says who
// owns a process), and the user is added to the call's AuthContext as the
// property `pm_user`. Error messages never hold the password.
#ifndef PM_GATEWAY_BASIC_AUTH_H_
#define PM_GATEWAY_BASIC_AUTH_H_

#include <string>

#include <grpcpp/security/auth_context.h>
#include <grpcpp/security/auth_metadata_processor.h>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "gateway/users.h"

namespace pm::gateway {

// The AuthContext property holding the authenticated user.
inline constexpr char kUserProperty[] = "pm_user";

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
  // `users` must outlive the processor (and so the server).
  explicit BasicAuthProcessor(UserStore* users) : users_(users) {}

  // Blocking: PBKDF2 takes tens of milliseconds, so gRPC runs Process on
  // its own thread pool rather than on a transport thread.
  bool IsBlocking() const override { return true; }

  grpc::Status Process(const InputMetadata& auth_metadata,
                       grpc::AuthContext* context,
                       OutputMetadata* consumed_auth_metadata,
                       OutputMetadata* response_metadata) override;

 private:
  UserStore* users_;
};

// The owner recorded for a process started on this call: "USER (SUBJECT)",
// the authenticated user and the client certificate's subject, e.g.
// "demo (CN=pm-client,O=pm dev)"; "" for a call without an authenticated
// user (the trusted local socket). Non-printable characters are escaped, so
// the value is safe in gRPC metadata and logs.
std::string OwnerOf(const grpc::AuthContext& context);

}  // namespace pm::gateway

#endif  // PM_GATEWAY_BASIC_AUTH_H_
