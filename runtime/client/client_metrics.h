// What a ClusterClient counts: forward calls by outcome, retries, tokens, worker requests by status,
// and a latency histogram, in a prometheus-cpp registry when one is given (moe_client_* names), and
// always in plain counters a program can read back (ClientStats: also tokens per worker and per expert,
// for the demo's summary).
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "runtime/core/expert_types.h"
#include "runtime/routing/dispatch_plan.h"

namespace prometheus {
class Registry;
class Counter;
class Histogram;
}  // namespace prometheus

namespace moe {

enum class CallOutcome { Ok, DeadlineExceeded, Error };

struct ClientStats {
  uint64_t calls_ok = 0;
  uint64_t calls_deadline_exceeded = 0;
  uint64_t calls_error = 0;
  uint64_t retries = 0;             // shards sent again
  uint64_t tokens = 0;              // rows of x forwarded by successful calls
  uint64_t payload_bytes = 0;       // token + output blob bytes of successful worker requests
  std::map<uint32_t, uint64_t> tokens_per_worker;  // rows each worker computed (successful requests)
  std::map<ExpertKey, uint64_t> tokens_per_expert; // (token, expert) pairs computed per expert
};

class ClientMetrics {
 public:
  explicit ClientMetrics(prometheus::Registry* registry);

  void record_call(CallOutcome outcome, int64_t tokens, std::chrono::steady_clock::duration latency);
  void record_retry(size_t shards);
  // One worker request that came back; status "ok" or the error kind ("staleEpoch", "connectionClosed"...).
  void record_request(const std::string& status);
  void record_shard_done(int32_t layer, uint32_t worker, const WorkerShard& shard, size_t payload_bytes);
  ClientStats stats() const;

 private:
  std::array<prometheus::Counter*, 3> calls_{};
  prometheus::Counter* retries_ = nullptr;
  prometheus::Counter* tokens_ = nullptr;
  prometheus::Histogram* latency_ = nullptr;
  prometheus::Registry* registry_ = nullptr;

  mutable std::mutex mutex_;
  ClientStats stats_;
  std::map<std::string, prometheus::Counter*> request_counters_;
};

}  // namespace moe
