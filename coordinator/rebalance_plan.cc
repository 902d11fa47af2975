// plan_rebalance (see rebalance_plan.h).
#include "coordinator/rebalance_plan.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "coordinator/load_estimates.h"
#include "runtime/placement/balancer.h"
#include "runtime/placement/placement_capacity.h"
#include "runtime/placement/placement_error.h"
#include "runtime/placement/placement_grids.h"

namespace moe {

namespace {

constexpr int kNoLimit = std::numeric_limits<int>::max();

// The most experts of every layer `host` can hold at once: slots / layers, memory / bytes of one set.
int host_cap(const WorkerCapacity& host, int layers, uint64_t set_bytes) {
  int cap = kNoLimit;
  if (host.slots > 0) cap = static_cast<int>(std::min<uint64_t>(kNoLimit, host.slots / std::max(1, layers)));
  if (host.memory_bytes > 0 && set_bytes > 0) {
    cap = std::min<int64_t>(cap, static_cast<int64_t>(std::min<uint64_t>(kNoLimit, host.memory_bytes / set_bytes)));
  }
  return cap;
}

int slots_per_layer(const std::vector<WorkerCapacity>& hosts, const ExpertCatalog& catalog, int experts, int layers,
                    double replica_budget, int replicas) {
  const int workers = static_cast<int>(hosts.size());
  const int minimum = (experts + workers - 1) / workers;
  const double copies = std::max({1.0, replica_budget, static_cast<double>(std::min(replicas, workers))});
  const int wanted = std::max(minimum, static_cast<int>(std::ceil(experts * copies / workers - 1e-9)));
  std::map<int32_t, uint64_t> biggest;  // layer -> its biggest expert
  for (const auto& expert : catalog.experts) biggest[expert.key.layer] = std::max(biggest[expert.key.layer], expert.bytes);
  uint64_t set_bytes = 0;
  for (const auto& [layer, bytes] : biggest) set_bytes += bytes;
  int cap = kNoLimit;
  const WorkerCapacity* tightest = nullptr;
  for (const auto& host : hosts) {
    const int c = host_cap(host, layers, set_bytes);
    if (c < cap) cap = c, tightest = &host;
  }
  if (cap < minimum) {
    throw PlacementError("cannot place " + std::to_string(experts) + " experts per layer on " + std::to_string(workers) +
                         " worker(s) within their capacity: that takes " + std::to_string(minimum) +
                         " expert slots per worker per layer, and worker " + std::to_string(tightest->id) + " (" +
                         tightest->address + ") holds " + std::to_string(cap) + " per layer (" +
                         std::to_string(tightest->slots) + " slots over " + std::to_string(layers) + " layers, " +
                         std::to_string(tightest->memory_bytes) + " bytes of memory for " + std::to_string(set_bytes) +
                         " bytes per expert of every layer)");
  }
  return std::min({wanted, cap, experts});
}

// `current` without the copies a host holds beyond `slots` in a layer: per (layer, host), copies of
// replicated experts go first (the least loaded first), then the least loaded sole copies.
PlacementTable fit_to_slots(const PlacementTable& current, const std::vector<uint32_t>& host_ids, int slots,
                            const std::map<ExpertKey, double>& loads) {
  PlacementTable fitted = current;
  auto load = [&](ExpertKey key) {
    auto it = loads.find(key);
    return it == loads.end() ? 0.0 : it->second;
  };
  for (uint32_t host : host_ids) {
    std::map<int32_t, std::vector<ExpertKey>> per_layer;
    for (const auto& [key, replicas] : fitted.assignments) {
      for (const auto& replica : replicas) {
        if (replica.worker_id == host) per_layer[key.layer].push_back(key);
      }
    }
    for (auto& [layer, keys] : per_layer) {
      if (static_cast<int>(keys.size()) <= slots) continue;
      std::stable_sort(keys.begin(), keys.end(), [&](ExpertKey a, ExpertKey b) {  // the ones to keep first
        const bool sole_a = fitted.assignments.at(a).size() == 1, sole_b = fitted.assignments.at(b).size() == 1;
        if (sole_a != sole_b) return sole_a;
        return load(a) > load(b);
      });
      for (size_t i = static_cast<size_t>(slots); i < keys.size(); ++i) {
        auto& replicas = fitted.assignments.at(keys[i]);
        std::erase_if(replicas, [&](const Replica& r) { return r.worker_id == host; });
        if (replicas.empty()) {
          fitted.assignments.erase(keys[i]);
        } else {
          fitted.set_equal_shares(keys[i]);
        }
      }
    }
  }
  return fitted;
}

}  // namespace

RebalanceResult plan_rebalance(const PlacementTable& current, const ExpertCatalog& catalog,
                               const std::vector<WorkerCapacity>& hosts, const std::map<ExpertKey, double>& loads,
                               double replica_budget, int replicas) {
  if (hosts.empty()) throw PlacementError("cannot rebalance: no worker may host experts");
  std::vector<uint32_t> host_ids;
  for (const auto& host : hosts) host_ids.push_back(host.id);
  const auto sizes = layer_sizes(catalog);
  int experts = 0;
  for (const auto& [layer, n] : sizes) experts = std::max(experts, n);

  RebalanceResult result;
  result.slots_per_layer = slots_per_layer(hosts, catalog, experts, static_cast<int>(sizes.size()), replica_budget, replicas);
  const PlacementTable fitted = fit_to_slots(current, host_ids, result.slots_per_layer, loads);
  const LayerGrids grids = placement_to_grids(fitted, catalog, host_ids, result.slots_per_layer);

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
  BalancePlan plan;
  for (size_t l = 0; l < grids.layers.size(); ++l) {  // each layer with its own copy budget
    BalancerOptions options;
    options.min_copies = std::max(1, replicas);
    options.max_copies = static_cast<int>(std::ceil(grids.experts[l] * std::max(1.0, replica_budget) - 1e-9));
    try {
      plan.layers.push_back(balance_layer(layer_loads[l], grids.grids[l], options));
    } catch (const PlacementError& e) {
      throw PlacementError("layer " + std::to_string(grids.layers[l]) + ": " + e.what());
    }
  }

  std::vector<PlacedWorker> workers;
  for (const auto& host : hosts) workers.push_back({host.id, host.address, WorkerState::Active});
  result.next = grids_to_placement(plan, grids, current, workers);
  check_capacity(result.next, hosts, catalog);
  for (const auto& worker : result.next.workers) result.experts_moved += current.gained_by(worker.id, result.next).size();
  result.imbalance_before = max_expected_imbalance(current, loads, grids.layers);
  result.imbalance_after = max_expected_imbalance(result.next, loads, grids.layers);
  return result;
}

}  // namespace moe
