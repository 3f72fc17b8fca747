#include "gateway/trusted_cas.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>

#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/fd.h"
#include "common/log.h"
#include "common/status_core.h"

namespace pm::gateway {
namespace {

struct BioFree {
  void operator()(BIO* bio) const { BIO_free(bio); }
};
struct X509Free {
  void operator()(X509* cert) const { X509_free(cert); }
};
struct StoreFree {
  void operator()(X509_STORE* store) const { X509_STORE_free(store); }
};
struct StoreCtxFree {
  void operator()(X509_STORE_CTX* ctx) const { X509_STORE_CTX_free(ctx); }
};
struct ChainFree {
  void operator()(STACK_OF(X509) * chain) const { sk_X509_pop_free(chain, X509_free); }
};
using CertPtr = std::unique_ptr<X509, X509Free>;
using StorePtr = std::unique_ptr<X509_STORE, StoreFree>;
using ChainPtr = std::unique_ptr<STACK_OF(X509), ChainFree>;

// At most this many chains are remembered; then the memory starts afresh
// (a flood of distinct certificates costs verifications, never memory).
constexpr size_t kMaxRemembered = 4096;

// Every certificate in `pem`, in order; empty when none parses.
std::vector<CertPtr> ParseCertificates(absl::string_view pem) {
  std::vector<CertPtr> certs;
  std::unique_ptr<BIO, BioFree> bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  if (bio == nullptr) return certs;
  while (X509* cert = PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr)) {
    certs.emplace_back(cert);
  }
  ERR_clear_error();  // the end of the input reads as an error
  return certs;
}

std::string Der(X509* cert) {
  unsigned char* der = nullptr;
  const int length = i2d_X509(cert, &der);
  if (length < 0) return "";
  std::string out(reinterpret_cast<char*>(der), static_cast<size_t>(length));
  OPENSSL_free(der);
  return out;
}

// OK, or OpenSSL's reason `leaf` does not verify against `store` for
// client authentication, with `untrusted` as intermediates.
absl::Status Verify(X509_STORE* store, X509* leaf, STACK_OF(X509) * untrusted) {
  std::unique_ptr<X509_STORE_CTX, StoreCtxFree> ctx(X509_STORE_CTX_new());
  if (ctx == nullptr || X509_STORE_CTX_init(ctx.get(), store, leaf, untrusted) != 1) {
    return absl::ResourceExhaustedError("X509_STORE_CTX_init failed");
  }
  X509_STORE_CTX_set_purpose(ctx.get(), X509_PURPOSE_SSL_CLIENT);
  if (X509_verify_cert(ctx.get()) == 1) return absl::OkStatus();
  const int error = X509_STORE_CTX_get_error(ctx.get());
  ERR_clear_error();
  return absl::PermissionDeniedError(X509_verify_cert_error_string(error));
}

// Verify for the chain in `pem`: its leaf first, then any intermediates.
absl::Status VerifyChain(X509_STORE* store, absl::string_view pem) {
  std::vector<CertPtr> certs = ParseCertificates(pem);
  if (certs.empty()) return absl::InvalidArgumentError("no PEM certificate in it");
  ChainPtr untrusted(sk_X509_new_null());
  if (untrusted == nullptr) return absl::ResourceExhaustedError("sk_X509_new_null failed");
  for (size_t i = 1; i < certs.size(); ++i) {
    if (sk_X509_push(untrusted.get(), certs[i].get()) <= 0) {
      return absl::ResourceExhaustedError("sk_X509_push failed");
    }
    certs[i].release();  // the stack owns it now
  }
  return Verify(store, certs[0].get(), untrusted.get());
}

}  // namespace

struct TrustedCas::Stores {
  StorePtr user;
  StorePtr peer;
};

namespace {

// A store of every certificate in `pem` (read from `flag`'s file).
absl::StatusOr<StorePtr> StoreOf(absl::string_view pem, absl::string_view flag,
                                 std::vector<std::string>* ders) {
  std::vector<CertPtr> certs = ParseCertificates(pem);
  if (certs.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag, ": the file holds no PEM certificate"));
  }
  StorePtr store(X509_STORE_new());
  if (store == nullptr) return absl::ResourceExhaustedError("X509_STORE_new failed");
  for (CertPtr& cert : certs) {
    if (X509_STORE_add_cert(store.get(), cert.get()) != 1) {
      ERR_clear_error();
      return absl::InvalidArgumentError(
          absl::StrCat(flag, ": a certificate of the file cannot be trusted"));
    }
    ders->push_back(Der(cert.get()));
  }
  return store;
}

}  // namespace

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
  absl::StatusOr<std::string> user = ReadFile(files_.user_ca_file);
  if (!user.ok()) {
    return absl::Status(user.status().code(),
                        absl::StrCat("--ca_file: ", user.status().message()));
  }
  absl::StatusOr<std::string> peer = ReadFile(files_.peer_ca_file);
  if (!peer.ok()) {
    return absl::Status(peer.status().code(),
                        absl::StrCat("--peer_ca_file: ", peer.status().message()));
  }
  std::string bundle = absl::StrCat(*user, user->empty() || user->back() == '\n' ? "" : "\n",
                                    *peer);
  {
    absl::MutexLock lock(&mu_);
    if (stores_ != nullptr && bundle == bundle_) return absl::OkStatus();
  }
  auto stores = std::make_shared<Stores>();
  std::vector<std::string> user_ders;
  std::vector<std::string> peer_ders;
  PM_ASSIGN_OR_RETURN(stores->user, StoreOf(*user, "--ca_file", &user_ders));
  PM_ASSIGN_OR_RETURN(stores->peer, StoreOf(*peer, "--peer_ca_file", &peer_ders));
  for (const std::string& der : peer_ders) {
    for (const std::string& other : user_ders) {
      if (der == other) {
        return absl::InvalidArgumentError(
            "--peer_ca_file holds a CA of --ca_file too: then a user's certificate "
            "could forward calls as any user. Give the gateways' certificates a CA "
            "of their own (certs/make_pki.sh makes peer-ca.pem)");
      }
    }
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
  std::shared_ptr<const Stores> stores;
  {
    absl::MutexLock lock(&mu_);
    if (auto it = seen_.find(pem_chain); it != seen_.end()) return it->second;
    stores = stores_;
  }
  Signers signers;
  signers.user = VerifyChain(stores->user.get(), pem_chain).ok();
  signers.peer = VerifyChain(stores->peer.get(), pem_chain).ok();
  absl::MutexLock lock(&mu_);
  if (stores_ == stores) {  // not a verdict of CAs replaced meanwhile
    if (seen_.size() >= kMaxRemembered) seen_.clear();
    seen_.emplace(pem_chain, signers);
  }
  return signers;
}

absl::Status TrustedCas::CheckPeerCertificate(absl::string_view pem, const std::string& file) {
  std::shared_ptr<const Stores> stores;
  {
    absl::MutexLock lock(&mu_);
    stores = stores_;
  }
  absl::Status verified = VerifyChain(stores->peer.get(), pem);
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
