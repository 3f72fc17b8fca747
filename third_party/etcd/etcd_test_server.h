// EtcdServer: one etcd member for a test, Debian's /usr/bin/etcd (package
// etcd-server) on free loopback ports, its data and log in a directory of
// the test's. Used by the tests of the etcd stubs and of the registry's
// cluster (issue 17).
//
//   absl::StatusOr<std::unique_ptr<EtcdServer>> etcd = EtcdServer::Start(dir);
//   auto kv = etcdserverpb::KV::NewStub((*etcd)->channel());
//   Cluster::Options options; options.endpoints = (*etcd)->endpoint();
//   absl::StatusOr<ExitStatus> end = (*etcd)->Stop();  // SIGTERM, then wait
//
// A member of a cluster of several, each on an address and ports of its
// own (e.g. in a network namespace: `prefix` runs etcd through nsenter):
// launch them all, then wait for each (a member serves once the cluster
// has a leader, which takes a majority of them).
//
//   EtcdServer::Options a{.dir = dir + "/a", .name = "a", .host = "10.1.0.2",
//                         .client_port = 2379, .peer_port = 2380,
//                         .initial_cluster = "a=http://10.1.0.2:2380,b=..."};
//   PM_ASSIGN_OR_RETURN(auto member_a, EtcdServer::Launch(a));  // b, c too
//   PM_RETURN_IF_ERROR(member_a->WaitUntilServing());            // b, c too
//   member_a->Kill();  ...  member_a->Relaunch();  // on its data, as before
//
// Over TLS, as Kubernetes runs etcd (Options::pki_dir, a directory made by
// certs/make_pki.sh): https client and peer URLs, client certificates
// required of clients and of peers, both checked against etcd-ca.pem; the
// test's own channel presents etcd-client.pem. The members' addresses must
// be among make_pki.sh's NAMEs (etcd checks them on its peers' certs).
//
//   EtcdServer::Options options{.dir = dir, .pki_dir = dir + "/pki"};
//   PM_ASSIGN_OR_RETURN(auto etcd, EtcdServer::Start(options));
#ifndef PM_THIRD_PARTY_ETCD_ETCD_TEST_SERVER_H_
#define PM_THIRD_PARTY_ETCD_ETCD_TEST_SERVER_H_

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/exit_status.h"
#include "common/fd.h"

namespace pm {

// One etcd member run by the test: `/usr/bin/etcd` on 127.0.0.1 (its client
// and peer ports picked free) unless the options say otherwise, its data in
// <dir>/data, its output in <dir>/etcd.log. Not thread-safe.
class EtcdServer {
 public:
  struct Options {
    // Its data (<dir>/data) and its log (<dir>/etcd.log, appended to).
    std::string dir;
    // Its name in its cluster (--name).
    std::string name = "pm-test";
    // The IPv4 address its client and peer URLs are on.
    std::string host = "127.0.0.1";
    // 0 (both): two ports free on 127.0.0.1 now, for a `host` there.
    int client_port = 0;
    int peer_port = 0;
    // --initial-cluster ("name=http://host:port,..."); empty: this member
    // alone.
    std::string initial_cluster;
    // A command that runs etcd with its arguments, e.g. {"/usr/bin/nsenter",
    // "--net=/run/netns/x", "--"}; it must exec etcd in its own process
    // (the pid is etcd's). Empty: etcd is spawned directly.
    std::vector<std::string> prefix;
    // TLS for clients and peers: certs/make_pki.sh's output (etcd-ca.pem,
    // etcd-server.pem/.key, etcd-client.pem/.key). Empty: plaintext.
    std::string pki_dir;
  };

  // Spawns etcd and waits until it answers a Range. Errors name the step
  // that failed (a PKI file that cannot be read: the file); when etcd ends
  // first (a bad flag, a port taken meanwhile), FAILED_PRECONDITION with its
  // exit status and its log.
  static absl::StatusOr<std::unique_ptr<EtcdServer>> Start(
      const std::string& dir);
  static absl::StatusOr<std::unique_ptr<EtcdServer>> Start(Options options);
  // Spawns etcd without waiting for it to serve (see WaitUntilServing):
  // the members of a cluster serve only once a majority of them runs.
  static absl::StatusOr<std::unique_ptr<EtcdServer>> Launch(Options options);

  // `members` members of one cluster on 127.0.0.1 (their ports picked
  // free), named m0, m1, ..., each in <dir>/m<i>: all launched, then each
  // waited for; over TLS with `pki_dir` (Options::pki_dir). The endpoints
  // in order: EndpointsOf(cluster).
  static absl::StatusOr<std::vector<std::unique_ptr<EtcdServer>>> StartCluster(
      const std::string& dir, int members, const std::string& pki_dir = "");

  // Waits until etcd answers a Range (a minute at most: a safety net), or
  // ends (FAILED_PRECONDITION with its exit status and its log).
  absl::Status WaitUntilServing();

  // Stops etcd if the test did not.
  ~EtcdServer();
  EtcdServer(const EtcdServer&) = delete;
  EtcdServer& operator=(const EtcdServer&) = delete;

  // A channel to its client port (null after Stop() or Kill(), until
  // Relaunch()).
  std::shared_ptr<grpc::Channel> channel() const { return channel_; }
  // Its client address, "<host>:<port>", for a client of its own.
  const std::string& endpoint() const { return endpoint_; }
  // Its peer URL, "http(s)://<host>:<port>", for --initial-cluster.
  const std::string& peer_url() const { return peer_url_; }
  // "https" with a pki_dir, else "http".
  static const char* Scheme(const Options& options);

  // What etcd printed so far (for failure messages).
  std::string log() const;

  // Stops etcd with SIGSTOP: it keeps its sockets (connections succeed,
  // requests are queued) but answers nothing until Resume(), as a hung or
  // partitioned member would.
  absl::Status Pause();
  // SIGCONT.
  absl::Status Resume();

  // SIGCONT (in case it was paused), then SIGTERM; after a minute without
  // an exit, SIGKILL. Returns how etcd ended: a clean stop is "killed by
  // signal 15", as etcd re-raises the signal once it has shut down. The
  // test's channel is dropped first: etcd waits for open streams before it
  // exits (so should other clients' be).
  absl::StatusOr<ExitStatus> Stop();
  // SIGKILL, as a crash or a lost machine would end it; returns how it
  // ended (killed by signal 9 unless it had ended already).
  absl::StatusOr<ExitStatus> Kill();
  // If this member leads its cluster now, hands the leadership to `other`
  // (etcd's MoveLeader), so that losing this member costs no election:
  // while there is no leader etcd holds every write, and drops those made
  // meanwhile only after its request timeout (7 s by default). Errors
  // name the call.
  absl::Status StepDownFor(const EtcdServer& other);

  // After Stop() or Kill(): etcd again, on the same data, addresses and
  // ports (it rejoins its cluster), without waiting for it to serve.
  absl::Status Relaunch();

 private:
  EtcdServer(Options options, std::shared_ptr<grpc::ChannelCredentials> credentials);

  std::string log_path() const { return options_.dir + "/etcd.log"; }
  std::vector<std::string> Argv() const;
  absl::Status Spawn();
  void OpenChannel();
  // True once etcd has exited (its pidfd is readable); false after
  // `timeout_ms` (-1: none) without.
  absl::StatusOr<bool> WaitForExit(int timeout_ms);
  absl::StatusOr<ExitStatus> Reap();

  const Options options_;
  // The test's credentials for its channel (etcd-client.pem over TLS).
  const std::shared_ptr<grpc::ChannelCredentials> credentials_;
  const std::string endpoint_;
  const std::string client_url_;
  const std::string peer_url_;
  std::shared_ptr<grpc::Channel> channel_;
  pid_t pid_ = -1;
  Fd pidfd_;
};

// The members' client endpoints, "host:port,host:port,...", in order.
std::string EndpointsOf(const std::vector<std::unique_ptr<EtcdServer>>& members);

}  // namespace pm

#endif  // PM_THIRD_PARTY_ETCD_ETCD_TEST_SERVER_H_
