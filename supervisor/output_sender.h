// OutputSender: one process's output on its way from the pipes to the
// log_store, with backpressure, spooling and replay.
//
// Lives on the supervisor's event loop. The pipe readers Append() what they
// read; the sender streams it to the log_store over one Append stream
// (Open, Data..., Close) and frees bytes once the store acknowledges them.
//
//   auto sender = std::make_shared<OutputSender>(&loop, stub, options);
//   sender->Connect(id, [] { /* the log exists in the store */ });
//   sender->Append(pm::v1::OutputChunk::STREAM_STDOUT, bytes);
//   if (sender->ShouldPauseReading()) { /* stop reading the pipes */ }
//   sender->Close();   // both pipes hit EOF
//
// The contract with the process (never freeze it for the store's sake):
// - The store is up but slower than the process: at most `window_bytes` are
//   unacknowledged; beyond that ShouldPauseReading() is true and the process
//   waits on its pipe, as on a slow terminal. Nothing is lost. (Reading also
//   pauses while a write is in flight, so a fast writer's output is read in
//   large pieces and sent as few messages.)
// - The store makes no progress for `stall_bound` (stalled or down): reading
//   resumes regardless and bytes are spooled up to `spool_bytes`; they are
//   replayed when the store is back. Beyond the spool, bytes are dropped and
//   recorded as an explicit gap (a Gap message), so readers learn of it from
//   the offsets. Nothing is dropped silently.
//
// Large reads can travel through shared memory (common/output_arena.h): the
// reader takes a slot (TakeSlot), reads the pipe into it and hands it over
// (AppendShared); the message then names the slot, and the slot stays taken
// until the store acknowledges the bytes. Slots are offered only once the
// store has said it mapped the arena; pieces held in slots when a new store
// turns out not to map it are copied into their messages.
#ifndef PM_SUPERVISOR_OUTPUT_SENDER_H_
#define PM_SUPERVISOR_OUTPUT_SENDER_H_

#include <stdint.h>

#include <atomic>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "absl/time/time.h"
#include "common/output_arena.h"
#include "pm/internal/v1/internal.grpc.pb.h"
#include "supervisor/async_ops.h"
#include "supervisor/event_loop.h"

namespace pm::supervisor {

struct OutputSenderOptions {
  size_t window_bytes = 8 << 20;
  size_t spool_bytes = 64 << 20;
  absl::Duration stall_bound = absl::Seconds(1);
  absl::Duration reconnect_delay = absl::Milliseconds(200);
  // Shared with the log_store for large reads; null: every byte inline.
  std::shared_ptr<OutputArena> arena;
};

class OutputSender : public std::enable_shared_from_this<OutputSender> {
 public:
  OutputSender(EventLoop* loop, pm::internal::v1::LogStore::Stub* stub,
               OutputSenderOptions options);
  ~OutputSender();

  // Starts streaming for process `id`. `on_opened` runs once, when the
  // store has first acknowledged an Open, on the gRPC thread that read the
  // acknowledgement (not on the loop: a Start waiting for it must not queue
  // behind the loop's other work).
  void Connect(std::string id, std::function<void()> on_opened);

  // Takes bytes read from a pipe; they get the next offsets.
  void Append(pm::v1::OutputChunk::Stream stream, std::string data);
  // A free arena slot to read into, when the store has mapped the arena
  // and one is free; nullopt: read into a string and Append.
  std::optional<OutputArena::Slot> TakeSlot();
  // Takes the first `size` bytes of `slot`, read from a pipe.
  void AppendShared(pm::v1::OutputChunk::Stream stream, OutputArena::Slot slot,
                    size_t size);
  // No more output: sends Close once everything before it is sent.
  void Close();

  // True while the pipes should not be read (backpressure).
  bool ShouldPauseReading() const;
  // Called (on the loop) whenever ShouldPauseReading() or done() may have
  // changed.
  void set_on_change(std::function<void()> fn) { on_change_ = std::move(fn); }

  // Nothing is left to send: the store acknowledged Close, or refused the
  // stream for good (gave_up(); the rest was logged as lost).
  bool done() const { return done_ || gave_up_; }
  bool gave_up() const { return gave_up_; }
  // Bytes the process has written so far.
  uint64_t end_offset() const { return end_; }
  // Bytes dropped for lack of spool space.
  uint64_t dropped_bytes() const { return dropped_; }
  // Bytes held (not yet acknowledged).
  size_t buffered_bytes() const { return buffered_; }

  // Abandons the stream (supervisor shutdown); done() stays false.
  void Cancel();

 private:
  class Stream;
  // A piece of output: data, held as the very message that carries it to
  // the store (so sending copies nothing but the serialization), or a gap.
  struct Item {
    uint64_t offset = 0;
    uint64_t size = 0;
    std::unique_ptr<pm::internal::v1::AppendRequest> message;  // null: gap
    // Where the bytes are when the message names them in the arena.
    std::optional<OutputArena::Slot> slot;
    uint64_t end() const { return offset + size; }
  };

  void StartStream();
  void MaybeSend();
  void Take(pm::v1::OutputChunk::Stream stream, std::string data,
            std::optional<OutputArena::Slot> slot, size_t size);
  void OnAck(uint64_t generation, uint64_t end_offset, bool closed,
             bool shared_memory);
  void OnWriteDone(uint64_t generation, bool ok);
  void OnStreamDone(uint64_t generation, const grpc::Status& status);
  void Release(uint64_t up_to);
  // Frees everything not being written (Cancel, a refused stream).
  void DropUnsent();
  void ArmStallTimer();
  // Whether reading waits on the store (window full, or a write in flight).
  bool WaitingForStore() const;
  void NoteProgress();
  void Changed();

  EventLoop* loop_;
  pm::internal::v1::LogStore::Stub* stub_;
  OutputSenderOptions options_;
  std::string id_;
  // Shared with each stream until it has run.
  struct Once {
    std::atomic<bool> ran{false};
    std::function<void()> fn;
    void Run() {
      if (!ran.exchange(true) && fn) fn();
    }
  };
  std::shared_ptr<Once> on_opened_;
  std::function<void()> on_change_;

  std::deque<Item> items_;   // offsets [acked_, end_)
  // The message of the write in flight: its item is not freed before
  // OnWriteDone, even if acknowledged.
  const pm::internal::v1::AppendRequest* in_flight_ = nullptr;
  // Open, Gap and Close go out from here (one write at a time).
  pm::internal::v1::AppendRequest control_;
  size_t buffered_ = 0;      // bytes of data in items_
  uint64_t end_ = 0;         // next offset to assign
  uint64_t acked_ = 0;       // the store holds everything before this
  uint64_t next_send_ = 0;   // next offset to put on the stream
  uint64_t dropped_ = 0;
  bool closing_ = false;     // Close() called
  bool close_sent_ = false;
  bool done_ = false;
  bool cancelled_ = false;
  bool stalled_ = false;     // no progress for stall_bound: spool, don't wait
  bool gave_up_ = false;     // the store refused the stream for good
  absl::Duration reconnect_delay_ = options_.reconnect_delay;
  EventLoop::TimerId stall_timer_ = 0;
  EventLoop::TimerId reconnect_timer_ = 0;

  std::shared_ptr<Stream> stream_;  // current Append stream, if any
  uint64_t generation_ = 0;
  bool opened_once_ = false;
  bool write_in_flight_ = false;
  // What the current stream's store said of the arena.
  bool open_acked_ = false;
  bool shared_ok_ = false;
};

}  // namespace pm::supervisor

#endif  // PM_SUPERVISOR_OUTPUT_SENDER_H_
