// The registry's etcd TLS flags, and how a failed call to etcd is worded
// (the messages gRPC gives were seen against a real etcd: cluster_test).
#include "registry/etcd_tls.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace pm::registry {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

TEST(EtcdTlsFromFlagsTest, NoFlagsIsPlaintext) {
  absl::StatusOr<EtcdTls> tls = EtcdTlsFromFlags("", "", "", "");
  ASSERT_TRUE(tls.ok()) << tls.status();
  EXPECT_FALSE(tls->enabled());
  EXPECT_EQ(tls->Describe(), "in plaintext");
}

TEST(EtcdTlsFromFlagsTest, AllThreeFilesAreTlsCheckingTheNameEtcdUnlessToldOtherwise) {
  absl::StatusOr<EtcdTls> tls = EtcdTlsFromFlags("ca.pem", "c.pem", "c.key", "");
  ASSERT_TRUE(tls.ok()) << tls.status();
  EXPECT_TRUE(tls->enabled());
  EXPECT_EQ(tls->server_name, "etcd");
  EXPECT_EQ(tls->Describe(), "over TLS");
  tls = EtcdTlsFromFlags("ca.pem", "c.pem", "c.key", "etcd.example.com");
  ASSERT_TRUE(tls.ok()) << tls.status();
  EXPECT_EQ(tls->server_name, "etcd.example.com");
}

TEST(EtcdTlsFromFlagsTest, APartialSetIsRefusedNamingTheMissingFlag) {
  absl::StatusOr<EtcdTls> no_key = EtcdTlsFromFlags("ca.pem", "c.pem", "", "");
  EXPECT_EQ(no_key.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(no_key.status().message(),
            "--etcd_key_file is missing: TLS to etcd takes --etcd_ca_file, "
            "--etcd_cert_file and --etcd_key_file together (or none of them)");
  absl::StatusOr<EtcdTls> no_ca = EtcdTlsFromFlags("", "c.pem", "c.key", "");
  EXPECT_EQ(no_ca.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(no_ca.status().message(), HasSubstr("--etcd_ca_file is missing"));
  absl::StatusOr<EtcdTls> name_alone = EtcdTlsFromFlags("", "", "", "etcd");
  EXPECT_EQ(name_alone.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(name_alone.status().message(),
              HasSubstr("--etcd_server_name=etcd means nothing in plaintext"));
}

EtcdTls Files() {
  EtcdTls tls;
  tls.ca_file = "/pki/etcd-ca.pem";
  tls.cert_file = "/pki/etcd-client.pem";
  tls.key_file = "/pki/etcd-client.key";
  return tls;
}

TEST(EtcdCallErrorTest, NamesTheEndpointsTheCallAndWhetherTlsWasOn) {
  const grpc::Status deadline(grpc::StatusCode::DEADLINE_EXCEEDED, "Deadline Exceeded");
  absl::Status error = EtcdCallError("10.0.0.1:2379,10.0.0.2:2379", Files(), "Txn", deadline);
  EXPECT_EQ(error.code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_EQ(error.message(),
            "etcd at 10.0.0.1:2379,10.0.0.2:2379 over TLS: Txn: Deadline Exceeded");
  error = EtcdCallError("h:2379", EtcdTls(), "Range", deadline);
  EXPECT_EQ(error.message(), "etcd at h:2379 in plaintext: Range: Deadline Exceeded");
}

TEST(EtcdCallErrorTest, SaysWhatOfTlsFailedWhenNoConnectionCouldBeMade) {
  const grpc::Status bad_ca(grpc::StatusCode::UNAVAILABLE,
                            "failed to connect to all addresses; last error: UNKNOWN: "
                            "ipv4:127.0.0.1:1: Ssl handshake failed: SSL_ERROR_SSL: "
                            "error:0A000086:SSL routines::certificate verify failed");
  EXPECT_THAT(EtcdCallError("h:1", Files(), "Txn", bad_ca).message(),
              HasSubstr("; TLS to etcd failed: etcd's certificate is not signed by the "
                        "CA of --etcd_ca_file"));
  const grpc::Status refused_cert(grpc::StatusCode::UNAVAILABLE,
                                  "failed to connect to all addresses; last error: "
                                  "UNAVAILABLE: ipv4:127.0.0.1:1: Endpoint read failed");
  EXPECT_THAT(EtcdCallError("h:1", Files(), "Txn", refused_cert).message(),
              HasSubstr("; TLS to etcd failed: etcd closed the connection in or right "
                        "after the handshake, as it does when it does not trust the "
                        "client certificate of --etcd_cert_file (it must be signed"));
  // The answer may reach a client of another host: no path of this one.
  for (const grpc::Status& failed : {bad_ca, refused_cert}) {
    EXPECT_THAT(EtcdCallError("h:1", Files(), "Txn", failed).message(),
                Not(HasSubstr("/pki/")));
  }
  const grpc::Status reset(grpc::StatusCode::UNAVAILABLE,
                           "failed to connect to all addresses; last error: "
                           "UNAVAILABLE: ipv4:127.0.0.1:1: Connection reset by peer");
  EXPECT_THAT(EtcdCallError("h:1", Files(), "Txn", reset).message(),
              HasSubstr("; TLS to etcd failed: etcd closed the connection"));
  const grpc::Status closed(grpc::StatusCode::UNAVAILABLE,
                            "failed to connect to all addresses; last error: "
                            "UNAVAILABLE: ipv4:127.0.0.1:1: Socket closed");
  EXPECT_THAT(EtcdCallError("h:1", EtcdTls(), "Txn", closed).message(),
              HasSubstr("; etcd closed the plaintext connection, as an etcd that "
                        "requires TLS (https client URLs) does"));
  // A member lost in the middle of a call, or one that is down, is no
  // matter of TLS.
  const grpc::Status lost(grpc::StatusCode::UNAVAILABLE, "Socket closed");
  EXPECT_THAT(EtcdCallError("h:1", Files(), "Watch", lost).message(),
              Not(HasSubstr("TLS to etcd failed")));
  const grpc::Status down(grpc::StatusCode::UNAVAILABLE,
                          "failed to connect to all addresses; last error: UNKNOWN: "
                          "ipv4:127.0.0.1:1: Failed to connect to remote host: "
                          "Connection refused");
  EXPECT_EQ(EtcdCallError("h:1", Files(), "Txn", down).message(),
            absl::StrCat("etcd at h:1 over TLS: Txn: ", down.error_message()));
}

}  // namespace
}  // namespace pm::registry
