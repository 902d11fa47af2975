// Windowed token counts for heartbeats (see load_window.h).
#include "worker/load_window.h"

namespace moe {

LoadWindow::LoadWindow() : window_start_(std::chrono::steady_clock::now()) {}

void LoadWindow::add(const std::map<ExpertKey, uint64_t>& tokens) {
  std::lock_guard lock(mutex_);
  for (const auto& [key, count] : tokens) tokens_[key] += count;
}

LoadSnapshot LoadWindow::take() {
  std::lock_guard lock(mutex_);
  auto now = std::chrono::steady_clock::now();
  LoadSnapshot snapshot;
  snapshot.tokens.swap(tokens_);
  snapshot.window = std::chrono::duration_cast<std::chrono::milliseconds>(now - window_start_);
  window_start_ = now;
  return snapshot;
}

void LoadWindow::restore(const LoadSnapshot& snapshot) {
  std::lock_guard lock(mutex_);
  for (const auto& [key, count] : snapshot.tokens) tokens_[key] += count;
  window_start_ -= snapshot.window;
}

}  // namespace moe
