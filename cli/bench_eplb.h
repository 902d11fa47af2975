// The EPLB baseline of `moectl bench balance`, implemented here from its published description
// (DeepSeek's expert-parallelism load balancer, eplb.py): replicate the hottest logical expert (by load
// per copy) until every physical slot is filled, then pack the copies onto workers greedily, heaviest
// first, each to the least loaded worker that still has a free slot; each copy takes an equal share of
// its expert's tokens. Hierarchical: expert groups are first packed onto nodes the same way and the
// replicate-and-pack runs inside each node; global: one node, one group.
#pragma once

#include <vector>

#include "runtime/placement/balance_grid.h"

namespace moe {

struct EplbOptions {
  int groups = 1;  // expert groups (contiguous ids); hierarchical needs groups % nodes == 0
  int nodes = 1;   // workers per node = workers / nodes
};

struct EplbLayer {
  SlotGrid grid;  // every slot filled; an expert may hold two slots of one worker (EPLB allows it)
  double imbalance = 1.0;  // max / mean worker load with equal shares per copy
};

// One layer: loads[e] for experts 0..E-1 on W x S slots (W * S >= E). Throws std::invalid_argument when
// the shape does not divide as EPLB needs (E % groups, W % nodes, groups % nodes, W * S >= E).
EplbLayer eplb_layer(const std::vector<double>& loads, int workers, int slots, const EplbOptions& options);

// Slots that must change to go from `before` to `after` when a worker may reorder its own slots:
// per worker, the copies in `after` that `before` did not hold there (multiset difference).
int eplb_slots_changed(const SlotGrid& before, const SlotGrid& after);

}  // namespace moe
