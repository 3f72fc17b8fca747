// The output pump: a process's pipes drained into its OutputSender.
//   WatchOutput / UnwatchOutput   the pipes in the loop, off while the
//                                 log_store applies backpressure.
//   OnOutputReadable              a bounded number of reads per event.
//   DrainOutput                   everything the pipes hold, at the end.
//   ReadOutput                    one read per piece: inline, or straight
//                                 into a slot of the shared arena.
//   OnOutputChange                the sender caught up (or finished).
#include "supervisor/supervisor.h"

#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <optional>
#include <string>

#include "absl/strings/internal/resize_uninitialized.h"
#include "common/log.h"
#include "common/output_arena.h"
#include "common/status.h"
#include "supervisor/process.h"

namespace pm::supervisor {

using pm::v1::OutputChunk;

namespace {

// What a read asks for when FIONREAD says nothing is there (to see EOF, or
// bytes that arrived since).
constexpr size_t kProbeRead = 4096;
// Pieces at least this large go through the shared output arena (smaller
// ones are coalesced into messages: a slot per line would waste the arena).
constexpr size_t kMinSharedRead = 64 << 10;
// Reads per readiness event and pipe, so one chatty process cannot starve
// the loop.
constexpr int kReadsPerEvent = 8;

}  // namespace

void Supervisor::WatchOutput(const ProcessPtr& p, int index) {
  if (!p->out[index].valid() || p->out_watched[index]) return;
  std::weak_ptr<Process> weak = p;
  absl::Status status = loop_.Watch(
      p->out[index].get(), EPOLLIN, [this, weak, index](uint32_t) {
        if (auto locked = weak.lock()) OnOutputReadable(locked, index);
      });
  if (!status.ok()) {
    PM_LOG(ERROR) << "cannot watch output of pid " << p->pid << ": " << status;
    return;
  }
  p->out_watched[index] = true;
}

void Supervisor::UnwatchOutput(const ProcessPtr& p, int index) {
  if (!p->out_watched[index]) return;
  loop_.Unwatch(p->out[index].get());
  p->out_watched[index] = false;
}

void Supervisor::OnOutputReadable(const ProcessPtr& p, int index) {
  ReadOutput(p, index, kReadsPerEvent, /*respect_backpressure=*/true);
}

void Supervisor::DrainOutput(const ProcessPtr& p, int index) {
  // Bounded: a child that outlives the leader may keep writing.
  constexpr int kMaxDrainReads = 4;
  ReadOutput(p, index, kMaxDrainReads, /*respect_backpressure=*/false);
}

void Supervisor::ReadOutput(const ProcessPtr& p, int index, int max_reads,
                            bool respect_backpressure) {
  const OutputChunk::Stream stream =
      index == 0 ? OutputChunk::STREAM_STDOUT : OutputChunk::STREAM_STDERR;
  for (int i = 0; i < max_reads && p->out[index].valid(); ++i) {
    // Exactly what the pipe holds, in a buffer that becomes the message to
    // the log_store as it is: not zero-filled, not copied, never oversized.
    int available = 0;
    if (ioctl(p->out[index].get(), FIONREAD, &available) != 0) available = 0;
    // A large piece goes into the shared arena, if a slot is free: the
    // log_store copies it from there (common/output_arena.h).
    std::optional<OutputArena::Slot> slot;
    if (static_cast<size_t>(available) >= kMinSharedRead) {
      slot = p->sender->TakeSlot();
    }
    std::string buf;
    size_t want = 0;
    char* into = nullptr;
    if (slot) {
      want = std::min<size_t>(available, slot->capacity());
      into = slot->data();
    } else {
      want = available > 0 ? std::min<size_t>(available, kMaxRead) : kProbeRead;
      absl::strings_internal::STLStringResizeUninitialized(&buf, want);
      into = buf.data();
    }
    ssize_t n = read(p->out[index].get(), into, want);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) break;
    if (n <= 0) {
      if (n < 0) {
        PM_LOG(WARNING) << "read of pid " << p->pid << " output: "
                        << ErrnoError("read");
      }
      UnwatchOutput(p, index);
      p->out[index].reset();
      if (!p->output_open()) p->sender->Close();
      MaybeForget(p);
      return;
    }
    if (slot) {
      p->sender->AppendShared(stream, *std::move(slot), static_cast<size_t>(n));
    } else {
      buf.resize(static_cast<size_t>(n));
      p->sender->Append(stream, std::move(buf));
    }
    if (respect_backpressure && p->sender->ShouldPauseReading()) {
      // Backpressure: the process waits on its pipe until the store
      // catches up (or the stall bound lets the sender spool).
      UnwatchOutput(p, 0);
      UnwatchOutput(p, 1);
      return;
    }
    if (respect_backpressure && static_cast<size_t>(n) < want) {
      break;  // drained for now
    }
  }
}

void Supervisor::OnOutputChange(const ProcessPtr& p) {
  if (!p->sender->ShouldPauseReading()) {
    WatchOutput(p, 0);
    WatchOutput(p, 1);
  }
  MaybeForget(p);
}

}  // namespace pm::supervisor
