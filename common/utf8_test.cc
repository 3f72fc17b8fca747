#include "common/utf8.h"

#include <google/protobuf/stubs/logging.h>

#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "pm/v1/process_manager.pb.h"

namespace pm {
namespace {

TEST(Utf8Test, FindsTheFirstByteThatIsNotUtf8) {
  EXPECT_EQ(FindInvalidUtf8(""), absl::string_view::npos);
  EXPECT_EQ(FindInvalidUtf8("plain ascii"), absl::string_view::npos);
  EXPECT_EQ(FindInvalidUtf8("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"),
            absl::string_view::npos);
  EXPECT_EQ(FindInvalidUtf8("caf\xe9"), 3);          // Latin-1 é
  EXPECT_EQ(FindInvalidUtf8("ab\x80"), 2);           // a stray continuation
  EXPECT_EQ(FindInvalidUtf8("x\xc3"), 1);            // cut short
  EXPECT_EQ(FindInvalidUtf8("\xc0\xaf"), 0);         // overlong '/'
  EXPECT_EQ(FindInvalidUtf8("\xe0\x80\xaf"), 0);     // overlong, 3 bytes
  EXPECT_EQ(FindInvalidUtf8("\xed\xa0\x80"), 0);     // a surrogate
  EXPECT_EQ(FindInvalidUtf8("\xf4\x90\x80\x80"), 0); // above U+10FFFF
  EXPECT_EQ(FindInvalidUtf8("ok\xff"), 2);
  EXPECT_TRUE(IsValidUtf8(std::string("a\0b", 3)));
  EXPECT_FALSE(IsValidUtf8("\xe9t\xe9"));
}

// Our verdict must be protobuf's: a value we pass that protobuf refuses
// would still fail the parse, a bare UNIMPLEMENTED again.
TEST(Utf8Test, AgreesWithProtobufOnEveryEdge) {
  const std::vector<std::string> cases = {
      "", "a", "\x7f", "\xc2\x80", "\xdf\xbf", "\xc1\xbf", "\xe0\xa0\x80",
      "\xe0\x9f\xbf", "\xed\x9f\xbf", "\xed\xa0\x80", "\xef\xbf\xbf",
      "\xf0\x90\x80\x80", "\xf0\x8f\xbf\xbf", "\xf4\x8f\xbf\xbf",
      "\xf4\x90\x80\x80", "\xf5\x80\x80\x80", "\xff", "\x80", "\xe2\x82",
      "caf\xe9", "\xc3\xa9\xc3", "\xf0\x9f\x98"};
  google::protobuf::LogSilencer quiet;  // protobuf logs each refusal
  for (const std::string& text : cases) {
    // Field 1 of StartRequest, `executable`, a proto3 string.
    std::string wire = "\x0a";
    wire += static_cast<char>(text.size());
    wire += text;
    pm::v1::StartRequest parsed;
    EXPECT_EQ(IsValidUtf8(text), parsed.ParseFromString(wire))
        << EscapeInvalidUtf8(text);
  }
}

TEST(Utf8Test, SequenceLengthWalksCharacters) {
  const std::string text = "a\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\xe9";
  EXPECT_EQ(Utf8SequenceLength(text, 0), 1);
  EXPECT_EQ(Utf8SequenceLength(text, 1), 2);
  EXPECT_EQ(Utf8SequenceLength(text, 2), 0);  // inside a character
  EXPECT_EQ(Utf8SequenceLength(text, 3), 3);
  EXPECT_EQ(Utf8SequenceLength(text, 6), 4);
  EXPECT_EQ(Utf8SequenceLength(text, 10), 0);  // Latin-1
  EXPECT_EQ(Utf8SequenceLength(text, 11), 0);  // past the end
}

TEST(Utf8Test, EscapesOnlyTheBytesThatAreNotUtf8) {
  EXPECT_EQ(EscapeInvalidUtf8("caf\xe9"), "caf\\xe9");
  EXPECT_EQ(EscapeInvalidUtf8("caf\xc3\xa9"), "caf\xc3\xa9");
  EXPECT_EQ(EscapeInvalidUtf8("a\\b"), "a\\b");
  EXPECT_EQ(EscapeInvalidUtf8("\xff\xfe"), "\\xff\\xfe");
  // A sequence cut short: each of its bytes on its own.
  EXPECT_EQ(EscapeInvalidUtf8("\xe2\x82!"), "\\xe2\\x82!");
}

}  // namespace
}  // namespace pm
