#include "client/h2_unary.h"

#include <errno.h>
#include <nghttp2/nghttp2.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <memory>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/fd.h"
#include "common/status_core.h"

namespace pm {
namespace {

// What the answer's headers, trailers and DATA said, as nghttp2 hands
// them over.
struct Answer {
  std::string request;  // the framed request
  size_t request_sent = 0;
  std::string body;  // the framed answer
  bool too_big = false;
  std::string http_status;
  std::string content_type;
  std::string grpc_status;
  std::string grpc_message;
  bool closed = false;
  uint32_t reset_code = 0;  // the stream's RST_STREAM code, if any
};

struct SessionFree {
  void operator()(nghttp2_session* session) const { nghttp2_session_del(session); }
};

ssize_t ReadRequest(nghttp2_session*, int32_t, uint8_t* buffer, size_t length,
                    uint32_t* flags, nghttp2_data_source*, void* user) {
  Answer* answer = static_cast<Answer*>(user);
  const size_t n = std::min(length, answer->request.size() - answer->request_sent);
  memcpy(buffer, answer->request.data() + answer->request_sent, n);
  answer->request_sent += n;
  if (answer->request_sent == answer->request.size()) *flags |= NGHTTP2_DATA_FLAG_EOF;
  return static_cast<ssize_t>(n);
}

int OnData(nghttp2_session*, uint8_t, int32_t, const uint8_t* data, size_t length,
           void* user) {
  Answer* answer = static_cast<Answer*>(user);
  if (answer->body.size() + length > kH2UnaryMaxAnswerBytes + 5) {
    answer->too_big = true;
    return NGHTTP2_ERR_CALLBACK_FAILURE;  // the session ends here
  }
  answer->body.append(reinterpret_cast<const char*>(data), length);
  return 0;
}

int OnHeader(nghttp2_session*, const nghttp2_frame*, const uint8_t* name, size_t name_length,
             const uint8_t* value, size_t value_length, uint8_t, void* user) {
  Answer* answer = static_cast<Answer*>(user);
  const absl::string_view key(reinterpret_cast<const char*>(name), name_length);
  std::string text(reinterpret_cast<const char*>(value), value_length);
  if (key == ":status") answer->http_status = std::move(text);
  if (key == "content-type") answer->content_type = std::move(text);
  if (key == "grpc-status") answer->grpc_status = std::move(text);
  if (key == "grpc-message") answer->grpc_message = std::move(text);
  return 0;
}

int OnStreamClose(nghttp2_session*, int32_t, uint32_t error_code, void* user) {
  Answer* answer = static_cast<Answer*>(user);
  answer->closed = true;
  answer->reset_code = error_code;
  return 0;
}

// grpc-message is percent-encoded (gRPC's PROTOCOL-HTTP2.md).
std::string PercentDecoded(absl::string_view text) {
  std::string out;
  auto digit = [](char c) {
    return absl::ascii_isdigit(c) ? c - '0' : absl::ascii_tolower(c) - 'a' + 10;
  };
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '%' && i + 2 < text.size() && absl::ascii_isxdigit(text[i + 1]) &&
        absl::ascii_isxdigit(text[i + 2])) {
      out.push_back(static_cast<char>(digit(text[i + 1]) * 16 + digit(text[i + 2])));
      i += 2;
    } else {
      out.push_back(text[i]);
    }
  }
  return out;
}

// Milliseconds left until `deadline`, for poll: at least 0, and -1 (no
// limit) for an infinite one.
int MillisecondsLeft(absl::Time deadline) {
  if (deadline == absl::InfiniteFuture()) return -1;
  const absl::Duration left = deadline - absl::Now();
  if (left <= absl::ZeroDuration()) return 0;
  return static_cast<int>(std::min(absl::ToInt64Milliseconds(left), int64_t{1} << 30) + 1);
}

// What gRPC's client answers for a stream the server reset (gRPC's
// PROTOCOL-HTTP2.md, "Errors").
absl::StatusCode CodeOfReset(uint32_t error) {
  switch (error) {
    case NGHTTP2_CANCEL:
      return absl::StatusCode::kCancelled;
    case NGHTTP2_ENHANCE_YOUR_CALM:
      return absl::StatusCode::kResourceExhausted;
    case NGHTTP2_REFUSED_STREAM:  // also a GOAWAY before the stream began
      return absl::StatusCode::kUnavailable;
    case NGHTTP2_INADEQUATE_SECURITY:
      return absl::StatusCode::kPermissionDenied;
    default:
      return absl::StatusCode::kInternal;
  }
}

// What gRPC's client answers for an HTTP status without a grpc-status
// (gRPC's doc/http-grpc-status-mapping.md).
absl::StatusCode CodeOfHttpStatus(absl::string_view http) {
  if (http == "400") return absl::StatusCode::kInternal;
  if (http == "401") return absl::StatusCode::kUnauthenticated;
  if (http == "403") return absl::StatusCode::kPermissionDenied;
  if (http == "404") return absl::StatusCode::kUnimplemented;
  if (http == "429" || http == "502" || http == "503" || http == "504") {
    return absl::StatusCode::kUnavailable;
  }
  return absl::StatusCode::kUnknown;
}

class Connection {
 public:
  explicit Connection(const H2UnaryCall& call) : call_(call) {}

  absl::StatusOr<std::string> Run(absl::string_view request) {
    PM_RETURN_IF_ERROR(Connect());
    PM_RETURN_IF_ERROR(Submit(request));
    PM_RETURN_IF_ERROR(Exchange());
    return Result();
  }

 private:
  // Errors say what failed; the caller names the service and its socket.
  absl::Status Unavailable(absl::string_view what) const {
    return absl::UnavailableError(std::string(what));
  }

  absl::Status Connect() {
    sockaddr_un address = {};
    address.sun_family = AF_UNIX;
    if (call_.socket.size() >= sizeof(address.sun_path)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "socket path ", call_.socket, " is longer than ", sizeof(address.sun_path) - 1,
          " bytes"));
    }
    memcpy(address.sun_path, call_.socket.data(), call_.socket.size());
    fd_.reset(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!fd_) return ErrnoError("socket", "AF_UNIX");
    // A unix connect blocks only while the listener's backlog is full;
    // the send timeout bounds it by the deadline.
    if (const int left = MillisecondsLeft(call_.deadline); left >= 0) {
      timeval timeout = {std::max(left, 1) / 1000, (std::max(left, 1) % 1000) * 1000};
      setsockopt(fd_.get(), SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof(timeout));
    }
    if (connect(fd_.get(), reinterpret_cast<const sockaddr*>(&address), sizeof(address)) != 0) {
      if (errno == EAGAIN || errno == EINPROGRESS) {
        return absl::DeadlineExceededError(
            absl::StrCat(call_.method, ": deadline exceeded in connect"));
      }
      return Unavailable(ErrnoError("connect").message());
    }
    return SetNonBlocking(fd_.get(), true);
  }

  absl::Status Submit(absl::string_view request) {
    nghttp2_session_callbacks* callbacks = nullptr;
    if (nghttp2_session_callbacks_new(&callbacks) != 0) {
      return absl::ResourceExhaustedError("nghttp2_session_callbacks_new failed");
    }
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(callbacks, OnData);
    nghttp2_session_callbacks_set_on_header_callback(callbacks, OnHeader);
    nghttp2_session_callbacks_set_on_stream_close_callback(callbacks, OnStreamClose);
    nghttp2_session* session = nullptr;
    const int made = nghttp2_session_client_new(&session, callbacks, &answer_);
    nghttp2_session_callbacks_del(callbacks);
    if (made != 0) return absl::ResourceExhaustedError(nghttp2_strerror(made));
    session_.reset(session);

    // Windows as large as the largest answer: it comes without waiting for
    // WINDOW_UPDATEs.
    const nghttp2_settings_entry settings[] = {
        {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, 16 << 20},
    };
    nghttp2_submit_settings(session, NGHTTP2_FLAG_NONE, settings, 2);
    nghttp2_session_set_local_window_size(session, NGHTTP2_FLAG_NONE, 0, 64 << 20);

    // gRPC's framing: uncompressed, a 4-byte big-endian length.
    const uint32_t length = static_cast<uint32_t>(request.size());
    answer_.request.reserve(5 + request.size());
    answer_.request.push_back('\0');
    for (int shift : {24, 16, 8, 0}) {
      answer_.request.push_back(static_cast<char>((length >> shift) & 0xff));
    }
    answer_.request.append(request.data(), request.size());

    std::vector<std::pair<std::string, std::string>> headers = {
        {":method", "POST"},
        {":scheme", "http"},
        {":path", call_.method},
        {":authority", "localhost"},
        {"content-type", "application/grpc"},
        {"te", "trailers"},
        {"grpc-accept-encoding", "identity"},
    };
    // The server's deadline too (gRPC's "grpc-timeout", at most 8 digits).
    if (const int left = MillisecondsLeft(call_.deadline); left >= 0) {
      headers.emplace_back("grpc-timeout", absl::StrCat(std::min(left, 99999999), "m"));
    }
    for (const auto& [key, value] : call_.metadata) {
      if (nghttp2_check_header_name(reinterpret_cast<const uint8_t*>(key.data()), key.size()) ==
              0 ||
          absl::AsciiStrToLower(key) != key || absl::StartsWith(key, ":") ||
          nghttp2_check_header_value(reinterpret_cast<const uint8_t*>(value.data()),
                                     value.size()) == 0) {
        return absl::InvalidArgumentError(absl::StrCat(
            call_.method, ": metadata \"", absl::CEscape(key),
            "\" is no lower-case header name with a value of printable text"));
      }
      headers.emplace_back(key, value);
    }
    std::vector<nghttp2_nv> nv;
    for (auto& [key, value] : headers) {
      nv.push_back({reinterpret_cast<uint8_t*>(key.data()),
                    reinterpret_cast<uint8_t*>(value.data()), key.size(), value.size(),
                    NGHTTP2_NV_FLAG_NONE});
    }
    nghttp2_data_provider body;
    body.source.ptr = nullptr;
    body.read_callback = ReadRequest;
    const int32_t stream =
        nghttp2_submit_request(session, nullptr, nv.data(), nv.size(), &body, nullptr);
    if (stream < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(call_.method, ": the request cannot be sent: ", nghttp2_strerror(stream)));
    }
    return absl::OkStatus();
  }

  // Writes what the session has to send, all of it, in one send when the
  // socket takes it (the preface, SETTINGS, HEADERS and DATA of a call).
  absl::Status Flush() {
    std::string out;
    while (true) {
      const uint8_t* data = nullptr;
      const ssize_t n = nghttp2_session_mem_send(session_.get(), &data);
      if (n < 0) return absl::InternalError(absl::StrCat("nghttp2: ", nghttp2_strerror(n)));
      if (n == 0) break;
      out.append(reinterpret_cast<const char*>(data), static_cast<size_t>(n));
    }
    for (size_t written = 0; written < out.size();) {
      // Never SIGPIPE: a service that closed the connection is an error.
      const ssize_t w =
          send(fd_.get(), out.data() + written, out.size() - written, MSG_NOSIGNAL);
      if (w > 0) {
        written += static_cast<size_t>(w);
        continue;
      }
      if (w < 0 && errno == EINTR) continue;
      if (w < 0 && errno == EAGAIN) {
        PM_RETURN_IF_ERROR(Await(POLLOUT));
        continue;
      }
      return Unavailable(ErrnoError("send").message());
    }
    return absl::OkStatus();
  }

  absl::Status Await(short events) {
    pollfd ready = {fd_.get(), events, 0};
    while (true) {
      const int left = MillisecondsLeft(call_.deadline);
      if (left == 0) {
        return absl::DeadlineExceededError(absl::StrCat(call_.method, ": deadline exceeded"));
      }
      const int n = poll(&ready, 1, left);
      if (n > 0) return absl::OkStatus();
      if (n < 0 && errno != EINTR) return ErrnoError("poll");
    }
  }

  absl::Status Exchange() {
    uint8_t buffer[64 << 10];
    // The answer is whole once its stream closes: what the session would
    // still send then (acknowledgements of the server's SETTINGS or PING)
    // is not sent, so a service that closed the connection right after
    // answering (it exited) has still answered.
    while (!answer_.closed) {
      PM_RETURN_IF_ERROR(Flush());
      PM_RETURN_IF_ERROR(Await(POLLIN));
      const ssize_t n = read(fd_.get(), buffer, sizeof(buffer));
      if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
      if (n < 0) return Unavailable(ErrnoError("read").message());
      if (n == 0) return Unavailable("the service closed the connection before answering");
      const ssize_t taken = nghttp2_session_mem_recv(session_.get(), buffer, static_cast<size_t>(n));
      if (answer_.too_big) {
        return absl::ResourceExhaustedError(absl::StrCat(
            call_.method, ": the answer is larger than ", kH2UnaryMaxAnswerBytes, " bytes"));
      }
      if (taken < 0) {
        return absl::InternalError(absl::StrCat(call_.method, ": not an HTTP/2 answer (nghttp2: ",
                                                nghttp2_strerror(static_cast<int>(taken)), ")"));
      }
    }
    return absl::OkStatus();
  }

  absl::StatusOr<std::string> Result() const {
    if (answer_.grpc_status.empty()) {
      if (answer_.reset_code != NGHTTP2_NO_ERROR) {
        return absl::Status(CodeOfReset(answer_.reset_code),
                            absl::StrCat(call_.method, ": the stream was reset (",
                                         nghttp2_http2_strerror(answer_.reset_code), ")"));
      }
      return absl::Status(CodeOfHttpStatus(answer_.http_status),
                          absl::StrCat(call_.method, ": not a gRPC answer (HTTP status ",
                                       answer_.http_status.empty() ? "none" : answer_.http_status,
                                       ", no grpc-status)"));
    }
    int code = 0;
    if (!absl::SimpleAtoi(answer_.grpc_status, &code) || code < 0 || code > 16) {
      return absl::UnknownError(absl::StrCat(call_.method, ": grpc-status \"",
                                             absl::CEscape(answer_.grpc_status), "\": ",
                                             PercentDecoded(answer_.grpc_message)));
    }
    if (code != 0) {
      return absl::Status(static_cast<absl::StatusCode>(code),
                          PercentDecoded(answer_.grpc_message));
    }
    if (answer_.body.size() < 5) {
      return absl::InternalError(absl::StrCat(call_.method, ": an answer without its message"));
    }
    if (answer_.body[0] != '\0') {
      return absl::InternalError(absl::StrCat(call_.method, ": a compressed answer"));
    }
    uint32_t length = 0;
    for (int i = 1; i <= 4; ++i) length = (length << 8) | static_cast<uint8_t>(answer_.body[i]);
    if (length != answer_.body.size() - 5) {
      return absl::InternalError(absl::StrCat(call_.method, ": the answer's message is ",
                                              answer_.body.size() - 5, " bytes, its prefix says ",
                                              length));
    }
    return answer_.body.substr(5);
  }

  const H2UnaryCall& call_;
  Fd fd_;
  Answer answer_;
  std::unique_ptr<nghttp2_session, SessionFree> session_;
};

}  // namespace

absl::StatusOr<std::string> H2Unary(const H2UnaryCall& call, absl::string_view request) {
  if (request.size() > UINT32_MAX) {
    return absl::InvalidArgumentError("a request larger than 4 GiB");
  }
  return Connection(call).Run(request);
}

absl::Status H2Unary(const H2UnaryCall& call, const google::protobuf::Message& request,
                     google::protobuf::Message* response) {
  std::string bytes;
  if (!request.SerializeToString(&bytes)) {
    return absl::InvalidArgumentError(
        absl::StrCat(call.method, ": the request does not serialize"));
  }
  PM_ASSIGN_OR_RETURN(std::string answer, H2Unary(call, bytes));
  if (!response->ParseFromString(answer)) {
    return absl::InternalError(
        absl::StrCat(call.method, ": the answer is no ", response->GetTypeName()));
  }
  return absl::OkStatus();
}

}  // namespace pm
