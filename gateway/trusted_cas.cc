#include "gateway/trusted_cas.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/sha.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>

#include <time.h>

#include <algorithm>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/fd.h"
#include "common/log.h"
#include "common/status_core.h"
#include "gateway/openssl_ptr.h"

namespace pm::gateway {
namespace {

// At most this many chains are remembered; then the memory starts afresh.
constexpr size_t kMaxRemembered = 4096;
// A client's chain longer than this is no user's or gateway's (pm's are a
// leaf and at most an intermediate or two): refused unverified, so a chain
// padded to TLS's limit (100 KiB) costs neither memory nor verifications.
constexpr size_t kMaxChainBytes = 64 << 10;
constexpr size_t kMaxChainCertificates = 10;

// OpenSSL's errors raised inside `body` are dropped; any others stay.
template <typename Body>
auto KeepingErrorQueue(Body body) {
  ERR_set_mark();
  auto result = body();
  ERR_pop_to_mark();
  return result;
}

// Every certificate in `pem`, in order. `complete`: false when the text
// holds something after them that does not parse as one.
std::vector<CertPtr> ParseCertificates(absl::string_view pem, bool* complete = nullptr) {
  return KeepingErrorQueue([&] {
    std::vector<CertPtr> certs;
    BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
    if (bio == nullptr) return certs;
    while (X509* cert = PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr)) {
      certs.emplace_back(cert);
    }
    // The end of the input reads as "no start line"; anything else is a
    // block that does not parse.
    const unsigned long error = ERR_peek_last_error();
    if (complete != nullptr) {
      *complete = ERR_GET_LIB(error) == ERR_LIB_PEM && ERR_GET_REASON(error) == PEM_R_NO_START_LINE;
    }
    return certs;
  });
}

absl::StatusOr<std::string> PemOf(const std::vector<CertPtr>& certs) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (bio == nullptr) return absl::ResourceExhaustedError("BIO_new failed");
  for (const CertPtr& cert : certs) {
    if (PEM_write_bio_X509(bio.get(), cert.get()) != 1) {
      return absl::InternalError("PEM_write_bio_X509 failed");
    }
  }
  char* data = nullptr;
  const long length = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(length));
}

// A store of `certs` that verifies as gRPC's handshake does (OpenSSL's
// partial chains and trusted-first: a CA of the file may be an
// intermediate).
absl::StatusOr<StorePtr> StoreOf(const std::vector<CertPtr>& certs) {
  StorePtr store(X509_STORE_new());
  if (store == nullptr) return absl::ResourceExhaustedError("X509_STORE_new failed");
  X509_STORE_set_flags(store.get(), X509_V_FLAG_PARTIAL_CHAIN | X509_V_FLAG_TRUSTED_FIRST);
  for (const CertPtr& cert : certs) {
    if (!KeepingErrorQueue([&] { return X509_STORE_add_cert(store.get(), cert.get()) == 1; })) {
      return absl::InternalError("X509_STORE_add_cert failed");
    }
  }
  return store;
}

// OK, or OpenSSL's reason `leaf` does not verify against `store` (for
// client authentication when `client`), with `untrusted` as intermediates.
absl::Status Verify(X509_STORE* store, X509* leaf, STACK_OF(X509) * untrusted, bool client) {
  return KeepingErrorQueue([&]() -> absl::Status {
    StoreCtxPtr ctx(X509_STORE_CTX_new());
    if (ctx == nullptr || X509_STORE_CTX_init(ctx.get(), store, leaf, untrusted) != 1) {
      return absl::ResourceExhaustedError("X509_STORE_CTX_init failed");
    }
    if (client) X509_STORE_CTX_set_purpose(ctx.get(), X509_PURPOSE_SSL_CLIENT);
    if (X509_verify_cert(ctx.get()) == 1) return absl::OkStatus();
    return absl::PermissionDeniedError(
        X509_verify_cert_error_string(X509_STORE_CTX_get_error(ctx.get())));
  });
}

// `certs[1...]` as a stack of untrusted intermediates (copies held).
ChainPtr Intermediates(const std::vector<CertPtr>& certs, size_t skip) {
  ChainPtr chain(sk_X509_new_null());
  if (chain == nullptr) return chain;
  for (size_t i = 0; i < certs.size(); ++i) {
    if (i == skip) continue;
    X509_up_ref(certs[i].get());
    if (sk_X509_push(chain.get(), certs[i].get()) <= 0) X509_free(certs[i].get());
  }
  return chain;
}

// When the earliest certificate of `certs` stops being valid.
absl::Time NotAfter(const std::vector<CertPtr>& certs) {
  absl::Time earliest = absl::InfiniteFuture();
  for (const CertPtr& cert : certs) {
    struct tm when = {};
    if (ASN1_TIME_to_tm(X509_get0_notAfter(cert.get()), &when) != 1) return absl::InfinitePast();
    earliest = std::min(earliest, absl::FromTimeT(timegm(&when)));
  }
  return earliest;
}

// The bytes a chain is remembered by.
std::string Digest(absl::string_view pem) {
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(pem.data()), pem.size(), digest);
  return std::string(reinterpret_cast<char*>(digest), sizeof(digest));
}

// A CA file's certificates: INVALID_ARGUMENT naming `flag` when it holds
// none, or something that does not parse (gRPC's loader would stop there,
// and trust less than was checked).
absl::StatusOr<std::vector<CertPtr>> ReadCas(const std::string& path, absl::string_view flag) {
  absl::StatusOr<std::string> text = ReadFile(path);
  if (!text.ok()) {
    return absl::Status(text.status().code(), absl::StrCat(flag, ": ", text.status().message()));
  }
  bool complete = false;
  std::vector<CertPtr> certs = ParseCertificates(*text, &complete);
  if (certs.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(flag, ": the file holds no PEM certificate"));
  }
  if (!complete) {
    return absl::InvalidArgumentError(absl::StrCat(
        flag, ": a block after its certificate ", certs.size(), " does not parse"));
  }
  return certs;
}

// Whether a certificate of `these` is, or chains to, one of `those` (or
// shares its key): then a certificate one CA signed could pass as the
// other's.
bool Overlap(const std::vector<CertPtr>& these, X509_STORE* those_store,
             const std::vector<CertPtr>& those) {
  for (size_t i = 0; i < these.size(); ++i) {
    ChainPtr others = Intermediates(these, i);
    if (Verify(those_store, these[i].get(), others.get(), /*client=*/false).ok()) return true;
    for (const CertPtr& other : those) {
      if (EVP_PKEY_eq(X509_get0_pubkey(these[i].get()), X509_get0_pubkey(other.get())) == 1) {
        return true;
      }
    }
  }
  return false;
}

}  // namespace

struct TrustedCas::Stores {
  StorePtr user;
  StorePtr peer;
};

absl::StatusOr<std::unique_ptr<TrustedCas>> TrustedCas::Load(Files files) {
  std::unique_ptr<TrustedCas> cas(new TrustedCas(std::move(files)));
  PM_RETURN_IF_ERROR(cas->Read(/*write_bundle=*/false));
  return cas;
}

absl::Status TrustedCas::WriteBundleAndWatch() {
  std::string bundle;
  {
    absl::MutexLock lock(&mu_);
    bundle = bundle_;
  }
  PM_RETURN_IF_ERROR(WriteFileAtomically(files_.bundle_file, bundle, 0644));
  if (files_.refresh_interval_s > 0 && !refresher_.joinable()) {
    refresher_ = std::thread([this] { RefreshLoop(); });
  }
  return absl::OkStatus();
}

TrustedCas::~TrustedCas() {
  stop_.Notify();
  if (refresher_.joinable()) refresher_.join();
}

absl::Status TrustedCas::Reload() { return Read(/*write_bundle=*/true); }

absl::Status TrustedCas::Read(bool write_bundle) {
  // One read at a time, from the files to the bundle written: a reload by
  // hand never crosses the refresh thread's.
  absl::MutexLock reading(&read_mu_);
  PM_ASSIGN_OR_RETURN(std::vector<CertPtr> user, ReadCas(files_.user_ca_file, "--ca_file"));
  PM_ASSIGN_OR_RETURN(std::vector<CertPtr> peer, ReadCas(files_.peer_ca_file, "--peer_ca_file"));
  std::vector<CertPtr> both;
  for (const std::vector<CertPtr>* certs : {&user, &peer}) {
    for (const CertPtr& cert : *certs) {
      X509_up_ref(cert.get());
      both.emplace_back(cert.get());
    }
  }
  // What the TLS door trusts is exactly what was checked: the certificates
  // parsed here, written anew.
  PM_ASSIGN_OR_RETURN(std::string bundle, PemOf(both));
  {
    absl::MutexLock lock(&mu_);
    if (stores_ != nullptr && bundle == bundle_) return absl::OkStatus();
  }
  auto stores = std::make_shared<Stores>();
  PM_ASSIGN_OR_RETURN(stores->user, StoreOf(user));
  PM_ASSIGN_OR_RETURN(stores->peer, StoreOf(peer));
  if (Overlap(user, stores->peer.get(), peer) || Overlap(peer, stores->user.get(), user)) {
    return absl::InvalidArgumentError(
        "--peer_ca_file and --ca_file share a CA (the same one, one issued by the "
        "other, or one key): then a user's certificate could forward calls as any "
        "user, or a gateway's call as a user. Give the gateways' certificates a CA "
        "of their own (certs/make_pki.sh makes peer-ca.pem)");
  }
  if (write_bundle) {
    PM_RETURN_IF_ERROR(WriteFileAtomically(files_.bundle_file, bundle, 0644));
  }
  absl::MutexLock lock(&mu_);
  bundle_ = std::move(bundle);
  stores_ = std::move(stores);
  seen_.clear();
  return absl::OkStatus();
}

void TrustedCas::RefreshLoop() {
  while (!stop_.WaitForNotificationWithTimeout(absl::Seconds(files_.refresh_interval_s))) {
    if (absl::Status reloaded = Reload(); !reloaded.ok()) {
      // The CAs that were good stay in force; the log says why the new
      // ones are not taken, each interval until they are fixed.
      PM_LOG(WARNING) << "keeping the CAs of the last good read: " << reloaded;
    }
  }
}

TrustedCas::Signers TrustedCas::SignersOf(absl::string_view pem_chain) {
  if (pem_chain.size() > kMaxChainBytes) return Signers();
  const std::string key = Digest(pem_chain);
  const absl::Time now = absl::Now();
  std::shared_ptr<const Stores> stores;
  {
    absl::MutexLock lock(&mu_);
    if (auto it = seen_.find(key); it != seen_.end() && now < it->second.until) {
      return it->second.signers;
    }
    stores = stores_;
  }
  std::vector<CertPtr> certs = ParseCertificates(pem_chain);
  if (certs.empty() || certs.size() > kMaxChainCertificates) return Signers();
  ChainPtr intermediates = Intermediates(certs, 0);
  Signers signers;
  signers.user = Verify(stores->user.get(), certs[0].get(), intermediates.get(), true).ok();
  signers.peer = Verify(stores->peer.get(), certs[0].get(), intermediates.get(), true).ok();
  absl::MutexLock lock(&mu_);
  if (stores_ == stores) {  // not a verdict of CAs replaced meanwhile
    if (seen_.size() >= kMaxRemembered) seen_.clear();
    // Until the first certificate of the chain expires: a connection open
    // past then is refused at its next call.
    seen_.insert_or_assign(key, Verdict{signers, NotAfter(certs)});
  }
  return signers;
}

absl::Status TrustedCas::CheckPeerCertificate(absl::string_view pem, const std::string& file) {
  std::shared_ptr<const Stores> stores;
  {
    absl::MutexLock lock(&mu_);
    stores = stores_;
  }
  std::vector<CertPtr> certs = ParseCertificates(pem);
  if (certs.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("peer certificate ", file, ": no PEM certificate in it"));
  }
  ChainPtr intermediates = Intermediates(certs, 0);
  absl::Status verified = Verify(stores->peer.get(), certs[0].get(), intermediates.get(), true);
  if (!verified.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "peer certificate ", file, " does not verify against --peer_ca_file (",
        verified.message(),
        "), so the other hosts' gateways would refuse every call it forwards "
        "(certs/make_pki.sh signs peer.pem with peer-ca.pem)"));
  }
  return absl::OkStatus();
}

}  // namespace pm::gateway
