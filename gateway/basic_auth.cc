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

absl::string_view View(grpc::string_ref ref) {
  return absl::string_view(ref.data(), ref.size());
}

// Printable ASCII kept, everything else as \xNN.
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

grpc::Status BasicAuthProcessor::Process(const InputMetadata& auth_metadata,
                                         grpc::AuthContext* context,
                                         OutputMetadata* consumed_auth_metadata,
                                         OutputMetadata*) {
  auto [first, last] = auth_metadata.equal_range(
      grpc::string_ref(kAuthorization.data(), kAuthorization.size()));
  if (first == last) {
    return grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                        "missing authorization header: this gateway wants "
                        "\"authorization: Basic base64(user:password)\"");
  }
  if (std::next(first) != last) {
    return grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                        "more than one authorization header");
  }
  absl::StatusOr<BasicCredentials> credentials =
      ParseBasicAuth(View(first->second));
  if (!credentials.ok()) {
    return grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                        std::string(credentials.status().message()));
  }
  absl::Status checked = users_->Check(credentials->user, credentials->password);
  if (!checked.ok()) {
    // The user name is logged (escaped: it is attacker-controlled), never
    // the password.
    PM_LOG(WARNING) << "refused a call from "
                    << FirstProperty(*context, GRPC_X509_SUBJECT_PROPERTY_NAME)
                    << " as user \"" << Printable(credentials->user)
                    << "\": " << checked.message();
    return grpc::Status(grpc::StatusCode::PERMISSION_DENIED,
                        std::string(checked.message()));
  }
  consumed_auth_metadata->insert(
      {std::string(View(first->first)), std::string(View(first->second))});
  auto [owner_first, owner_last] = auth_metadata.equal_range(
      grpc::string_ref(kOwnerHeader.data(), kOwnerHeader.size()));
  for (auto it = owner_first; it != owner_last; ++it) {
    consumed_auth_metadata->insert(
        {std::string(View(it->first)), std::string(View(it->second))});
  }
  context->AddProperty(kUserProperty, credentials->user);
  return grpc::Status::OK;
}

std::string OwnerOf(const grpc::AuthContext& context) {
  std::string user = FirstProperty(context, kUserProperty);
  if (user.empty()) return "";
  std::string subject = FirstProperty(context, GRPC_X509_SUBJECT_PROPERTY_NAME);
  if (subject.empty()) return Printable(user);
  return absl::StrCat(Printable(user), " (", Printable(subject), ")");
}

}  // namespace pm::gateway
