#include "supervisor/output_sender.h"

#include <grpcpp/grpcpp.h>

#include "common/log.h"

#include <algorithm>

namespace pm::supervisor {

using pm::internal::v1::AppendRequest;
using pm::internal::v1::AppendResponse;

namespace {
// Small pieces not sent yet are coalesced into one message up to this size.
constexpr size_t kCoalesceBytes = 64 << 10;
}  // namespace

// One Append stream. gRPC calls its reactions on its own threads; each is
// posted to the loop with the stream's generation, so reactions of a stream
// that has been replaced are ignored.
//
// Lifetime: the stream keeps itself alive (self_) until OnDone and is
// destroyed on the loop thread. A hold (AddHold) keeps gRPC from finishing
// the call while the loop may still start a write: without it, a failed
// read could complete the call on a gRPC thread and free its internals
// while the loop, not yet told, calls StartWrite. The hold is released once,
// on the loop, when the stream fails or after its last write.
class OutputSender::Stream
    : public grpc::ClientBidiReactor<AppendRequest, AppendResponse> {
 public:
  Stream(std::weak_ptr<OutputSender> sender, EventLoop* loop,
         uint64_t generation, std::shared_ptr<Once> on_opened)
      : sender_(std::move(sender)),
        loop_(loop),
        generation_(generation),
        on_opened_(std::move(on_opened)) {}

  void Begin(std::shared_ptr<Stream> self,
             pm::internal::v1::LogStore::Stub* stub) {
    self_ = std::move(self);
    PendingAsyncOps().Begin();
    stub->async()->Append(&context_, this);
    AddHold();
    StartRead(&response_);
    StartCall();
  }

  // Loop thread only. `request` must stay alive and unchanged until
  // OnWriteDone. False once the stream can take no more writes.
  bool Write(const AppendRequest* request) {
    if (dead_) return false;
    StartWrite(request);
    return true;
  }
  // Loop thread only: no more writes; the call ends when the store ends it.
  void FinishWrites() {
    if (dead_) return;
    dead_ = true;
    StartWritesDone();
    ReleaseHold();
  }
  // Loop thread only.
  void Fail() {
    dead_ = true;
    ReleaseHold();
  }
  bool dead() const { return dead_; }
  // Any thread; the failures it causes release the hold.
  void TryCancel() { context_.TryCancel(); }

  void OnWriteDone(bool ok) override {
    const bool posted = loop_->Post([self = self_, ok] {
      if (!ok) self->Fail();
      if (auto sender = self->sender_.lock()) {
        sender->OnWriteDone(self->generation_, ok);
      }
    });
    // The loop has stopped (shutdown): nobody will write again.
    if (!posted) ReleaseHold();
  }
  void OnReadDone(bool ok) override {
    if (!ok) {
      // The store ended the stream (or it broke): no more writes.
      if (!loop_->Post([self = self_] { self->Fail(); })) ReleaseHold();
      return;
    }
    const uint64_t end = response_.end_offset();
    const bool closed = response_.closed();
    const bool shared = response_.shared_memory();
    loop_->Post([s = sender_, g = generation_, end, closed, shared] {
      if (auto sender = s.lock()) sender->OnAck(g, end, closed, shared);
    });
    // After the post: whatever the opener then asks of the loop comes after
    // the loop has taken this acknowledgement in.
    if (on_opened_) on_opened_->Run();
    StartRead(&response_);
  }
  void OnDone(const grpc::Status& status) override {
    // Moving self_ into the posted task keeps this object alive until the
    // task has run on the loop thread; gRPC no longer touches it.
    loop_->Post([self = std::move(self_), status] {
      if (auto sender = self->sender_.lock()) {
        sender->OnStreamDone(self->generation_, status);
      }
    });
    PendingAsyncOps().End();
  }

 private:
  // Once, from the loop or (after the loop stopped) a gRPC thread.
  void ReleaseHold() {
    if (hold_released_.exchange(true)) return;
    RemoveHold();
  }

  std::weak_ptr<OutputSender> sender_;
  EventLoop* loop_;
  const uint64_t generation_;
  const std::shared_ptr<Once> on_opened_;
  std::shared_ptr<Stream> self_;
  grpc::ClientContext context_;
  AppendResponse response_;
  // Loop thread only.
  bool dead_ = false;
  std::atomic<bool> hold_released_{false};
};

OutputSender::OutputSender(EventLoop* loop,
                           pm::internal::v1::LogStore::Stub* stub,
                           OutputSenderOptions options)
    : loop_(loop), stub_(stub), options_(options) {}

OutputSender::~OutputSender() {
  loop_->Cancel(stall_timer_);
  loop_->Cancel(reconnect_timer_);
  if (stream_) stream_->TryCancel();
}

void OutputSender::Connect(std::string id, std::function<void()> on_opened) {
  id_ = std::move(id);
  on_opened_ = std::make_shared<Once>();
  on_opened_->fn = std::move(on_opened);
  StartStream();
}

void OutputSender::StartStream() {
  reconnect_timer_ = 0;
  if (cancelled_ || done_) return;
  ++generation_;
  stream_ = std::make_shared<Stream>(weak_from_this(), loop_, generation_,
                                     opened_once_ ? nullptr : on_opened_);
  stream_->Begin(stream_, stub_);
  // The store answers Open with the end it holds; data follows at once from
  // the last acknowledged offset (the store dedupes or records a gap).
  next_send_ = acked_;
  close_sent_ = false;
  control_.Clear();
  control_.mutable_open()->set_id(id_);
  if (options_.arena) {
    control_.mutable_open()->set_shared_memory(options_.arena->name());
  }
  open_acked_ = false;
  shared_ok_ = false;
  in_flight_ = nullptr;
  write_in_flight_ = stream_->Write(&control_);
}

void OutputSender::Append(pm::v1::OutputChunk::Stream stream,
                          std::string data) {
  const size_t n = data.size();
  Take(stream, std::move(data), std::nullopt, n);
}

std::optional<OutputArena::Slot> OutputSender::TakeSlot() {
  // Only toward a live stream whose store mapped the arena: a slot held by
  // output that cannot be sent would be lost to every other process.
  if (!options_.arena || !shared_ok_ || cancelled_ || !stream_ ||
      stream_->dead()) {
    return std::nullopt;
  }
  return options_.arena->Take();
}

void OutputSender::AppendShared(pm::v1::OutputChunk::Stream stream,
                                OutputArena::Slot slot, size_t size) {
  Take(stream, std::string(), std::move(slot), size);
}

void OutputSender::Take(pm::v1::OutputChunk::Stream stream, std::string data,
                        std::optional<OutputArena::Slot> slot, size_t size) {
  if (size == 0) return;
  const uint64_t n = size;
  if (cancelled_) {
    // Nothing more goes to the store (shutdown, or it refused the stream
    // for good, which was logged): the bytes are counted, not kept.
    end_ += n;
    acked_ = end_;
    return;
  }
  if (stalled_ && buffered_ + n > options_.spool_bytes) {
    // The store has made no progress for stall_bound and the spool is full:
    // keep the process running, record exactly what was lost.
    if (!items_.empty() && items_.back().message == nullptr &&
        items_.back().end() == end_ && items_.back().offset >= next_send_) {
      items_.back().size += n;
    } else {
      items_.push_back(Item{end_, n, nullptr, std::nullopt});
    }
    dropped_ += n;
  } else if (!slot && !items_.empty() && items_.back().message != nullptr &&
             !items_.back().slot && items_.back().offset >= next_send_ &&
             items_.back().message->data().stream() == stream &&
             items_.back().size + n <= kCoalesceBytes) {
    // Small pieces not sent yet ride in one message.
    items_.back().message->mutable_data()->mutable_data()->append(data);
    items_.back().size += n;
    buffered_ += n;
  } else {
    auto message = std::make_unique<AppendRequest>();
    auto* piece = message->mutable_data();
    piece->set_offset(end_);
    piece->set_stream(stream);
    if (slot) {
      piece->set_shared_offset(slot->offset());
      piece->set_shared_length(n);
    } else {
      piece->set_data(std::move(data));
    }
    items_.push_back(Item{end_, n, std::move(message), std::move(slot)});
    buffered_ += n;
  }
  end_ += n;
  MaybeSend();
  ArmStallTimer();
}

void OutputSender::Close() {
  closing_ = true;
  MaybeSend();
}

bool OutputSender::ShouldPauseReading() const {
  return !stalled_ && WaitingForStore();
}

bool OutputSender::WaitingForStore() const {
  // While a write is in flight the pipe is left to fill: what it holds is
  // read in one piece when the write is done and goes out as one message.
  // A fast writer is then captured in few large messages rather than many
  // small ones, and a slow one loses no latency (its bytes would wait for
  // the write in flight anyway).
  return end_ - acked_ >= options_.window_bytes || write_in_flight_;
}

void OutputSender::ArmStallTimer() {
  if (stalled_ || stall_timer_ != 0 || !WaitingForStore()) return;
  stall_timer_ = loop_->RunAfter(
      options_.stall_bound, [weak = weak_from_this()] {
        auto self = weak.lock();
        if (!self) return;
        self->stall_timer_ = 0;
        if (self->WaitingForStore()) {
          self->stalled_ = true;
          self->Changed();
        }
      });
}

void OutputSender::NoteProgress() {
  // The store took something: the stall clock starts over.
  loop_->Cancel(stall_timer_);
  stall_timer_ = 0;
  if (end_ - acked_ < options_.window_bytes) stalled_ = false;
  ArmStallTimer();
}

void OutputSender::MaybeSend() {
  if (!stream_ || stream_->dead() || write_in_flight_ || done_ || cancelled_) {
    return;
  }
  next_send_ = std::max(next_send_, acked_);
  const AppendRequest* request = nullptr;
  for (Item& item : items_) {
    if (item.end() <= next_send_) continue;
    if (item.slot && !shared_ok_ && item.message->data().shared_length() > 0) {
      // Read into the arena for a store that mapped it; this one has not
      // said so yet (wait for its answer to Open) or cannot (carry the
      // bytes in the message after all). The slot stays taken until the
      // bytes are acknowledged: an older stream may still name it.
      if (!open_acked_) return;
      AppendRequest::Data* piece = item.message->mutable_data();
      piece->set_data(item.slot->data(), item.size);
      piece->clear_shared_offset();
      piece->clear_shared_length();
    }
    if (item.message != nullptr) {
      // Whole, even if the store already holds a prefix (after a
      // reconnect): it skips what it has.
      request = item.message.get();
    } else {
      control_.Clear();
      control_.mutable_gap()->set_offset(next_send_);
      control_.mutable_gap()->set_length(item.end() - next_send_);
      request = &control_;
    }
    next_send_ = item.end();
    break;
  }
  if (request == nullptr) {
    if (!closing_ || close_sent_ || next_send_ != end_) return;
    control_.Clear();
    control_.mutable_close()->set_end_offset(end_);
    close_sent_ = true;
    request = &control_;
  }
  in_flight_ = request;
  write_in_flight_ = stream_->Write(request);
}

void OutputSender::OnWriteDone(uint64_t generation, bool ok) {
  if (generation != generation_) return;
  write_in_flight_ = false;
  in_flight_ = nullptr;
  Release(acked_);  // an item acknowledged while in flight can go now
  if (!ok) return;  // the stream is broken; OnStreamDone follows
  if (done_) {
    if (stream_) stream_->FinishWrites();
    return;
  }
  MaybeSend();
  // The pipes may be read again (ShouldPauseReading).
  Changed();
}

void OutputSender::OnAck(uint64_t generation, uint64_t end_offset,
                         bool closed, bool shared_memory) {
  if (generation != generation_) return;
  open_acked_ = true;
  shared_ok_ = shared_memory && options_.arena != nullptr;
  if (!opened_once_) {
    opened_once_ = true;
    if (on_opened_) on_opened_->Run();  // the stream has, unless it raced
  }
  if (end_offset > acked_) Release(std::min(end_offset, end_));
  reconnect_delay_ = options_.reconnect_delay;  // the store answers again
  if (closed && !done_) {
    done_ = true;
    if (!write_in_flight_ && stream_) stream_->FinishWrites();
  }
  MaybeSend();
  Changed();
}

void OutputSender::Release(uint64_t up_to) {
  acked_ = up_to;
  while (!items_.empty() && items_.front().end() <= acked_ &&
         (in_flight_ == nullptr ||
          items_.front().message.get() != in_flight_)) {
    if (items_.front().message != nullptr) buffered_ -= items_.front().size;
    items_.pop_front();
  }
  NoteProgress();
}

void OutputSender::OnStreamDone(uint64_t generation,
                                const grpc::Status& status) {
  if (generation != generation_) return;
  stream_.reset();
  write_in_flight_ = false;
  in_flight_ = nullptr;
  open_acked_ = false;
  shared_ok_ = false;  // until the next store says it mapped the arena
  if (done_ || cancelled_) {
    Changed();
    return;
  }
  if (status.error_code() == grpc::StatusCode::INVALID_ARGUMENT ||
      status.error_code() == grpc::StatusCode::FAILED_PRECONDITION) {
    // The store refuses this stream for good; retrying cannot help. What it
    // had not taken is lost, and said so.
    PM_LOG(ERROR) << "log_store refused the output of " << id_ << ": "
                  << status.error_message() << "; " << end_ - acked_
                  << " bytes after offset " << acked_ << " are lost";
    gave_up_ = true;
    cancelled_ = true;
    loop_->Cancel(stall_timer_);
    stall_timer_ = 0;
    DropUnsent();
    Changed();
    return;
  }
  // The store is gone or restarting: keep spooling, reconnect with backoff.
  ArmStallTimer();
  reconnect_timer_ = loop_->RunAfter(reconnect_delay_, [weak = weak_from_this()] {
    if (auto self = weak.lock()) self->StartStream();
  });
  // Capped at the channel's own reconnect backoff (common/channel): once
  // the store is back, output flows again within about a second.
  reconnect_delay_ = std::min(reconnect_delay_ * 2, absl::Seconds(1));
}

void OutputSender::DropUnsent() {
  // Everything held goes (and its arena slots with it), except the message
  // a write in flight still points at; Release frees that one after
  // OnWriteDone.
  std::deque<Item> kept;
  for (Item& item : items_) {
    if (item.message != nullptr && item.message.get() == in_flight_) {
      kept.push_back(std::move(item));
    }
  }
  items_ = std::move(kept);
  buffered_ = 0;
  for (const Item& item : items_) buffered_ += item.size;
  acked_ = end_;
}

void OutputSender::Cancel() {
  cancelled_ = true;
  shared_ok_ = false;
  DropUnsent();
  loop_->Cancel(stall_timer_);
  stall_timer_ = 0;
  loop_->Cancel(reconnect_timer_);
  reconnect_timer_ = 0;
  if (stream_) stream_->TryCancel();
}

void OutputSender::Changed() {
  if (on_change_) on_change_();
}

}  // namespace pm::supervisor
