// The gateway's TLS policy (the design doc's, exactly) on Debian's gRPC 1.51
// with OpenSSL 3:
//
//   TLS 1.3: TLS_AES_256_GCM_SHA384, TLS_CHACHA20_POLY1305_SHA256,
//            TLS_AES_128_GCM_SHA256 (OpenSSL's defaults: exactly these)
//   TLS 1.2: ECDHE-ECDSA-AES256-GCM-SHA384, ECDHE-RSA-AES256-GCM-SHA384,
//            ECDHE-ECDSA-CHACHA20-POLY1305, ECDHE-RSA-CHACHA20-POLY1305,
//            ECDHE-ECDSA-AES256-SHA384
//   TLS 1.0, 1.1: refused (gRPC's own minimum is 1.2)
//
// gRPC takes the TLS 1.2 list from the environment variable
// GRPC_SSL_CIPHER_SUITES, read once per process: when it first builds a TLS
// handshaker (for a server, at BuildAndStart; later credentials and
// certificate reloads reuse that list). Its default admits
// ECDHE-ECDSA-AES128-GCM-SHA256, which the policy forbids. So the gateway
// calls ApplyTlsPolicy() before building any credentials. An invalid list
// would not fail at start (the server listens and every handshake fails,
// TLS 1.3 included), so the list is checked against OpenSSL first.
// (Measured on Debian's gRPC 1.51.1 with OpenSSL 3.0.)
//
//   PM_RETURN_IF_ERROR(pm::gateway::ApplyTlsPolicy());   // first thing
//   auto creds = pm::gateway::MakeServerCredentials(files, processor);
//
// A server's key type decides which TLS 1.2 suites a handshake can reach:
// an ECDSA key (the dev PKI's P-256) the three ECDHE-ECDSA ones, an RSA key
// the two ECDHE-RSA ones.
#ifndef PM_GATEWAY_TLS_POLICY_H_
#define PM_GATEWAY_TLS_POLICY_H_

#include <memory>
#include <string>
#include <vector>

#include <grpcpp/security/auth_metadata_processor.h>
#include <grpcpp/security/server_credentials.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace pm::gateway {

// The TLS 1.2 suites of the policy, OpenSSL names, in preference order.
const std::vector<std::string>& AllowedTls12Suites();
// The TLS 1.3 suites of the policy (IANA names, as OpenSSL prints them).
const std::vector<std::string>& AllowedTls13Suites();

// OK when OpenSSL knows every suite of the colon-separated `list` and
// enables exactly those for TLS 1.2; INVALID_ARGUMENT naming the suites it
// does not know otherwise.
absl::Status ValidateCipherList(absl::string_view list);

// Sets GRPC_SSL_CIPHER_SUITES to the policy's TLS 1.2 list after checking
// it (ValidateCipherList) and that OpenSSL's TLS 1.3 defaults are exactly
// the policy's. FAILED_PRECONDITION when gRPC already read the variable or
// something else set it to another value. Call before any credentials.
absl::Status ApplyTlsPolicy();

// Where the server's key material is. Files are watched: replacing one (by
// rename, so a reader never sees half a file) takes effect for new
// handshakes within `refresh_interval_s` without a restart.
struct TlsFiles {
  std::string ca_file;    // CA bundle that client certificates must chain to
  std::string cert_file;  // server certificate chain (PEM)
  std::string key_file;   // its private key (PEM)
  unsigned refresh_interval_s = 10;
};

// Checks that the files exist and are PEM that OpenSSL can load, and that
// the key matches the certificate: a typo must fail at start, not at the
// first handshake. NOT_FOUND / INVALID_ARGUMENT naming the file.
absl::Status CheckTlsFiles(const TlsFiles& files);

// Mutual TLS server credentials (client certificate required and verified
// against ca_file) from a FileWatcherCertificateProvider, with `processor`
// (may be null) checking each call's metadata.
std::shared_ptr<grpc::ServerCredentials> MakeServerCredentials(
    const TlsFiles& files,
    std::shared_ptr<grpc::AuthMetadataProcessor> processor);

}  // namespace pm::gateway

#endif  // PM_GATEWAY_TLS_POLICY_H_
