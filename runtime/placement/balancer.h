// The load balancer: from per-layer expert loads (tokens per logical expert over a window) and the current
// slot grids (W workers x S slots per layer), a new placement with replicas of hot experts, the share of an
// expert's tokens each replica takes, and few weight moves. Per layer:
//   1. keep the current grid and only re-solve the shares; done when max/mean load <= 1 + tolerance;
//   2. else repair it: place missing experts and fill free slots with replicas, then make the moves that
//      take load out of the bottleneck set of workers, fewest changed slots first (balance_moves.h),
//      within a budget of changed slots;
//   3. if that stays above the tolerance, plan from scratch (balance_fresh.h) laid out to keep what it can,
//      and take it only when it beats the repair by more than the tolerance.
// Every candidate is first fitted to the copy bounds (balance_bounds.h: min_copies, max_copies).
// Pure and deterministic: the same inputs give the same plan.
#pragma once

#include <span>
#include <vector>

#include "runtime/placement/balance_grid.h"

namespace moe {

struct BalancerOptions {
  double tolerance = 0.02;          // a layer at max/mean <= 1 + tolerance keeps its slots; a repair aims here
  double replan_tolerance = 0.01;   // a layer planned from scratch pays its moves anyway: it aims here
  double repair_budget = 0.1;       // slots a repair may change, as a fraction of the layer's slots
  int min_copies = 1;               // copies of every expert (capped by the workers): --replicas
  int max_copies = 0;               // copies in the whole layer (0: every slot may hold one): the replica budget
};

struct LayerPlan {
  SlotGrid grid;
  std::vector<double> shares;       // like grid.experts; each placed expert's shares sum to 1
  std::vector<double> worker_load;  // tokens per worker under those shares
  double imbalance = 1.0;           // max / mean worker load
  int slots_changed = 0;            // vs the current grid
};

// Plans one layer. loads[e] >= 0 for experts 0..E-1; `current` may leave experts out (they are placed).
// Throws PlacementError when the grid cannot hold every expert once or holds an id outside [0, E).
LayerPlan balance_layer(std::span<const double> loads, const SlotGrid& current, const BalancerOptions& options = {});

// The layer plan of `grid` as it is, with optimal shares.
LayerPlan evaluate_layer(std::span<const double> loads, const SlotGrid& grid, const SlotGrid& current);

struct BalancePlan {
  std::vector<LayerPlan> layers;
  double mean_imbalance = 1.0;
  double max_imbalance = 1.0;
  int slots_changed = 0;
};

// Plans every layer: loads[l] and current[l] per layer (the same count; throws PlacementError otherwise).
BalancePlan balance_layers(const std::vector<std::vector<double>>& loads, const std::vector<SlotGrid>& current,
                           const BalancerOptions& options = {});

}  // namespace moe
