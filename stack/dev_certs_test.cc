#include "stack/dev_certs.h"

#include <stdlib.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "gateway/users.h"
#include "gtest/gtest.h"

namespace pm::stack {
namespace {

std::string Script() {
  return absl::StrCat(getenv("TEST_SRCDIR"), "/pm/certs/make_pki.sh");
}

mode_t Mode(const std::string& path) {
  struct stat st = {};
  stat(path.c_str(), &st);
  return st.st_mode & 0777;
}

TEST(DevCertsTest, MakesPkiAndDemoUserOnceThenReusesThem) {
  const std::string dir = absl::StrCat(getenv("TEST_TMPDIR"), "/dev");
  absl::StatusOr<DevCredentials> made = EnsureDevCredentials(dir, Script());
  ASSERT_TRUE(made.ok()) << made.status();
  EXPECT_TRUE(made->created);
  for (const char* name : {"ca.pem", "server.pem", "server.key", "client.pem",
                           "client.key", "peer-ca.pem", "peer.pem", "peer.key",
                           "untrusted-client.pem"}) {
    EXPECT_TRUE(std::filesystem::exists(made->File(name))) << name;
  }
  EXPECT_EQ(Mode(made->password_file), 0600u);
  EXPECT_EQ(Mode(made->File("server.key")), 0600u);

  std::string password;
  std::getline(std::ifstream(made->password_file), password);
  EXPECT_GE(password.size(), 20u);
  auto users = pm::gateway::UserStore::Open(made->users_file);
  ASSERT_TRUE(users.ok()) << users.status();
  EXPECT_TRUE((*users)->Check("demo", password).ok());

  GatewayOptions flags = made->GatewayFlags("127.0.0.1:0");
  EXPECT_EQ(flags.cert_file, made->File("server.pem"));
  EXPECT_EQ(flags.users_file, made->users_file);
  EXPECT_EQ(flags.peer_ca_file, made->File("peer-ca.pem"));

  // A second run keeps everything.
  absl::StatusOr<DevCredentials> again = EnsureDevCredentials(dir, Script());
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_FALSE(again->created);
  std::string same;
  std::getline(std::ifstream(again->password_file), same);
  EXPECT_EQ(same, password);
}

TEST(DevCertsTest, ADirMadeBeforeThePeersCaIsMadeAnew) {
  const std::string dir = absl::StrCat(getenv("TEST_TMPDIR"), "/old");
  ASSERT_TRUE(EnsureDevCredentials(dir, Script()).ok());
  // As an older make_pki.sh left it: peer.pem from ca.pem, no peer-ca.pem.
  ASSERT_TRUE(std::filesystem::remove(dir + "/peer-ca.pem"));
  absl::StatusOr<DevCredentials> again = EnsureDevCredentials(dir, Script());
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_TRUE(again->created);
  EXPECT_TRUE(std::filesystem::exists(again->File("peer-ca.pem")));
}

TEST(DevCertsTest, AFailingScriptIsNamed) {
  const std::string dir = absl::StrCat(getenv("TEST_TMPDIR"), "/broken");
  absl::StatusOr<DevCredentials> made =
      EnsureDevCredentials(dir, "/nonexistent/make_pki.sh");
  EXPECT_FALSE(made.ok());
  EXPECT_NE(made.status().message().find("/nonexistent/make_pki.sh"),
            absl::string_view::npos)
      << made.status();
}

}  // namespace
}  // namespace pm::stack
