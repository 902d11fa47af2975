// Local search of the balancer (see balance_swaps.h). Each step re-solves the optimal shares, so the pieces
// it exchanges are the tokens each copy really takes; an exchange keeps the old split feasible, so the
// maximum never rises.
#include "runtime/placement/balance_swaps.h"

#include <algorithm>

#include "runtime/placement/balance_shares.h"

namespace moe {

int improve_by_swaps(SlotGrid& grid, const SlotGrid& original, std::span<const double> loads,
                     const SwapSearchLimits& limits) {
  int changed = slots_changed(original, grid);
  int steps = 0;
  const int S = grid.slots;
  for (; steps < limits.max_steps; ++steps) {
    std::vector<double> shares = optimal_shares(grid, loads);
    std::vector<double> wl = worker_loads(grid, loads, shares);
    if (imbalance(wl) <= limits.target_imbalance) break;
    const int m = static_cast<int>(std::max_element(wl.begin(), wl.end()) - wl.begin());
    auto piece = [&](int w, int s) {
      int32_t e = grid.at(w, s);
      return e == kEmptySlot ? 0.0 : loads[e] * shares[static_cast<size_t>(w) * S + s];
    };
    auto differs = [&](int w, int s, int32_t e) { return original.at(w, s) != e ? 1 : 0; };

    double best_max = wl[m] * (1.0 - 1e-9);
    int best_delta = 0, best_s = -1, best_v = -1, best_t = -1;
    for (int s = 0; s < S; ++s) {
      const int32_t a = grid.at(m, s);
      if (a == kEmptySlot) continue;
      const double xa = piece(m, s);
      for (int v = 0; v < grid.workers; ++v) {
        if (v == m || grid.hosts(v, a)) continue;
        for (int t = 0; t < S; ++t) {
          const int32_t b = grid.at(v, t);
          if (b != kEmptySlot && grid.hosts(m, b)) continue;
          const double xb = piece(v, t);
          const double new_max = std::max(wl[m] - xa + xb, wl[v] - xb + xa);
          const int delta = differs(m, s, b) + differs(v, t, a) - differs(m, s, a) - differs(v, t, b);
          if (changed + delta > limits.max_changed_slots) continue;
          if (new_max < best_max - 1e-12 * wl[m] || (new_max <= best_max + 1e-12 * wl[m] && best_s >= 0 && delta < best_delta)) {
            best_max = new_max;
            best_delta = delta;
            best_s = s;
            best_v = v;
            best_t = t;
          }
        }
      }
    }
    if (best_s < 0) break;
    std::swap(grid.at(m, best_s), grid.at(best_v, best_t));
    changed += best_delta;
  }
  return steps;
}

}  // namespace moe
