// The replica shares that balance one layer's slot grid: for a fixed placement, the split of each replicated
// expert's tokens over its copies that minimises the most loaded worker (a bottleneck transportation
// problem, solved on the flow model of balance_flow.h).
#pragma once

#include <span>
#include <vector>

#include "runtime/placement/balance_grid.h"

namespace moe {

// Shares indexed like grid.experts: 1 for an expert's only copy, the optimal split for replicated experts
// (equal when the expert has no load), 0 for empty slots. The shares of each placed expert sum to 1.
// loads[e] are the expert's tokens (>= 0); throws PlacementError when loads does not cover the grid's ids.
std::vector<double> optimal_shares(const SlotGrid& grid, std::span<const double> loads);

}  // namespace moe
