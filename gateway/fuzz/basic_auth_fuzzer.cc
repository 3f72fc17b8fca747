// Fuzzes pm::gateway::ParseBasicAuth with any `authorization` header value a
// client can send (the gateway parses it before knowing who is calling).
//
// Invariants besides "no crash, no sanitizer report":
//   - accepted credentials have a non-empty user without ':' (the first ':'
//     splits user from password, as RFC 7617 says);
//   - BasicAuthHeader(user, password) parses back to the same credentials;
//   - a refusal is UNAUTHENTICATED and never echoes the header (it may hold
//     a password): its message is one of a few fixed texts.
#include <cstddef>
#include <cstdint>
#include <set>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"
#include "gateway/basic_auth.h"
#include "testing/fuzz/fuzz_check.h"

namespace {

// ParseBasicAuth has three refusals today (not "Basic ...", not base64, not
// "user:password"); a little room for more.
constexpr size_t kMaxRefusalMessages = 6;

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::string_view header(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<pm::gateway::BasicCredentials> parsed =
      pm::gateway::ParseBasicAuth(header);
  if (!parsed.ok()) {
    PM_FUZZ_CHECK(parsed.status().code() == absl::StatusCode::kUnauthenticated)
        << parsed.status();
    // A message built from the header would take as many texts as the
    // fuzzer makes headers; a fixed one takes a few. (Checking that the
    // header is not in the message is wrong: a header may well be a piece
    // of a fixed message.)
    static auto* messages = new std::set<std::string>();
    messages->insert(std::string(parsed.status().message()));
    PM_FUZZ_CHECK(messages->size() <= kMaxRefusalMessages)
        << "refusal messages that vary with the header: "
        << absl::StrJoin(*messages, " | ");
    return 0;
  }
  PM_FUZZ_CHECK(!parsed->user.empty());
  PM_FUZZ_CHECK(parsed->user.find(':') == std::string::npos) << parsed->user;

  const std::string again_header =
      pm::gateway::BasicAuthHeader(parsed->user, parsed->password);
  absl::StatusOr<pm::gateway::BasicCredentials> again =
      pm::gateway::ParseBasicAuth(again_header);
  PM_FUZZ_CHECK(again.ok()) << again_header << ": " << again.status();
  PM_FUZZ_CHECK(again->user == parsed->user) << again_header;
  PM_FUZZ_CHECK(again->password == parsed->password) << again_header;
  return 0;
}
