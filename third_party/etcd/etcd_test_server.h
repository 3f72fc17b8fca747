// EtcdServer: one etcd member for a test, Debian's /usr/bin/etcd (package
// etcd-server) on free loopback ports, its data and log in a directory of
// the test's. Used by the tests of the etcd stubs and of pm's records on
// etcd (issue 17).
//
//   absl::StatusOr<std::unique_ptr<EtcdServer>> etcd = EtcdServer::Start(dir);
//   auto kv = etcdserverpb::KV::NewStub((*etcd)->channel());
//   EtcdRecordStore::Open({.endpoints = (*etcd)->endpoint(), ...});
//   absl::StatusOr<ExitStatus> end = (*etcd)->Stop();  // SIGTERM, then wait
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
// and peer ports picked free), its data in <dir>/data, its output in
// <dir>/etcd.log. Not thread-safe.
class EtcdServer {
 public:
  // Spawns etcd and waits until it answers a Range. Errors name the step
  // that failed; when etcd ends first (a bad flag, a port taken meanwhile),
  // FAILED_PRECONDITION with its exit status and its log.
  static absl::StatusOr<std::unique_ptr<EtcdServer>> Start(
      const std::string& dir);

  // Stops etcd if the test did not.
  ~EtcdServer();
  EtcdServer(const EtcdServer&) = delete;
  EtcdServer& operator=(const EtcdServer&) = delete;

  // A channel to its client port (null after Stop()).
  std::shared_ptr<grpc::Channel> channel() const { return channel_; }
  // Its client address, "127.0.0.1:<port>", for a client of its own.
  const std::string& endpoint() const { return endpoint_; }

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

 private:
  EtcdServer(std::string dir, int client_port, int peer_port);

  std::string log_path() const { return dir_ + "/etcd.log"; }
  std::vector<std::string> Argv() const;
  absl::Status Spawn();
  absl::Status WaitUntilServing();
  // True once etcd has exited (its pidfd is readable); false after
  // `timeout_ms` (-1: none) without.
  absl::StatusOr<bool> WaitForExit(int timeout_ms);
  absl::StatusOr<ExitStatus> Reap();

  const std::string dir_;
  const std::string endpoint_;
  const std::string client_url_;
  const std::string peer_url_;
  std::shared_ptr<grpc::Channel> channel_;
  pid_t pid_ = -1;
  Fd pidfd_;
};

}  // namespace pm

#endif  // PM_THIRD_PARTY_ETCD_ETCD_TEST_SERVER_H_
