// Fuzzes the shim's parsers of outside bytes: Decode (a control message),
// DecodeCommandBytes (a command memfd's contents) and ParseExitFile.
// Invariants: an accepted message re-encodes
// within the size limit, and its encoding decodes to a message that encodes
// the same (the encoding is canonical); an accepted Spawn names only the
// attached fds; an accepted command re-encodes to bytes that decode to the
// same command (and encode the same); an accepted exit file is exactly what FormatExitFile writes
// for what was parsed (there is one spelling of each end).
#include <cstddef>
#include <cstdint>
#include <string>

#include "shim/exit_file.h"
#include "shim/protocol.h"
#include "testing/fuzz/fuzz_check.h"

namespace {

void FuzzMessage(absl::string_view bytes, size_t fd_count) {
  absl::StatusOr<pm::shim::Message> decoded = pm::shim::Decode(bytes, fd_count);
  if (!decoded.ok()) {
    PM_FUZZ_CHECK(decoded.status().code() == absl::StatusCode::kInvalidArgument)
        << decoded.status();
    return;
  }
  absl::StatusOr<std::string> encoded = pm::shim::Encode(*decoded);
  PM_FUZZ_CHECK(encoded.ok()) << encoded.status();
  PM_FUZZ_CHECK(encoded->size() <= pm::shim::kMaxMessageBytes) << encoded->size();
  absl::StatusOr<pm::shim::Message> again = pm::shim::Decode(*encoded, fd_count);
  PM_FUZZ_CHECK(again.ok()) << again.status();
  absl::StatusOr<std::string> reencoded = pm::shim::Encode(*again);
  PM_FUZZ_CHECK(reencoded.ok() && *reencoded == *encoded)
      << "the encoding of a decoded message is not a fixed point";
  if (const auto* spawn = std::get_if<pm::shim::Spawn>(&*decoded)) {
    if (spawn->cgroup2_dir) {
      PM_FUZZ_CHECK(*spawn->cgroup2_dir < fd_count);
    }
    for (const auto& join : spawn->cgroup_joins) {
      PM_FUZZ_CHECK(join.fd_index < fd_count);
    }
    if (spawn->command_memfd) {
      PM_FUZZ_CHECK(*spawn->command_memfd < fd_count);
      PM_FUZZ_CHECK(spawn->command.executable.empty());  // it is in the memfd
    } else {
      PM_FUZZ_CHECK(!spawn->command.executable.empty());
    }
  }
}

void FuzzCommand(absl::string_view bytes) {
  absl::StatusOr<pm::CommandLine> command = pm::shim::DecodeCommandBytes(bytes);
  if (!command.ok()) {
    PM_FUZZ_CHECK(command.status().code() == absl::StatusCode::kInvalidArgument)
        << command.status();
    return;
  }
  PM_FUZZ_CHECK(!command->executable.empty());
  absl::StatusOr<std::string> encoded = pm::shim::EncodeCommand(*command);
  PM_FUZZ_CHECK(encoded.ok()) << encoded.status();
  absl::StatusOr<pm::CommandLine> again = pm::shim::DecodeCommandBytes(*encoded);
  PM_FUZZ_CHECK(again.ok()) << again.status();
  absl::StatusOr<std::string> reencoded = pm::shim::EncodeCommand(*again);
  PM_FUZZ_CHECK(reencoded.ok() && *reencoded == *encoded)
      << "the encoding of a decoded command is not a fixed point";
}

void FuzzExitFile(absl::string_view bytes) {
  absl::StatusOr<pm::shim::ExitRecord> end = pm::shim::ParseExitFile(bytes);
  if (!end.ok()) {
    PM_FUZZ_CHECK(end.status().code() == absl::StatusCode::kInvalidArgument)
        << end.status();
    return;
  }
  PM_FUZZ_CHECK(pm::shim::FormatExitFile(*end) == bytes)
      << "accepted an exit file FormatExitFile would not write";
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const absl::string_view rest(reinterpret_cast<const char*>(data) + 1, size - 1);
  if (data[0] >= 0xc0) {
    FuzzCommand(rest);
  } else if (data[0] >= 0x80) {
    FuzzExitFile(rest);
  } else {
    FuzzMessage(rest, data[0] % (pm::shim::kMaxFds + 1));
  }
  return 0;
}
