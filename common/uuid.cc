#include "common/uuid.h"

#include <stdint.h>
#include <sys/random.h>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/status_core.h"

namespace pm {

absl::StatusOr<std::string> NewUuidV4() {
  uint8_t b[16];
  size_t got = 0;
  while (got < sizeof(b)) {
    ssize_t n = getrandom(b + got, sizeof(b) - got, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoError("getrandom");
    }
    got += static_cast<size_t>(n);
  }
  b[6] = (b[6] & 0x0f) | 0x40;  // version 4
  b[8] = (b[8] & 0x3f) | 0x80;  // RFC 4122 variant
  return absl::StrFormat(
      "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
      b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11],
      b[12], b[13], b[14], b[15]);
}

absl::Status ValidateProcessId(absl::string_view id) {
  auto bad = [&] {
    return absl::InvalidArgumentError(absl::StrCat(
        "malformed process id \"", absl::CHexEscape(id.substr(0, 64)),
        "\": want a UUID like 123e4567-e89b-42d3-a456-426614174000"));
  };
  if (id.size() != 36) return bad();
  for (size_t i = 0; i < id.size(); ++i) {
    bool dash = i == 8 || i == 13 || i == 18 || i == 23;
    if (dash ? id[i] != '-' : !absl::ascii_isxdigit(id[i])) return bad();
  }
  return absl::OkStatus();
}

}  // namespace pm
