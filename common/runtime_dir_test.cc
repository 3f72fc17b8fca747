#include "common/runtime_dir.h"

#include <fcntl.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <string>

#include "common/fd.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace pm {
namespace {

using ::testing::HasSubstr;

// Under /tmp, not $TEST_TMPDIR: a unix socket path must fit in 108 bytes.
std::string MakeTempDir() {
  std::string tmpl = "/tmp/pm_rtdir.XXXXXX";
  return mkdtemp(tmpl.data());
}

Fd BindUnix(const std::string& path, bool listen_on_it) {
  Fd sock(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  struct sockaddr_un addr = {};
  addr.sun_family = AF_UNIX;
  EXPECT_LT(path.size(), sizeof(addr.sun_path));
  std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
  EXPECT_EQ(bind(sock.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)),
            0);
  if (listen_on_it) {
    EXPECT_EQ(listen(sock.get(), 1), 0);
  }
  return sock;
}

TEST(RuntimeDirTest, CreatesPrivateDirectory) {
  std::string dir = MakeTempDir() + "/a/b/pm";
  ASSERT_TRUE(EnsureRuntimeDir(dir).ok());
  struct stat st;
  ASSERT_EQ(stat(dir.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  // Idempotent, and tightens a too-open mode.
  chmod(dir.c_str(), 0755);
  ASSERT_TRUE(EnsureRuntimeDir(dir).ok());
  ASSERT_EQ(stat(dir.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
}

TEST(RuntimeDirTest, EnvironmentOverridesDefault) {
  setenv("PM_RUNTIME_DIR", "/somewhere/pm", 1);
  EXPECT_EQ(DefaultRuntimeDir(), "/somewhere/pm");
  unsetenv("PM_RUNTIME_DIR");
  setenv("XDG_RUNTIME_DIR", "/run/user/1000", 1);
  EXPECT_EQ(DefaultRuntimeDir(), "/run/user/1000/pm");
  unsetenv("XDG_RUNTIME_DIR");
  EXPECT_EQ(DefaultRuntimeDir(), "/tmp/pm-" + std::to_string(getuid()));
}

TEST(ClaimSocketPathTest, RemovesStaleSocketButNotLiveOne) {
  std::string dir = MakeTempDir();
  std::string stale = SocketPath(dir, Service::kRegistry);
  { Fd s = BindUnix(stale, /*listen_on_it=*/false); }  // closed: stale
  ASSERT_TRUE(ClaimSocketPath(stale).ok());
  EXPECT_NE(access(stale.c_str(), F_OK), 0);

  std::string live = SocketPath(dir, Service::kLogStore);
  Fd listener = BindUnix(live, /*listen_on_it=*/true);
  absl::Status status = ClaimSocketPath(live);
  EXPECT_EQ(status.code(), absl::StatusCode::kAlreadyExists);
  EXPECT_THAT(status.message(), HasSubstr(live));
  EXPECT_EQ(access(live.c_str(), F_OK), 0);
}

TEST(ClaimSocketPathTest, RefusesRegularFile) {
  std::string path = MakeTempDir() + "/supervisor.sock";
  Fd file(open(path.c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0600));
  EXPECT_EQ(ClaimSocketPath(path).code(),
            absl::StatusCode::kFailedPrecondition);
}

}  // namespace
}  // namespace pm
