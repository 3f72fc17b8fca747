// TrustedCas: the two CAs of a cluster gateway's TLS door, and which of them
// signed a connection's client certificate.
//
// In a cluster with a CA of its own for the gateways' certificates (the
// gateway's --peer_ca_file), the door trusts two CAs: the users' (--ca_file)
// and the peers'. The handshake only proves that the client's certificate
// chains to one of them; each call asks which:
//
//   TrustedCas::Signers signers = cas.SignersOf(pem_chain);
//   if (forwarded && !signers.peer) refuse;   // only a gateway forwards
//   if (!forwarded && !signers.user) refuse;  // a gateway calls only as one
//
// So a user's certificate can never forward calls, whatever its subject says
// (an OU is only text the users' CA signed), and a gateway's certificate
// cannot call as a user.
//
// gRPC's server reads its roots from one file: TrustedCas writes both CAs
// into `bundle_file` (atomically) and rewrites it, and reloads what it
// checks calls against, when either CA file changes (checked every
// `refresh_interval_s`, as the server's own certificate files are).
#ifndef PM_GATEWAY_TRUSTED_CAS_H_
#define PM_GATEWAY_TRUSTED_CAS_H_

#include <openssl/x509.h>

#include <memory>
#include <string>
#include <thread>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"

namespace pm::gateway {

class TrustedCas {
 public:
  struct Files {
    std::string user_ca_file;  // --ca_file
    std::string peer_ca_file;  // --peer_ca_file
    std::string bundle_file;   // written: both, for the TLS server
    unsigned refresh_interval_s = 10;
  };
  struct Signers {
    bool user = false;  // the chain verifies against the users' CA
    bool peer = false;  // ... against the peers' CA
  };

  // Reads both CA files. INVALID_ARGUMENT naming the flag when a file
  // holds no certificate or a block that does not parse, or when the two
  // share a CA (the same, one issued by the other, or one key: then nothing
  // tells a user from a gateway); the open's error when one cannot be read.
  static absl::StatusOr<std::unique_ptr<TrustedCas>> Load(Files files);
  ~TrustedCas();

  // Writes the bundle (once the gateway owns its runtime dir) and from then
  // on reads the CA files again every refresh_interval_s (none: 0).
  absl::Status WriteBundleAndWatch();

  const std::string& bundle_file() const { return files_.bundle_file; }

  // Which CAs `pem_chain` (the client's leaf first, then any intermediates
  // it sent) verifies against for client authentication. Neither for PEM
  // that does not parse, or a chain of more than 10 certificates or 64 KiB.
  // Remembered per chain (a connection's calls all bring the same one),
  // 4,096 chains at most, until the CA files change or a certificate of
  // the chain expires.
  Signers SignersOf(absl::string_view pem_chain);

  // OK when the certificate in `pem` (this gateway's own peer certificate,
  // read from `file`) verifies against the peers' CA; INVALID_ARGUMENT
  // naming the file and OpenSSL's reason otherwise: the other gateways
  // would refuse every call it forwards.
  absl::Status CheckPeerCertificate(absl::string_view pem, const std::string& file);

  // Reads the CA files again now (the refresh thread does every interval)
  // and, when they changed and are good, takes them and rewrites the
  // bundle. An error leaves the last good CAs in force.
  absl::Status Reload();

 private:
  struct Stores;
  explicit TrustedCas(Files files) : files_(std::move(files)) {}
  absl::Status Read(bool write_bundle);
  void RefreshLoop();

  struct Verdict {
    Signers signers;
    absl::Time until;  // the chain's first certificate to expire does then
  };

  const Files files_;
  absl::Mutex read_mu_;  // held through a Read, files to bundle
  absl::Mutex mu_;
  std::string bundle_ ABSL_GUARDED_BY(mu_);  // as last written
  std::shared_ptr<const Stores> stores_ ABSL_GUARDED_BY(mu_);
  // By the SHA-256 of the chain's PEM.
  absl::flat_hash_map<std::string, Verdict> seen_ ABSL_GUARDED_BY(mu_);
  absl::Notification stop_;
  std::thread refresher_;
};

}  // namespace pm::gateway

#endif  // PM_GATEWAY_TRUSTED_CAS_H_
