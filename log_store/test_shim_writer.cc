// A stand-in for a process's pm-shim in the log_store's tests: another
// process that writes a process's output with a segment_log::Writer, as the
// shim does, driven line by line on stdin.
//
//   test_shim_writer <state_dir> <id> <segment_bytes> <max_bytes>
//   stdin:  data <pieces> <bytes>   appends <pieces> stdout pieces of
//                                   <bytes> bytes; piece k (counted over the
//                                   whole run) is <bytes> times 'a' + k % 26
//           close                   writes the end record
//   stdout: "ready" once the Writer is open, then "ok" after each command
//           (or "error: <status>"); exits at the end of stdin.
#include <errno.h>
#include <sys/stat.h>

#include <cstdint>
#include <cstdio>
#include <iostream>
#include <memory>
#include <string>

#include "absl/strings/numbers.h"
#include "absl/time/clock.h"
#include "common/state_layout.h"
#include "common/status.h"
#include "segment_log/writer.h"

namespace {

absl::Status Run(const std::string& state_dir, const std::string& id,
                 pm::segment_log::WriterOptions options) {
  for (const std::string& dir :
       {pm::ProcsDir(state_dir), pm::ProcessDir(state_dir, id)}) {
    if (mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
      return pm::ErrnoError("mkdir", dir);
    }
  }
  PM_ASSIGN_OR_RETURN(std::unique_ptr<pm::segment_log::Writer> writer,
                      pm::segment_log::Writer::Open(
                          pm::ProcessOutputDir(state_dir, id), options));
  std::cout << "ready" << std::endl;
  uint64_t piece = 0;
  std::string command;
  while (std::cin >> command) {
    absl::Status status;
    if (command == "data") {
      uint64_t pieces = 0;
      uint64_t bytes = 0;
      std::cin >> pieces >> bytes;
      for (uint64_t i = 0; i < pieces && status.ok(); ++i, ++piece) {
        status = writer->Append(
            pm::segment_log::Stream::kStdout,
            std::string(bytes, static_cast<char>('a' + piece % 26)),
            absl::Now());
      }
    } else if (command == "close") {
      status = writer->Close(absl::Now());
    } else {
      status = absl::InvalidArgumentError("unknown command " + command);
    }
    if (status.ok()) {
      std::cout << "ok" << std::endl;
    } else {
      std::cout << "error: " << status << std::endl;
    }
  }
  return absl::OkStatus();
}

}  // namespace

int main(int argc, char** argv) {
  pm::segment_log::WriterOptions options;
  if (argc != 5 || !absl::SimpleAtoi(argv[3], &options.segment_bytes) ||
      !absl::SimpleAtoi(argv[4], &options.max_bytes)) {
    std::fprintf(stderr,
                 "usage: test_shim_writer <state_dir> <id> <segment_bytes> "
                 "<max_bytes>\n");
    return 2;
  }
  absl::Status status = Run(argv[1], argv[2], options);
  if (!status.ok()) {
    std::cerr << "test_shim_writer: " << status << std::endl;
    return 1;
  }
  return 0;
}
