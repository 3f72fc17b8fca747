// The gRPC face of the log_store: pm.internal.v1.LogStore on the callback
// API, a small reactor per stream and no thread per stream.
//
//   LogStore store(options);
//   LogStoreService service(&store);
//   return pm::ServeUntilSignal(pm::Service::kLogStore, runtime_dir,
//                               {&service}, [&] { service.Shutdown(); });
//
// The log_store only reads: each process's pm-shim writes its output to
// the state dir (segment_log), and the log_store serves it from there.
//
// StreamOutput: a write reactor per reader, holding a cursor and a
// segment_log::Reader on the process's files, so a slow or stuck reader
// never holds back other readers. A follower is woken through the store's
// inotify watch on the directory (an append, a new segment, the end
// record, a deletion) and reads on the service's read pool, not on the
// inotify thread. It ends when the output has ended: at the end
// record, or, if the caps deleted every segment of an ended output (the end
// record too) or the directory was removed, after a chunk that reports what
// it knew was written as dropped_before. Errors: INVALID_ARGUMENT
// (malformed id), NOT_FOUND ("no output for process <id>"), OUT_OF_RANGE
// (from_offset past the end), UNAVAILABLE ("log_store shutting down").
#ifndef PM_LOG_STORE_LOG_STORE_SERVICE_H_
#define PM_LOG_STORE_LOG_STORE_SERVICE_H_

#include <cstddef>
#include <memory>

#include <grpcpp/grpcpp.h>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/stream_set.h"
#include "log_store/log_store.h"
#include "log_store/read_pool.h"
#include "pm/internal/v1/internal.grpc.pb.h"

namespace pm::log_store {

namespace detail {

class OutputReactor;

}  // namespace detail

class LogStoreService final
    : public pm::internal::v1::LogStore::CallbackService {
 public:
  // `store` must outlive the service.
  explicit LogStoreService(LogStore* store);
  ~LogStoreService() override;

  grpc::ServerWriteReactor<pm::v1::OutputChunk>* StreamOutput(
      grpc::CallbackServerContext* context,
      const pm::v1::StreamOutputRequest* request) override;

  // Ends every open stream with UNAVAILABLE "log_store shutting down" and
  // refuses new ones the same way, so grpc::Server::Shutdown need not wait
  // for follow streams, which would otherwise last as long as their
  // processes. A reader stuck with a write in flight ends when the server's
  // shutdown deadline cancels its call.
  void Shutdown();

  // StreamOutput streams whose reactor has not reached OnDone yet, and a
  // wait until there are `outputs`; false if `timeout` passed first.
  size_t output_stream_count() const;
  bool WaitForOutputStreamCount(size_t outputs, absl::Duration timeout) const;

 private:
  friend class detail::OutputReactor;

  // Threads that read for woken followers: a follower stuck in a read
  // (a dead disk) holds one, the others go on.
  static constexpr size_t kReadThreads = 4;

  LogStore* const store_;
  // Each reactor from its start to its OnDone.
  StreamSet outputs_;
  // Last: destroyed (its threads joined) first, before what its tasks use.
  ReadPool read_pool_;
};

}  // namespace pm::log_store

#endif  // PM_LOG_STORE_LOG_STORE_SERVICE_H_
