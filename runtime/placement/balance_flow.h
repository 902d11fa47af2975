// The flow model of one layer's slot grid: experts with one copy are fixed load on their worker, replicated
// experts send their tokens over their copies. Under a bound on every worker's load this is a max flow from
// the replicated experts to the workers; the min cut names the workers that cannot get under the bound
// (the bottleneck set). The smallest feasible bound is found by Newton steps on those cuts (each cut gives
// the exact mean load of its set, so a few max flows suffice).
#pragma once

#include <memory>
#include <span>
#include <vector>

#include "runtime/placement/balance_grid.h"

namespace moe {

struct FlowCut {
  double unrouted = 0.0;     // tokens that do not fit under the bound (replicated ones left over plus fixed
                             // load above the bound)
  std::vector<bool> tight;   // per worker: on the source side of the min cut, or fixed load above the bound
};

class LayerFlow {
 public:
  // Throws PlacementError when loads does not cover the grid's ids or an expert is twice on one worker.
  LayerFlow(const SlotGrid& grid, std::span<const double> loads);
  ~LayerFlow();
  LayerFlow(const LayerFlow&) = delete;
  LayerFlow& operator=(const LayerFlow&) = delete;

  // Routes as much as fits under `bound` on every worker; the shares below follow this flow.
  FlowCut route(double bound);
  // The smallest maximum worker load over all shares; leaves the flow routed at that bound.
  double min_max_load();
  // Shares indexed like grid.experts from the last route (equal split before any, and for experts without
  // load); each placed expert's shares sum to 1.
  std::vector<double> shares() const;
  // Tokens each slot takes under the last route (a fixed copy: its expert's load; a replicated copy: its
  // flow, 0 before any route), indexed like grid.experts.
  std::vector<double> slot_tokens() const;
  double total_load() const { return total_; }

 private:
  class MaxFlow;
  const SlotGrid& grid_;
  std::span<const double> loads_;
  std::vector<int> counts_;
  std::vector<double> base_;            // fixed load per worker
  std::vector<int> replicated_;         // expert ids with >= 2 copies
  std::vector<int> replicated_index_;   // per expert: index in replicated_ or -1
  std::vector<int> slot_edge_;          // per slot: flow edge of a replicated copy or -1
  std::vector<int> worker_edge_;
  double total_ = 0.0, replicated_total_ = 0.0;
  bool routed_ = false;
  std::unique_ptr<MaxFlow> flow_;
};

}  // namespace moe
