#include "gateway/basic_auth.h"

#include <grpc/grpc_security_constants.h>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "common/metadata.h"
#include "gateway/forwarding.h"
#include "gateway/metrics.h"

namespace pm::gateway {
namespace {

constexpr absl::string_view kAuthorization = "authorization";
constexpr absl::string_view kOwnerHeader = pm::kOwnerMetadataKey;
constexpr absl::string_view kOwnerUserHeader = pm::kOwnerUserMetadataKey;

absl::string_view View(grpc::string_ref ref) {
  return absl::string_view(ref.data(), ref.size());
}

}  // namespace

std::string Printable(absl::string_view text) {
  std::string out;
  for (unsigned char c : text) {
    if (c >= 0x20 && c < 0x7f && c != '\\') {
      out.push_back(static_cast<char>(c));
    } else {
      absl::StrAppend(&out, "\\x", absl::Hex(c, absl::kZeroPad2));
    }
  }
  return out;
}

namespace {

std::string FirstProperty(const grpc::AuthContext& context, const char* name) {
  std::vector<grpc::string_ref> values = context.FindPropertyValues(name);
  return values.empty() ? "" : std::string(View(values.front()));
}

}  // namespace

absl::StatusOr<BasicCredentials> ParseBasicAuth(absl::string_view header) {
  constexpr absl::string_view kScheme = "basic ";
  if (header.size() < kScheme.size() ||
      !absl::EqualsIgnoreCase(header.substr(0, kScheme.size()), kScheme)) {
    return absl::UnauthenticatedError(
        "authorization header is not \"Basic base64(user:password)\"");
  }
  absl::string_view encoded =
      absl::StripAsciiWhitespace(header.substr(kScheme.size()));
  std::string decoded;
  if (encoded.empty() || !absl::Base64Unescape(encoded, &decoded)) {
    return absl::UnauthenticatedError(
        "authorization header: the credentials are not valid base64");
  }
  size_t colon = decoded.find(':');
  if (colon == std::string::npos || colon == 0) {
    return absl::UnauthenticatedError(
        "authorization header: the credentials are not \"user:password\"");
  }
  BasicCredentials credentials;
  credentials.user = decoded.substr(0, colon);
  credentials.password = decoded.substr(colon + 1);
  return credentials;
}

std::string BasicAuthHeader(absl::string_view user, absl::string_view password) {
  return absl::StrCat("Basic ",
                      absl::Base64Escape(absl::StrCat(user, ":", password)));
}

namespace {

// A client-sent name as it goes into logs: at most 64 bytes (no user name
// is longer), so a 10 KB name cannot flood them.
std::string Clip(absl::string_view name) {
  constexpr size_t kMax = 64;
  if (name.size() <= kMax) return std::string(name);
  return absl::StrCat(name.substr(0, kMax), "...(", name.size(), " bytes)");
}

}  // namespace

grpc::Status BasicAuthProcessor::Refuse(grpc::StatusCode code,
                                        std::string message,
                                        absl::string_view user,
                                        const std::string& subject,
                                        const InputMetadata& metadata,
                                        uint64_t suppressed) {
  std::string logged = message;
  if (suppressed > 0) {
    absl::StrAppend(&logged, " (and ", suppressed,
                    " more tries refused while blocked, not logged one by one)");
  }
  // The user name is logged (escaped and clipped: it is the client's),
  // never the password.
  PM_LOG(WARNING) << "refused a call from " << subject << " as user \""
                  << Printable(Clip(user)) << "\": " << logged;
  if (audit_ != nullptr) {
    AuditEntry entry;
    entry.user = Clip(user);
    entry.subject = subject;
    entry.method = "authenticate";
    // The method, when gRPC passes the path along (it does: ":path").
    if (auto it = metadata.find(":path"); it != metadata.end()) {
      entry.method = absl::StrCat("authenticate ", Clip(View(it->second)));
    }
    entry.code = code;
    entry.message = logged;
    audit_->Record(entry);
  }
  return grpc::Status(code, std::move(message));
}

absl::StatusOr<std::optional<Forwarded>> BasicAuthProcessor::CheckSigner(
    std::optional<Forwarded> forwarded, const grpc::AuthContext& context,
    const std::string& subject) {
  // The leaf, then what else the client sent (unverified: intermediates,
  // or anything; TrustedCas bounds it).
  const TrustedCas::Signers signers =
      cas_->SignersOf(absl::StrCat(FirstProperty(context, GRPC_X509_PEM_CERT_PROPERTY_NAME),
                                   FirstProperty(context, GRPC_X509_PEM_CERT_CHAIN_PROPERTY_NAME)));
  if (forwarded.has_value() && !signers.peer) {
    return absl::PermissionDeniedError(absl::StrCat(
        "the call is marked forwarded by another host's gateway (", kForwardedByHeader,
        "), but its client certificate (", subject,
        ") is no gateway's of the cluster: only a certificate from the peers' CA "
        "(the gateway's --peer_ca_file) may forward calls"));
  }
  if (!forwarded.has_value() && !signers.user && signers.peer) {
    return absl::PermissionDeniedError(absl::StrCat(
        "the client certificate (", subject,
        ") is one of the cluster's gateways' (from the peers' CA, the gateway's "
        "--peer_ca_file), which may only forward calls; a user's call needs a "
        "certificate from the users' CA (--ca_file)"));
  }
  if (!forwarded.has_value() && !signers.user) {
    // The handshake verified it against one of the two; a CA replaced
    // since may have left it with neither.
    return absl::PermissionDeniedError(absl::StrCat(
        "the client certificate (", subject,
        ") does not verify against the users' CA (--ca_file) for client authentication"));
  }
  return forwarded;
}

grpc::Status BasicAuthProcessor::Process(const InputMetadata& auth_metadata,
                                         grpc::AuthContext* context,
                                         OutputMetadata* consumed_auth_metadata,
                                         OutputMetadata*) {
  // Read only: this context is the connection's, shared by its calls.
  std::string subject = Printable(FirstProperty(*context, GRPC_X509_SUBJECT_PROPERTY_NAME));
  absl::StatusOr<std::optional<Forwarded>> forwarded = ReadForwarded(
      auth_metadata, FirstProperty(*context, GRPC_X509_PEM_CERT_PROPERTY_NAME), subject,
      peer_unit_);
  if (forwarded.ok() && cas_ != nullptr) {
    forwarded = CheckSigner(*std::move(forwarded), *context, subject);
  }
  if (!forwarded.ok()) {
    // Counted against the certificate as garbage credentials are: blocked
    // after a few, and then refused at once and logged once per block.
    const std::vector<std::string> keys = {absl::StrCat("client:", subject)};
    if (std::optional<grpc::Status> blocked =
            RefuseIfBlocked(keys, "", subject, auth_metadata)) {
      return *blocked;
    }
    throttle_->Failed(keys, absl::Now());
    Metrics().auth_failures.With({"malformed"}).Increment();
    return Refuse(static_cast<grpc::StatusCode>(forwarded.status().code()),
                  std::string(forwarded.status().message()), "", subject, auth_metadata);
  }
  // A caller another host's gateway vouches for is throttled, logged and
  // audited by its own certificate: one user's wrong passwords must not
  // block every call that host forwards.
  std::string client_key = absl::StrCat("client:", subject);
  if (forwarded->has_value()) {
    client_key = absl::StrCat("client:", (*forwarded)->subject);
    subject = absl::StrCat((*forwarded)->subject, " (through host ", (*forwarded)->node, ")");
  }
  std::vector<std::string> keys = {client_key};
  absl::StatusOr<BasicCredentials> credentials = CredentialsOf(auth_metadata);
  if (credentials.ok()) {
    // A client that has passed with this password lately pays nothing.
    if (users_->CheckedRecently(credentials->user, credentials->password)) {
      return Accept(auth_metadata, consumed_auth_metadata);
    }
    keys.push_back(absl::StrCat("user:", credentials->user));
  }
  const std::string user = credentials.ok() ? credentials->user : "";
  if (std::optional<grpc::Status> blocked =
          RefuseIfBlocked(keys, user, subject, auth_metadata)) {
    return *blocked;
  }
  if (!credentials.ok()) {
    // No usable credentials count as a failure of the client: a client
    // that sends garbage is throttled like one that guesses.
    throttle_->Failed(keys, absl::Now());
    Metrics().auth_failures.With({"malformed"}).Increment();
    return Refuse(grpc::StatusCode::UNAUTHENTICATED,
                  std::string(credentials.status().message()), "", subject,
                  auth_metadata);
  }
  // PBKDF2 is slow on purpose: at most kConcurrentChecks run at once, so a
  // flood of guesses cannot take every core. A call that waited looks at
  // the cache and the throttle again: the calls of one new client that
  // queue behind its first find its password verified, and the guesses
  // that queue behind failures find their key blocked.
  checks_mu_.LockWhen(absl::Condition(this, &BasicAuthProcessor::SlotFree));
  ++checks_running_;
  checks_mu_.Unlock();
  absl::Status checked = CheckThrottled(*credentials, keys);
  {
    absl::MutexLock lock(&checks_mu_);
    --checks_running_;
  }
  if (!checked.ok()) {
    return Refuse(static_cast<grpc::StatusCode>(checked.code()),
                  std::string(checked.message()), user, subject, auth_metadata);
  }
  // The user starts afresh; the client does not: a right password of one
  // user must not wipe the count of another's wrong ones from this client.
  throttle_->Succeeded({keys.back()});
  return Accept(auth_metadata, consumed_auth_metadata);
}

std::optional<grpc::Status> BasicAuthProcessor::RefuseIfBlocked(
    const std::vector<std::string>& keys, absl::string_view user,
    const std::string& subject, const InputMetadata& metadata) {
  // A blocked client or user is refused at once, and only the first such
  // refusal of a block is logged and audited.
  const absl::Duration wait = throttle_->Blocked(keys, absl::Now());
  if (wait <= absl::ZeroDuration()) return std::nullopt;
  Metrics().auth_failures.With({"throttled"}).Increment();
  uint64_t suppressed = 0;
  grpc::Status refused(grpc::StatusCode::PERMISSION_DENIED, TooMany(wait));
  if (!throttle_->ReportRefusal(keys, &suppressed)) return refused;
  return Refuse(refused.error_code(), refused.error_message(), user, subject, metadata,
                suppressed);
}

absl::StatusOr<BasicCredentials> BasicAuthProcessor::CredentialsOf(
    const InputMetadata& auth_metadata) {
  auto [first, last] = auth_metadata.equal_range(
      grpc::string_ref(kAuthorization.data(), kAuthorization.size()));
  if (first == last) {
    return absl::UnauthenticatedError(
        "missing authorization header: this gateway wants "
        "\"authorization: Basic base64(user:password)\"");
  }
  if (std::next(first) != last) {
    return absl::UnauthenticatedError("more than one authorization header");
  }
  return ParseBasicAuth(View(first->second));
}

grpc::Status BasicAuthProcessor::Accept(const InputMetadata& auth_metadata,
                                        OutputMetadata* consumed_auth_metadata) {
  // The authorization header stays: RemoteCaller reads this call's user
  // from it. Owner headers a client sent are dropped.
  for (absl::string_view key : {kOwnerHeader, kOwnerUserHeader}) {
    auto [owner_first, owner_last] =
        auth_metadata.equal_range(grpc::string_ref(key.data(), key.size()));
    for (auto it = owner_first; it != owner_last; ++it) {
      consumed_auth_metadata->insert(
          {std::string(View(it->first)), std::string(View(it->second))});
    }
  }
  return grpc::Status::OK;
}

std::string BasicAuthProcessor::TooMany(absl::Duration wait) {
  return absl::StrCat(
      "too many failed logins lately for this user or from this client "
      "certificate; the next try is checked in ",
      absl::FormatDuration(absl::Ceil(wait, absl::Seconds(1))));
}

std::string Caller::Owner() const {
  if (local || user.empty()) return "";
  if (subject.empty()) return user;
  return absl::StrCat(user, " (", subject, ")");
}

absl::Status BasicAuthProcessor::CheckThrottled(
    const BasicCredentials& credentials, const std::vector<std::string>& keys) {
  if (users_->CheckedRecently(credentials.user, credentials.password)) {
    return absl::OkStatus();
  }
  if (absl::Duration wait = throttle_->Blocked(keys, absl::Now());
      wait > absl::ZeroDuration()) {
    Metrics().auth_failures.With({"throttled"}).Increment();
    return absl::PermissionDeniedError(TooMany(wait));
  }
  absl::Status checked = users_->Check(credentials.user, credentials.password);
  if (!checked.ok()) {
    throttle_->Failed(keys, absl::Now());
    Metrics().auth_failures.With({"rejected"}).Increment();
  }
  return checked;
}

Caller RemoteCaller(const grpc::CallbackServerContext& context, UserStore& users) {
  Caller caller;
  caller.peer = context.peer();
  if (std::shared_ptr<const grpc::AuthContext> auth = context.auth_context()) {
    caller.subject = Printable(FirstProperty(*auth, GRPC_X509_SUBJECT_PROPERTY_NAME));
  }
  // Marked forwarded: the processor has checked that a peer's certificate
  // marked it (or refused the call) and that each header is there once.
  if (std::optional<Forwarded> forwarded = ForwardedOf(context.client_metadata())) {
    caller.forwarded_by = forwarded->node;
    caller.subject = forwarded->subject;
    caller.peer = absl::StrCat(forwarded->peer, " through host ", forwarded->node);
  }
  auto [first, last] = context.client_metadata().equal_range(
      grpc::string_ref(kAuthorization.data(), kAuthorization.size()));
  // Exactly one, verified by the processor for this call; anything else
  // cannot reach a handler on the TCP port, and leaves the caller with no
  // user (who may see nothing).
  if (first != last && std::next(first) == last) {
    if (absl::StatusOr<BasicCredentials> credentials =
            ParseBasicAuth(View(first->second));
        credentials.ok()) {
      caller.user = Printable(credentials->user);
      caller.admin = users.IsAdmin(credentials->user);
      caller.authorization = std::string(View(first->second));
    }
  }
  return caller;
}

Caller LocalCaller(const grpc::CallbackServerContext& context) {
  Caller caller;
  caller.peer = context.peer();
  caller.admin = true;
  caller.local = true;
  return caller;
}

}  // namespace pm::gateway
