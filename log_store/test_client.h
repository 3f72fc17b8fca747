// Test helpers that drive the LogStore service as its users do: output
// written the way a process's pm-shim writes it (a segment_log::Writer on
// the process's output directory), and StreamOutput reads like a user's.
//
//   std::unique_ptr<segment_log::Writer> shim = OpenShimWriter(state_dir, id);
//   ASSERT_TRUE(shim->Append(segment_log::Stream::kStdout, "hi\n",
//                            absl::Now()).ok());
//   ASSERT_TRUE(shim->Close(absl::Now()).ok());  // the output ended
//   OutputRead read = ReadOutput(stub.get(), OutputRequest(id, true, true));
#ifndef PM_LOG_STORE_TEST_CLIENT_H_
#define PM_LOG_STORE_TEST_CLIENT_H_

#include <memory>
#include <string>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "absl/strings/string_view.h"
#include "pm/internal/v1/internal.grpc.pb.h"
#include "segment_log/writer.h"

namespace pm::log_store {

// A Writer on ProcessOutputDir(state_dir, id), making procs/<id> first as
// the shim does; fails the test (and returns null) on an error.
std::unique_ptr<segment_log::Writer> OpenShimWriter(
    const std::string& state_dir, absl::string_view id,
    segment_log::WriterOptions options = {});

// Everything a StreamOutput call delivered, and how it ended.
struct OutputRead {
  std::vector<pm::v1::OutputChunk> chunks;
  grpc::Status status;
  // The chunks' data, concatenated.
  std::string Data() const;
};

// Runs StreamOutput to its end.
OutputRead ReadOutput(pm::internal::v1::LogStore::Stub* stub,
                      const pm::v1::StreamOutputRequest& request);

pm::v1::StreamOutputRequest OutputRequest(absl::string_view id,
                                          bool from_start, bool follow);

}  // namespace pm::log_store

#endif  // PM_LOG_STORE_TEST_CLIENT_H_
