// PM_FUZZ_CHECK: an invariant a fuzz harness asserts about the code under
// test. A failed check prints the condition and a message and aborts, which
// libFuzzer reports as a crash and saves the input for.
//
//   PM_FUZZ_CHECK(parsed->user.find(':') == std::string::npos)
//       << "user \"" << parsed->user << "\" holds a ':'";
//
// Unlike assert(), it is never compiled out.
#ifndef PM_TESTING_FUZZ_FUZZ_CHECK_H_
#define PM_TESTING_FUZZ_FUZZ_CHECK_H_

#include <cstdlib>
#include <iostream>
#include <sstream>

namespace pm::fuzz {

// Collects the message of a failed check and aborts when destroyed.
class CheckFailure {
 public:
  CheckFailure(const char* file, int line, const char* condition) {
    stream_ << file << ":" << line << ": fuzz invariant failed: "
            << condition << ": ";
  }
  [[noreturn]] ~CheckFailure() {
    std::cerr << stream_.str() << std::endl;
    std::abort();
  }
  std::ostream& stream() { return stream_; }

 private:
  std::ostringstream stream_;
};

}  // namespace pm::fuzz

#define PM_FUZZ_CHECK(condition)                                          \
  if (condition) {                                                        \
  } else /* NOLINT */                                                     \
    ::pm::fuzz::CheckFailure(__FILE__, __LINE__, #condition).stream()

#endif  // PM_TESTING_FUZZ_FUZZ_CHECK_H_
