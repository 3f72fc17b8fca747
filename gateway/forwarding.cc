#include "gateway/forwarding.h"

#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <memory>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/status_core.h"
#include "gateway/openssl_ptr.h"

namespace pm::gateway {
namespace {

absl::string_view View(grpc::string_ref ref) {
  return absl::string_view(ref.data(), ref.size());
}

// The one value of `key`; nullopt when absent, UNAUTHENTICATED when repeated.
absl::StatusOr<std::optional<std::string>> OneValue(const CallMetadata& metadata,
                                                    absl::string_view key) {
  auto [first, last] = metadata.equal_range(grpc::string_ref(key.data(), key.size()));
  if (first == last) return std::nullopt;
  if (std::next(first) != last) {
    return absl::UnauthenticatedError(absl::StrCat("more than one ", key, " header"));
  }
  return std::string(View(first->second));
}

// `text` with any byte outside printable ASCII as \xNN.
std::string Sanitized(absl::string_view text) {
  std::string out;
  for (unsigned char c : text) {
    if (c >= 0x20 && c < 0x7f) {
      out.push_back(static_cast<char>(c));
    } else {
      absl::StrAppend(&out, "\\x", absl::Hex(c, absl::kZeroPad2));
    }
  }
  return out;
}

}  // namespace

namespace {

// The values of the subject's attributes `nid` in the PEM certificate, as
// UTF-8. INVALID_ARGUMENT when the PEM does not parse.
absl::StatusOr<std::vector<std::string>> SubjectValues(absl::string_view pem, int nid) {
  BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  if (bio == nullptr) return absl::ResourceExhaustedError("BIO_new_mem_buf failed");
  ERR_set_mark();  // a PEM that does not parse leaves no error behind
  CertPtr cert(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
  ERR_pop_to_mark();
  if (cert == nullptr) {
    return absl::InvalidArgumentError("the client certificate's PEM does not parse");
  }
  std::vector<std::string> values;
  const X509_NAME* name = X509_get_subject_name(cert.get());
  for (int at = X509_NAME_get_index_by_NID(name, nid, -1); at >= 0;
       at = X509_NAME_get_index_by_NID(name, nid, at)) {
    const ASN1_STRING* data = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, at));
    unsigned char* utf8 = nullptr;
    const int length = ASN1_STRING_to_UTF8(&utf8, data);
    if (length < 0) continue;
    values.emplace_back(reinterpret_cast<const char*>(utf8), static_cast<size_t>(length));
    OPENSSL_free(utf8);
  }
  return values;
}

}  // namespace

absl::StatusOr<bool> CertificateHasUnit(absl::string_view pem, absl::string_view unit) {
  PM_ASSIGN_OR_RETURN(std::vector<std::string> units,
                      SubjectValues(pem, NID_organizationalUnitName));
  for (const std::string& value : units) {
    if (value == unit) return true;
  }
  return false;
}

absl::StatusOr<std::optional<std::string>> CertificateNode(absl::string_view pem) {
  PM_ASSIGN_OR_RETURN(std::vector<std::string> names, SubjectValues(pem, NID_commonName));
  std::optional<std::string> node;
  for (const std::string& name : names) {
    if (!absl::StartsWith(name, kNodeNamePrefix)) continue;
    std::string named = name.substr(kNodeNamePrefix.size());
    if (node.has_value() && *node != named) {
      return absl::InvalidArgumentError(absl::StrCat(
          "the certificate names two hosts, ", Sanitized(*node), " and ", Sanitized(named)));
    }
    node = std::move(named);
  }
  return node;
}

absl::StatusOr<std::optional<Forwarded>> ReadForwarded(const CallMetadata& metadata,
                                                       absl::string_view peer_pem,
                                                       absl::string_view peer_subject,
                                                       absl::string_view peer_unit) {
  absl::StatusOr<std::optional<std::string>> node = OneValue(metadata, kForwardedByHeader);
  if (!node.ok()) return node.status();
  if (!node->has_value()) return std::nullopt;
  if (peer_unit.empty()) {
    return absl::PermissionDeniedError(absl::StrCat(
        "the call is marked forwarded by another host's gateway (", kForwardedByHeader,
        "), but this gateway is in no cluster"));
  }
  absl::StatusOr<bool> is_peer =
      peer_pem.empty() ? false : CertificateHasUnit(peer_pem, peer_unit);
  if (!is_peer.ok() || !*is_peer) {
    return absl::PermissionDeniedError(absl::StrCat(
        "the call is marked forwarded by another host's gateway (", kForwardedByHeader,
        "), but its client certificate (", peer_subject.empty() ? "none" : peer_subject,
        ") is no gateway's of the cluster: only a certificate with OU=", peer_unit,
        " may forward calls"));
  }
  // A host's own certificate forwards only as that host: one host cannot
  // pose as another in the owner's logs and audit.
  absl::StatusOr<std::optional<std::string>> named = CertificateNode(peer_pem);
  if (!named.ok() || (named->has_value() && **named != **node)) {
    return absl::PermissionDeniedError(absl::StrCat(
        "the call is marked forwarded by host ", Sanitized(**node), " (", kForwardedByHeader,
        "), but its client certificate (", peer_subject, ") is ",
        named.ok() ? absl::StrCat("host ", Sanitized(**named), "'s")
                   : std::string(named.status().message()),
        ": a host's certificate forwards only that host's calls"));
  }
  for (absl::string_view key : {kForwardedSubjectHeader, kForwardedPeerHeader}) {
    absl::StatusOr<std::optional<std::string>> value = OneValue(metadata, key);
    if (!value.ok()) return value.status();
    if (!value->has_value()) {
      return absl::UnauthenticatedError(absl::StrCat(
          "a call forwarded by host ", Sanitized(**node), " without its ", key, " header"));
    }
  }
  return ForwardedOf(metadata);
}

std::optional<Forwarded> ForwardedOf(const CallMetadata& metadata) {
  auto value = [&](absl::string_view key) -> std::optional<std::string> {
    auto it = metadata.find(grpc::string_ref(key.data(), key.size()));
    if (it == metadata.end()) return std::nullopt;
    return Sanitized(View(it->second));
  };
  std::optional<std::string> node = value(kForwardedByHeader);
  if (!node.has_value()) return std::nullopt;
  return Forwarded{*std::move(node), value(kForwardedSubjectHeader).value_or(""),
                   value(kForwardedPeerHeader).value_or("")};
}

void AddForwardHeaders(const std::string& node, const std::string& subject,
                       const std::string& peer, grpc::ClientContext* context) {
  context->AddMetadata(std::string(kForwardedByHeader), node);
  context->AddMetadata(std::string(kForwardedSubjectHeader), subject);
  context->AddMetadata(std::string(kForwardedPeerHeader), peer);
}

}  // namespace pm::gateway
