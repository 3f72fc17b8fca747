// Fuzzes pm::log_store::OutputLog, the log_store's in-memory retention of a
// process's output, with a sequence of operations decoded from the input:
// appends (copied and owned, at the end, resent below it, or past it),
// gaps, closes, retention drops, waits and reads. A model of everything
// appended (offset, stream, bytes; the rest lost) checks each answer:
//   - every status as output_log.h documents it, and Update.end_offset,
//     closed, retained_delta;
//   - retained_bytes() never above the cap after a call returns;
//   - a read from any cursor returns chunks with increasing offsets, each
//     at cursor + dropped_before, at most max_bytes long, one stream each,
//     holding exactly the bytes appended there; it skips (dropped_before)
//     only bytes that were lost or that retention dropped (all of them
//     before first_retained_offset()), moves the cursor on with every
//     chunk, and ends at min(limit, end);
//   - a registered watcher is woken exactly once by the next call that
//     grows or closes the log.
//
// The on-disk segment reader does not exist yet (another issue introduces
// it): when it lands, extend this harness to spill chunks to segments and
// read them back through it, against the same model.
//
// Encoding: the first 3 bytes pick the options (cap, chunk size, per-chunk
// overhead); then each op is one byte (its kind, modulo the number of
// kinds) followed by its arguments; a truncated input reads as zeros.
#include <cstddef>
#include <cstdint>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "log_store/output_log.h"
#include "testing/fuzz/fuzz_check.h"

namespace {

using pm::log_store::OutputLog;
using pm::log_store::OutputStream;

constexpr uint64_t kMax = std::numeric_limits<uint64_t>::max();
constexpr int kMaxChunksPerRead = 20000;

// Reads the fuzz input front to back; past its end, zeros.
class Input {
 public:
  Input(const uint8_t* data, size_t size) : data_(data), size_(size) {}
  bool empty() const { return pos_ >= size_; }
  uint8_t Byte() { return pos_ < size_ ? data_[pos_++] : 0; }
  uint16_t Short() { return static_cast<uint16_t>(Byte() | (Byte() << 8)); }
  std::string Bytes(size_t n) {
    std::string out;
    while (out.size() < n && !empty()) out.push_back(static_cast<char>(Byte()));
    return out;
  }

 private:
  const uint8_t* data_;
  size_t size_;
  size_t pos_ = 0;
};

// What was appended: stretches of bytes by offset; offsets below end that
// no stretch covers were lost.
struct Model {
  struct Stretch {
    OutputStream stream;
    std::string data;
  };
  std::map<uint64_t, Stretch> stretches;  // by offset
  uint64_t end = 0;
  bool closed = false;

  // The stretch holding `offset`, or nullptr for a lost byte.
  const std::pair<const uint64_t, Stretch>* At(uint64_t offset) const {
    auto it = stretches.upper_bound(offset);
    if (it == stretches.begin()) return nullptr;
    --it;
    if (offset - it->first >= it->second.data.size()) return nullptr;
    return &*it;
  }
};

class CountingWatcher : public OutputLog::Watcher {
 public:
  void OnLogChanged() override { ++calls; }
  int calls = 0;
};

OutputLog::Options DecodeOptions(Input& in) {
  OutputLog::Options options;
  static constexpr uint64_t kCaps[] = {0, 1, 7, 64, 100, 1000, 4096, 1 << 20};
  static constexpr size_t kChunks[] = {1, 3, 10, 64, 1000, 64 << 10};
  options.max_bytes = kCaps[in.Byte() % 8];
  options.max_chunk_bytes = kChunks[in.Byte() % 6];
  options.chunk_overhead_bytes = in.Byte() % 3 == 0 ? 0 : in.Byte() % 65;
  return options;
}

class Harness {
 public:
  explicit Harness(OutputLog::Options options)
      : options_(options),
        log_("0b7e3d1c-6a1f-4e8e-9f3c-2d6a5b4c3d2e", options),
        watcher_(std::make_shared<CountingWatcher>()) {}

  ~Harness() { log_.Unwatch(watcher_.get()); }

  void Run(Input& in) {
    for (int ops = 0; !in.empty() && ops < 200; ++ops) {
      switch (in.Byte() % 9) {
        case 0: Append(in, /*owned=*/false); break;
        case 1: Append(in, /*owned=*/true); break;
        case 2: AppendBig(in); break;
        case 3: Gap(in); break;
        case 4: Close(in); break;
        case 5: Drop(in); break;
        case 6: Wait(in); break;
        case 7: ReadAndCheck(in); break;
        case 8: CheckStartOffset(in); break;
      }
      CheckState();
    }
    // Whatever happened, a full read from the start must hold up.
    ReadFrom(0, kMax, OutputLog::kDefaultMaxReadBytes);
  }

 private:
  // An offset near the model's end: at it, below it (a resend), past it (a
  // gap), or next to the top of the offset range (overflow).
  uint64_t PickOffset(Input& in) {
    const uint8_t how = in.Byte();
    const uint64_t delta = in.Short() % 64;
    switch (how % 5) {
      case 0:
      case 1: return model_.end;
      case 2: return model_.end >= delta ? model_.end - delta : 0;
      case 3: return model_.end + delta <= kMax - 64 ? model_.end + delta
                                                    : model_.end;
      default: return kMax - delta;
    }
  }

  OutputStream PickStream(Input& in) {
    const uint8_t s = in.Byte() % 8;
    if (s == 7) return OutputStream::kNone;  // refused
    return s % 2 == 0 ? OutputStream::kStdout : OutputStream::kStderr;
  }

  void Append(Input& in, bool owned) {
    const uint64_t offset = PickOffset(in);
    const OutputStream stream = PickStream(in);
    std::string data = in.Bytes(in.Byte() % 80);
    ApplyAppend(offset, stream, std::move(data), owned);
  }

  // Large enough for the owned path (16 KiB up), one byte repeated.
  void AppendBig(Input& in) {
    const uint64_t offset = PickOffset(in);
    const OutputStream stream = PickStream(in);
    const size_t size = (in.Byte() % 40 + 1) * 1024;
    ApplyAppend(offset, stream, std::string(size, static_cast<char>(in.Byte())),
                /*owned=*/true);
  }

  void ApplyAppend(uint64_t offset, OutputStream stream, std::string data,
                   bool owned) {
    const std::string copy = data;
    const uint64_t before = log_.retained_bytes();
    absl::StatusOr<OutputLog::Update> update =
        owned ? log_.AppendOwnedData(offset, stream, std::move(data))
              : log_.AppendData(offset, stream, copy);
    if (stream == OutputStream::kNone || copy.size() > kMax - offset) {
      ExpectCode(update, absl::StatusCode::kInvalidArgument);
      return;
    }
    const uint64_t data_end = offset + copy.size();
    if (data_end <= model_.end) {
      ExpectUnchanged(update);
      return;
    }
    if (model_.closed) {
      ExpectCode(update, absl::StatusCode::kFailedPrecondition);
      return;
    }
    const uint64_t new_from = std::max(offset, model_.end);
    std::string fresh = copy.substr(new_from - offset);
    if (!fresh.empty()) {
      model_.stretches[new_from] = Model::Stretch{stream, std::move(fresh)};
    }
    model_.end = data_end;
    ExpectGrown(update, before);
  }

  void Gap(Input& in) {
    const uint64_t offset = PickOffset(in);
    const uint64_t length = in.Byte() % 4 == 0 ? kMax : in.Short() % 200;
    const uint64_t before = log_.retained_bytes();
    absl::StatusOr<OutputLog::Update> update = log_.AppendGap(offset, length);
    if (length > kMax - offset) {
      ExpectCode(update, absl::StatusCode::kInvalidArgument);
      return;
    }
    if (offset + length <= model_.end) {
      ExpectUnchanged(update);
      return;
    }
    if (model_.closed) {
      ExpectCode(update, absl::StatusCode::kFailedPrecondition);
      return;
    }
    model_.end = offset + length;
    ExpectGrown(update, before);
  }

  void Close(Input& in) {
    const uint64_t at = PickOffset(in);
    absl::StatusOr<OutputLog::Update> update = log_.Close(at);
    if (model_.closed) {
      if (at == model_.end) {
        ExpectUnchanged(update);
      } else {
        ExpectCode(update, absl::StatusCode::kFailedPrecondition);
      }
      return;
    }
    if (at < model_.end) {
      ExpectCode(update, absl::StatusCode::kInvalidArgument);
      return;
    }
    model_.end = at;
    model_.closed = true;
    PM_FUZZ_CHECK(update.ok()) << update.status();
    PM_FUZZ_CHECK(update->closed_now && update->closed);
    PM_FUZZ_CHECK(update->end_offset == at);
    Woken(true);
  }

  void Drop(Input& in) {
    const uint64_t bytes = in.Short();
    const uint64_t before = log_.retained_bytes();
    const uint64_t freed = log_.DropOldest(bytes);
    PM_FUZZ_CHECK(log_.retained_bytes() == before - freed)
        << before << " - " << freed;
    PM_FUZZ_CHECK(freed >= bytes || log_.retained_bytes() == 0)
        << "freed " << freed << " of " << bytes << ", "
        << log_.retained_bytes() << " still retained";
  }

  void Wait(Input& in) {
    if (in.Byte() % 4 == 0) {
      log_.Unwatch(watcher_.get());
      registered_ = false;
      return;
    }
    const uint64_t cursor = PickOffset(in);
    const OutputLog::WaitResult result = log_.WaitPast(cursor, watcher_);
    if (model_.end > cursor) {
      PM_FUZZ_CHECK(result == OutputLog::WaitResult::kDataReady);
    } else if (model_.closed) {
      PM_FUZZ_CHECK(result == OutputLog::WaitResult::kClosed);
    } else {
      PM_FUZZ_CHECK(result == OutputLog::WaitResult::kRegistered);
      registered_ = true;
    }
  }

  void ReadAndCheck(Input& in) {
    const uint8_t how = in.Byte();
    uint64_t cursor = 0;
    switch (how % 4) {
      case 0: cursor = 0; break;
      case 1: cursor = log_.first_retained_offset(); break;
      case 2: cursor = PickOffset(in); break;
      default: cursor = model_.end; break;
    }
    const uint64_t span = in.Byte() % 3 == 0 ? in.Short() % 300 : kMax;
    const uint64_t limit = span > kMax - cursor ? kMax : cursor + span;
    const size_t max_bytes = in.Byte() % 100 + 1;
    ReadFrom(cursor, limit, max_bytes);
  }

  void ReadFrom(uint64_t cursor, uint64_t limit, size_t max_bytes) {
    const uint64_t upto = std::min(limit, model_.end);
    const uint64_t first_retained = log_.first_retained_offset();
    const uint64_t start = cursor;
    uint64_t data_bytes = 0;
    uint64_t dropped = 0;
    int chunks = 0;
    while (std::optional<OutputLog::Chunk> chunk =
               log_.Read(cursor, limit, max_bytes)) {
      // Reading megabytes a byte at a time would only slow the fuzzer.
      if (++chunks > kMaxChunksPerRead) return;
      PM_FUZZ_CHECK(cursor < upto) << "a chunk at " << cursor << " past "
                                   << upto;
      PM_FUZZ_CHECK(chunk->offset == cursor + chunk->dropped_before)
          << chunk->offset << " != " << cursor << " + "
          << chunk->dropped_before;
      PM_FUZZ_CHECK(chunk->data.size() <= max_bytes);
      PM_FUZZ_CHECK(chunk->offset + chunk->data.size() <= upto);
      if (chunk->data.empty()) {
        PM_FUZZ_CHECK(chunk->offset == upto && chunk->dropped_before > 0)
            << "an empty chunk at " << chunk->offset << " before " << upto;
      }
      // Each chunk moves the reader on, or the read would never end.
      PM_FUZZ_CHECK(chunk->offset + chunk->data.size() > cursor)
          << "a chunk at " << chunk->offset << " leaves the cursor at "
          << cursor;
      CheckSkipped(cursor, chunk->offset, first_retained);
      CheckData(*chunk);
      data_bytes += chunk->data.size();
      dropped += chunk->dropped_before;
      cursor = chunk->offset + chunk->data.size();
    }
    if (start < upto) {
      PM_FUZZ_CHECK(cursor == upto) << "read ended at " << cursor << ", not "
                                    << upto;
      PM_FUZZ_CHECK(data_bytes + dropped == upto - start);
    }
    if (start == 0 && limit == kMax && options_.chunk_overhead_bytes == 0) {
      // With no per-chunk overhead the accounting is the retained data.
      PM_FUZZ_CHECK(log_.retained_bytes() == data_bytes)
          << log_.retained_bytes() << " retained, " << data_bytes << " read";
    }
  }

  // Bytes in [from, to) the reader never gets: each was lost, or retention
  // dropped it (so it lies before the oldest retained byte).
  void CheckSkipped(uint64_t from, uint64_t to, uint64_t first_retained) {
    auto it = model_.stretches.lower_bound(std::max(from, first_retained));
    if (it != model_.stretches.begin()) {
      auto prev = std::prev(it);
      if (prev->first + prev->second.data.size() > std::max(from, first_retained)) {
        it = prev;
      }
    }
    if (it == model_.stretches.end()) return;
    const uint64_t kept_from = std::max({from, first_retained, it->first});
    PM_FUZZ_CHECK(kept_from >= to)
        << "skipped retained byte " << kept_from << " reading [" << from
        << ", " << to << ")";
  }

  void CheckData(const OutputLog::Chunk& chunk) {
    for (size_t i = 0; i < chunk.data.size();) {
      const auto* stretch = model_.At(chunk.offset + i);
      PM_FUZZ_CHECK(stretch != nullptr)
          << "byte " << chunk.offset + i << " was never appended";
      PM_FUZZ_CHECK(stretch->second.stream == chunk.stream)
          << "byte " << chunk.offset + i << " from the other stream";
      const uint64_t in_stretch = chunk.offset + i - stretch->first;
      const size_t n = std::min<uint64_t>(
          chunk.data.size() - i, stretch->second.data.size() - in_stretch);
      PM_FUZZ_CHECK(chunk.data.compare(i, n, stretch->second.data, in_stretch,
                                       n) == 0)
          << "bytes at " << chunk.offset + i << " differ from those appended";
      i += n;
    }
  }

  void CheckStartOffset(Input& in) {
    const uint64_t from = PickOffset(in);
    const bool follow = in.Byte() % 2 == 0;
    PM_FUZZ_CHECK(*log_.StartOffset(std::nullopt, true) == 0);
    PM_FUZZ_CHECK(*log_.StartOffset(std::nullopt, false) == model_.end);
    absl::StatusOr<uint64_t> start = log_.StartOffset(from, false, follow);
    if (from > model_.end && (!follow || model_.closed)) {
      PM_FUZZ_CHECK(start.status().code() == absl::StatusCode::kOutOfRange)
          << start.status();
    } else {
      PM_FUZZ_CHECK(start.ok() && *start == from) << start.status();
    }
  }

  void CheckState() {
    PM_FUZZ_CHECK(log_.end_offset() == model_.end);
    PM_FUZZ_CHECK(log_.closed() == model_.closed);
    PM_FUZZ_CHECK(log_.retained_bytes() <= options_.max_bytes)
        << log_.retained_bytes() << " retained over the cap of "
        << options_.max_bytes;
    PM_FUZZ_CHECK(log_.first_retained_offset() <= model_.end);
    PM_FUZZ_CHECK(log_.watcher_count() == (registered_ ? 1u : 0u));
  }

  template <typename T>
  void ExpectCode(const absl::StatusOr<T>& result, absl::StatusCode code) {
    PM_FUZZ_CHECK(result.status().code() == code)
        << "want " << absl::StatusCodeToString(code) << ", got "
        << result.status();
    Woken(false);
  }

  // A resend or a repeated close: OK, nothing changes, nobody is woken.
  void ExpectUnchanged(const absl::StatusOr<OutputLog::Update>& update) {
    PM_FUZZ_CHECK(update.ok()) << update.status();
    PM_FUZZ_CHECK(update->end_offset == model_.end);
    PM_FUZZ_CHECK(update->closed == model_.closed);
    PM_FUZZ_CHECK(update->retained_delta == 0);
    PM_FUZZ_CHECK(!update->closed_now);
    Woken(false);
  }

  void ExpectGrown(const absl::StatusOr<OutputLog::Update>& update,
                   uint64_t retained_before) {
    PM_FUZZ_CHECK(update.ok()) << update.status();
    PM_FUZZ_CHECK(update->end_offset == model_.end)
        << update->end_offset << " != " << model_.end;
    PM_FUZZ_CHECK(!update->closed && !update->closed_now);
    PM_FUZZ_CHECK(static_cast<int64_t>(retained_before) +
                      update->retained_delta ==
                  static_cast<int64_t>(log_.retained_bytes()))
        << retained_before << " + " << update->retained_delta
        << " != " << log_.retained_bytes();
    Woken(true);
  }

  // A registered watcher is called once by a call that grows or closes the
  // log, and by nothing else.
  void Woken(bool grew) {
    const int want = registered_ && grew ? 1 : 0;
    PM_FUZZ_CHECK(watcher_->calls == want)
        << "watcher called " << watcher_->calls << " times, want " << want;
    watcher_->calls = 0;
    if (grew) registered_ = false;
  }

  const OutputLog::Options options_;
  OutputLog log_;
  Model model_;
  std::shared_ptr<CountingWatcher> watcher_;
  bool registered_ = false;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Input in(data, size);
  Harness harness(DecodeOptions(in));
  harness.Run(in);
  return 0;
}
