#include "common/metrics_http.h"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "common/fd.h"

namespace pm {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

Fd Connect(int port) {
  Fd fd(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in addr = {};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_EQ(connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  return fd;
}

// Sends `request` and reads the answer until the server closes.
std::string Exchange(int port, const std::string& request) {
  Fd fd = Connect(port);
  size_t sent = 0;
  while (sent < request.size()) {
    ssize_t n = send(fd.get(), request.data() + sent, request.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) break;  // the server may answer and close before all is sent
    sent += n;
  }
  std::string answer;
  char buf[4096];
  ssize_t n;
  while ((n = read(fd.get(), buf, sizeof(buf))) > 0) answer.append(buf, n);
  return answer;
}

std::string Get(int port, const std::string& path, const std::string& method = "GET") {
  return Exchange(port, absl::StrCat(method, " ", path,
                                     " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"));
}

TEST(MetricsHttpTest, ServesTheRenderedTextAtMetrics) {
  std::atomic<int> scrapes{0};
  absl::StatusOr<std::unique_ptr<MetricsHttpServer>> server =
      MetricsHttpServer::Start("127.0.0.1:0", [&] {
        return absl::StrCat("# TYPE pm_x counter\npm_x ", ++scrapes, "\n");
      });
  ASSERT_TRUE(server.ok()) << server.status();
  const int port = (*server)->port();
  ASSERT_GT(port, 0);
  std::string first = Get(port, "/metrics");
  EXPECT_THAT(first, StartsWith("HTTP/1.1 200"));
  EXPECT_THAT(first, HasSubstr("Content-Type: text/plain; version=0.0.4; charset=utf-8"));
  EXPECT_THAT(first, HasSubstr("\r\n\r\n# TYPE pm_x counter\npm_x 1\n"));
  EXPECT_THAT(Get(port, "/metrics"), HasSubstr("pm_x 2\n"));
  std::string head = Get(port, "/metrics", "HEAD");
  EXPECT_THAT(head, StartsWith("HTTP/1.1 200"));
  EXPECT_THAT(head, ::testing::Not(HasSubstr("pm_x")));
}

TEST(MetricsHttpTest, OtherPathsAndMethodsAreRefused) {
  absl::StatusOr<std::unique_ptr<MetricsHttpServer>> server =
      MetricsHttpServer::Start("127.0.0.1:0", [] { return std::string("pm_x 1\n"); });
  ASSERT_TRUE(server.ok()) << server.status();
  const int port = (*server)->port();
  EXPECT_THAT(Get(port, "/"), StartsWith("HTTP/1.1 404"));
  EXPECT_THAT(Get(port, "/metrics/../etc"), StartsWith("HTTP/1.1 404"));
  std::string post = Get(port, "/metrics", "POST");
  EXPECT_THAT(post, StartsWith("HTTP/1.1 405"));
  EXPECT_THAT(post, HasSubstr("Allow: GET, HEAD"));
  EXPECT_THAT(Get(port, "/metrics", "DELETE"), StartsWith("HTTP/1.1 405"));
}

TEST(MetricsHttpTest, HostileRequestsGetAnErrorAndTheServerGoesOn) {
  absl::StatusOr<std::unique_ptr<MetricsHttpServer>> server =
      MetricsHttpServer::Start("127.0.0.1:0", [] { return std::string("pm_x 1\n"); });
  ASSERT_TRUE(server.ok()) << server.status();
  const int port = (*server)->port();
  // Not HTTP at all: closed (with a 400 or without a word).
  std::string garbage = Exchange(port, "\x01\x02garbage\r\n\r\n");
  EXPECT_TRUE(garbage.empty() || garbage.rfind("HTTP/1.1 400", 0) == 0) << garbage;
  EXPECT_THAT(Get(port, "/metrics"), StartsWith("HTTP/1.1 200"));
  // A header far past the per-connection memory.
  std::string huge = absl::StrCat("GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: ",
                                  std::string(1 << 20, 'a'), "\r\n\r\n");
  std::string answer = Exchange(port, huge);
  EXPECT_TRUE(answer.empty() || answer.rfind("HTTP/1.1 4", 0) == 0) << answer.substr(0, 80);
  // More idle connections than the cap: held open, while a scrape still
  // gets through once they go.
  std::vector<Fd> idle;
  for (unsigned i = 0; i < MetricsHttpServer::kMaxConnectionsPerIp + 4; ++i) {
    idle.push_back(Connect(port));
  }
  idle.clear();
  std::string after;
  for (int attempt = 0; attempt < 100 && after.rfind("HTTP/1.1 200", 0) != 0; ++attempt) {
    after = Get(port, "/metrics");  // a refused one is closed at once: try again
  }
  EXPECT_THAT(after, StartsWith("HTTP/1.1 200"));
}

TEST(MetricsHttpTest, BadAddressesAreClearErrors) {
  auto render = [] { return std::string(); };
  for (const char* bad : {"", "9464", "127.0.0.1", "127.0.0.1:x", "127.0.0.1:70000",
                          "::1:9464", ":9464", "127.0.0.1:-1"}) {
    absl::StatusOr<std::unique_ptr<MetricsHttpServer>> server =
        MetricsHttpServer::Start(bad, render);
    ASSERT_FALSE(server.ok()) << bad;
    EXPECT_EQ(server.status().code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_THAT(std::string(server.status().message()), HasSubstr("host:port")) << bad;
  }
  absl::StatusOr<std::unique_ptr<MetricsHttpServer>> v6 =
      MetricsHttpServer::Start("[::1]:0", render);
  if (v6.ok()) {
    EXPECT_GT((*v6)->port(), 0);
  }
}

TEST(MetricsHttpTest, APortInUseNamesBind) {
  auto render = [] { return std::string(); };
  absl::StatusOr<std::unique_ptr<MetricsHttpServer>> first =
      MetricsHttpServer::Start("127.0.0.1:0", render);
  ASSERT_TRUE(first.ok()) << first.status();
  absl::StatusOr<std::unique_ptr<MetricsHttpServer>> second =
      MetricsHttpServer::Start(absl::StrCat("127.0.0.1:", (*first)->port()), render);
  ASSERT_FALSE(second.ok());
  EXPECT_THAT(std::string(second.status().message()), HasSubstr("bind"));
  EXPECT_THAT(std::string(second.status().message()), HasSubstr("Address already in use"));
}

}  // namespace
}  // namespace pm
