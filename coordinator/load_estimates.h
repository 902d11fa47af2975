// The coordinator's moving estimate of each logical expert's load, from the workers' heartbeat windows.
// Per (worker, expert) it keeps an exponentially weighted moving average (EWMA) of tokens per second:
// every heartbeat updates the worker's entries with rate = tokens / window, an expert the worker did not
// report counting as 0 tokens. An expert's load is the sum over workers of their averages, so replicas
// add up to the logical expert. Also the expected imbalance of a placement under those loads.
#pragma once

#include <cstdint>
#include <map>
#include <vector>

#include "runtime/core/expert_types.h"
#include "runtime/placement/placement_table.h"

namespace moe {

class LoadEstimates {
 public:
  explicit LoadEstimates(double alpha = 0.3) : alpha_(alpha) {}

  // One heartbeat window of `worker_id`: tokens per expert over `window_ms` (0: ignored).
  void add_window(uint32_t worker_id, uint32_t window_ms, const std::map<ExpertKey, uint64_t>& tokens);
  void forget_worker(uint32_t worker_id);

  // Tokens per second of every expert seen so far (summed over workers).
  std::map<ExpertKey, double> per_expert() const;
  // Like per_expert, but an expert that dead workers served and no live worker has reported since keeps
  // the rate those workers last had: what orders the re-homing of their orphans.
  std::map<ExpertKey, double> per_expert_with_departed() const;

 private:
  double alpha_;
  std::map<uint32_t, std::map<ExpertKey, double>> rates_;  // worker -> expert -> EWMA tokens/s
  std::map<ExpertKey, double> departed_;                   // forgotten workers' last rates, until served again
};

// Expected tokens/s per worker of `layer` when each replica takes its share of the expert's load, over the
// workers hosting something of that layer in `table`.
std::map<uint32_t, double> expected_worker_loads(const PlacementTable& table, const std::map<ExpertKey, double>& loads,
                                                 int32_t layer);

// max / mean of expected_worker_loads over the workers hosting the layer; 1 when the layer has no load.
double expected_imbalance(const PlacementTable& table, const std::map<ExpertKey, double>& loads, int32_t layer);

// The largest expected_imbalance over `layers`.
double max_expected_imbalance(const PlacementTable& table, const std::map<ExpertKey, double>& loads,
                              const std::vector<int32_t>& layers);

}  // namespace moe
