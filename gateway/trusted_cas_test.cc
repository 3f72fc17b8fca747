#include "gateway/trusted_cas.h"

#include <stdlib.h>
#include <sys/stat.h>

#include <atomic>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/fd.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace pm::gateway {
namespace {

using ::testing::HasSubstr;

class TrustedCasTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = absl::StrCat(getenv("TEST_TMPDIR"), "/cas");
    std::filesystem::remove_all(dir_);
    ASSERT_TRUE(std::filesystem::create_directories(dir_));
    const std::string script = absl::StrCat(getenv("TEST_SRCDIR"), "/pm/certs/make_pki.sh");
    const std::string command = absl::StrCat("bash '", script, "' '", dir_, "/pki'");
    ASSERT_EQ(system(command.c_str()), 0) << command;
    // The gateway reads --peer_ca_file from here; tests replace it.
    std::filesystem::copy_file(Pki("peer-ca.pem"), PeerCaFile());
  }
  std::string Pki(const std::string& name) { return absl::StrCat(dir_, "/pki/", name); }
  std::string PeerCaFile() { return absl::StrCat(dir_, "/peer-ca.pem"); }
  TrustedCas::Files Files() {
    // No refresh thread: the tests reload by hand.
    return {Pki("ca.pem"), PeerCaFile(), absl::StrCat(dir_, "/bundle.pem"), 0};
  }
  std::string Read(const std::string& name) { return *ReadFile(Pki(name)); }
  // Runs `command` (openssl) in the PKI directory.
  void InPki(const std::string& command) {
    const std::string line = absl::StrCat("cd '", dir_, "/pki' && ", command, " 2>/dev/null");
    ASSERT_EQ(system(line.c_str()), 0) << line;
  }

  std::string dir_;
};

TEST_F(TrustedCasTest, TellsWhichCaSignedAChain) {
  absl::StatusOr<std::unique_ptr<TrustedCas>> cas = TrustedCas::Load(Files());
  ASSERT_TRUE(cas.ok()) << cas.status();
  ASSERT_TRUE((*cas)->WriteBundleAndWatch().ok());
  TrustedCas::Signers client = (*cas)->SignersOf(Read("client.pem"));
  EXPECT_TRUE(client.user);
  EXPECT_FALSE(client.peer);
  TrustedCas::Signers peer = (*cas)->SignersOf(Read("peer.pem"));
  EXPECT_FALSE(peer.user);
  EXPECT_TRUE(peer.peer);
  // An OU is text in the subject: this one is a user's certificate.
  TrustedCas::Signers says_peer = (*cas)->SignersOf(Read("user-ou-peer.pem"));
  EXPECT_TRUE(says_peer.user);
  EXPECT_FALSE(says_peer.peer);
  for (const std::string& other :
       {Read("untrusted-client.pem"), std::string("not PEM"), std::string()}) {
    TrustedCas::Signers none = (*cas)->SignersOf(other);
    EXPECT_FALSE(none.user);
    EXPECT_FALSE(none.peer);
  }
  // A server's certificate (serverAuth only) is no client's.
  EXPECT_FALSE((*cas)->SignersOf(Read("server.pem")).user);
  // The TLS server trusts both.
  EXPECT_EQ(*ReadFile((*cas)->bundle_file()), Read("ca.pem") + Read("peer-ca.pem"));
}

TEST_F(TrustedCasTest, ChecksTheGatewaysOwnPeerCertificate) {
  absl::StatusOr<std::unique_ptr<TrustedCas>> cas = TrustedCas::Load(Files());
  ASSERT_TRUE(cas.ok()) << cas.status();
  EXPECT_TRUE((*cas)->CheckPeerCertificate(Read("peer.pem"), "peer.pem").ok());
  absl::Status wrong = (*cas)->CheckPeerCertificate(Read("user-ou-peer.pem"), "mine.pem");
  EXPECT_EQ(wrong.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(wrong.message(),
              HasSubstr("peer certificate mine.pem does not verify against --peer_ca_file "
                        "(unable to get local issuer certificate)"));
}

TEST_F(TrustedCasTest, RefusesFilesThatCannotTellUsersFromPeers) {
  TrustedCas::Files same = Files();
  same.peer_ca_file = Pki("ca.pem");
  absl::StatusOr<std::unique_ptr<TrustedCas>> cas = TrustedCas::Load(same);
  EXPECT_EQ(cas.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(cas.status().message(), HasSubstr("--peer_ca_file and --ca_file share a CA"));

  TrustedCas::Files empty = Files();
  ASSERT_TRUE(WriteFileAtomically(PeerCaFile(), "no certificate here\n", 0644).ok());
  cas = TrustedCas::Load(empty);
  EXPECT_EQ(cas.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(cas.status().message(),
              HasSubstr("--peer_ca_file: the file holds no PEM certificate"));

  TrustedCas::Files missing = Files();
  missing.user_ca_file = dir_ + "/nothing.pem";
  cas = TrustedCas::Load(missing);
  EXPECT_EQ(cas.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(cas.status().message(), HasSubstr("--ca_file: open(\"" + dir_ + "/nothing.pem\")"));
}

TEST_F(TrustedCasTest, RefusesAPeersCaThatIsTheUsersCaUnderAnotherName) {
  // The users' CA renewed (the same key and subject, a new certificate),
  // and a CA the users' CA issued: certificates of the users' CA would
  // verify against either.
  InPki("openssl req -x509 -new -key ca.key -sha256 -days 30 -subj '/O=pm dev/CN=pm dev CA' "
        "-addext basicConstraints=critical,CA:TRUE -out renewed-ca.pem");
  InPki("openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out sub-ca.key && "
        "openssl req -new -key sub-ca.key -subj '/O=pm dev/CN=sub CA' -out sub-ca.csr && "
        "printf 'basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign\n' > ca.ext && "
        "openssl x509 -req -in sub-ca.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 30 "
        "-extfile ca.ext -out sub-ca.pem");
  for (const char* name : {"renewed-ca.pem", "sub-ca.pem"}) {
    TrustedCas::Files files = Files();
    files.peer_ca_file = Pki(name);
    absl::StatusOr<std::unique_ptr<TrustedCas>> cas = TrustedCas::Load(files);
    EXPECT_EQ(cas.status().code(), absl::StatusCode::kInvalidArgument) << name;
    EXPECT_THAT(cas.status().message(), HasSubstr("share a CA")) << name;
    // And the other way round: the peers' CA under the users'.
    files = Files();
    files.user_ca_file = Pki(name);
    files.peer_ca_file = Pki("ca.pem");
    EXPECT_EQ(TrustedCas::Load(files).status().code(), absl::StatusCode::kInvalidArgument)
        << name;
  }
}

TEST_F(TrustedCasTest, ACaFileWithABlockThatDoesNotParseIsRefused) {
  // gRPC's loader would stop at the broken block and trust less than was
  // checked.
  ASSERT_TRUE(WriteFileAtomically(PeerCaFile(),
                                  Read("peer-ca.pem") + "-----BEGIN CERTIFICATE-----\nAAAA\n",
                                  0644)
                  .ok());
  absl::StatusOr<std::unique_ptr<TrustedCas>> cas = TrustedCas::Load(Files());
  EXPECT_EQ(cas.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(cas.status().message(),
              HasSubstr("--peer_ca_file: a block after its certificate 1 does not parse"));
}

TEST_F(TrustedCasTest, AnAbsurdChainIsNobodysAndCostsNoVerification) {
  absl::StatusOr<std::unique_ptr<TrustedCas>> cas = TrustedCas::Load(Files());
  ASSERT_TRUE(cas.ok()) << cas.status();
  // A user's leaf padded with copies of the CA: eleven certificates.
  std::string padded = Read("client.pem");
  for (int i = 0; i < 10; ++i) padded += Read("ca.pem");
  EXPECT_FALSE((*cas)->SignersOf(padded).user);
  // Up to ten, copies of the CA as intermediates change nothing.
  std::string fine = Read("client.pem");
  for (int i = 0; i < 9; ++i) fine += Read("ca.pem");
  EXPECT_TRUE((*cas)->SignersOf(fine).user);
  // 64 KiB and more: refused before parsing.
  EXPECT_FALSE((*cas)->SignersOf(Read("client.pem") + std::string(64 << 10, '\n')).user);
}

TEST_F(TrustedCasTest, AReplacedPeersCaTakesEffectOnReloadAndABadOneIsNotTaken) {
  absl::StatusOr<std::unique_ptr<TrustedCas>> cas = TrustedCas::Load(Files());
  ASSERT_TRUE(cas.ok()) << cas.status();
  ASSERT_TRUE((*cas)->SignersOf(Read("peer.pem")).peer);  // remembered now
  // The peers' CA is rotated: another CA's certificates are the peers'.
  ASSERT_TRUE(WriteFileAtomically(PeerCaFile(), Read("untrusted-ca.pem"), 0644).ok());
  ASSERT_TRUE((*cas)->Reload().ok());
  EXPECT_FALSE((*cas)->SignersOf(Read("peer.pem")).peer);
  EXPECT_TRUE((*cas)->SignersOf(Read("untrusted-client.pem")).peer);
  EXPECT_EQ(*ReadFile((*cas)->bundle_file()), Read("ca.pem") + Read("untrusted-ca.pem"));
  // A broken file is refused and the last good CAs stay in force.
  ASSERT_TRUE(WriteFileAtomically(PeerCaFile(), "-----BEGIN CERTIFICATE-----\n", 0644).ok());
  EXPECT_THAT((*cas)->Reload().message(), HasSubstr("--peer_ca_file"));
  EXPECT_TRUE((*cas)->SignersOf(Read("untrusted-client.pem")).peer);
  EXPECT_EQ(*ReadFile((*cas)->bundle_file()), Read("ca.pem") + Read("untrusted-ca.pem"));
}

TEST_F(TrustedCasTest, CallsAreCheckedWhileTheCasAreReloaded) {
  absl::StatusOr<std::unique_ptr<TrustedCas>> cas = TrustedCas::Load(Files());
  ASSERT_TRUE(cas.ok()) << cas.status();
  ASSERT_TRUE((*cas)->WriteBundleAndWatch().ok());
  const std::string client = Read("client.pem");
  const std::string peer = Read("peer.pem");
  std::atomic<int> wrong{0};
  std::vector<std::thread> callers;
  for (int t = 0; t < 4; ++t) {
    callers.emplace_back([&] {
      for (int i = 0; i < 300; ++i) {
        // The users' CA never changes; the peers' does, back and forth.
        if (!(*cas)->SignersOf(client).user) ++wrong;
        (*cas)->SignersOf(peer);
      }
    });
  }
  for (int i = 0; i < 20; ++i) {
    const char* next = i % 2 == 0 ? "untrusted-ca.pem" : "peer-ca.pem";
    ASSERT_TRUE(WriteFileAtomically(PeerCaFile(), Read(next), 0644).ok());
    ASSERT_TRUE((*cas)->Reload().ok());
  }
  for (std::thread& caller : callers) caller.join();
  EXPECT_EQ(wrong.load(), 0);
  EXPECT_TRUE((*cas)->SignersOf(peer).peer);  // peer-ca.pem is the last
}

}  // namespace
}  // namespace pm::gateway
