// Owners of OpenSSL's objects: unique_ptrs that free each with its own
// function, for the gateway's certificate and TLS code (one place, not a
// deleter per file).
//
//   pm::gateway::CertPtr cert(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
#ifndef PM_GATEWAY_OPENSSL_PTR_H_
#define PM_GATEWAY_OPENSSL_PTR_H_

#include <openssl/bio.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>

#include <memory>

namespace pm::gateway {

struct OpenSslFree {
  void operator()(BIO* bio) const { BIO_free(bio); }
  void operator()(X509* cert) const { X509_free(cert); }
  void operator()(X509_STORE* store) const { X509_STORE_free(store); }
  void operator()(X509_STORE_CTX* ctx) const { X509_STORE_CTX_free(ctx); }
  // A stack of certificates, and the certificates it holds.
  void operator()(STACK_OF(X509) * chain) const { sk_X509_pop_free(chain, X509_free); }
  void operator()(SSL_CTX* ctx) const { SSL_CTX_free(ctx); }
};

using BioPtr = std::unique_ptr<BIO, OpenSslFree>;
using CertPtr = std::unique_ptr<X509, OpenSslFree>;
using StorePtr = std::unique_ptr<X509_STORE, OpenSslFree>;
using StoreCtxPtr = std::unique_ptr<X509_STORE_CTX, OpenSslFree>;
using ChainPtr = std::unique_ptr<STACK_OF(X509), OpenSslFree>;
using SslCtxPtr = std::unique_ptr<SSL_CTX, OpenSslFree>;

}  // namespace pm::gateway

#endif  // PM_GATEWAY_OPENSSL_PTR_H_
