// The balancer's plan from scratch for one layer: replica counts by the greedy "give the next spare slot to
// the expert with the most tokens per copy", copies packed heaviest first onto the least loaded worker with
// a free slot, then the packed workers matched onto the current ones so that as many copies as possible
// stay in the slot they already occupy.
#pragma once

#include <span>
#include <vector>

#include "runtime/placement/balance_grid.h"

namespace moe {

// Replica counts for `slots_total` slots: every expert once, spare slots one by one to the expert with the
// largest load / copies (ties: lowest id), at most `max_copies` each; experts without load get no replica.
std::vector<int> greedy_replica_counts(std::span<const double> loads, int slots_total, int max_copies);

// A full grid shaped like `current`, laid out to keep current copies in place where the packing allows.
SlotGrid fresh_grid(std::span<const double> loads, const SlotGrid& current);

}  // namespace moe
