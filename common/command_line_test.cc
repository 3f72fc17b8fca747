#include "common/command_line.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace pm {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Pair;
using ::testing::UnorderedElementsAre;

void ExpectInvalid(const pm::v1::StartRequest& request,
                   const std::string& fragment) {
  absl::StatusOr<CommandLine> command = CommandLineOf(request);
  EXPECT_EQ(command.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(command.status().message(), HasSubstr(fragment));
}

TEST(CommandLineOfTest, TakesEachFieldFromItsStringOrItsBytesForm) {
  pm::v1::StartRequest request;
  request.set_executable("sh");
  request.add_args("-c");
  (*request.mutable_env())["HOME"] = "/root";
  request.set_working_dir("/srv");
  absl::StatusOr<CommandLine> text = CommandLineOf(request);
  ASSERT_TRUE(text.ok()) << text.status();
  EXPECT_EQ(text->executable, "sh");
  EXPECT_THAT(text->args, ElementsAre("-c"));
  EXPECT_THAT(text->env, ElementsAre(Pair("HOME", "/root")));
  EXPECT_EQ(text->working_dir, "/srv");

  pm::v1::StartRequest bytes;
  bytes.set_executable_bytes("/opt/caf\xe9");
  bytes.add_args_bytes("caf\xe9");
  bytes.add_args_bytes("");
  bytes.set_working_dir_bytes("/tmp/\xe9t\xe9");
  absl::StatusOr<CommandLine> raw = CommandLineOf(bytes);
  ASSERT_TRUE(raw.ok()) << raw.status();
  EXPECT_EQ(raw->executable, "/opt/caf\xe9");
  EXPECT_THAT(raw->args, ElementsAre("caf\xe9", ""));
  EXPECT_EQ(raw->working_dir, "/tmp/\xe9t\xe9");
}

TEST(CommandLineOfTest, RefusesBothFormsOfOneFieldNamingThem) {
  pm::v1::StartRequest request;
  request.set_executable("sh");
  request.set_executable_bytes("sh");
  ExpectInvalid(request, "executable and executable_bytes are both set");

  request.clear_executable_bytes();
  request.add_args("a");
  request.add_args_bytes("b");
  ExpectInvalid(request, "args and args_bytes are both set");

  request.clear_args_bytes();
  request.set_working_dir("/");
  request.set_working_dir_bytes("/");
  ExpectInvalid(request, "working_dir and working_dir_bytes are both set");
}

TEST(CommandLineOfTest, MergesEnvFormsAndRefusesANameGivenTwice) {
  pm::v1::StartRequest request;
  request.set_executable("env");
  (*request.mutable_env())["HOME"] = "/root";
  pm::v1::EnvVar* latin1 = request.add_env_bytes();
  latin1->set_name("NOM");
  latin1->set_value("caf\xe9");
  pm::v1::EnvVar* odd_name = request.add_env_bytes();
  odd_name->set_name("N\xe9");
  odd_name->set_value("1");
  absl::StatusOr<CommandLine> command = CommandLineOf(request);
  ASSERT_TRUE(command.ok()) << command.status();
  EXPECT_THAT(command->env,
              UnorderedElementsAre(Pair("HOME", "/root"), Pair("NOM", "caf\xe9"),
                                   Pair("N\xe9", "1")));
  ASSERT_NE(command->Getenv("NOM"), nullptr);
  EXPECT_EQ(*command->Getenv("NOM"), "caf\xe9");
  EXPECT_EQ(command->Getenv("PATH"), nullptr);

  pm::v1::StartRequest both = request;
  pm::v1::EnvVar* again = both.add_env_bytes();
  again->set_name("HOME");
  ExpectInvalid(both, "env name \"HOME\" is given twice (in env and env_bytes[2])");

  pm::v1::StartRequest twice = request;
  twice.add_env_bytes()->set_name("N\xe9");
  ExpectInvalid(twice,
                "env name \"N\\xe9\" is given twice (in env_bytes[1] and "
                "env_bytes[2])");
}

TEST(CommandLineOfTest, RefusesWhatExecveCannotTakeNamingTheForm) {
  pm::v1::StartRequest request;
  ExpectInvalid(request, "executable is empty");
  request.set_executable_bytes(std::string("a\0b", 3));
  ExpectInvalid(request, "executable_bytes contains a NUL byte");
  request.set_executable_bytes("sh");
  request.add_args_bytes("ok");
  request.add_args_bytes(std::string("\xe9\0", 2));
  ExpectInvalid(request, "args_bytes[1] contains a NUL byte");
  request.clear_args_bytes();
  request.set_working_dir_bytes(std::string("/\0", 2));
  ExpectInvalid(request, "working_dir_bytes contains a NUL byte");
  request.clear_working_dir_bytes();

  pm::v1::StartRequest empty = request;
  empty.add_env_bytes()->set_value("x");
  ExpectInvalid(empty, "env_bytes[0] has an empty name");
  pm::v1::StartRequest eq = request;
  eq.add_env_bytes()->set_name("A=\xe9");
  ExpectInvalid(eq, "env_bytes[0] name \"A=\\xe9\" contains '='");
  pm::v1::StartRequest nul = request;
  pm::v1::EnvVar* var = nul.add_env_bytes();
  var->set_name("A");
  var->set_value(std::string("\0", 1));
  ExpectInvalid(nul, "env_bytes[0] value of A contains a NUL byte");
}

TEST(PutCommandLineTest, PutsInTheBytesFormsOnlyWhatIsNotUtf8) {
  CommandLine command;
  command.executable = "printf";
  command.args = {"%s", "caf\xe9"};
  command.env = {{"LANG", "C.UTF-8"}, {"NOM", "caf\xe9"}, {"N\xe9", "1"}};
  command.working_dir = "/tmp/\xe9";
  pm::v1::StartRequest request;
  PutCommandLine(command, request);
  EXPECT_EQ(request.executable(), "printf");
  EXPECT_TRUE(request.executable_bytes().empty());
  EXPECT_THAT(request.args(), IsEmpty());
  EXPECT_THAT(request.args_bytes(), ElementsAre("%s", "caf\xe9"));
  EXPECT_THAT(request.env(), UnorderedElementsAre(Pair("LANG", "C.UTF-8")));
  ASSERT_EQ(request.env_bytes_size(), 2);
  EXPECT_EQ(request.env_bytes(0).name(), "NOM");
  EXPECT_EQ(request.env_bytes(0).value(), "caf\xe9");
  EXPECT_EQ(request.env_bytes(1).name(), "N\xe9");
  EXPECT_TRUE(request.working_dir().empty());
  EXPECT_EQ(request.working_dir_bytes(), "/tmp/\xe9");

  // And back: the same command.
  absl::StatusOr<CommandLine> back = CommandLineOf(request);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->executable, command.executable);
  EXPECT_EQ(back->args, command.args);
  EXPECT_THAT(back->env, UnorderedElementsAre(Pair("LANG", "C.UTF-8"),
                                              Pair("NOM", "caf\xe9"),
                                              Pair("N\xe9", "1")));
  EXPECT_EQ(back->working_dir, command.working_dir);

  // All text: the string forms, as before the bytes forms existed.
  command.args = {"%s", "caf\xc3\xa9"};
  command.env = {{"LANG", "C"}};
  command.working_dir = "/srv";
  PutCommandLine(command, request);
  EXPECT_THAT(request.args(), ElementsAre("%s", "caf\xc3\xa9"));
  EXPECT_THAT(request.args_bytes(), IsEmpty());
  EXPECT_THAT(request.env_bytes(), IsEmpty());
  EXPECT_EQ(request.working_dir(), "/srv");
  EXPECT_TRUE(request.working_dir_bytes().empty());
}

TEST(EchoCommandLineTest, UsesTheBytesFieldsOnlyForWhatIsNotUtf8) {
  CommandLine command;
  command.executable = "caf\xc3\xa9";
  command.args = {"-c", "\xc3\xa9"};
  command.working_dir = "/srv";
  pm::v1::ProcessStatus status;
  EchoCommandLine(command, status);
  EchoResolvedExecutable("/usr/bin/caf\xc3\xa9", status);
  EXPECT_EQ(status.executable(), "caf\xc3\xa9");
  EXPECT_THAT(status.args(), ElementsAre("-c", "\xc3\xa9"));
  EXPECT_EQ(status.working_dir(), "/srv");
  EXPECT_EQ(status.resolved_executable(), "/usr/bin/caf\xc3\xa9");
  EXPECT_TRUE(status.executable_bytes().empty());
  EXPECT_THAT(status.args_bytes(), IsEmpty());

  // One argument that is not UTF-8 moves them all, in order.
  command.executable = "caf\xe9";
  command.args = {"-c", "caf\xe9", "x"};
  command.working_dir = "/tmp/\xe9";
  EchoCommandLine(command, status);
  EchoResolvedExecutable("/usr/bin/caf\xe9", status);
  EXPECT_TRUE(status.executable().empty());
  EXPECT_THAT(status.args(), IsEmpty());
  EXPECT_TRUE(status.working_dir().empty());
  EXPECT_TRUE(status.resolved_executable().empty());
  EXPECT_EQ(status.executable_bytes(), "caf\xe9");
  EXPECT_THAT(status.args_bytes(), ElementsAre("-c", "caf\xe9", "x"));
  EXPECT_EQ(status.working_dir_bytes(), "/tmp/\xe9");
  EXPECT_EQ(status.resolved_executable_bytes(), "/usr/bin/caf\xe9");

  EXPECT_EQ(ExecutableOf(status), "caf\xe9");
  EXPECT_THAT(ArgsOf(status), ElementsAre("-c", "caf\xe9", "x"));
  EXPECT_EQ(WorkingDirOf(status), "/tmp/\xe9");
  EXPECT_EQ(ResolvedExecutableOf(status), "/usr/bin/caf\xe9");
}

}  // namespace
}  // namespace pm
