#include "log_store/log_store_service.h"

#include <errno.h>
#include <sys/stat.h>

#include <algorithm>
#include <iterator>
#include <limits>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "common/output_request.h"
#include "common/proto_time.h"
#include "common/status.h"

namespace pm::log_store {

using ::pm::v1::OutputChunk;
using ::pm::v1::StreamOutputRequest;

namespace {

constexpr char kShuttingDown[] = "log_store shutting down";

using segment_log::Stream;

OutputChunk::Stream ToProto(Stream stream) {
  switch (stream) {
    case Stream::kStdout:
      return OutputChunk::STREAM_STDOUT;
    case Stream::kStderr:
      return OutputChunk::STREAM_STDERR;
  }
  return OutputChunk::STREAM_UNSPECIFIED;
}

// A StreamOutput refused before it started.
class RefusedOutput final : public grpc::ServerWriteReactor<OutputChunk> {
 public:
  explicit RefusedOutput(grpc::Status status) { Finish(std::move(status)); }
  void OnDone() override { delete this; }
};

}  // namespace

namespace {

// A chunk holds bytes read within this long of its first: its time stands
// for all of them (OutputChunk.time).
constexpr absl::Duration kMergeWithin = absl::Milliseconds(1);

absl::StatusOr<segment_log::StreamSet> StreamsOf(
    const StreamOutputRequest& request) {
  if (request.streams().empty()) return segment_log::StreamSet{};
  segment_log::StreamSet set{false, false};
  for (int stream : request.streams()) {
    if (stream == OutputChunk::STREAM_STDOUT) {
      set.out = true;
    } else if (stream == OutputChunk::STREAM_STDERR) {
      set.err = true;
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat("streams: ", stream, " is not STREAM_STDOUT or STREAM_STDERR"));
    }
  }
  return set;
}

}  // namespace

namespace detail {

// One StreamOutput reader: a segment_log::Reader on the process's output
// directory, a cursor, and at most one chunk in flight. Pump() is the only
// place that reads the files, writes or finishes; it runs from the handler,
// OnWriteDone and OnCancel (gRPC's threads), and after a wake-up of the log
// on the service's read pool: the store's inotify thread only takes note
// and never reads (a slow read there would hold back every other
// follower's wake-up). RequestShutdown pumps too, but only to finish. `pumping_` lets one thread pump at a time and `repump_` makes it
// look again when another thread asked meanwhile, so no wake-up is lost.
// The reactor owns itself through self_ from Start to OnDone; the log, the
// service and a pending wake-up hold weak references.
class OutputReactor final : public grpc::ServerWriteReactor<OutputChunk>,
                            public pm::StreamReactor,
                            public OutputLog::Watcher,
                            public std::enable_shared_from_this<OutputReactor> {
 public:
  OutputReactor(LogStoreService* service, std::shared_ptr<OutputLog> log,
                std::unique_ptr<segment_log::Reader> reader, uint64_t cursor,
                uint64_t limit, bool follow, segment_log::StreamSet streams,
                std::optional<absl::Time> until)
      : service_(service),
        log_(std::move(log)),
        follow_(follow),
        limit_(limit),
        streams_(streams),
        until_(until),
        reader_(std::move(reader)),
        cursor_(cursor) {}

  void Start() {
    self_ = shared_from_this();
    if (!service_->outputs_.Add(self_)) {
      absl::MutexLock lock(&mu_);
      shutting_down_ = true;
    }
    if (follow_) {
      // Output another process writes wakes us through inotify.
      if (absl::Status watched = service_->store_->Follow(log_);
          !watched.ok()) {
        PM_LOG(WARNING) << "following process " << log_->id()
                        << " without inotify: " << watched;
      }
    }
    // Headers go out at once, so a client can tell (WaitForInitialMetadata)
    // that its stream is attached before the process writes anything.
    StartSendInitialMetadata();
    Pump();
  }

  // On the store's inotify thread: only schedules a Pump on the service's
  // read pool, unless a pump or a write in flight will look again anyway.
  void OnLogChanged() override {
    {
      absl::MutexLock lock(&mu_);
      if (finish_called_ || writing_ || wake_scheduled_) return;
      if (pumping_) {
        repump_ = true;
        return;
      }
      wake_scheduled_ = true;
    }
    service_->read_pool_.Post([weak = weak_from_this()] {
      if (std::shared_ptr<OutputReactor> self = weak.lock()) {
        self->OnWakeUp();
      }
    });
  }

  void OnWriteDone(bool ok) override {
    {
      absl::MutexLock lock(&mu_);
      writing_ = false;
      if (!ok) cancelled_ = true;  // the client went away
    }
    Pump();
  }

  void OnCancel() override {
    {
      absl::MutexLock lock(&mu_);
      cancelled_ = true;
    }
    Pump();
  }

  void OnDone() override {
    // Unregistered before the last reference goes, so the log never wakes
    // (and the service never shuts down) a reactor gRPC is done with.
    log_->Unwatch(this);
    if (follow_) service_->store_->Unfollow(*log_);
    service_->outputs_.Remove(this);
    // Last: dropping the self reference may delete this reactor.
    std::shared_ptr<OutputReactor> self = std::move(self_);
  }

  void RequestShutdown() override {
    {
      absl::MutexLock lock(&mu_);
      shutting_down_ = true;
    }
    Pump();
  }

 private:
  void OnWakeUp() {
    {
      absl::MutexLock lock(&mu_);
      wake_scheduled_ = false;
    }
    Pump();
  }

  struct Action {
    enum Kind { kWrite, kFinish, kWait } kind;
    grpc::Status status;
  };

  void Pump() {
    {
      absl::MutexLock lock(&mu_);
      if (finish_called_ || writing_) return;
      if (pumping_) {
        repump_ = true;
        return;
      }
      pumping_ = true;
    }
    for (;;) {
      Action action = Next();
      {
        absl::MutexLock lock(&mu_);
        if (action.kind == Action::kWait && repump_) {
          repump_ = false;
          continue;
        }
        pumping_ = false;
        repump_ = false;
        if (action.kind == Action::kWrite) writing_ = true;
        if (action.kind == Action::kFinish) finish_called_ = true;
      }
      // StartWrite and Finish outside mu_: the reactions they lead to take
      // it on other threads.
      if (action.kind == Action::kWrite) StartWrite(&chunk_);
      if (action.kind == Action::kFinish) Finish(std::move(action.status));
      return;
    }
  }

  // What to do next. Only the pumping thread runs this, with no write in
  // flight, so it owns reader_, cursor_ and chunk_.
  Action Next() {
    {
      absl::MutexLock lock(&mu_);
      if (cancelled_) {
        return {Action::kFinish, grpc::Status(grpc::StatusCode::CANCELLED,
                                              "StreamOutput cancelled")};
      }
      if (shutting_down_) {
        return {Action::kFinish,
                grpc::Status(grpc::StatusCode::UNAVAILABLE, kShuttingDown)};
      }
    }
    // Registered before reading, so a change after the read wakes us; one
    // read of the files per wake-up (a read at the end of what is written
    // lists the directory, the costly part with many followers).
    if (follow_) log_->Watch(weak_from_this());
    absl::StatusOr<std::optional<segment_log::Chunk>> chunk;
    while (true) {
      if (cursor_ > limit_) return {Action::kFinish, grpc::Status::OK};
      // At the limit only run starts there are still sent (a run that wrote
      // nothing yet): a read of one byte finds them first.
      const uint64_t max_bytes = std::clamp<uint64_t>(
          limit_ - cursor_, 1, segment_log::Reader::kDefaultMaxReadBytes);
      chunk = reader_->Read(cursor_, max_bytes, kMergeWithin);
      if (!chunk.ok() || !*chunk) break;
      if (cursor_ == limit_ &&
          ((*chunk)->run_start == 0 || (*chunk)->offset != limit_)) {
        return {Action::kFinish, grpc::Status::OK};
      }
      const bool mark = (*chunk)->run_start != 0;
      if ((*chunk)->data.empty() && !mark) break;
      // Past `until`: the stream ends here, following or not.
      if (until_ && (*chunk)->time > *until_) {
        return {Action::kFinish, grpc::Status::OK};
      }
      if (mark || streams_.Has((*chunk)->stream)) break;
      // The other stream's bytes: skipped, and not counted as dropped.
      unsent_dropped_ += (*chunk)->offset - cursor_;
      cursor_ = (*chunk)->offset + (*chunk)->data.size();
    }
    if (!chunk.ok()) {
      if (DirectoryGone()) return Ended();
      PM_LOG(WARNING) << "StreamOutput of process " << log_->id() << ": "
                      << chunk.status();
      return {Action::kFinish, ToGrpcStatus(chunk.status())};
    }
    if (*chunk) {
      SetChunk(**chunk);
      return {Action::kWrite, grpc::Status::OK};
    }
    if (reader_->closed()) return {Action::kFinish, grpc::Status::OK};
    // A shim's Writer makes its first segment as it opens the directory,
    // and the caps never delete a live output's newest segment: a directory
    // with none left is an output that ended and lost its every segment,
    // the end record with the last one (the Read above reported the loss up
    // to what was known to be written).
    if (reader_->listed_segments() == 0) return Ended();
    if (!follow_) return {Action::kFinish, grpc::Status::OK};
    return {Action::kWait, grpc::Status::OK};
  }

  // Whether the output directory is gone (removed with its process's
  // record): the output ended, and all of it is lost.
  bool DirectoryGone() const {
    struct stat st;
    return stat(log_->dir().c_str(), &st) != 0 && errno == ENOENT;
  }

  // The output ended without its end record in the files: reports what
  // the reader knew was written as lost, then finishes.
  Action Ended() {
    if (cursor_ < reader_->end_offset()) {
      segment_log::Chunk lost;
      lost.offset = reader_->end_offset();
      SetChunk(lost);
      return {Action::kWrite, grpc::Status::OK};
    }
    return {Action::kFinish, grpc::Status::OK};
  }

  // Makes `chunk` the one to write and moves the cursor past it. Without
  // follow nothing past the limit goes out: a chunk beyond it reports only
  // the loss up to it.
  void SetChunk(segment_log::Chunk& chunk) {
    if (chunk.offset >= limit_) {
      if (chunk.offset > limit_) chunk.run_start = 0;
      chunk.offset = limit_;
      chunk.data.clear();
    }
    chunk_.set_offset(chunk.offset);
    chunk_.set_dropped_before(unsent_dropped_ + chunk.offset - cursor_);
    unsent_dropped_ = 0;
    chunk_.set_stream(chunk.data.empty() ? OutputChunk::STREAM_UNSPECIFIED
                                         : ToProto(chunk.stream));
    chunk_.set_run_started(chunk.run_start);
    if (chunk.data.empty() && chunk.run_start == 0) {
      chunk_.clear_time();
    } else {
      *chunk_.mutable_time() = ToProtoTimestamp(chunk.time);
    }
    cursor_ = chunk.offset + chunk.data.size();
    chunk_.set_data(std::move(chunk.data));
  }

  LogStoreService* const service_;
  const std::shared_ptr<OutputLog> log_;
  const bool follow_;
  // Where a read without follow stops: the end as of the call.
  const uint64_t limit_;
  // The streams asked for, and the time after which the stream ends.
  const segment_log::StreamSet streams_;
  const std::optional<absl::Time> until_;
  std::shared_ptr<OutputReactor> self_;

  // Owned by the pumping thread (see Next).
  std::unique_ptr<segment_log::Reader> reader_;
  uint64_t cursor_;
  // Bytes lost among those of the other stream that were skipped: told
  // with the next chunk sent.
  uint64_t unsent_dropped_ = 0;
  OutputChunk chunk_;

  absl::Mutex mu_;
  bool pumping_ ABSL_GUARDED_BY(mu_) = false;
  bool repump_ ABSL_GUARDED_BY(mu_) = false;
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
  bool shutting_down_ ABSL_GUARDED_BY(mu_) = false;
  bool finish_called_ ABSL_GUARDED_BY(mu_) = false;
  bool wake_scheduled_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace detail

LogStoreService::LogStoreService(LogStore* store)
    : store_(store), read_pool_(kReadThreads) {}

LogStoreService::~LogStoreService() {
  if (outputs_.size() > 0) {
    PM_LOG(ERROR) << "LogStoreService destroyed with " << outputs_.size()
                  << " StreamOutput streams still open";
  }
}

grpc::ServerWriteReactor<OutputChunk>* LogStoreService::StreamOutput(
    grpc::CallbackServerContext* /*context*/,
    const StreamOutputRequest* request) {
  absl::StatusOr<std::shared_ptr<OutputLog>> log = store_->Find(request->id());
  if (!log.ok()) return new RefusedOutput(ToGrpcStatus(log.status()));
  absl::StatusOr<std::unique_ptr<segment_log::Reader>> reader =
      (*log)->OpenReader();
  if (!reader.ok()) return new RefusedOutput(ToGrpcStatus(reader.status()));
  absl::StatusOr<segment_log::StreamSet> streams = StreamsOf(*request);
  if (!streams.ok()) return new RefusedOutput(ToGrpcStatus(streams.status()));
  if (request->has_tail_lines() && request->tail_lines() > kMaxTailLines) {
    return new RefusedOutput(grpc::Status(
        grpc::StatusCode::INVALID_ARGUMENT,
        absl::StrCat("tail_lines ", request->tail_lines(), " is over the cap of ",
                     kMaxTailLines)));
  }
  std::optional<uint64_t> from_offset;
  if (request->has_from_offset()) from_offset = request->from_offset();
  absl::StatusOr<uint64_t> cursor = (*log)->StartOffset(
      **reader, from_offset, request->from_start(), request->follow());
  if (!cursor.ok()) return new RefusedOutput(ToGrpcStatus(cursor.status()));
  if (!from_offset && (request->has_tail_lines() || request->has_since())) {
    // The later of the two starts; the index of each is the segments'
    // names and the records' times (segment_log::Reader).
    uint64_t start = 0;
    if (request->has_tail_lines()) {
      absl::StatusOr<uint64_t> tail =
          (*reader)->OffsetOfLastLines(request->tail_lines(), *streams);
      if (!tail.ok()) return new RefusedOutput(ToGrpcStatus(tail.status()));
      start = *tail;
    }
    if (request->has_since()) {
      absl::StatusOr<uint64_t> since =
          (*reader)->OffsetAt(FromProtoTimestamp(request->since()));
      if (!since.ok()) return new RefusedOutput(ToGrpcStatus(since.status()));
      start = std::max(start, *since);
    }
    cursor = start;
  }
  std::optional<absl::Time> until;
  if (request->has_until()) until = FromProtoTimestamp(request->until());
  // Without follow the read ends at the end as of now; the end only grows,
  // so it is at or past the cursor.
  const uint64_t limit =
      request->follow()
          ? std::numeric_limits<uint64_t>::max()
          : (*reader)->end_offset();
  auto reactor = std::make_shared<detail::OutputReactor>(
      this, *std::move(log), *std::move(reader), *cursor, limit,
      request->follow(), *streams, until);
  reactor->Start();
  return reactor.get();
}

void LogStoreService::Shutdown() {
  const size_t ended = outputs_.Shutdown();
  if (ended > 0) PM_LOG(INFO) << "ended " << ended << " open streams";
}

size_t LogStoreService::output_stream_count() const { return outputs_.size(); }

bool LogStoreService::WaitForOutputStreamCount(size_t outputs,
                                               absl::Duration timeout) const {
  return outputs_.WaitForSize(outputs, timeout);
}

}  // namespace pm::log_store
