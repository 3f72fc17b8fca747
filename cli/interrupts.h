// Ctrl+C as an event for the commands that stream.
//
// main() blocks SIGINT and SIGTERM before any thread exists and a watcher
// thread sigwait()s for them, handing each to Deliver(). A command that
// must end cleanly on Ctrl+C (cancel its output stream, stop its process)
// installs a handler for as long as it needs it; with none installed the
// watcher ends the process the conventional way (exit 128 + signal).
//
//   Interrupts interrupts;                    // shared with the watcher
//   {
//     InterruptScope scope(interrupts, [&](int) {
//       stream->Cancel();                     // Next() now returns false
//       return true;                          // handled
//     });
//     while (stream->Next(&chunk)) ...
//   }                                         // handler gone
#ifndef PM_CLI_INTERRUPTS_H_
#define PM_CLI_INTERRUPTS_H_

#include <functional>
#include <mutex>

namespace pm::cli {

class Interrupts {
 public:
  // Runs on the watcher's thread. Returns false to let the watcher end the
  // process as if the signal were not handled.
  using Handler = std::function<bool(int signal)>;

  // Runs the handler for `signal`; false when there is none or it declined.
  // Handlers run one at a time, under a lock: they must not install or
  // remove handlers.
  bool Deliver(int signal);

  void SetHandler(Handler handler);
  // Once this returns, the old handler is not running and will not run.
  void ClearHandler();

 private:
  std::mutex mu_;
  Handler handler_;
};

// Installs a handler for the lifetime of the scope.
class InterruptScope {
 public:
  InterruptScope(Interrupts& interrupts, Interrupts::Handler handler)
      : interrupts_(interrupts) {
    interrupts_.SetHandler(std::move(handler));
  }
  ~InterruptScope() { interrupts_.ClearHandler(); }
  InterruptScope(const InterruptScope&) = delete;
  InterruptScope& operator=(const InterruptScope&) = delete;

 private:
  Interrupts& interrupts_;
};

}  // namespace pm::cli

#endif  // PM_CLI_INTERRUPTS_H_
