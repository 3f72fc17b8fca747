#include "cli/interrupts.h"

namespace pm::cli {

bool Interrupts::Deliver(int signal) {
  std::lock_guard<std::mutex> lock(mu_);
  return handler_ && handler_(signal);
}

void Interrupts::SetHandler(Handler handler) {
  std::lock_guard<std::mutex> lock(mu_);
  handler_ = std::move(handler);
}

void Interrupts::ClearHandler() {
  std::lock_guard<std::mutex> lock(mu_);
  handler_ = nullptr;
}

}  // namespace pm::cli
