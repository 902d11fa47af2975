// Plans a rebalance of the whole placement: the current table as per-layer slot grids over the host
// workers, balance_layers (runtime/placement/balancer.h) with the load estimates, and the result as the
// next epoch's table. Pure.
//
// Slots per worker per layer (the balancer's S, at most N): ceil(N * max(replica_budget, min(replicas, W)) / W)
// for N experts per layer (shared expert included) and W hosts, so the cluster offers replica_budget copies
// per expert on average (and room for `replicas` copies of each), never below ceil(N / W); and never above what every host can hold over all layers: its declared
// slots / layers and its memory / (the biggest expert of each layer, summed over layers). When that cap is
// below ceil(N / W) the hosts cannot hold every expert in one grid and the plan fails (PlacementError naming
// the host). Copies a host holds beyond S in a layer are dropped from the starting grid (surplus replicas
// first, then the least loaded), so the plan never exceeds a host's capacity. The balancer keeps every
// expert at min(replicas, W) copies or more and each layer at ceil(N * replica_budget) copies or fewer.
// Each expert's load is its estimate plus 1% of the mean estimate, so experts without traffic still count
// and an empty (new) host attracts experts.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <vector>

#include "runtime/placement/expert_catalog.h"
#include "runtime/placement/placement_table.h"

namespace moe {

struct RebalanceResult {
  PlacementTable next;           // epoch current.epoch + 1
  size_t experts_moved = 0;      // expert copies a host loads anew
  double imbalance_before = 1.0;  // max over layers of the expected max / mean worker load
  double imbalance_after = 1.0;
  int slots_per_layer = 0;
};

// `hosts`: the workers that may host experts (ascending id); workers of `current` that are not hosts lose
// their experts and leave the table. Throws PlacementError when it cannot plan (no hosts, too few slots).
RebalanceResult plan_rebalance(const PlacementTable& current, const ExpertCatalog& catalog,
                               const std::vector<WorkerCapacity>& hosts, const std::map<ExpertKey, double>& loads,
                               double replica_budget, int replicas = 1);

}  // namespace moe
