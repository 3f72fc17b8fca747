// Test helpers that drive the LogStore service as its clients do: an Append
// stream like the supervisor's, and StreamOutput reads like a user's.
//
//   AppendClient append(stub.get());
//   ASSERT_TRUE(append.Open(id));
//   ASSERT_TRUE(append.Data(0, pm::v1::OutputChunk::STREAM_STDOUT, "hi\n"));
//   ASSERT_TRUE(append.Close(3));
//   ASSERT_TRUE(append.WaitForAck(3, /*closed=*/true));
//   EXPECT_TRUE(append.Finish().ok());
//   OutputRead read = ReadOutput(stub.get(), request);  // to the stream's end
#ifndef PM_LOG_STORE_TEST_CLIENT_H_
#define PM_LOG_STORE_TEST_CLIENT_H_

#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "absl/base/thread_annotations.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "pm/internal/v1/internal.grpc.pb.h"

namespace pm::log_store {

// One Append stream; a thread collects the acks.
class AppendClient {
 public:
  explicit AppendClient(pm::internal::v1::LogStore::Stub* stub);
  // Cancels the stream if Finish was not called.
  ~AppendClient();

  // Each sends one message; false if the stream is broken.
  bool Open(absl::string_view id);
  // Open naming an output arena (AppendRequest.Open.shared_memory).
  bool OpenShared(absl::string_view id, absl::string_view shared_memory);
  // Data whose bytes are the arena's [shared_offset, + length).
  bool SharedData(uint64_t offset, pm::v1::OutputChunk::Stream stream,
                  uint64_t shared_offset, uint64_t length);
  bool Data(uint64_t offset, pm::v1::OutputChunk::Stream stream,
            absl::string_view data);
  bool Gap(uint64_t offset, uint64_t length);
  bool Close(uint64_t end_offset);

  // Waits for an ack of at least `end_offset` (and closed, if asked); false
  // if the stream ended or `timeout` passed first.
  bool WaitForAck(uint64_t end_offset, bool closed = false,
                  absl::Duration timeout = absl::Seconds(60));
  std::vector<pm::internal::v1::AppendResponse> acks() const;

  // Half-closes, waits for the server to end the stream, returns its status.
  grpc::Status Finish();
  // Cancels the call (as a supervisor crash would) and returns its status.
  grpc::Status Cancel();

 private:
  bool Write(const pm::internal::v1::AppendRequest& request);
  void ReadAcks();

  grpc::ClientContext context_;
  std::unique_ptr<grpc::ClientReaderWriter<pm::internal::v1::AppendRequest,
                                           pm::internal::v1::AppendResponse>>
      stream_;
  std::thread reader_;
  bool finished_ = false;
  mutable absl::Mutex mu_;
  std::vector<pm::internal::v1::AppendResponse> acks_ ABSL_GUARDED_BY(mu_);
  bool read_done_ ABSL_GUARDED_BY(mu_) = false;
};

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
