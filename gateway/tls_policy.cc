#include "gateway/tls_policy.h"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>

#include <algorithm>

#include <grpcpp/security/tls_certificate_provider.h>
#include <grpcpp/security/tls_credentials_options.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/status.h"
#include "gateway/openssl_ptr.h"

namespace pm::gateway {
namespace {

constexpr char kCipherVariable[] = "GRPC_SSL_CIPHER_SUITES";

// OpenSSL's error queue as text, emptied.
std::string OpenSslErrors() {
  std::string text;
  unsigned long code;
  while ((code = ERR_get_error()) != 0) {
    char buffer[256];
    ERR_error_string_n(code, buffer, sizeof(buffer));
    if (!text.empty()) text += "; ";
    text += buffer;
  }
  return text.empty() ? "unknown OpenSSL error" : text;
}

// The suites an SSL_CTX enables for `version` (TLS1_2_VERSION or
// TLS1_3_VERSION), as OpenSSL names them.
std::vector<std::string> EnabledSuites(SSL_CTX* ctx, int version) {
  std::vector<std::string> names;
  SSL* ssl = SSL_new(ctx);
  if (ssl == nullptr) return names;
  STACK_OF(SSL_CIPHER)* ciphers = SSL_get1_supported_ciphers(ssl);
  for (int i = 0; ciphers != nullptr && i < sk_SSL_CIPHER_num(ciphers); ++i) {
    const SSL_CIPHER* cipher = sk_SSL_CIPHER_value(ciphers, i);
    const bool tls13 =
        absl::string_view(SSL_CIPHER_get_version(cipher)) == "TLSv1.3";
    if (tls13 == (version == TLS1_3_VERSION)) {
      names.push_back(SSL_CIPHER_get_name(cipher));
    }
  }
  sk_SSL_CIPHER_free(ciphers);
  SSL_free(ssl);
  return names;
}

using CtxPtr = SslCtxPtr;

absl::StatusOr<CtxPtr> NewServerCtx() {
  CtxPtr ctx(SSL_CTX_new(TLS_server_method()));
  if (!ctx) return absl::InternalError(absl::StrCat("SSL_CTX_new: ", OpenSslErrors()));
  SSL_CTX_set_min_proto_version(ctx.get(), TLS1_2_VERSION);
  return ctx;
}

}  // namespace

const std::vector<std::string>& AllowedTls12Suites() {
  static const auto* suites = new std::vector<std::string>{
      "ECDHE-ECDSA-AES256-GCM-SHA384", "ECDHE-RSA-AES256-GCM-SHA384",
      "ECDHE-ECDSA-CHACHA20-POLY1305", "ECDHE-RSA-CHACHA20-POLY1305",
      "ECDHE-ECDSA-AES256-SHA384",
  };
  return *suites;
}

const std::vector<std::string>& AllowedTls13Suites() {
  static const auto* suites = new std::vector<std::string>{
      "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256",
      "TLS_AES_128_GCM_SHA256",
  };
  return *suites;
}

absl::Status ValidateCipherList(absl::string_view list) {
  std::vector<std::string> wanted = absl::StrSplit(list, ':', absl::SkipEmpty());
  if (wanted.empty()) return absl::InvalidArgumentError("empty cipher list");
  PM_ASSIGN_OR_RETURN(CtxPtr ctx, NewServerCtx());
  std::vector<std::string> unknown;
  for (const std::string& suite : wanted) {
    // One at a time, so the error names the suite OpenSSL does not know
    // (a whole list is accepted if any one entry is).
    if (SSL_CTX_set_cipher_list(ctx.get(), suite.c_str()) != 1) {
      ERR_clear_error();
      unknown.push_back(suite);
    }
  }
  if (!unknown.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "OpenSSL does not know the TLS 1.2 cipher suite(s) ",
        absl::StrJoin(unknown, ", "), " (see `openssl ciphers -v`)"));
  }
  const std::string joined(list);
  if (SSL_CTX_set_cipher_list(ctx.get(), joined.c_str()) != 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("cipher list \"", joined, "\": ", OpenSslErrors()));
  }
  // A name like "ECDHE" or "HIGH" is a selector, not a suite: insist that
  // the enabled set is the list itself.
  std::vector<std::string> enabled = EnabledSuites(ctx.get(), TLS1_2_VERSION);
  if (enabled != wanted) {
    return absl::InvalidArgumentError(absl::StrCat(
        "cipher list \"", joined, "\" enables ", absl::StrJoin(enabled, ":"),
        ", not exactly the listed suites"));
  }
  return absl::OkStatus();
}

absl::Status ApplyTlsPolicy() {
  const std::string list = absl::StrJoin(AllowedTls12Suites(), ":");
  PM_RETURN_IF_ERROR(ValidateCipherList(list));
  PM_ASSIGN_OR_RETURN(CtxPtr ctx, NewServerCtx());
  std::vector<std::string> tls13 = EnabledSuites(ctx.get(), TLS1_3_VERSION);
  std::vector<std::string> allowed13 = AllowedTls13Suites();
  std::sort(tls13.begin(), tls13.end());
  std::sort(allowed13.begin(), allowed13.end());
  if (tls13 != allowed13) {
    // gRPC 1.51 cannot set TLS 1.3 suites; OpenSSL's defaults must match.
    return absl::FailedPreconditionError(absl::StrCat(
        "OpenSSL's default TLS 1.3 suites are ", absl::StrJoin(tls13, ":"),
        "; the policy allows exactly ", absl::StrJoin(allowed13, ":")));
  }
  if (const char* current = getenv(kCipherVariable);
      current != nullptr && list != current) {
    return absl::FailedPreconditionError(absl::StrCat(
        kCipherVariable, " is set to \"", current,
        "\"; unset it: the gateway sets the policy's list itself"));
  }
  if (setenv(kCipherVariable, list.c_str(), 1) != 0) {
    return ErrnoError("setenv", kCipherVariable);
  }
  return absl::OkStatus();
}

absl::Status CheckTlsFiles(const TlsFiles& files) {
  PM_ASSIGN_OR_RETURN(CtxPtr ctx, NewServerCtx());
  auto failed = [](absl::string_view what, const std::string& path) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot use ", what, " ", path, ": ", OpenSslErrors()));
  };
  for (const std::string* path : {&files.ca_file, &files.cert_file, &files.key_file}) {
    if (path->empty()) return absl::InvalidArgumentError("a TLS file flag is empty");
    FILE* f = fopen(path->c_str(), "re");
    if (f == nullptr) return ErrnoError("open", *path);
    fclose(f);
  }
  if (SSL_CTX_load_verify_locations(ctx.get(), files.ca_file.c_str(), nullptr) != 1) {
    return failed("CA bundle", files.ca_file);
  }
  if (SSL_CTX_use_certificate_chain_file(ctx.get(), files.cert_file.c_str()) != 1) {
    return failed("certificate", files.cert_file);
  }
  if (SSL_CTX_use_PrivateKey_file(ctx.get(), files.key_file.c_str(),
                                  SSL_FILETYPE_PEM) != 1) {
    return failed("private key", files.key_file);
  }
  if (SSL_CTX_check_private_key(ctx.get()) != 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "private key ", files.key_file, " does not match certificate ",
        files.cert_file, ": ", OpenSslErrors()));
  }
  return absl::OkStatus();
}

std::shared_ptr<grpc::ServerCredentials> MakeServerCredentials(
    const TlsFiles& files,
    std::shared_ptr<grpc::AuthMetadataProcessor> processor) {
  auto provider =
      std::make_shared<grpc::experimental::FileWatcherCertificateProvider>(
          files.key_file, files.cert_file, files.ca_file,
          files.refresh_interval_s);
  grpc::experimental::TlsServerCredentialsOptions options(provider);
  options.watch_root_certs();
  options.watch_identity_key_cert_pairs();
  options.set_cert_request_type(
      GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  std::shared_ptr<grpc::ServerCredentials> credentials =
      grpc::experimental::TlsServerCredentials(options);
  if (processor != nullptr) credentials->SetAuthMetadataProcessor(processor);
  return credentials;
}

}  // namespace pm::gateway
