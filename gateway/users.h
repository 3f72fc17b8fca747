// The gateway's users: names and salted password hashes in a text file.
//
//   # users file: one user per line, written by //gateway:pm_users
//   demo:pbkdf2-sha256$600000$<salt, base64>$<hash, base64>
//   root:pbkdf2-sha256$600000$<salt, base64>$<hash, base64>:admin
//
// A user sees and acts on only the processes it started through the
// gateway; a user marked `admin` (pm_users add --admin) on every process.
//
//   PM_ASSIGN_OR_RETURN(pm::gateway::UserStore users,
//                       pm::gateway::UserStore::Open("/etc/pm/users"));
//   absl::Status ok = users.Check("demo", password);
//   // OK, or PERMISSION_DENIED for a wrong password or an unknown user
//
// Hashes are PBKDF2-HMAC-SHA256 from OpenSSL with a random 16-byte salt,
// compared with CRYPTO_memcmp. An unknown user runs the same PBKDF2 (same
// iteration count) against a dummy entry, so the time of a failed check does
// not tell whether the user exists. The file is re-read when it changes on
// disk (its inode, size or mtime), so `pm_users add` takes effect without a
// restart; replace it atomically (pm_users writes a temp file and renames).
//
// A successful check is remembered (a keyed SHA-256 of user and password,
// never the password) so that later calls of the same client skip PBKDF2;
// only a caller who knows the password can hit that cache.
#ifndef PM_GATEWAY_USERS_H_
#define PM_GATEWAY_USERS_H_

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"

namespace pm::gateway {

// OWASP's 2023 recommendation for PBKDF2-HMAC-SHA256.
inline constexpr uint32_t kDefaultIterations = 600000;

// A stored password: PBKDF2-HMAC-SHA256 parameters and result.
struct PasswordHash {
  uint32_t iterations = kDefaultIterations;
  std::string salt;  // raw bytes
  std::string hash;  // raw bytes (32)

  // "pbkdf2-sha256$ITER$SALT$HASH" (base64 without padding).
  std::string ToString() const;
  // INVALID_ARGUMENT naming what is malformed.
  static absl::StatusOr<PasswordHash> Parse(absl::string_view text);
};

// A new hash of `password` with a fresh random salt.
absl::StatusOr<PasswordHash> HashPassword(absl::string_view password,
                                          uint32_t iterations = kDefaultIterations);

// True when `password` matches `stored`; constant time in the comparison.
bool VerifyPassword(absl::string_view password, const PasswordHash& stored);

// INVALID_ARGUMENT unless `name` is 1-64 of [A-Za-z0-9._-]: a name that ends
// up in logs and in process records must not carry separators or escapes.
absl::Status ValidateUserName(absl::string_view name);

// One user of a users file.
struct UserEntry {
  PasswordHash hash;
  // Sees and acts on every process, not only its own.
  bool admin = false;
};

// The contents of a users file, name -> entry.
using UserTable = std::map<std::string, UserEntry>;

// Parses a users file's text: `name:hash` or `name:hash:admin` lines, blank
// lines and `#` comments. INVALID_ARGUMENT naming the line number of a bad
// line.
absl::StatusOr<UserTable> ParseUsers(absl::string_view text);
// The text of a users file for `users`.
std::string FormatUsers(const UserTable& users);

// Reads a users file. NOT_FOUND / PERMISSION_DENIED naming the path when it
// cannot be read, INVALID_ARGUMENT when it is malformed.
absl::StatusOr<UserTable> ReadUsersFile(const std::string& path);
// Writes `users` to `path` atomically (temp file in the same directory,
// fsync, rename), mode 0600.
absl::Status WriteUsersFile(const std::string& path, const UserTable& users);

class UserStore {
 public:
  // Reads `path` once; errors as ReadUsersFile. An empty file is allowed
  // (every check fails).
  static absl::StatusOr<std::unique_ptr<UserStore>> Open(std::string path);

  // OK when `user` exists and `password` is its password; PERMISSION_DENIED
  // ("wrong user name or password", the same for both) otherwise. Neither
  // the password nor whether the user exists is in the message.
  absl::Status Check(absl::string_view user, absl::string_view password);

  // True when this exact user and password passed Check recently (the
  // cache): no PBKDF2, so a throttled client that knows the password is
  // still let in at no cost.
  bool CheckedRecently(absl::string_view user, absl::string_view password);

  // Whether `user` is marked admin in the file as last read (false for an
  // unknown user).
  bool IsAdmin(absl::string_view user);

 private:
  struct FileId {
    ino_t inode = 0;
    off_t size = -1;
    int64_t mtime_ns = 0;
    bool operator==(const FileId& o) const {
      return inode == o.inode && size == o.size && mtime_ns == o.mtime_ns;
    }
  };
  explicit UserStore(std::string path);
  // Re-reads the file if it changed. A file that became unreadable or
  // malformed is logged and the last good table kept.
  void ReloadIfChanged() ABSL_LOCKS_EXCLUDED(mu_);
  std::string CacheKey(absl::string_view user, absl::string_view password) const;

  const std::string path_;
  std::string cache_pepper_;  // random per process
  PasswordHash dummy_;        // checked for unknown users
  absl::Mutex mu_;
  FileId file_id_ ABSL_GUARDED_BY(mu_);
  UserTable users_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_set<std::string> verified_ ABSL_GUARDED_BY(mu_);
};

}  // namespace pm::gateway

#endif  // PM_GATEWAY_USERS_H_
