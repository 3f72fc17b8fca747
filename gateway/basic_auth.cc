#include "gateway/basic_auth.h"

#include <grpc/grpc_security_constants.h>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "common/metadata.h"

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

grpc::Status BasicAuthProcessor::Refuse(grpc::StatusCode code,
                                        std::string message,
                                        absl::string_view user,
                                        const std::string& subject,
                                        const InputMetadata& metadata) {
  // The user name is logged (escaped: it is attacker-controlled), never
  // the password.
  PM_LOG(WARNING) << "refused a call from " << subject << " as user \""
                  << Printable(user) << "\": " << message;
  if (audit_ != nullptr) {
    AuditEntry entry;
    entry.user = std::string(user);
    entry.subject = subject;
    entry.method = "authenticate";
    // The method, when gRPC passes the path along (it does: ":path").
    if (auto it = metadata.find(":path"); it != metadata.end()) {
      entry.method = absl::StrCat("authenticate ", View(it->second));
    }
    entry.code = code;
    entry.message = message;
    audit_->Record(entry);
  }
  return grpc::Status(code, std::move(message));
}

grpc::Status BasicAuthProcessor::Process(const InputMetadata& auth_metadata,
                                         grpc::AuthContext* context,
                                         OutputMetadata* consumed_auth_metadata,
                                         OutputMetadata*) {
  // Read only: this context is the connection's, shared by its calls.
  const std::string subject =
      Printable(FirstProperty(*context, GRPC_X509_SUBJECT_PROPERTY_NAME));
  auto [first, last] = auth_metadata.equal_range(
      grpc::string_ref(kAuthorization.data(), kAuthorization.size()));
  if (first == last) {
    return Refuse(grpc::StatusCode::UNAUTHENTICATED,
                  "missing authorization header: this gateway wants "
                  "\"authorization: Basic base64(user:password)\"",
                  "", subject, auth_metadata);
  }
  if (std::next(first) != last) {
    return Refuse(grpc::StatusCode::UNAUTHENTICATED,
                  "more than one authorization header", "", subject,
                  auth_metadata);
  }
  absl::StatusOr<BasicCredentials> credentials =
      ParseBasicAuth(View(first->second));
  if (!credentials.ok()) {
    return Refuse(grpc::StatusCode::UNAUTHENTICATED,
                  std::string(credentials.status().message()), "", subject,
                  auth_metadata);
  }
  const std::vector<std::string> keys = {absl::StrCat("user:", credentials->user),
                                         absl::StrCat("client:", subject)};
  // A client that has passed with this password lately pays nothing here.
  if (!users_->CheckedRecently(credentials->user, credentials->password)) {
    // PBKDF2 is slow on purpose: at most kConcurrentChecks run at once, so
    // a flood of guesses cannot take every core. A call that waited looks
    // at the cache and the throttle again: the calls of one new client that
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
                    std::string(checked.message()), credentials->user, subject,
                    auth_metadata);
    }
  }
  throttle_->Succeeded(keys);
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
  const absl::Time now = absl::Now();
  if (absl::Duration wait = throttle_->Blocked(keys, now);
      wait > absl::ZeroDuration()) {
    return absl::PermissionDeniedError(absl::StrCat(
        "too many wrong passwords lately for this user or from this client "
        "certificate; the next try is checked in ",
        absl::FormatDuration(absl::Ceil(wait, absl::Seconds(1)))));
  }
  absl::Status checked = users_->Check(credentials.user, credentials.password);
  if (!checked.ok()) throttle_->Failed(keys, absl::Now());
  return checked;
}

Caller RemoteCaller(const grpc::CallbackServerContext& context, UserStore& users) {
  Caller caller;
  caller.peer = context.peer();
  if (std::shared_ptr<const grpc::AuthContext> auth = context.auth_context()) {
    caller.subject = Printable(FirstProperty(*auth, GRPC_X509_SUBJECT_PROPERTY_NAME));
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
