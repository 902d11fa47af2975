// The first placement of a model on a cluster: every expert (routed and shared) of every MoE layer on
// min(replicas, workers) distinct workers, biggest experts first, each copy on the worker with the fewest
// bytes (then experts) placed so far that still has a slot and the memory for it. Deterministic.
#pragma once

#include <cstddef>
#include <vector>

#include "runtime/model/model_spec.h"
#include "runtime/placement/expert_catalog.h"
#include "runtime/placement/placement_table.h"

namespace moe {

// Returns epoch 1: workers that host experts are active, the others joining; equal replica shares.
// Throws PlacementError naming the shortfall (slots or bytes needed vs offered, or the expert that no
// worker could take with every worker's usage) when the cluster cannot hold the model, and on
// replicas < 1 or no workers.
PlacementTable initial_placement(const ExpertCatalog& catalog, const std::vector<WorkerCapacity>& workers, int replicas);
PlacementTable initial_placement(const ModelSpec& spec, size_t bytes_per_param,
                                 const std::vector<WorkerCapacity>& workers, int replicas);

// The catalog's experts, biggest first, then by key: the order the planners place them in.
std::vector<CatalogExpert> placement_order(std::vector<CatalogExpert> experts);

}  // namespace moe
