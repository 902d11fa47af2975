// The copy bounds of a balanced layer: at least `min_copies` copies of every expert (capped by the
// workers) and at most `max_copies` copies in all (the replica budget). The balancer fills every free slot
// of its grid with replicas; this trims the surplus (the copy that loses the least tokens per copy, taken
// from the most loaded worker holding it) and tops up experts below the minimum (into a free slot, else
// over a copy above the minimum, on the least loaded worker that lacks it). Pure and deterministic.
#pragma once

#include <span>

#include "runtime/placement/balance_grid.h"

namespace moe {

struct CopyBounds {
  int min_copies = 1;  // per expert, capped by grid.workers
  int max_copies = 0;  // in the whole layer; 0: no cap. Never trims an expert below min_copies.
};

// Applies `bounds` to `grid` in place; every expert 0..loads.size()-1 keeps at least the copies it had, up
// to min_copies. Returns the number of slots it changed.
int fit_copy_bounds(SlotGrid& grid, std::span<const double> loads, const CopyBounds& bounds);

}  // namespace moe
