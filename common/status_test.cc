#include "common/status.h"

#include <errno.h>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace pm {
namespace {

using ::testing::HasSubstr;

TEST(ErrnoErrorTest, NamesTheCallTheArgumentAndTheReason) {
  absl::Status status = ErrnoError("execve", "/nope", ENOENT);
  EXPECT_EQ(status.code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(status.message(),
            "execve(\"/nope\"): No such file or directory (ENOENT)");
}

TEST(ErrnoErrorTest, WithoutArgument) {
  errno = EMFILE;
  absl::Status status = ErrnoError("pipe2");
  EXPECT_EQ(status.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(status.message(), HasSubstr("pipe2(): "));
  EXPECT_THAT(status.message(), HasSubstr("(EMFILE)"));
}

TEST(ErrnoErrorTest, TheErrnoTravelsWithTheStatusAndThroughAnnotate) {
  EXPECT_EQ(ErrnoOf(ErrnoError("pipe2", "", EMFILE)), EMFILE);
  EXPECT_EQ(ErrnoOf(Annotate(ErrnoError("open", "/x", ENFILE), "start")), ENFILE);
  absl::Status described = ErrnoStatus("clone3(CLONE_VM|CLONE_PIDFD)", EMFILE);
  EXPECT_EQ(described.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(described.message(),
            "clone3(CLONE_VM|CLONE_PIDFD): Too many open files (EMFILE)");
  EXPECT_EQ(ErrnoOf(described), EMFILE);
  // A message that merely says so is not an errno.
  EXPECT_EQ(ErrnoOf(absl::ResourceExhaustedError("Too many open files (EMFILE)")),
            absl::nullopt);
  EXPECT_EQ(ErrnoOf(absl::OkStatus()), absl::nullopt);
}

absl::StatusOr<int> Half(int x) {
  if (x % 2 != 0) return absl::InvalidArgumentError("odd");
  return x / 2;
}

absl::StatusOr<int> Quarter(int x) {
  PM_ASSIGN_OR_RETURN(int half, Half(x));
  PM_ASSIGN_OR_RETURN(int quarter, Half(half));
  return quarter;
}

absl::Status CheckEven(int x) {
  PM_RETURN_IF_ERROR(Half(x).status());
  return absl::OkStatus();
}

TEST(StatusMacrosTest, PropagateErrorsAndValues) {
  EXPECT_EQ(*Quarter(8), 2);
  EXPECT_EQ(Quarter(6).status().message(), "odd");
  EXPECT_TRUE(CheckEven(2).ok());
  EXPECT_EQ(CheckEven(3).code(), absl::StatusCode::kInvalidArgument);
}

TEST(GrpcStatusTest, RoundTripsCodeAndMessage) {
  absl::Status status = absl::NotFoundError("no process with id x");
  grpc::Status rpc = ToGrpcStatus(status);
  EXPECT_EQ(rpc.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(FromGrpcStatus(rpc), status);
}

TEST(ClusterUnavailableTest, CarriesItsLeadOnceThroughAGrpcStatus) {
  const absl::Status status = ClusterUnavailableError("etcd at h:2379: Txn: deadline");
  EXPECT_TRUE(absl::IsUnavailable(status));
  EXPECT_EQ(status.message(), "cluster unavailable: etcd at h:2379: Txn: deadline");
  EXPECT_TRUE(IsClusterUnavailableMessage(ToGrpcStatus(status).error_message()));
  // Made again from one, it is not led twice.
  EXPECT_EQ(ClusterUnavailableError(status.message()), status);
  EXPECT_FALSE(IsClusterUnavailableMessage("registry at /run/pm/registry.sock: gone"));
}

}  // namespace
}  // namespace pm
