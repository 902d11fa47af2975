// Plans a rebalance of the whole placement: the current table as per-layer slot grids over the host
// workers, balance_layers (runtime/placement/balancer.h) with the load estimates, and the result as the
// next epoch's table. Pure.
//
// Slots per worker per layer (the balancer's S, at most N): ceil(N * replica_budget / W) for N experts per layer
// (shared expert included) and W hosts, so the cluster offers replica_budget copies per expert on
// average and the spare slots hold replicas of hot experts; never below what the current placement
// already puts on one host nor below ceil(N / W); and, when hosts offer a finite number of expert slots
// (registerWorker's capacity, counted over all layers), at most the smallest such offer / layers unless
// that is below the minimum. Each expert's load is its estimate plus 1% of the mean estimate, so experts
// without traffic still count and an empty (new) host attracts experts.
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
                               double replica_budget);

}  // namespace moe
