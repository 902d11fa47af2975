// The balancer (see balancer.h): keep, repair, or re-plan each layer, whichever is balanced enough with the
// fewest changed slots.
#include "runtime/placement/balancer.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "runtime/placement/balance_bounds.h"
#include "runtime/placement/balance_fresh.h"
#include "runtime/placement/balance_moves.h"
#include "runtime/placement/balance_shares.h"
#include "runtime/placement/balance_swaps.h"
#include "runtime/placement/placement_error.h"

namespace moe {
namespace {

// Tokens per worker when each copy takes loads[e] / counts[e], the estimate used to place new copies.
std::vector<double> equal_split_loads(const SlotGrid& grid, std::span<const double> loads, const std::vector<int>& counts) {
  std::vector<double> out(grid.workers, 0.0);
  for (int w = 0; w < grid.workers; ++w)
    for (int s = 0; s < grid.slots; ++s)
      if (int32_t e = grid.at(w, s); e != kEmptySlot) out[w] += loads[e] / counts[e];
  return out;
}

// Frees one slot of expert f: the copy on the most loaded worker (ties: lowest worker).
void remove_copy(SlotGrid& grid, int32_t f, const std::vector<double>& load) {
  int best_w = -1, best_s = -1;
  for (int w = 0; w < grid.workers; ++w)
    for (int s = 0; s < grid.slots; ++s)
      if (grid.at(w, s) == f && (best_w < 0 || load[w] > load[best_w])) best_w = w, best_s = s;
  grid.at(best_w, best_s) = kEmptySlot;
}

// Expert with the most tokens per copy that can still take one (fewer copies than workers), or -1.
int neediest(std::span<const double> loads, const std::vector<int>& counts, int max_copies) {
  int best = -1;
  for (int e = 0; e < static_cast<int>(loads.size()); ++e) {
    if (counts[e] >= max_copies || loads[e] <= 0.0) continue;
    if (best < 0 || loads[e] / counts[e] > loads[best] / counts[best]) best = e;
  }
  return best;
}

// Expert that loses the least by giving up a copy (smallest tokens per copy after losing one), or -1.
int most_spare(std::span<const double> loads, const std::vector<int>& counts, int exclude) {
  int best = -1;
  for (int e = 0; e < static_cast<int>(loads.size()); ++e) {
    if (counts[e] < 2 || e == exclude) continue;
    if (best < 0 || loads[e] / (counts[e] - 1) < loads[best] / (counts[best] - 1)) best = e;
  }
  return best;
}

// The current grid with every expert placed and every free slot given to a replica: missing experts take
// the slots of the most spare replicas, free slots go to the experts with the most tokens per copy, and each
// new copy lands on the least loaded worker (in the slot that held it before, where there is one).
SlotGrid filled_grid(std::span<const double> loads, const SlotGrid& current) {
  const int E = static_cast<int>(loads.size());
  SlotGrid grid = current;
  std::vector<int> counts = copy_counts(grid, E);
  std::vector<int32_t> pending;  // copies to place
  for (int e = 0; e < E; ++e) {
    if (counts[e] == 0) {
      pending.push_back(e);
      counts[e] = 1;
    }
  }
  int free_slots = static_cast<int>(std::count(grid.experts.begin(), grid.experts.end(), kEmptySlot));
  while (static_cast<int>(pending.size()) > free_slots) {  // missing experts take slots from replicas
    int f = most_spare(loads, counts, -1);
    remove_copy(grid, f, equal_split_loads(grid, loads, counts));
    --counts[f];
    ++free_slots;
  }
  while (static_cast<int>(pending.size()) < free_slots) {  // spare slots take replicas
    int e = neediest(loads, counts, grid.workers);
    if (e < 0) break;
    pending.push_back(e);
    ++counts[e];
  }
  std::stable_sort(pending.begin(), pending.end(), [&](int32_t a, int32_t b) {
    double pa = loads[a] / counts[a], pb = loads[b] / counts[b];
    return pa != pb ? pa > pb : a < b;
  });
  for (int32_t e : pending) {
    std::vector<double> load = equal_split_loads(grid, loads, counts);
    int best_w = -1, best_s = -1;
    for (int w = 0; w < grid.workers; ++w) {
      if (grid.hosts(w, e)) continue;
      int slot = -1;
      for (int s = 0; s < grid.slots; ++s) {
        if (grid.at(w, s) != kEmptySlot) continue;
        if (slot < 0 || current.at(w, s) == e) slot = s;  // prefer the slot that held e before
      }
      if (slot >= 0 && (best_w < 0 || load[w] < load[best_w])) best_w = w, best_s = slot;
    }
    if (best_w < 0) {
      --counts[e];  // a further copy with nowhere to go; the first copy of an expert always finds a slot
      continue;
    }
    grid.at(best_w, best_s) = e;
  }
  return grid;
}

}  // namespace

LayerPlan evaluate_layer(std::span<const double> loads, const SlotGrid& grid, const SlotGrid& current) {
  LayerPlan plan;
  plan.grid = grid;
  plan.shares = optimal_shares(grid, loads);
  plan.worker_load = worker_loads(grid, loads, plan.shares);
  plan.imbalance = imbalance(plan.worker_load);
  plan.slots_changed = slots_changed(current, grid);
  return plan;
}

LayerPlan balance_layer(std::span<const double> loads, const SlotGrid& current, const BalancerOptions& options) {
  const int E = static_cast<int>(loads.size());
  const int total_slots = current.workers * current.slots;
  if (E < 1 || E > total_slots)
    throw PlacementError("cannot place " + std::to_string(E) + " experts in " + std::to_string(current.workers) +
                         " workers x " + std::to_string(current.slots) + " slots (need 1.." +
                         std::to_string(total_slots) + " experts)");
  for (int e = 0; e < E; ++e)
    if (!(loads[e] >= 0.0) || std::isinf(loads[e]))
      throw PlacementError("expert " + std::to_string(e) + " has load " + std::to_string(loads[e]) +
                           ", expected a finite value >= 0");
  const std::vector<int> counts = copy_counts(current, E);
  const double target = 1.0 + options.tolerance;
  double total = 0.0;
  for (double v : loads) total += v;
  const double bound = target * total / current.workers;

  const CopyBounds bounds{options.min_copies, options.max_copies};
  auto fitted = [&](SlotGrid grid) {
    fit_copy_bounds(grid, loads, bounds);
    return evaluate_layer(loads, grid, current);
  };
  const bool all_placed = std::find(counts.begin(), counts.end(), 0) == counts.end();
  std::vector<LayerPlan> candidates;  // in order of preference on a tie: fewest changes first
  if (all_placed) {
    candidates.push_back(fitted(current));
    if (candidates.back().imbalance <= target) return candidates.back();
  }
  SlotGrid repaired = filled_grid(loads, current);
  const int budget = std::max(2, static_cast<int>(options.repair_budget * total_slots));
  repair_by_moves(repaired, current, loads, {bound, std::max(budget, slots_changed(current, repaired))});
  candidates.push_back(fitted(repaired));
  if (candidates.back().imbalance <= target) return candidates.back();

  SlotGrid fresh = fresh_grid(loads, current);
  SwapSearchLimits limits;
  limits.target_imbalance = 1.0 + std::min(options.tolerance, options.replan_tolerance);
  limits.max_changed_slots = total_slots;
  limits.max_steps = total_slots;
  improve_by_swaps(fresh, current, loads, limits);
  candidates.push_back(fitted(fresh));

  // The fewest changes among the plans within the tolerance of the best one.
  double best = candidates[0].imbalance;
  for (const LayerPlan& c : candidates) best = std::min(best, c.imbalance);
  const LayerPlan* chosen = nullptr;
  for (const LayerPlan& c : candidates)
    if (c.imbalance <= best * target && (!chosen || c.slots_changed < chosen->slots_changed)) chosen = &c;
  return *chosen;
}

BalancePlan balance_layers(const std::vector<std::vector<double>>& loads, const std::vector<SlotGrid>& current,
                           const BalancerOptions& options) {
  if (loads.size() != current.size())
    throw PlacementError("balance needs one slot grid per layer: " + std::to_string(loads.size()) + " load rows, " +
                         std::to_string(current.size()) + " grids");
  BalancePlan plan;
  double sum = 0.0;
  for (size_t l = 0; l < loads.size(); ++l) {
    try {
      plan.layers.push_back(balance_layer(loads[l], current[l], options));
    } catch (const PlacementError& e) {
      throw PlacementError("layer " + std::to_string(l) + ": " + e.what());
    }
    const LayerPlan& lp = plan.layers.back();
    sum += lp.imbalance;
    plan.max_imbalance = l == 0 ? lp.imbalance : std::max(plan.max_imbalance, lp.imbalance);
    plan.slots_changed += lp.slots_changed;
  }
  if (!plan.layers.empty()) plan.mean_imbalance = sum / static_cast<double>(plan.layers.size());
  return plan;
}

}  // namespace moe
