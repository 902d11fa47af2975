// fit_copy_bounds (see balance_bounds.h).
#include "runtime/placement/balance_bounds.h"

#include <algorithm>
#include <numeric>

namespace moe {
namespace {

// Tokens per worker when each copy takes loads[e] / counts[e].
std::vector<double> split_loads(const SlotGrid& grid, std::span<const double> loads, const std::vector<int>& counts) {
  std::vector<double> out(grid.workers, 0.0);
  for (int w = 0; w < grid.workers; ++w)
    for (int s = 0; s < grid.slots; ++s)
      if (int32_t e = grid.at(w, s); e != kEmptySlot) out[w] += loads[e] / counts[e];
  return out;
}

// The expert above `floor` copies that loses the least by giving one up (ties: highest id), or -1.
int most_spare(std::span<const double> loads, const std::vector<int>& counts, int floor, int32_t exclude) {
  int best = -1;
  for (int e = 0; e < static_cast<int>(counts.size()); ++e) {
    if (counts[e] <= floor || e == exclude) continue;
    const double after = loads[e] / (counts[e] - 1);
    if (best < 0 || after <= loads[best] / (counts[best] - 1)) best = e;
  }
  return best;
}

}  // namespace

int fit_copy_bounds(SlotGrid& grid, std::span<const double> loads, const CopyBounds& bounds) {
  const int E = static_cast<int>(loads.size());
  const int floor = std::max(1, std::min(bounds.min_copies, grid.workers));
  std::vector<int> counts = copy_counts(grid, E);
  int changed = 0;

  // Trim the surplus over the budget.
  int total = std::accumulate(counts.begin(), counts.end(), 0);
  while (bounds.max_copies > 0 && total > bounds.max_copies) {
    const int f = most_spare(loads, counts, floor, -1);
    if (f < 0) break;
    const std::vector<double> load = split_loads(grid, loads, counts);
    int best_w = -1, best_s = -1;
    for (int w = 0; w < grid.workers; ++w)
      for (int s = 0; s < grid.slots; ++s)
        if (grid.at(w, s) == f && (best_w < 0 || load[w] > load[best_w])) best_w = w, best_s = s;
    grid.at(best_w, best_s) = kEmptySlot;
    --counts[f];
    --total;
    ++changed;
  }

  // Top up experts below the minimum, the most tokens per copy first.
  std::vector<bool> stuck(E, false);  // below the minimum with no room anywhere
  for (;;) {
    int e = -1;
    for (int x = 0; x < E; ++x) {
      if (counts[x] >= floor || stuck[x]) continue;
      const double px = loads[x] / std::max(counts[x], 1);
      if (e < 0 || px > loads[e] / std::max(counts[e], 1)) e = x;
    }
    if (e < 0) break;
    const std::vector<double> load = split_loads(grid, loads, counts);
    int best_w = -1, best_s = -1;
    for (int w = 0; w < grid.workers; ++w) {  // a free slot on the least loaded worker that lacks e
      if (grid.hosts(w, e)) continue;
      for (int s = 0; s < grid.slots; ++s) {
        if (grid.at(w, s) != kEmptySlot) continue;
        if (best_w < 0 || load[w] < load[best_w]) best_w = w, best_s = s;
        break;
      }
    }
    if (best_w < 0) {  // else over the most spare copy above the minimum on a worker that lacks e
      std::vector<int> spare_counts = counts;
      for (;;) {
        const int f = most_spare(loads, spare_counts, floor, e);
        if (f < 0) break;
        for (int w = 0; w < grid.workers; ++w) {
          if (grid.hosts(w, e)) continue;
          for (int s = 0; s < grid.slots; ++s)
            if (grid.at(w, s) == f && (best_w < 0 || load[w] > load[best_w])) best_w = w, best_s = s;
        }
        if (best_w >= 0) {
          --counts[f];
          break;
        }
        spare_counts[f] = floor;  // no usable copy of f: look at the next one
      }
    }
    if (best_w < 0) {  // no room anywhere: the minimum is not possible for e
      stuck[e] = true;
      continue;
    }
    grid.at(best_w, best_s) = e;
    ++counts[e];
    ++changed;
  }
  return changed;
}

}  // namespace moe
