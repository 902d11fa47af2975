// The balancer's move-minimising repair of a layer that is over its bound: it takes the whole bottleneck set
// of workers (the min cut of the flow model, balance_flow.h) and tries the moves that take load out of it,
// each scored exactly by re-routing the flow:
//   - 1 changed slot: a new copy of an expert that lives only inside the set, written over a redundant
//     replica (or an empty slot) on a worker outside it;
//   - 2 changed slots: a copy inside the set swapped with a lighter copy outside it.
// Each step takes the move that removes the most overflow per changed slot, until the layer fits under the
// bound, nothing helps, or the budget of changed slots is spent.
#pragma once

#include <span>

#include "runtime/placement/balance_grid.h"

namespace moe {

struct MoveSearchLimits {
  double bound = 0.0;          // tokens per worker to get under
  int max_changed_slots = 0;   // vs `original`
};

// Improves `grid` in place (every expert keeps at least one copy); returns the number of moves made.
int repair_by_moves(SlotGrid& grid, const SlotGrid& original, std::span<const double> loads,
                    const MoveSearchLimits& limits);

}  // namespace moe
