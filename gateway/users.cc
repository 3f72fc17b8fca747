#include "gateway/users.h"

#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <sys/stat.h>
#include <unistd.h>

#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/fd.h"
#include "common/log.h"
#include "common/status.h"

namespace pm::gateway {
namespace {

constexpr absl::string_view kScheme = "pbkdf2-sha256";
constexpr size_t kSaltBytes = 16;
constexpr size_t kHashBytes = 32;
// Bounds on a stored iteration count: a file must not make every check take
// minutes, nor accept a trivially cheap hash.
constexpr uint32_t kMinIterations = 1000;
constexpr uint32_t kMaxIterations = 10000000;
// Successful checks remembered; cleared when full.
constexpr size_t kMaxVerified = 4096;

std::string Pbkdf2(absl::string_view password, absl::string_view salt,
                   uint32_t iterations) {
  std::string out(kHashBytes, '\0');
  PKCS5_PBKDF2_HMAC(password.data(), static_cast<int>(password.size()),
                    reinterpret_cast<const unsigned char*>(salt.data()),
                    static_cast<int>(salt.size()), static_cast<int>(iterations),
                    EVP_sha256(), static_cast<int>(out.size()),
                    reinterpret_cast<unsigned char*>(out.data()));
  return out;
}

absl::StatusOr<std::string> RandomBytes(size_t n) {
  std::string out(n, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(out.data()),
                 static_cast<int>(n)) != 1) {
    return absl::InternalError("RAND_bytes failed");
  }
  return out;
}

std::string Unpadded(std::string base64) {
  while (!base64.empty() && base64.back() == '=') base64.pop_back();
  return base64;
}

}  // namespace

std::string PasswordHash::ToString() const {
  return absl::StrCat(kScheme, "$", iterations, "$",
                      Unpadded(absl::Base64Escape(salt)), "$",
                      Unpadded(absl::Base64Escape(hash)));
}

absl::StatusOr<PasswordHash> PasswordHash::Parse(absl::string_view text) {
  std::vector<absl::string_view> parts = absl::StrSplit(text, '$');
  if (parts.size() != 4 || parts[0] != kScheme) {
    return absl::InvalidArgumentError(
        absl::StrCat("not a ", kScheme, "$ITERATIONS$SALT$HASH entry"));
  }
  PasswordHash parsed;
  if (!absl::SimpleAtoi(parts[1], &parsed.iterations) ||
      parsed.iterations < kMinIterations || parsed.iterations > kMaxIterations) {
    return absl::InvalidArgumentError(
        absl::StrCat("iteration count \"", parts[1], "\" is not a number in [",
                     kMinIterations, ", ", kMaxIterations, "]"));
  }
  if (!absl::Base64Unescape(parts[2], &parsed.salt) || parsed.salt.size() < 8) {
    return absl::InvalidArgumentError("salt is not base64 of at least 8 bytes");
  }
  if (!absl::Base64Unescape(parts[3], &parsed.hash) ||
      parsed.hash.size() != kHashBytes) {
    return absl::InvalidArgumentError("hash is not base64 of 32 bytes");
  }
  return parsed;
}

absl::StatusOr<PasswordHash> HashPassword(absl::string_view password,
                                          uint32_t iterations) {
  if (iterations < kMinIterations || iterations > kMaxIterations) {
    return absl::InvalidArgumentError(absl::StrCat(
        "iterations must be in [", kMinIterations, ", ", kMaxIterations, "]"));
  }
  PasswordHash result;
  result.iterations = iterations;
  PM_ASSIGN_OR_RETURN(result.salt, RandomBytes(kSaltBytes));
  result.hash = Pbkdf2(password, result.salt, iterations);
  return result;
}

bool VerifyPassword(absl::string_view password, const PasswordHash& stored) {
  std::string computed = Pbkdf2(password, stored.salt, stored.iterations);
  bool equal = computed.size() == stored.hash.size() &&
               CRYPTO_memcmp(computed.data(), stored.hash.data(),
                             computed.size()) == 0;
  OPENSSL_cleanse(computed.data(), computed.size());
  return equal;
}

absl::Status ValidateUserName(absl::string_view name) {
  if (name.empty() || name.size() > 64) {
    return absl::InvalidArgumentError("a user name has 1 to 64 characters");
  }
  for (char c : name) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
    if (!ok) {
      return absl::InvalidArgumentError(absl::StrCat(
          "user name \"", absl::CEscape(name),
          "\" may only hold letters, digits, '.', '_' and '-'"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<UserTable> ParseUsers(absl::string_view text) {
  UserTable users;
  int line_number = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++line_number;
    line = absl::StripAsciiWhitespace(line);
    if (line.empty() || line[0] == '#') continue;
    auto bad = [line_number](absl::string_view why) {
      return absl::InvalidArgumentError(
          absl::StrCat("line ", line_number, ": ", why));
    };
    std::vector<absl::string_view> fields = absl::StrSplit(line, ':');
    if (fields.size() < 2 || fields.size() > 3) {
      return bad("expected NAME:HASH or NAME:HASH:admin");
    }
    absl::string_view name = fields[0];
    if (absl::Status valid = ValidateUserName(name); !valid.ok()) {
      return bad(valid.message());
    }
    UserEntry entry;
    absl::StatusOr<PasswordHash> hash = PasswordHash::Parse(fields[1]);
    if (!hash.ok()) return bad(hash.status().message());
    entry.hash = *std::move(hash);
    if (fields.size() == 3) {
      if (fields[2] != "admin") {
        return bad(absl::StrCat("unknown attribute \"", absl::CEscape(fields[2]),
                                "\" (the only one is \"admin\")"));
      }
      entry.admin = true;
    }
    if (!users.emplace(std::string(name), std::move(entry)).second) {
      return bad(absl::StrCat("user \"", name, "\" appears twice"));
    }
  }
  return users;
}

std::string FormatUsers(const UserTable& users) {
  std::string text =
      "# pm gateway users: NAME:pbkdf2-sha256$ITERATIONS$SALT$HASH[:admin].\n"
      "# Written by pm_users; replace atomically (write, then rename).\n";
  for (const auto& [name, entry] : users) {
    absl::StrAppend(&text, name, ":", entry.hash.ToString(),
                    entry.admin ? ":admin" : "", "\n");
  }
  return text;
}

absl::StatusOr<UserTable> ReadUsersFile(const std::string& path) {
  PM_ASSIGN_OR_RETURN(std::string text, ReadFile(path));
  absl::StatusOr<UserTable> users = ParseUsers(text);
  if (!users.ok()) return Annotate(users.status(), path);
  return users;
}

absl::Status WriteUsersFile(const std::string& path, const UserTable& users) {
  const std::string temp = absl::StrCat(path, ".tmp.", getpid());
  Fd fd(open(temp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
  if (!fd) return ErrnoError("open", temp);
  const std::string text = FormatUsers(users);
  size_t written = 0;
  while (written < text.size()) {
    ssize_t n = write(fd.get(), text.data() + written, text.size() - written);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      absl::Status status = ErrnoError("write", temp);
      unlink(temp.c_str());
      return status;
    }
    written += static_cast<size_t>(n);
  }
  if (fsync(fd.get()) != 0) {
    absl::Status status = ErrnoError("fsync", temp);
    unlink(temp.c_str());
    return status;
  }
  fd.reset();
  if (rename(temp.c_str(), path.c_str()) != 0) {
    absl::Status status = ErrnoError("rename", path);
    unlink(temp.c_str());
    return status;
  }
  return absl::OkStatus();
}

UserStore::UserStore(std::string path) : path_(std::move(path)) {}

absl::StatusOr<std::unique_ptr<UserStore>> UserStore::Open(std::string path) {
  std::unique_ptr<UserStore> store(new UserStore(std::move(path)));
  PM_ASSIGN_OR_RETURN(store->cache_pepper_, RandomBytes(32));
  PM_ASSIGN_OR_RETURN(store->dummy_, HashPassword("pm: no such user"));
  // The first read must work: a gateway with no users file is a bad flag.
  PM_ASSIGN_OR_RETURN(UserTable users, ReadUsersFile(store->path_));
  absl::MutexLock lock(&store->mu_);
  store->users_ = std::move(users);
  struct stat st = {};
  if (stat(store->path_.c_str(), &st) == 0) {
    store->file_id_ = {st.st_ino, st.st_size,
                       st.st_mtim.tv_sec * 1000000000LL + st.st_mtim.tv_nsec};
  }
  if (!store->users_.empty()) {
    store->dummy_.iterations = store->users_.begin()->second.hash.iterations;
  }
  return store;
}

void UserStore::ReloadIfChanged() {
  struct stat st = {};
  FileId now;
  if (stat(path_.c_str(), &st) == 0) {
    now = {st.st_ino, st.st_size,
           st.st_mtim.tv_sec * 1000000000LL + st.st_mtim.tv_nsec};
  }
  {
    absl::MutexLock lock(&mu_);
    if (now == file_id_) return;
  }
  absl::StatusOr<UserTable> users = ReadUsersFile(path_);
  absl::MutexLock lock(&mu_);
  file_id_ = now;
  if (!users.ok()) {
    PM_LOG(WARNING) << "keeping the previous users: " << users.status();
    return;
  }
  PM_LOG(INFO) << "users file " << path_ << " reloaded: " << users->size()
               << " user(s)";
  users_ = *std::move(users);
  verified_.clear();
  if (!users_.empty()) {
    dummy_.iterations = users_.begin()->second.hash.iterations;
  }
}

std::string UserStore::CacheKey(absl::string_view user,
                                absl::string_view password) const {
  // A keyed digest (pepper first), so the cache holds nothing from which a
  // password could be tested offline.
  std::string key(EVP_MAX_MD_SIZE, '\0');
  unsigned int length = 0;
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  EVP_DigestInit_ex(ctx, EVP_sha256(), nullptr);
  EVP_DigestUpdate(ctx, cache_pepper_.data(), cache_pepper_.size());
  EVP_DigestUpdate(ctx, user.data(), user.size());
  EVP_DigestUpdate(ctx, "", 1);
  EVP_DigestUpdate(ctx, password.data(), password.size());
  EVP_DigestFinal_ex(ctx, reinterpret_cast<unsigned char*>(key.data()), &length);
  EVP_MD_CTX_free(ctx);
  key.resize(length);
  return key;
}

absl::Status UserStore::Check(absl::string_view user,
                              absl::string_view password) {
  static const absl::Status kDenied =
      absl::PermissionDeniedError("wrong user name or password");
  ReloadIfChanged();
  const std::string key = CacheKey(user, password);
  PasswordHash stored;
  bool known = false;
  {
    absl::MutexLock lock(&mu_);
    if (verified_.contains(key)) return absl::OkStatus();
    auto it = users_.find(std::string(user));
    known = it != users_.end();
    stored = known ? it->second.hash : dummy_;
  }
  // Unknown users run the same PBKDF2 against the dummy entry.
  const bool match = VerifyPassword(password, stored);
  if (!known || !match) return kDenied;
  absl::MutexLock lock(&mu_);
  if (verified_.size() >= kMaxVerified) verified_.clear();
  verified_.insert(key);
  return absl::OkStatus();
}

bool UserStore::CheckedRecently(absl::string_view user,
                                absl::string_view password) {
  ReloadIfChanged();
  const std::string key = CacheKey(user, password);
  absl::MutexLock lock(&mu_);
  return verified_.contains(key);
}

bool UserStore::IsAdmin(absl::string_view user) {
  ReloadIfChanged();
  absl::MutexLock lock(&mu_);
  auto it = users_.find(std::string(user));
  return it != users_.end() && it->second.admin;
}

}  // namespace pm::gateway
