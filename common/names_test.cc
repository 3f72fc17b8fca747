#include "common/names.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace pm {
namespace {

using ::testing::HasSubstr;

TEST(NamesTest, NamesFollowTheirRules) {
  EXPECT_TRUE(ValidateName("web").ok());
  EXPECT_TRUE(ValidateName("api_2.blue-green").ok());
  EXPECT_TRUE(ValidateName(std::string(64, 'a')).ok());
  EXPECT_THAT(ValidateName("").message(), HasSubstr("is empty"));
  EXPECT_THAT(ValidateName(std::string(65, 'a')).message(),
              HasSubstr("65 characters long (at most 64)"));
  EXPECT_THAT(ValidateName("-web").message(), HasSubstr("must start with a letter or a digit"));
  EXPECT_THAT(ValidateName("we b").message(), HasSubstr("has ' '"));
  EXPECT_THAT(ValidateName("a/b").message(), HasSubstr("has '/'"));
  // A name shaped like an id would shadow the id.
  EXPECT_THAT(ValidateName("123e4567-e89b-42d3-a456-426614174000").message(),
              HasSubstr("shaped like a process id"));
}

TEST(NamesTest, NodeNamesAreHostNamesOfAtMost64Characters) {
  EXPECT_TRUE(ValidateNodeName("a").ok());
  EXPECT_TRUE(ValidateNodeName("host-1.example.com").ok());
  EXPECT_TRUE(ValidateNodeName("rack_2").ok());
  EXPECT_TRUE(ValidateNodeName(std::string(64, 'h')).ok());
  for (const std::string& bad : {std::string(""), std::string(65, 'h'),
                                 std::string("-a"), std::string("a b"),
                                 std::string("a/b"), std::string("a:2379")}) {
    const absl::Status status = ValidateNodeName(bad);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_THAT(status.message(), HasSubstr("node \"")) << bad;
  }
  EXPECT_THAT(ValidateNodeName("").message(), HasSubstr("is empty"));
  EXPECT_THAT(ValidateNodeName(std::string(65, 'h')).message(),
              HasSubstr("65 characters long (at most 64)"));
  EXPECT_THAT(ValidateNodeName("a:2379").message(), HasSubstr("has ':'"));
}

TEST(NamesTest, LabelsFollowTheirCaps) {
  google::protobuf::Map<std::string, std::string> labels;
  labels["app"] = "web";
  labels["example.com/tier"] = "";
  EXPECT_TRUE(ValidateLabels(labels).ok());
  labels["bad key"] = "x";
  EXPECT_THAT(ValidateLabels(labels).message(), HasSubstr("label key \"bad key\""));
  labels.erase("bad key");
  labels["big"] = std::string(1025, 'v');
  EXPECT_THAT(ValidateLabels(labels).message(),
              HasSubstr("\"big\": the value is 1025 bytes long (at most 1024)"));
  labels.erase("big");
  labels["nul"] = std::string("a\0b", 3);
  EXPECT_THAT(ValidateLabels(labels).message(), HasSubstr("NUL"));
  labels.erase("nul");
  for (int i = 0; i < 70; ++i) labels["k" + std::to_string(i)] = "v";
  EXPECT_THAT(ValidateLabels(labels).message(), HasSubstr("at most 64"));
}

TEST(NamesTest, RefsAreIdsNamesOrPrefixes) {
  EXPECT_TRUE(IsFullId("123e4567-e89b-42d3-a456-426614174000"));
  EXPECT_TRUE(IsFullId("123E4567-E89B-42D3-A456-426614174000"));
  EXPECT_FALSE(IsFullId("123e4567"));
  EXPECT_TRUE(ValidateRef("123e").ok());
  EXPECT_TRUE(ValidateRef("web").ok());
  EXPECT_EQ(ValidateRef("").code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(ValidateRef("../etc").message(), HasSubstr("malformed process reference"));
  EXPECT_EQ(ValidateRef(std::string(65, 'a')).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(CouldBeIdPrefix("123e-45"));
  EXPECT_FALSE(CouldBeIdPrefix("web"));
  EXPECT_FALSE(CouldBeIdPrefix(""));
}

TEST(NamesTest, SelectorsMatchKeysAndValues) {
  google::protobuf::Map<std::string, std::string> labels;
  labels["app"] = "web";
  labels["tier"] = "";
  absl::StatusOr<LabelSelector> app_web = ParseLabelSelector("app=web");
  ASSERT_TRUE(app_web.ok());
  EXPECT_TRUE(app_web->Matches(labels));
  EXPECT_FALSE(ParseLabelSelector("app=db")->Matches(labels));
  EXPECT_TRUE(ParseLabelSelector("tier")->Matches(labels));
  EXPECT_TRUE(ParseLabelSelector("tier=")->Matches(labels));
  EXPECT_FALSE(ParseLabelSelector("zone")->Matches(labels));
  // A value may hold '=': only the first one splits.
  labels["expr"] = "a=b";
  EXPECT_TRUE(ParseLabelSelector("expr=a=b")->Matches(labels));
  EXPECT_THAT(ParseLabelSelector("=web").status().message(),
              HasSubstr("want key=value or key"));
}

}  // namespace
}  // namespace pm
