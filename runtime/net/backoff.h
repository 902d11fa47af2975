// Retry delays with jitter: every retry loop (the worker's reconnects to the coordinator, the client's
// retries of failed shards) sleeps a random point in [delay / 2, delay] while the delay doubles up to a cap,
// so peers that failed together do not retry in lockstep.
#pragma once

#include <chrono>
#include <random>

namespace moe {

inline std::chrono::milliseconds jittered(std::chrono::milliseconds delay) {
  thread_local std::mt19937_64 random{std::random_device{}()};
  const auto full = delay.count();
  if (full < 2) return delay;
  return std::chrono::milliseconds(std::uniform_int_distribution<long long>(full / 2, full)(random));
}

}  // namespace moe
