// UTF-8 validity of byte strings, and a readable form of those that are not.
//
// On Linux, arguments, environment entries and paths are bytes in whatever
// encoding their author used; a proto3 `string` field must be UTF-8. These
// decide which form a value travels in, and how a value that is not text is
// shown:
//
//   if (pm::IsValidUtf8(arg)) request.add_args(arg);
//   else request.add_args_bytes(arg);
//   std::cerr << "no such dir: " << pm::EscapeInvalidUtf8(dir);  // caf\xe9
//
// Valid means well-formed by RFC 3629 (what protobuf checks): no overlong
// forms, no surrogates (U+D800..U+DFFF), nothing above U+10FFFF. NUL is a
// valid character here; callers that cannot carry it check it themselves.
#ifndef PM_COMMON_UTF8_H_
#define PM_COMMON_UTF8_H_

#include <cstddef>
#include <string>

#include "absl/strings/string_view.h"

namespace pm {

// The offset of the first byte of `text` that does not begin a well-formed
// UTF-8 sequence (a stray continuation byte, a sequence cut short or
// overlong, a surrogate, a code point above U+10FFFF), or
// absl::string_view::npos when all of `text` is valid.
size_t FindInvalidUtf8(absl::string_view text);

// The length (1 to 4) of the well-formed UTF-8 sequence that begins at
// text[i], or 0 when text[i] begins none. For walking text a character at a
// time (escaping control characters but keeping UTF-8 ones, say).
size_t Utf8SequenceLength(absl::string_view text, size_t i);

// Whether all of `text` is well-formed UTF-8.
inline bool IsValidUtf8(absl::string_view text) {
  return FindInvalidUtf8(text) == absl::string_view::npos;
}

// `text` with each byte that is not part of a well-formed UTF-8 sequence
// written as \xNN (lower-case hex): "caf\xe9" for Latin-1 "café". Valid
// text, backslashes included, is returned unchanged, so this is for people
// to read (messages, proc_status values), not a reversible encoding.
std::string EscapeInvalidUtf8(absl::string_view text);

}  // namespace pm

#endif  // PM_COMMON_UTF8_H_
