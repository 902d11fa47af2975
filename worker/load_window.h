// Per-(layer, expert) token counts over the current heartbeat window: the compute threads add, the
// heartbeat takes the window (and resets it), and puts it back when the heartbeat could not be sent.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <mutex>

#include "runtime/core/expert_types.h"

namespace moe {

struct LoadSnapshot {
  std::map<ExpertKey, uint64_t> tokens;
  std::chrono::milliseconds window{0};
};

class LoadWindow {
 public:
  LoadWindow();
  void add(const std::map<ExpertKey, uint64_t>& tokens);
  LoadSnapshot take();
  // Merges a snapshot that was not delivered back into the current window (which then covers both).
  void restore(const LoadSnapshot& snapshot);

 private:
  std::mutex mutex_;
  std::map<ExpertKey, uint64_t> tokens_;
  std::chrono::steady_clock::time_point window_start_;
};

}  // namespace moe
