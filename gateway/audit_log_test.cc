#include "gateway/audit_log.h"

#include <stdlib.h>
#include <sys/stat.h>

#include <filesystem>

#include "absl/strings/str_split.h"
#include "common/fd.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace pm::gateway {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

std::string TempDir() {
  std::string dir = std::string(getenv("TEST_TMPDIR")) + "/auditXXXXXX";
  EXPECT_NE(mkdtemp(dir.data()), nullptr);
  return dir;
}

TEST(AuditJsonTest, EscapesWhatAClientSent) {
  AuditEntry entry;
  entry.time = absl::FromUnixMillis(1764700000123);
  entry.user = "eve\"},{\"user\":\"root";
  entry.subject = "CN=a\nb\\c";
  entry.peer = "ipv4:127.0.0.1:5000";
  entry.method = "Stop";
  entry.id = "caf\xe9";
  entry.code = grpc::StatusCode::NOT_FOUND;
  entry.message = "no process with id x";
  EXPECT_EQ(AuditJson(entry),
            R"({"time":"2025-12-02T18:26:40.123Z","user":"eve\"},{\"user\":\"root",)"
            R"("subject":"CN=a\u000ab\\c","peer":"ipv4:127.0.0.1:5000",)"
            R"("method":"Stop","id":"caf\u00e9","code":"NOT_FOUND",)"
            R"("message":"no process with id x"})");
}

TEST(AuditLogTest, AppendsLinesAndRotatesWithinItsBound) {
  const std::string dir = TempDir();
  const std::string path = dir + "/gateway-audit.jsonl";
  AuditLogOptions options;
  options.path = path;
  options.max_bytes = 4096;
  options.keep = 2;
  absl::StatusOr<std::unique_ptr<AuditLog>> log = AuditLog::Open(options);
  ASSERT_TRUE(log.ok()) << log.status();
  struct stat st = {};
  ASSERT_EQ(stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  AuditEntry entry;
  entry.user = "alice";
  entry.method = "List";
  for (int i = 0; i < 1000; ++i) {
    entry.id = std::to_string(i);
    (*log)->Record(entry);
  }
  EXPECT_EQ((*log)->failed(), 0u);
  uint64_t total = 0;
  for (const std::string name : {"", ".1", ".2"}) {
    absl::StatusOr<std::string> text = ReadFile(path + name);
    ASSERT_TRUE(text.ok()) << text.status();
    EXPECT_LE(text->size(), 4096u);
    total += text->size();
    for (absl::string_view line : absl::StrSplit(*text, '\n', absl::SkipEmpty())) {
      ASSERT_EQ(line.front(), '{');
      ASSERT_EQ(line.back(), '}');
    }
  }
  EXPECT_GT(total, 8192u);
  EXPECT_FALSE(std::filesystem::exists(path + ".3"));
  // The newest line is last in the current file.
  absl::StatusOr<std::string> current = ReadFile(path);
  EXPECT_THAT(*current, HasSubstr(R"("id":"999")"));
  EXPECT_THAT(*current, Not(HasSubstr(R"("id":"0")")));
  std::filesystem::remove_all(dir);
}

TEST(AuditLogTest, RefusesABadPathOrCap) {
  AuditLogOptions options;
  EXPECT_EQ(AuditLog::Open(options).status().code(),
            absl::StatusCode::kInvalidArgument);
  options.path = "/nonexistent/dir/audit";
  EXPECT_EQ(AuditLog::Open(options).status().code(), absl::StatusCode::kNotFound);
  options.path = "/tmp/x";
  options.max_bytes = 10;
  EXPECT_EQ(AuditLog::Open(options).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace pm::gateway
