// Slot grids of the balancer: construction, the contiguous baseline, counts, differences and loads.
#include "runtime/placement/balance_grid.h"

#include <algorithm>
#include <numeric>
#include <string>

#include "runtime/placement/placement_error.h"

namespace moe {

SlotGrid::SlotGrid(int workers_, int slots_) : workers(workers_), slots(slots_) {
  if (workers_ < 1 || slots_ < 1)
    throw PlacementError("slot grid needs at least 1 worker and 1 slot, got workers=" + std::to_string(workers_) +
                         " slots=" + std::to_string(slots_));
  experts.assign(static_cast<size_t>(workers_) * slots_, kEmptySlot);
}

bool SlotGrid::hosts(int worker, int32_t expert) const {
  for (int s = 0; s < slots; ++s)
    if (at(worker, s) == expert) return true;
  return false;
}

SlotGrid contiguous_grid(int experts, int workers, int slots) {
  SlotGrid grid(workers, slots);
  if (experts < 1 || experts > workers * slots)
    throw PlacementError("contiguous placement of " + std::to_string(experts) + " experts needs 1.." +
                         std::to_string(workers * slots) + " experts for " + std::to_string(workers) + " workers x " +
                         std::to_string(slots) + " slots");
  std::vector<int> used(workers, 0);
  for (int e = 0; e < experts; ++e) {
    int w = static_cast<int>(static_cast<int64_t>(e) * workers / experts);
    if (used[w] == slots)
      throw PlacementError("contiguous placement puts more than " + std::to_string(slots) + " experts on worker " +
                           std::to_string(w) + " (experts=" + std::to_string(experts) + ")");
    grid.at(w, used[w]++) = e;
  }
  return grid;
}

std::vector<int> copy_counts(const SlotGrid& grid, int experts) {
  std::vector<int> counts(experts, 0);
  for (int w = 0; w < grid.workers; ++w) {
    for (int s = 0; s < grid.slots; ++s) {
      int32_t e = grid.at(w, s);
      if (e == kEmptySlot) continue;
      if (e < 0 || e >= experts)
        throw PlacementError("slot (worker " + std::to_string(w) + ", slot " + std::to_string(s) + ") holds expert " +
                             std::to_string(e) + ", expected 0.." + std::to_string(experts - 1));
      for (int t = s + 1; t < grid.slots; ++t)
        if (grid.at(w, t) == e)
          throw PlacementError("worker " + std::to_string(w) + " holds expert " + std::to_string(e) +
                               " twice (slots " + std::to_string(s) + " and " + std::to_string(t) + ")");
      ++counts[e];
    }
  }
  return counts;
}

int slots_changed(const SlotGrid& before, const SlotGrid& after) {
  if (before.workers != after.workers || before.slots != after.slots)
    throw PlacementError("cannot compare slot grids of " + std::to_string(before.workers) + "x" +
                         std::to_string(before.slots) + " and " + std::to_string(after.workers) + "x" +
                         std::to_string(after.slots));
  int changed = 0;
  for (size_t i = 0; i < before.experts.size(); ++i) changed += before.experts[i] != after.experts[i];
  return changed;
}

std::vector<double> worker_loads(const SlotGrid& grid, std::span<const double> loads, std::span<const double> shares) {
  std::vector<double> out(grid.workers, 0.0);
  for (int w = 0; w < grid.workers; ++w) {
    for (int s = 0; s < grid.slots; ++s) {
      size_t i = static_cast<size_t>(w) * grid.slots + s;
      if (grid.experts[i] != kEmptySlot) out[w] += loads[grid.experts[i]] * shares[i];
    }
  }
  return out;
}

double imbalance(std::span<const double> worker_loads) {
  if (worker_loads.empty()) return 1.0;
  double total = std::accumulate(worker_loads.begin(), worker_loads.end(), 0.0);
  if (total <= 0.0) return 1.0;
  double mean = total / static_cast<double>(worker_loads.size());
  return *std::max_element(worker_loads.begin(), worker_loads.end()) / mean;
}

}  // namespace moe
