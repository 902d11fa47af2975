// The balancer's local search: while a layer's most loaded worker (under optimal shares) is above the
// tolerance, move one of its copies into a free slot of another worker or swap it with a copy there,
// choosing the exchange that lowers the pair's maximum the most; stop when nothing helps or the slot budget
// (slots differing from the original grid) would be exceeded.
#pragma once

#include <span>

#include "runtime/placement/balance_grid.h"

namespace moe {

struct SwapSearchLimits {
  double target_imbalance = 1.0;  // stop once max / mean <= this
  int max_changed_slots = 0;      // vs `original`
  int max_steps = 0;
};

// Improves `grid` in place; returns the number of exchanges made.
int improve_by_swaps(SlotGrid& grid, const SlotGrid& original, std::span<const double> loads,
                     const SwapSearchLimits& limits);

}  // namespace moe
