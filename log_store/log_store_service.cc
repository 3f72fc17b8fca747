#include "log_store/log_store_service.h"

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
#include "common/status.h"

namespace pm::log_store {

using ::pm::internal::v1::AppendRequest;
using ::pm::internal::v1::AppendResponse;
using ::pm::v1::OutputChunk;
using ::pm::v1::StreamOutputRequest;

namespace {

constexpr char kShuttingDown[] = "log_store shutting down";

using segment_log::Stream;

// A stream the store refuses (it names no stream) for anything but stdout
// and stderr.
Stream FromProto(OutputChunk::Stream stream) {
  switch (stream) {
    case OutputChunk::STREAM_STDOUT:
      return Stream::kStdout;
    case OutputChunk::STREAM_STDERR:
      return Stream::kStderr;
    default:
      return static_cast<Stream>(0);
  }
}

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

namespace detail {

// One Append stream. gRPC never runs OnReadDone concurrently with itself,
// so the read side (request_, log_) needs no lock; the write side (acks and
// the finish) runs from OnReadDone, OnWriteDone and RequestShutdown on any
// thread and is guarded by mu_. The reactor owns itself through self_ from
// Start to OnDone; the service holds only weak references.
class AppendReactor final
    : public grpc::ServerBidiReactor<AppendRequest, AppendResponse>,
      public pm::StreamReactor,
      public std::enable_shared_from_this<AppendReactor> {
 public:
  AppendReactor(LogStoreService* service, LogStore* store)
      : service_(service), store_(store) {}

  void Start() {
    self_ = shared_from_this();
    if (!service_->appends_.Add(self_)) {
      RequestFinish(grpc::Status(grpc::StatusCode::UNAVAILABLE, kShuttingDown));
      return;
    }
    StartReadUnlessFinishing();
  }

  void OnReadDone(bool ok) override {
    if (!ok) {
      // The supervisor half-closed, or the stream broke.
      RequestFinish(grpc::Status::OK);
      return;
    }
    if (absl::Status status = Handle(request_); !status.ok()) {
      PM_LOG(WARNING) << "ending an Append stream: " << status;
      RequestFinish(ToGrpcStatus(status));
      return;
    }
    // Read on before the ack is written: the supervisor's stream never
    // waits on our writes.
    StartReadUnlessFinishing();
    Step();
  }

  void OnWriteDone(bool ok) override {
    {
      absl::MutexLock lock(&mu_);
      writing_ = false;
      if (!ok) writes_failed_ = true;
    }
    Step();
  }

  void OnDone() override {
    if (log_ != nullptr && !log_->closed()) {
      PM_LOG(INFO) << "Append stream of process " << log_->id()
                   << " ended without Close at offset " << log_->end_offset()
                   << "; the log stays open for a reconnect";
    }
    service_->appends_.Remove(this);
    // Last: dropping the self reference may delete this reactor.
    std::shared_ptr<AppendReactor> self = std::move(self_);
  }

  void RequestShutdown() override {
    RequestFinish(grpc::Status(grpc::StatusCode::UNAVAILABLE, kShuttingDown));
  }

 private:
  absl::Status Handle(AppendRequest& request) {
    switch (request.kind_case()) {
      case AppendRequest::kOpen: {
        if (log_ != nullptr) {
          return absl::FailedPreconditionError(absl::StrCat(
              "second Open on the Append stream of process ", log_->id()));
        }
        PM_ASSIGN_OR_RETURN(log_, store_->Open(request.open().id()));
        if (!request.open().shared_memory().empty()) {
          // Without it the supervisor sends every byte inline: slower, not
          // wrong, so a failure is logged and the stream goes on.
          absl::StatusOr<std::shared_ptr<const MappedArena>> arena =
              service_->MapArena(request.open().shared_memory());
          if (arena.ok()) {
            arena_ = *std::move(arena);
          } else {
            PM_LOG(WARNING) << "process " << log_->id()
                            << ": output arena not used: " << arena.status();
          }
        }
        const uint64_t end = log_->end_offset();
        SetAck(end, log_->closed(), /*force=*/true);
        // A fresh log is routine (one per process started); a resumed one
        // means the supervisor reconnected, which is worth a line.
        if (end > 0) {
          PM_LOG(INFO) << "Append stream of process " << log_->id()
                       << " resumed at offset " << end;
        }
        return absl::OkStatus();
      }
      case AppendRequest::kData: {
        PM_RETURN_IF_ERROR(RequireOpen("Data"));
        const AppendRequest::Data& data = request.data();
        absl::string_view bytes = data.data();
        if (data.shared_length() > 0) {
          // The bytes are in the arena: written to the segment straight
          // from there (the slot is free again once the ack is read).
          if (arena_ == nullptr) {
            return absl::FailedPreconditionError(absl::StrCat(
                "Data in shared memory on the Append stream of process ",
                log_->id(), ", which has no arena mapped"));
          }
          PM_ASSIGN_OR_RETURN(bytes, arena_->Piece(data.shared_offset(),
                                                   data.shared_length()));
        }
        // Acknowledged only after this returns: the bytes are in the
        // segment (the page cache), so a kill -9 of the log_store keeps
        // them.
        PM_ASSIGN_OR_RETURN(
            OutputLog::Update update,
            store_->AppendData(*log_, data.offset(), FromProto(data.stream()),
                               bytes));
        SetAck(update.end_offset, update.closed, /*force=*/false);
        return absl::OkStatus();
      }
      case AppendRequest::kGap: {
        PM_RETURN_IF_ERROR(RequireOpen("Gap"));
        PM_ASSIGN_OR_RETURN(OutputLog::Update update,
                            store_->AppendGap(*log_, request.gap().offset(),
                                              request.gap().length()));
        SetAck(update.end_offset, update.closed, /*force=*/false);
        return absl::OkStatus();
      }
      case AppendRequest::kClose: {
        PM_RETURN_IF_ERROR(RequireOpen("Close"));
        PM_ASSIGN_OR_RETURN(
            OutputLog::Update update,
            store_->Close(*log_, request.close().end_offset()));
        SetAck(update.end_offset, update.closed, /*force=*/true);
        return absl::OkStatus();
      }
      case AppendRequest::KIND_NOT_SET:
        break;
    }
    return absl::InvalidArgumentError(
        "AppendRequest with none of open, data, gap, close");
  }

  absl::Status RequireOpen(absl::string_view what) const {
    if (log_ != nullptr) return absl::OkStatus();
    return absl::FailedPreconditionError(
        absl::StrCat(what, " before Open on an Append stream"));
  }

  void StartReadUnlessFinishing() {
    // Under mu_ so no read starts after RequestFinish decided to end the
    // stream; StartRead never runs a reaction inline, so holding it is safe.
    absl::MutexLock lock(&mu_);
    if (!finish_status_.has_value()) StartRead(&request_);
  }

  // Notes that the supervisor should hear `end` (and `closed`); `force`
  // sends it even if unchanged (the answer to Open and Close).
  void SetAck(uint64_t end, bool closed, bool force) {
    absl::MutexLock lock(&mu_);
    if (force || end != ack_end_ || closed != ack_closed_) {
      ack_end_ = end;
      ack_closed_ = closed;
      ack_shared_ = arena_ != nullptr;
      ack_pending_ = true;
    }
  }

  void RequestFinish(grpc::Status status) {
    {
      absl::MutexLock lock(&mu_);
      if (!finish_status_.has_value()) finish_status_ = std::move(status);
    }
    Step();
  }

  // With no write in flight: writes the newest pending ack, or else calls
  // Finish once it is wanted. Acks pending at the finish go out first.
  void Step() {
    enum { kNothing, kWrite, kFinish } action = kNothing;
    grpc::Status status;
    {
      absl::MutexLock lock(&mu_);
      if (finish_called_ || writing_) return;
      if (ack_pending_ && !writes_failed_) {
        ack_pending_ = false;
        writing_ = true;
        response_.set_end_offset(ack_end_);
        response_.set_closed(ack_closed_);
        response_.set_shared_memory(ack_shared_);
        action = kWrite;
      } else if (finish_status_.has_value()) {
        finish_called_ = true;
        status = *finish_status_;
        action = kFinish;
      }
    }
    if (action == kWrite) StartWrite(&response_);
    if (action == kFinish) Finish(std::move(status));
  }

  LogStoreService* const service_;
  LogStore* const store_;
  std::shared_ptr<AppendReactor> self_;

  // Read side: only OnReadDone (and Start, before any read) touch these.
  AppendRequest request_;
  std::shared_ptr<OutputLog> log_;
  std::shared_ptr<const MappedArena> arena_;  // set by Open, if named

  absl::Mutex mu_;
  // The ack in flight; only changed while no write is.
  AppendResponse response_;
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool writes_failed_ ABSL_GUARDED_BY(mu_) = false;
  bool ack_pending_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t ack_end_ ABSL_GUARDED_BY(mu_) = 0;
  bool ack_closed_ ABSL_GUARDED_BY(mu_) = false;
  bool ack_shared_ ABSL_GUARDED_BY(mu_) = false;
  std::optional<grpc::Status> finish_status_ ABSL_GUARDED_BY(mu_);
  bool finish_called_ ABSL_GUARDED_BY(mu_) = false;
};

// One StreamOutput reader: a segment_log::Reader on the process's output
// directory, a cursor, and at most one chunk in flight. Pump() is the only
// place that reads the files, writes or finishes; it runs from the handler,
// OnWriteDone, OnCancel, RequestShutdown and the log's wake-up (on the
// appending thread, or the store's inotify thread). `pumping_` lets one
// thread pump at a time and `repump_` makes it look again when another
// thread asked meanwhile, so no wake-up is lost. The reactor owns itself
// through self_ from Start to OnDone; the log and the service hold weak
// references.
class OutputReactor final : public grpc::ServerWriteReactor<OutputChunk>,
                            public pm::StreamReactor,
                            public OutputLog::Watcher,
                            public std::enable_shared_from_this<OutputReactor> {
 public:
  OutputReactor(LogStoreService* service, std::shared_ptr<OutputLog> log,
                std::unique_ptr<segment_log::Reader> reader, uint64_t cursor,
                uint64_t limit, bool follow)
      : service_(service),
        log_(std::move(log)),
        follow_(follow),
        limit_(limit),
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

  void OnLogChanged() override { Pump(); }

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
    bool watching = false;
    for (;;) {
      if (cursor_ >= limit_) return {Action::kFinish, grpc::Status::OK};
      const uint64_t max_bytes = std::min<uint64_t>(
          segment_log::Reader::kDefaultMaxReadBytes, limit_ - cursor_);
      absl::StatusOr<std::optional<segment_log::Chunk>> chunk =
          reader_->Read(cursor_, max_bytes);
      if (!chunk.ok()) {
        PM_LOG(WARNING) << "StreamOutput of process " << log_->id() << ": "
                        << chunk.status();
        return {Action::kFinish, ToGrpcStatus(chunk.status())};
      }
      if (*chunk) {
        SetChunk(**chunk);
        return {Action::kWrite, grpc::Status::OK};
      }
      if (reader_->closed()) return {Action::kFinish, grpc::Status::OK};
      if (log_->closed()) {
        // Closed here, but the end record is not in the files: the total
        // cap deleted every segment. The rest is lost.
        const uint64_t end = log_->end_offset();
        if (cursor_ >= end) return {Action::kFinish, grpc::Status::OK};
        segment_log::Chunk lost;
        lost.offset = end;
        lost.dropped_before = end - cursor_;
        SetChunk(lost);
        return {Action::kWrite, grpc::Status::OK};
      }
      if (!follow_) return {Action::kFinish, grpc::Status::OK};
      if (watching) return {Action::kWait, grpc::Status::OK};
      // Registered before reading again: a change after that read wakes us.
      log_->Watch(weak_from_this());
      watching = true;
    }
  }

  // Makes `chunk` the one to write and moves the cursor past it. Without
  // follow nothing past the limit goes out: a chunk beyond it reports only
  // the loss up to it.
  void SetChunk(segment_log::Chunk& chunk) {
    if (chunk.offset >= limit_) {
      chunk.offset = limit_;
      chunk.data.clear();
    }
    chunk_.set_offset(chunk.offset);
    chunk_.set_dropped_before(chunk.offset - cursor_);
    chunk_.set_stream(chunk.data.empty() ? OutputChunk::STREAM_UNSPECIFIED
                                         : ToProto(chunk.stream));
    cursor_ = chunk.offset + chunk.data.size();
    chunk_.set_data(std::move(chunk.data));
  }

  LogStoreService* const service_;
  const std::shared_ptr<OutputLog> log_;
  const bool follow_;
  // Where a read without follow stops: the end as of the call.
  const uint64_t limit_;
  std::shared_ptr<OutputReactor> self_;

  // Owned by the pumping thread (see Next).
  std::unique_ptr<segment_log::Reader> reader_;
  uint64_t cursor_;
  OutputChunk chunk_;

  absl::Mutex mu_;
  bool pumping_ ABSL_GUARDED_BY(mu_) = false;
  bool repump_ ABSL_GUARDED_BY(mu_) = false;
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
  bool shutting_down_ ABSL_GUARDED_BY(mu_) = false;
  bool finish_called_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace detail

LogStoreService::LogStoreService(LogStore* store) : store_(store) {}

LogStoreService::~LogStoreService() {
  if (appends_.size() > 0 || outputs_.size() > 0) {
    PM_LOG(ERROR) << "LogStoreService destroyed with " << appends_.size()
                  << " Append and " << outputs_.size()
                  << " StreamOutput streams still open";
  }
}

grpc::ServerBidiReactor<AppendRequest, AppendResponse>*
LogStoreService::Append(grpc::CallbackServerContext* /*context*/) {
  auto reactor = std::make_shared<detail::AppendReactor>(this, store_);
  reactor->Start();
  return reactor.get();
}

grpc::ServerWriteReactor<OutputChunk>* LogStoreService::StreamOutput(
    grpc::CallbackServerContext* /*context*/,
    const StreamOutputRequest* request) {
  absl::StatusOr<std::shared_ptr<OutputLog>> log = store_->Find(request->id());
  if (!log.ok()) return new RefusedOutput(ToGrpcStatus(log.status()));
  absl::StatusOr<std::unique_ptr<segment_log::Reader>> reader =
      (*log)->OpenReader();
  if (!reader.ok()) return new RefusedOutput(ToGrpcStatus(reader.status()));
  std::optional<uint64_t> from_offset;
  if (request->has_from_offset()) from_offset = request->from_offset();
  absl::StatusOr<uint64_t> cursor = (*log)->StartOffset(
      **reader, from_offset, request->from_start(), request->follow());
  if (!cursor.ok()) return new RefusedOutput(ToGrpcStatus(cursor.status()));
  // Without follow the read ends at the end as of now; the end only grows,
  // so it is at or past the cursor.
  const uint64_t limit =
      request->follow()
          ? std::numeric_limits<uint64_t>::max()
          : std::max((*log)->end_offset(), (*reader)->end_offset());
  auto reactor = std::make_shared<detail::OutputReactor>(
      this, *std::move(log), *std::move(reader), *cursor, limit,
      request->follow());
  reactor->Start();
  return reactor.get();
}

void LogStoreService::Shutdown() {
  const size_t ended = appends_.Shutdown() + outputs_.Shutdown();
  if (ended > 0) PM_LOG(INFO) << "ended " << ended << " open streams";
}

size_t LogStoreService::append_stream_count() const { return appends_.size(); }

size_t LogStoreService::output_stream_count() const { return outputs_.size(); }

bool LogStoreService::WaitForStreamCounts(size_t appends, size_t outputs,
                                          absl::Duration timeout) const {
  // Both at once: a count reached may move while the other is awaited.
  const absl::Time deadline = absl::Now() + timeout;
  do {
    if (appends_.WaitForSize(appends, deadline - absl::Now()) &&
        outputs_.WaitForSize(outputs, deadline - absl::Now()) &&
        appends_.size() == appends) {
      return true;
    }
  } while (absl::Now() < deadline);
  return false;
}

absl::StatusOr<std::shared_ptr<const MappedArena>> LogStoreService::MapArena(
    const std::string& name) {
  struct stat st = {};
  absl::MutexLock lock(&arenas_mu_);
  auto it = arenas_.find(name);
  if (it != arenas_.end()) {
    std::shared_ptr<const MappedArena> mapped = it->second.lock();
    if (mapped && stat(name.c_str(), &st) == 0 && st.st_dev == mapped->dev() &&
        st.st_ino == mapped->ino()) {
      return mapped;
    }
  }
  // Arenas of supervisors that are gone (their streams ended) are dropped.
  for (auto at = arenas_.begin(); at != arenas_.end();) {
    at = at->second.expired() ? arenas_.erase(at) : std::next(at);
  }
  PM_ASSIGN_OR_RETURN(std::shared_ptr<const MappedArena> mapped,
                      MappedArena::Open(name));
  arenas_[name] = mapped;
  PM_LOG(INFO) << "mapped the output arena " << name << " (" << mapped->size()
               << " bytes)";
  return mapped;
}

}  // namespace pm::log_store
