// The gRPC face of the log_store: pm.internal.v1.LogStore on the callback
// API, a small reactor per stream and no thread per stream.
//
//   LogStore store(options);
//   LogStoreService service(&store);
//   return pm::ServeUntilSignal(pm::Service::kLogStore, runtime_dir,
//                               {&service}, [&] { service.Shutdown(); });
//
// Append (one bidi stream per process, from the supervisor): Open, then Data
// and Gap in offset order, then Close; acknowledged with the log's end
// offset once the data is written to the process's segment files (so it
// survives a kill -9 of the log_store), one write in flight, newer ends
// coalesced. Open on a log that has output on disk answers with its end
// there; a failed write (a full disk) is a gap, not an error.
// Errors end the stream: INVALID_ARGUMENT (malformed id, message without a
// kind, data without a stream, offsets that overflow or a close below what
// was taken in), FAILED_PRECONDITION (anything before Open or a second Open,
// data past a close, a close at another offset than the first). A stream
// that ends without Close leaves the log open for the supervisor's
// reconnect; Open on it again answers with its end offset.
//
// StreamOutput: a write reactor per reader, holding a cursor and a
// segment_log::Reader on the process's files, so a slow or stuck reader
// never holds back the Append path or other readers; the output of a process
// from before a restart of the log_store, or written by another process, is
// served from its files the same way. Errors: INVALID_ARGUMENT (malformed id), NOT_FOUND ("no output
// for process <id>"), OUT_OF_RANGE (from_offset past the end), UNAVAILABLE
// ("log_store shutting down").
#ifndef PM_LOG_STORE_LOG_STORE_SERVICE_H_
#define PM_LOG_STORE_LOG_STORE_SERVICE_H_

#include <cstddef>
#include <map>
#include <memory>

#include <grpcpp/grpcpp.h>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/output_arena.h"
#include "common/stream_set.h"
#include "log_store/log_store.h"
#include "pm/internal/v1/internal.grpc.pb.h"

namespace pm::log_store {

namespace detail {

class AppendReactor;
class OutputReactor;

}  // namespace detail

class LogStoreService final
    : public pm::internal::v1::LogStore::CallbackService {
 public:
  // `store` must outlive the service.
  explicit LogStoreService(LogStore* store);
  ~LogStoreService() override;

  grpc::ServerBidiReactor<pm::internal::v1::AppendRequest,
                          pm::internal::v1::AppendResponse>*
  Append(grpc::CallbackServerContext* context) override;

  grpc::ServerWriteReactor<pm::v1::OutputChunk>* StreamOutput(
      grpc::CallbackServerContext* context,
      const pm::v1::StreamOutputRequest* request) override;

  // Ends every open stream with UNAVAILABLE "log_store shutting down" and
  // refuses new ones the same way, so grpc::Server::Shutdown need not wait
  // for follow streams, which would otherwise last as long as their
  // processes. A reader stuck with a write in flight ends when the server's
  // shutdown deadline cancels its call.
  void Shutdown();

  // Streams whose reactor has not reached OnDone yet.
  size_t append_stream_count() const;
  size_t output_stream_count() const;
  // Waits until the counts above are `appends` and `outputs`; false if
  // `timeout` passed first.
  bool WaitForStreamCounts(size_t appends, size_t outputs,
                           absl::Duration timeout) const;

 private:
  friend class detail::AppendReactor;
  friend class detail::OutputReactor;

  // The supervisor's output arena named in an Append Open, mapped once and
  // shared by the streams that use it (found again by the file's identity,
  // so a new arena under a reused name is mapped afresh).
  absl::StatusOr<std::shared_ptr<const MappedArena>> MapArena(
      const std::string& name);

  LogStore* const store_;
  absl::Mutex arenas_mu_;
  std::map<std::string, std::weak_ptr<const MappedArena>> arenas_
      ABSL_GUARDED_BY(arenas_mu_);
  // Each reactor from its start to its OnDone.
  StreamSet appends_;
  StreamSet outputs_;
};

}  // namespace pm::log_store

#endif  // PM_LOG_STORE_LOG_STORE_SERVICE_H_
