#include "gateway/users.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace pm::gateway {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

constexpr uint32_t kFast = 1000;  // keep tests quick

std::string TempDir() {
  std::string tmpl = std::string(getenv("TEST_TMPDIR") ? getenv("TEST_TMPDIR") : "/tmp") +
                     "/users.XXXXXX";
  return mkdtemp(tmpl.data());
}

TEST(PasswordHashTest, RoundTripsAndVerifies) {
  absl::StatusOr<PasswordHash> hash = HashPassword("s3cret", kFast);
  ASSERT_TRUE(hash.ok()) << hash.status();
  absl::StatusOr<PasswordHash> parsed = PasswordHash::Parse(hash->ToString());
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_TRUE(VerifyPassword("s3cret", *parsed));
  EXPECT_FALSE(VerifyPassword("s3cret ", *parsed));
  EXPECT_FALSE(VerifyPassword("", *parsed));
  // Salted: the same password hashes differently.
  EXPECT_NE(HashPassword("s3cret", kFast)->hash, hash->hash);
  EXPECT_THAT(hash->ToString(), Not(HasSubstr("s3cret")));
}

TEST(PasswordHashTest, RejectsMalformedEntries) {
  for (const char* bad : {"", "md5$1$a$b", "pbkdf2-sha256$10$c2FsdHNhbHQ$AAAA",
                          "pbkdf2-sha256$x$c2FsdHNhbHQ$AAAA",
                          "pbkdf2-sha256$1000$!!$AAAA"}) {
    EXPECT_EQ(PasswordHash::Parse(bad).status().code(),
              absl::StatusCode::kInvalidArgument)
        << bad;
  }
}

TEST(UsersFileTest, ParseNamesTheBadLine) {
  std::string good = "alice:" + HashPassword("a", kFast)->ToString();
  absl::StatusOr<UserTable> users =
      ParseUsers("# comment\n\n" + good + "\nbob has no colon\n");
  EXPECT_EQ(users.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(users.status().message(), HasSubstr("line 4"));
  EXPECT_EQ(ParseUsers(good + "\n" + good + "\n").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ParseUsers("ali ce:" + HashPassword("a", kFast)->ToString())
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(UsersFileTest, AdminIsAnAttributeThatRoundTrips) {
  UserTable users;
  users["alice"].hash = *HashPassword("a", kFast);
  users["root"].hash = *HashPassword("r", kFast);
  users["root"].admin = true;
  const std::string text = FormatUsers(users);
  EXPECT_THAT(text, HasSubstr(":admin\n"));
  absl::StatusOr<UserTable> parsed = ParseUsers(text);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_FALSE(parsed->at("alice").admin);
  EXPECT_TRUE(parsed->at("root").admin);
  absl::StatusOr<UserTable> bad =
      ParseUsers("root:" + users["root"].hash.ToString() + ":superuser\n");
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(bad.status().message(), HasSubstr("superuser"));
  EXPECT_EQ(ParseUsers("root:" + users["root"].hash.ToString() + ":admin:x\n")
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(UserStoreTest, KnowsAdminsAndRecentChecks) {
  const std::string path = TempDir() + "/users";
  UserTable users;
  users["alice"].hash = *HashPassword("wonderland", kFast);
  users["root"].hash = *HashPassword("toor", kFast);
  users["root"].admin = true;
  ASSERT_TRUE(WriteUsersFile(path, users).ok());
  absl::StatusOr<std::unique_ptr<UserStore>> store = UserStore::Open(path);
  ASSERT_TRUE(store.ok()) << store.status();
  EXPECT_TRUE((*store)->IsAdmin("root"));
  EXPECT_FALSE((*store)->IsAdmin("alice"));
  EXPECT_FALSE((*store)->IsAdmin("nobody"));
  EXPECT_FALSE((*store)->CheckedRecently("alice", "wonderland"));
  ASSERT_TRUE((*store)->Check("alice", "wonderland").ok());
  EXPECT_TRUE((*store)->CheckedRecently("alice", "wonderland"));
  EXPECT_FALSE((*store)->CheckedRecently("alice", "looking-glass"));
}

TEST(UserStoreTest, ChecksAndPicksUpChangesWithoutRestart) {
  const std::string path = TempDir() + "/users";
  UserTable users;
  users["alice"].hash = *HashPassword("wonderland", kFast);
  ASSERT_TRUE(WriteUsersFile(path, users).ok());
  EXPECT_EQ(std::filesystem::status(path).permissions() &
                std::filesystem::perms::all,
            std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);

  absl::StatusOr<std::unique_ptr<UserStore>> store = UserStore::Open(path);
  ASSERT_TRUE(store.ok()) << store.status();
  EXPECT_TRUE((*store)->Check("alice", "wonderland").ok());
  EXPECT_TRUE((*store)->Check("alice", "wonderland").ok());  // cached
  absl::Status wrong = (*store)->Check("alice", "looking-glass");
  EXPECT_EQ(wrong.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(wrong.message(), Not(HasSubstr("looking-glass")));
  absl::Status unknown = (*store)->Check("bob", "builder");
  EXPECT_EQ(unknown.code(), absl::StatusCode::kPermissionDenied);
  // The same words for both: the message does not tell who exists.
  EXPECT_EQ(unknown.message(), wrong.message());

  // Replace the file (rename): bob appears, alice's password changes.
  users["bob"].hash = *HashPassword("builder", kFast);
  users["alice"].hash = *HashPassword("new", kFast);
  ASSERT_TRUE(WriteUsersFile(path, users).ok());
  EXPECT_TRUE((*store)->Check("bob", "builder").ok());
  EXPECT_EQ((*store)->Check("alice", "wonderland").code(),
            absl::StatusCode::kPermissionDenied);  // the cache was dropped
  EXPECT_TRUE((*store)->Check("alice", "new").ok());

  // A broken file keeps the last good table.
  {
    std::FILE* f = std::fopen((path + ".new").c_str(), "w");
    std::fputs("garbage\n", f);
    std::fclose(f);
    std::filesystem::rename(path + ".new", path);
  }
  EXPECT_TRUE((*store)->Check("bob", "builder").ok());
}

TEST(UserStoreTest, OpenFailsForMissingFile) {
  absl::StatusOr<std::unique_ptr<UserStore>> store =
      UserStore::Open(TempDir() + "/nope");
  EXPECT_EQ(store.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(store.status().message(), HasSubstr("nope"));
}

// An unknown user runs the same PBKDF2 as a known one. A ratio of medians
// with wide bounds: it catches a check that skips the hash (ratio ~0), not
// small differences in speed.
TEST(UserStoreTest, UnknownUserCostsAboutAsMuchAsAKnownOne) {
  const std::string path = TempDir() + "/users";
  UserTable users;
  users["alice"].hash = *HashPassword("wonderland", 100000);
  ASSERT_TRUE(WriteUsersFile(path, users).ok());
  std::unique_ptr<UserStore> store = *UserStore::Open(path);
  auto median_ms = [&](const char* user) {
    std::vector<double> times;
    for (int i = 0; i < 5; ++i) {
      auto start = std::chrono::steady_clock::now();
      EXPECT_FALSE(store->Check(user, "wrong").ok());
      times.push_back(std::chrono::duration<double, std::milli>(
                          std::chrono::steady_clock::now() - start)
                          .count());
    }
    std::sort(times.begin(), times.end());
    return times[2];
  };
  const double known = median_ms("alice");
  const double unknown = median_ms("mallory");
  EXPECT_GT(unknown, known * 0.3) << "known " << known << " ms, unknown " << unknown;
  EXPECT_LT(unknown, known * 3.0) << "known " << known << " ms, unknown " << unknown;
}

}  // namespace
}  // namespace pm::gateway
