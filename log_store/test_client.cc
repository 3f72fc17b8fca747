#include "log_store/test_client.h"

#include <errno.h>
#include <sys/stat.h>

#include <chrono>
#include <utility>

#include "common/state_layout.h"
#include "common/status.h"
#include "gtest/gtest.h"

namespace pm::log_store {

namespace {

// Safety nets against a hang, not assertions about speed.
constexpr std::chrono::seconds kCallDeadline(120);

}  // namespace

std::unique_ptr<segment_log::Writer> OpenShimWriter(
    const std::string& state_dir, absl::string_view id,
    segment_log::WriterOptions options) {
  for (const std::string& dir : {ProcsDir(state_dir), ProcessDir(state_dir, id)}) {
    if (mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
      ADD_FAILURE() << ErrnoError("mkdir", dir);
      return nullptr;
    }
  }
  absl::StatusOr<std::unique_ptr<segment_log::Writer>> writer =
      segment_log::Writer::Open(ProcessOutputDir(state_dir, id), options);
  if (!writer.ok()) {
    ADD_FAILURE() << writer.status();
    return nullptr;
  }
  return *std::move(writer);
}

std::string OutputRead::Data() const {
  std::string data;
  for (const pm::v1::OutputChunk& chunk : chunks) data += chunk.data();
  return data;
}

OutputRead ReadOutput(pm::internal::v1::LogStore::Stub* stub,
                      const pm::v1::StreamOutputRequest& request) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + kCallDeadline);
  std::unique_ptr<grpc::ClientReader<pm::v1::OutputChunk>> reader =
      stub->StreamOutput(&context, request);
  OutputRead read;
  pm::v1::OutputChunk chunk;
  while (reader->Read(&chunk)) read.chunks.push_back(std::move(chunk));
  read.status = reader->Finish();
  return read;
}

pm::v1::StreamOutputRequest OutputRequest(absl::string_view id,
                                          bool from_start, bool follow) {
  pm::v1::StreamOutputRequest request;
  request.set_id(std::string(id));
  request.set_from_start(from_start);
  request.set_follow(follow);
  return request;
}

}  // namespace pm::log_store
