// plan_rebalance (see rebalance_plan.h).
#include "coordinator/rebalance_plan.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "coordinator/load_estimates.h"
#include "runtime/placement/balancer.h"
#include "runtime/placement/placement_error.h"
#include "runtime/placement/placement_grids.h"

namespace moe {

namespace {

int slots_per_layer(const PlacementTable& current, const std::vector<WorkerCapacity>& hosts, int experts, int layers,
                    double replica_budget, const std::vector<uint32_t>& host_ids) {
  const int workers = static_cast<int>(hosts.size());
  const int minimum = std::max(max_experts_per_layer(current, host_ids), (experts + workers - 1) / workers);
  int wanted = static_cast<int>(std::ceil(experts * std::max(1.0, replica_budget) / workers - 1e-9));
  uint32_t offered = std::numeric_limits<uint32_t>::max();
  for (const auto& host : hosts) {
    if (host.slots > 0) offered = std::min(offered, host.slots);
  }
  if (offered != std::numeric_limits<uint32_t>::max()) {
    wanted = std::min<int64_t>(wanted, offered / static_cast<uint32_t>(std::max(1, layers)));
  }
  return std::min(std::max(wanted, minimum), experts);
}

}  // namespace

RebalanceResult plan_rebalance(const PlacementTable& current, const ExpertCatalog& catalog,
                               const std::vector<WorkerCapacity>& hosts, const std::map<ExpertKey, double>& loads,
                               double replica_budget) {
  if (hosts.empty()) throw PlacementError("cannot rebalance: no worker may host experts");
  std::vector<uint32_t> host_ids;
  for (const auto& host : hosts) host_ids.push_back(host.id);
  const auto sizes = layer_sizes(catalog);
  int experts = 0;
  for (const auto& [layer, n] : sizes) experts = std::max(experts, n);

  RebalanceResult result;
  result.slots_per_layer =
      slots_per_layer(current, hosts, experts, static_cast<int>(sizes.size()), replica_budget, host_ids);
  const LayerGrids grids = placement_to_grids(current, catalog, host_ids, result.slots_per_layer);

  double total = 0.0;
  for (const auto& [key, load] : loads) total += load;
  const double floor = std::max(1e-9, 0.01 * total / std::max<size_t>(1, catalog.experts.size()));
  std::vector<std::vector<double>> layer_loads;
  for (size_t l = 0; l < grids.layers.size(); ++l) {
    std::vector<double> per_expert(static_cast<size_t>(grids.experts[l]), floor);
    for (int32_t e = 0; e < grids.experts[l]; ++e) {
      auto it = loads.find(ExpertKey{grids.layers[l], e});
      if (it != loads.end()) per_expert[static_cast<size_t>(e)] += it->second;
    }
    layer_loads.push_back(std::move(per_expert));
  }
  const BalancePlan plan = balance_layers(layer_loads, grids.grids);

  std::vector<PlacedWorker> workers;
  for (const auto& host : hosts) workers.push_back({host.id, host.address, WorkerState::Active});
  result.next = grids_to_placement(plan, grids, current, workers);
  for (const auto& worker : result.next.workers) result.experts_moved += current.gained_by(worker.id, result.next).size();
  result.imbalance_before = max_expected_imbalance(current, loads, grids.layers);
  result.imbalance_after = max_expected_imbalance(result.next, loads, grids.layers);
  return result;
}

}  // namespace moe
