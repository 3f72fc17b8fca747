#include "log_store/test_client.h"

#include <chrono>
#include <utility>

namespace pm::log_store {

using ::pm::internal::v1::AppendRequest;
using ::pm::internal::v1::AppendResponse;

namespace {

// Safety nets against a hang, not assertions about speed.
constexpr std::chrono::seconds kCallDeadline(120);

}  // namespace

AppendClient::AppendClient(pm::internal::v1::LogStore::Stub* stub) {
  context_.set_deadline(std::chrono::system_clock::now() + kCallDeadline);
  stream_ = stub->Append(&context_);
  reader_ = std::thread([this] { ReadAcks(); });
}

AppendClient::~AppendClient() {
  if (!finished_) Cancel();
}

bool AppendClient::Open(absl::string_view id) {
  AppendRequest request;
  request.mutable_open()->set_id(std::string(id));
  return Write(request);
}

bool AppendClient::OpenShared(absl::string_view id,
                              absl::string_view shared_memory) {
  AppendRequest request;
  request.mutable_open()->set_id(std::string(id));
  request.mutable_open()->set_shared_memory(std::string(shared_memory));
  return Write(request);
}

bool AppendClient::SharedData(uint64_t offset, pm::v1::OutputChunk::Stream stream,
                              uint64_t shared_offset, uint64_t length) {
  AppendRequest request;
  request.mutable_data()->set_offset(offset);
  request.mutable_data()->set_stream(stream);
  request.mutable_data()->set_shared_offset(shared_offset);
  request.mutable_data()->set_shared_length(length);
  return Write(request);
}

bool AppendClient::Data(uint64_t offset, pm::v1::OutputChunk::Stream stream,
                        absl::string_view data) {
  AppendRequest request;
  request.mutable_data()->set_offset(offset);
  request.mutable_data()->set_stream(stream);
  request.mutable_data()->set_data(std::string(data));
  return Write(request);
}

bool AppendClient::Gap(uint64_t offset, uint64_t length) {
  AppendRequest request;
  request.mutable_gap()->set_offset(offset);
  request.mutable_gap()->set_length(length);
  return Write(request);
}

bool AppendClient::Close(uint64_t end_offset) {
  AppendRequest request;
  request.mutable_close()->set_end_offset(end_offset);
  return Write(request);
}

bool AppendClient::WaitForAck(uint64_t end_offset, bool closed,
                              absl::Duration timeout) {
  auto reached = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (read_done_) return true;
    return !acks_.empty() && acks_.back().end_offset() >= end_offset &&
           (!closed || acks_.back().closed());
  };
  absl::MutexLock lock(&mu_);
  mu_.AwaitWithTimeout(absl::Condition(&reached), timeout);
  return !acks_.empty() && acks_.back().end_offset() >= end_offset &&
         (!closed || acks_.back().closed());
}

std::vector<AppendResponse> AppendClient::acks() const {
  absl::MutexLock lock(&mu_);
  return acks_;
}

grpc::Status AppendClient::Finish() {
  finished_ = true;
  stream_->WritesDone();
  reader_.join();
  return stream_->Finish();
}

grpc::Status AppendClient::Cancel() {
  finished_ = true;
  context_.TryCancel();
  reader_.join();
  return stream_->Finish();
}

bool AppendClient::Write(const AppendRequest& request) {
  return stream_->Write(request);
}

void AppendClient::ReadAcks() {
  AppendResponse response;
  while (stream_->Read(&response)) {
    absl::MutexLock lock(&mu_);
    acks_.push_back(response);
  }
  absl::MutexLock lock(&mu_);
  read_done_ = true;
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
