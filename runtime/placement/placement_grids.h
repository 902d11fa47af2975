// The bridge between a PlacementTable (expert -> replicas with shares) and the balancer's per-layer slot
// grids (balance_grid.h): the current placement of each MoE layer on a chosen list of host workers as a
// W x S grid, and a balancer plan back as the table of the next epoch. Experts of a layer are the ids
// 0..N-1 of the catalog (routed 0..E-1 and the shared expert E), so an expert's id is its grid id.
// Replicas on workers that are not hosts (draining, dead) are left out of the grid: the balancer places
// those experts again. Pure.
#pragma once

#include <cstdint>
#include <vector>

#include "runtime/placement/balance_grid.h"
#include "runtime/placement/balancer.h"
#include "runtime/placement/expert_catalog.h"
#include "runtime/placement/placement_table.h"

namespace moe {

struct LayerGrids {
  std::vector<int32_t> layers;     // ascending MoE layer ids
  std::vector<int> experts;        // experts per layer (N)
  std::vector<uint32_t> hosts;     // grid row w is worker hosts[w]
  std::vector<SlotGrid> grids;     // one per layer, hosts.size() x slots
};

// Experts of `catalog` per layer (ascending layer). Throws PlacementError when a layer's ids are not 0..N-1.
std::vector<std::pair<int32_t, int>> layer_sizes(const ExpertCatalog& catalog);

// The most experts of one layer any host holds in `table`.
int max_experts_per_layer(const PlacementTable& table, const std::vector<uint32_t>& hosts);

// `table` as grids over `hosts` with `slots` slots per worker per layer. Throws PlacementError when a host
// holds more than `slots` experts of a layer, hosts is empty or slots < 1.
LayerGrids placement_to_grids(const PlacementTable& table, const ExpertCatalog& catalog,
                              const std::vector<uint32_t>& hosts, int slots);

// The table of epoch current.epoch + 1 from a plan over `grids` (plan.layers[i] for grids.layers[i]):
// assignments from the planned grids with the planned shares; workers = `workers` (ascending id after
// normalise), each active when it hosts something in the new table and joining otherwise, except those
// whose state is Draining, which stay draining. Throws PlacementError when the plan leaves an expert
// without a replica or does not match the grids' shape.
PlacementTable grids_to_placement(const BalancePlan& plan, const LayerGrids& grids, const PlacementTable& current,
                                  const std::vector<PlacedWorker>& workers);

}  // namespace moe
