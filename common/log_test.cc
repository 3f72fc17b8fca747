#include "common/log.h"

#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace pm {
namespace {

const absl::Time kWhen = absl::FromUnixMillis(1796407723771);

TEST(LogTest, EachFormatIsOneLineWithTheLevel) {
  EXPECT_EQ(FormatLogLine(LogFormat::kJournal, LogSeverity::kWarning, kWhen, "registry",
                          "server.cc:123", "two\nlines"),
            "<4>registry server.cc:123] two\\nlines\n");
  EXPECT_EQ(FormatLogLine(LogFormat::kJson, LogSeverity::kError, kWhen, "registry",
                          "server.cc:123", "a \"quoted\" path\\x\n\tcaf\xc3\xa9 caf\xe9"),
            "{\"time\":\"2026-12-04T18:08:43.771Z\",\"level\":\"error\","
            "\"service\":\"registry\",\"source\":\"server.cc:123\","
            "\"message\":\"a \\\"quoted\\\" path\\\\x\\n\\u0009caf\xc3\xa9 caf\\u00e9\"}\n");
  const std::string text = FormatLogLine(LogFormat::kText, LogSeverity::kInfo, kWhen,
                                         "registry", "server.cc:123", "serving");
  EXPECT_EQ(text.substr(0, 2), "I ");
  EXPECT_EQ(text.substr(14), " registry server.cc:123] serving\n");
}

TEST(LogTest, ParseLogFormatNamesABadValue) {
  EXPECT_EQ(*ParseLogFormat("json"), LogFormat::kJson);
  EXPECT_EQ(*ParseLogFormat("journal"), LogFormat::kJournal);
  EXPECT_EQ(*ParseLogFormat("text"), LogFormat::kText);
  EXPECT_EQ(ParseLogFormat("xml").status().message(),
            "log format \"xml\" is not text, journal or json");
}

// journal by default only when stderr is the stream $JOURNAL_STREAM names.
TEST(LogTest, TheDefaultIsJournalOnlyOnTheJournalStream) {
  struct stat st;
  ASSERT_EQ(fstat(STDERR_FILENO, &st), 0);
  setenv("JOURNAL_STREAM", absl::StrCat(st.st_dev, ":", st.st_ino).c_str(), 1);
  EXPECT_EQ(DefaultLogFormat(), LogFormat::kJournal);
  setenv("JOURNAL_STREAM", absl::StrCat(st.st_dev, ":", st.st_ino + 1).c_str(), 1);
  EXPECT_EQ(DefaultLogFormat(), LogFormat::kText);
  unsetenv("JOURNAL_STREAM");
  EXPECT_EQ(DefaultLogFormat(), LogFormat::kText);
}

}  // namespace
}  // namespace pm
