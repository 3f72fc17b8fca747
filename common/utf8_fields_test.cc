#include "common/utf8_fields.h"

#include <google/protobuf/descriptor.pb.h>

#include <cstdint>
#include <string>

#include "common/raw_call_test_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "pm/internal/v1/internal.pb.h"
#include "pm/v1/process_manager.pb.h"

namespace pm {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

// Wire bytes by hand, so that a test can put in a string field what a
// well-behaved serializer would not.
std::string Ld(int field, const std::string& payload) {
  return WireBytes(field, payload);
}
std::string VarintField(int field, uint64_t value) {
  return WireInteger(field, value);
}

absl::Status CheckStart(const std::string& wire) {
  return CheckUtf8Fields(*pm::v1::StartRequest::descriptor(), wire);
}

void ExpectInvalid(const absl::Status& status, const std::string& message) {
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
  EXPECT_EQ(status.message(), message);
}

TEST(CheckUtf8FieldsTest, ValidMessagesPass) {
  pm::v1::StartRequest start;
  start.set_executable("caf\xc3\xa9");
  start.add_args("-c");
  (*start.mutable_env())["LANG"] = "fr_FR.UTF-8";
  start.set_working_dir("/srv");
  start.mutable_limits()->set_memory_bytes(1 << 20);
  start.add_isolate(pm::v1::ISOLATION_NET);
  // Bytes forms hold anything.
  start.add_args_bytes("caf\xe9");
  pm::v1::EnvVar* var = start.add_env_bytes();
  var->set_name("N\xff");
  var->set_value("\xe9");
  EXPECT_TRUE(CheckStart(start.SerializeAsString()).ok());
  EXPECT_TRUE(CheckStart("").ok());

  pm::v1::ListResponse list;
  list.add_processes()->add_args("x");
  (*list.add_processes()->mutable_proc_status())["Name"] = "sh";
  EXPECT_TRUE(CheckUtf8Fields(*pm::v1::ListResponse::descriptor(),
                              list.SerializeAsString())
                  .ok());
}

TEST(CheckUtf8FieldsTest, NamesATopLevelFieldAndItsBytesForm) {
  ExpectInvalid(CheckStart(Ld(1, "caf\xe9")),
                "executable is not valid UTF-8 (byte 0xe9 at 3); send it in "
                "executable_bytes");
  ExpectInvalid(CheckStart(Ld(4, "/tmp/\xff")),
                "working_dir is not valid UTF-8 (byte 0xff at 5); send it in "
                "working_dir_bytes");
  // No bytes form: no hint.
  ExpectInvalid(CheckUtf8Fields(*pm::v1::GetStatusRequest::descriptor(),
                                Ld(1, "\xe9")),
                "id is not valid UTF-8 (byte 0xe9 at 0)");
}

TEST(CheckUtf8FieldsTest, NamesTheElementOfARepeatedField) {
  ExpectInvalid(CheckStart(Ld(1, "sh") + Ld(2, "ok") + Ld(2, "caf\xe9")),
                "args[1] is not valid UTF-8 (byte 0xe9 at 3); send it in "
                "args_bytes");
}

TEST(CheckUtf8FieldsTest, NamesAMapValueByItsKeyAndABadKeyByItsMap) {
  const std::string good = Ld(3, Ld(1, "HOME") + Ld(2, "/root"));
  ExpectInvalid(CheckStart(good + Ld(3, Ld(1, "LANG") + Ld(2, "caf\xe9"))),
                "env[\"LANG\"] is not valid UTF-8 (byte 0xe9 at 3); send it "
                "in env_bytes");
  // The value may come before the key.
  ExpectInvalid(CheckStart(Ld(3, Ld(2, "\xff") + Ld(1, "K"))),
                "env[\"K\"] is not valid UTF-8 (byte 0xff at 0); send it in "
                "env_bytes");
  ExpectInvalid(CheckStart(good + Ld(3, Ld(1, "caf\xe9") + Ld(2, "v"))),
                "a key of env is not valid UTF-8 (byte 0xe9 at 3); send it in "
                "env_bytes");
}

TEST(CheckUtf8FieldsTest, NamesAFieldOfANestedMessageByItsPath) {
  using pm::internal::v1::CreateRecordRequest;
  ExpectInvalid(
      CheckUtf8Fields(*CreateRecordRequest::descriptor(),
                      VarintField(3, 42) + Ld(1, Ld(1, "sh") + Ld(2, "\xe9"))),
      "spec.args[0] is not valid UTF-8 (byte 0xe9 at 0); send it in "
      "args_bytes");
  // A map inside a nested message.
  ExpectInvalid(CheckUtf8Fields(*CreateRecordRequest::descriptor(),
                                Ld(7, Ld(2, Ld(1, "memory") + Ld(2, "/a\xff")))),
                "cgroup.v1[\"memory\"] is not valid UTF-8 (byte 0xff at 2)");
  // An element of a repeated message.
  const std::string process = Ld(6, "sh");
  ExpectInvalid(
      CheckUtf8Fields(*pm::v1::ListResponse::descriptor(),
                      Ld(1, process) + Ld(1, process) +
                          Ld(1, process + Ld(7, "-c") + Ld(7, "caf\xe9"))),
      "processes[2].args[1] is not valid UTF-8 (byte 0xe9 at 3); send it in "
      "args_bytes");
}

TEST(CheckUtf8FieldsTest, NeverQuotesTheValue) {
  absl::Status status =
      CheckStart(Ld(3, Ld(1, "TOKEN") + Ld(2, "s3cret-\xff")));
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), Not(HasSubstr("s3cret")));
}

TEST(CheckUtf8FieldsTest, SkipsFieldsAsProtobufDoes) {
  // Unknown fields (even text that is not UTF-8, even a group) are kept
  // unparsed by protobuf, so they pass.
  const std::string unknown = Ld(99, "\xff") + "\x5b" + VarintField(1, 1) + "\x5c";
  EXPECT_TRUE(CheckStart(unknown).ok());
  EXPECT_TRUE(pm::v1::StartRequest().ParseFromString(unknown));
  // A known string field in another wire type is unknown to protobuf too.
  EXPECT_TRUE(CheckStart(VarintField(1, 7)).ok());
  // Strings of a proto2 file are not checked by protobuf's parser.
  EXPECT_TRUE(CheckUtf8Fields(*google::protobuf::FileDescriptorProto::descriptor(),
                              Ld(1, "\xff"))
                  .ok());
}

TEST(CheckUtf8FieldsTest, MalformedBytesAreInvalidArgumentNotACrash) {
  const std::string deep = std::string(150, '\x5b');  // groups in groups
  for (const std::string& wire :
       {std::string("\x0a\x05" "ab"),  // a length past the end
        std::string("\xff\xff\xff"),   // a tag cut short
        std::string("\x0f"),           // wire type 7
        std::string("\x00\x01", 2),    // field number 0
        std::string("\x0c"),           // an end of group without its start
        std::string("\x0b"),           // a group without its end
        std::string("\x10"),           // a varint value missing
        std::string("\x11" "abc"),     // a fixed64 cut short
        Ld(5, "\x08"),                 // a nested message cut short
        deep}) {
    absl::Status status = CheckStart(wire);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument)
        << status << " for " << wire.size() << " bytes";
    EXPECT_THAT(status.message(), HasSubstr("malformed pm.v1.StartRequest: "));
  }
}

TEST(CheckUtf8FieldsTest, ChecksAMessageInMemoryTheSameWay) {
  pm::v1::StartRequest start;
  start.set_executable("sh");
  start.add_args("-c");
  start.add_args_bytes("caf\xe9");
  (*start.mutable_env())["HOME"] = "/root";
  EXPECT_TRUE(CheckUtf8Fields(start).ok());

  start.add_args("caf\xe9");
  ExpectInvalid(CheckUtf8Fields(start),
                "args[1] is not valid UTF-8 (byte 0xe9 at 3); send it in "
                "args_bytes");
  start.clear_args();
  (*start.mutable_env())["LANG"] = "\xff";
  ExpectInvalid(CheckUtf8Fields(start),
                "env[\"LANG\"] is not valid UTF-8 (byte 0xff at 0); send it "
                "in env_bytes");
  start.clear_env();
  (*start.mutable_env())["\xe9"] = "v";
  ExpectInvalid(CheckUtf8Fields(start),
                "a key of env is not valid UTF-8 (byte 0xe9 at 0); send it in "
                "env_bytes");

  pm::internal::v1::CreateRecordRequest create;
  create.mutable_spec()->set_working_dir("/\xe9");
  ExpectInvalid(CheckUtf8Fields(create),
                "spec.working_dir is not valid UTF-8 (byte 0xe9 at 1); send it "
                "in working_dir_bytes");
  pm::v1::GetStatusRequest get;
  get.set_id("\xff");
  ExpectInvalid(CheckUtf8Fields(get), "id is not valid UTF-8 (byte 0xff at 0)");
}

TEST(ParseStrictTest, ParsesWhatPassesAndRefusesWhatDoesNot) {
  pm::v1::StartRequest start;
  start.set_executable("sh");
  start.add_args_bytes("caf\xe9");
  absl::StatusOr<pm::v1::StartRequest> parsed =
      ParseStrict<pm::v1::StartRequest>(start.SerializeAsString());
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->args_bytes(0), "caf\xe9");

  parsed = ParseStrict<pm::v1::StartRequest>(Ld(2, "caf\xe9"));
  EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(parsed.status().message(), HasSubstr("args[0]"));
  parsed = ParseStrict<pm::v1::StartRequest>("\x0a\x05");
  EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(parsed.status().message(), HasSubstr("malformed"));
}

TEST(ParseStrictTest, ReadsAByteBufferOfSeveralSlices) {
  pm::v1::StartRequest start;
  start.set_executable("/bin/echo");
  start.add_args("hello");
  const std::string wire = start.SerializeAsString();
  grpc::Slice slices[] = {grpc::Slice(wire.substr(0, 5)),
                          grpc::Slice(wire.substr(5))};
  grpc::ByteBuffer buffer(slices, 2);
  absl::StatusOr<pm::v1::StartRequest> parsed =
      ParseStrict<pm::v1::StartRequest>(buffer);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->SerializeAsString(), wire);

  grpc::ByteBuffer bad = SerializeToByteBuffer(start);
  absl::StatusOr<std::string> bytes = ByteBufferToString(bad);
  ASSERT_TRUE(bytes.ok());
  EXPECT_EQ(*bytes, wire);
}

}  // namespace
}  // namespace pm
