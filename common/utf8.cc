#include "common/utf8.h"

#include "absl/strings/str_format.h"

namespace pm {
namespace {

bool InRange(unsigned char c, unsigned char low, unsigned char high) {
  return c >= low && c <= high;
}

}  // namespace

// The table of well-formed sequences in the Unicode standard, 3.9.
size_t Utf8SequenceLength(absl::string_view text, size_t i) {
  if (i >= text.size()) return 0;
  const auto at = [&](size_t k) -> unsigned char {
    return i + k < text.size() ? static_cast<unsigned char>(text[i + k]) : 0;
  };
  const unsigned char lead = at(0);
  if (lead < 0x80) return 1;
  // The allowed range of the second byte depends on the first; the others
  // are plain continuation bytes.
  size_t length = 0;
  unsigned char low = 0x80, high = 0xbf;
  if (InRange(lead, 0xc2, 0xdf)) {
    length = 2;
  } else if (lead == 0xe0) {
    length = 3, low = 0xa0;  // not overlong
  } else if (lead == 0xed) {
    length = 3, high = 0x9f;  // not a surrogate
  } else if (InRange(lead, 0xe1, 0xef)) {
    length = 3;
  } else if (lead == 0xf0) {
    length = 4, low = 0x90;  // not overlong
  } else if (lead == 0xf4) {
    length = 4, high = 0x8f;  // not above U+10FFFF
  } else if (InRange(lead, 0xf1, 0xf3)) {
    length = 4;
  } else {
    return 0;  // a continuation byte, C0, C1, F5..FF
  }
  if (i + length > text.size() || !InRange(at(1), low, high)) return 0;
  for (size_t k = 2; k < length; ++k) {
    if (!InRange(at(k), 0x80, 0xbf)) return 0;
  }
  return length;
}

size_t FindInvalidUtf8(absl::string_view text) {
  size_t i = 0;
  while (i < text.size()) {
    // ASCII runs are most of any text.
    if (static_cast<unsigned char>(text[i]) < 0x80) {
      ++i;
      continue;
    }
    const size_t length = Utf8SequenceLength(text, i);
    if (length == 0) return i;
    i += length;
  }
  return absl::string_view::npos;
}

std::string EscapeInvalidUtf8(absl::string_view text) {
  std::string out;
  out.reserve(text.size());
  size_t i = 0;
  while (i < text.size()) {
    const size_t length = Utf8SequenceLength(text, i);
    if (length == 0) {
      absl::StrAppendFormat(&out, "\\x%02x",
                            static_cast<unsigned char>(text[i]));
      ++i;
    } else {
      out.append(text.data() + i, length);
      i += length;
    }
  }
  return out;
}

}  // namespace pm
