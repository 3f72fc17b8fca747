// Fuzzes the users file parser, pm::gateway::ParseUsers, and
// PasswordHash::Parse on its own: the gateway re-reads the file whenever it
// changes, and a bad file must be refused with a line number, never crash
// the gateway that serves with the last good table.
//
// Invariants besides "no crash, no sanitizer report":
//   - a refusal is INVALID_ARGUMENT naming a line;
//   - every accepted user name passes ValidateUserName;
//   - FormatUsers of an accepted table parses back to the same table, and
//     PasswordHash::ToString of an accepted hash parses back to it (what
//     pm_users writes, the gateway reads);
//   - VerifyPassword runs on any accepted hash (only for cheap iteration
//     counts: PBKDF2 is meant to be slow).
#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/string_view.h"
#include "gateway/users.h"
#include "testing/fuzz/fuzz_check.h"

namespace {

using pm::gateway::PasswordHash;
using pm::gateway::UserTable;

bool SameHash(const PasswordHash& a, const PasswordHash& b) {
  return a.iterations == b.iterations && a.salt == b.salt && a.hash == b.hash;
}

void CheckHash(absl::string_view text) {
  absl::StatusOr<PasswordHash> hash = PasswordHash::Parse(text);
  if (!hash.ok()) {
    PM_FUZZ_CHECK(hash.status().code() == absl::StatusCode::kInvalidArgument)
        << hash.status();
    return;
  }
  const std::string written = hash->ToString();
  absl::StatusOr<PasswordHash> again = PasswordHash::Parse(written);
  PM_FUZZ_CHECK(again.ok()) << written << ": " << again.status();
  PM_FUZZ_CHECK(SameHash(*hash, *again)) << written;
  if (hash->iterations <= 2000) {
    pm::gateway::VerifyPassword(text, *hash);
  }
}

void CheckUsers(absl::string_view text) {
  absl::StatusOr<UserTable> users = pm::gateway::ParseUsers(text);
  if (!users.ok()) {
    PM_FUZZ_CHECK(users.status().code() == absl::StatusCode::kInvalidArgument)
        << users.status();
    PM_FUZZ_CHECK(absl::StartsWith(users.status().message(), "line "))
        << users.status();
    return;
  }
  for (const auto& [name, entry] : *users) {
    PM_FUZZ_CHECK(pm::gateway::ValidateUserName(name).ok()) << name;
  }
  const std::string written = pm::gateway::FormatUsers(*users);
  absl::StatusOr<UserTable> again = pm::gateway::ParseUsers(written);
  PM_FUZZ_CHECK(again.ok()) << written << ": " << again.status();
  PM_FUZZ_CHECK(again->size() == users->size()) << written;
  for (const auto& [name, entry] : *users) {
    auto it = again->find(name);
    PM_FUZZ_CHECK(it != again->end()) << name << " lost in\n" << written;
    PM_FUZZ_CHECK(SameHash(entry.hash, it->second.hash)) << name << " in\n" << written;
    PM_FUZZ_CHECK(entry.admin == it->second.admin) << name << " in\n" << written;
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::string_view text(reinterpret_cast<const char*>(data), size);
  CheckUsers(text);
  CheckHash(text);
  return 0;
}
