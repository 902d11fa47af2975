// placement_to_grids / grids_to_placement (see placement_grids.h).
#include "runtime/placement/placement_grids.h"

#include <algorithm>
#include <map>
#include <string>

#include "runtime/placement/placement_error.h"

namespace moe {

std::vector<std::pair<int32_t, int>> layer_sizes(const ExpertCatalog& catalog) {
  std::map<int32_t, std::vector<int32_t>> ids;
  for (const auto& expert : catalog.experts) ids[expert.key.layer].push_back(expert.key.expert);
  std::vector<std::pair<int32_t, int>> out;
  for (auto& [layer, experts] : ids) {
    std::sort(experts.begin(), experts.end());
    for (size_t i = 0; i < experts.size(); ++i) {
      if (experts[i] != static_cast<int32_t>(i)) {
        throw PlacementError("layer " + std::to_string(layer) + " of the catalog has expert ids that are not 0.." +
                             std::to_string(experts.size() - 1) + ": expected " + std::to_string(i) + ", got " +
                             std::to_string(experts[i]));
      }
    }
    out.emplace_back(layer, static_cast<int>(experts.size()));
  }
  return out;
}

int max_experts_per_layer(const PlacementTable& table, const std::vector<uint32_t>& hosts) {
  std::map<std::pair<int32_t, uint32_t>, int> counts;
  for (const auto& [key, replicas] : table.assignments) {
    for (const auto& replica : replicas) {
      if (std::find(hosts.begin(), hosts.end(), replica.worker_id) != hosts.end()) ++counts[{key.layer, replica.worker_id}];
    }
  }
  int most = 0;
  for (const auto& [where, count] : counts) most = std::max(most, count);
  return most;
}

LayerGrids placement_to_grids(const PlacementTable& table, const ExpertCatalog& catalog,
                              const std::vector<uint32_t>& hosts, int slots) {
  if (hosts.empty()) throw PlacementError("cannot build slot grids: no host workers");
  if (slots < 1) throw PlacementError("cannot build slot grids with " + std::to_string(slots) + " slots per worker");
  LayerGrids out;
  out.hosts = hosts;
  std::map<uint32_t, int> row;
  for (size_t w = 0; w < hosts.size(); ++w) row[hosts[w]] = static_cast<int>(w);
  for (const auto& [layer, experts] : layer_sizes(catalog)) {
    SlotGrid grid(static_cast<int>(hosts.size()), slots);
    std::vector<int> used(hosts.size(), 0);
    for (int32_t expert = 0; expert < experts; ++expert) {
      auto it = table.assignments.find(ExpertKey{layer, expert});
      if (it == table.assignments.end()) continue;
      for (const auto& replica : it->second) {
        auto r = row.find(replica.worker_id);
        if (r == row.end()) continue;
        int& next = used[r->second];
        if (next >= slots) {
          throw PlacementError("worker " + std::to_string(replica.worker_id) + " holds more than " +
                               std::to_string(slots) + " experts of layer " + std::to_string(layer));
        }
        grid.at(r->second, next++) = expert;
      }
    }
    out.layers.push_back(layer);
    out.experts.push_back(experts);
    out.grids.push_back(std::move(grid));
  }
  return out;
}

PlacementTable grids_to_placement(const BalancePlan& plan, const LayerGrids& grids, const PlacementTable& current,
                                  const std::vector<PlacedWorker>& workers) {
  if (plan.layers.size() != grids.layers.size()) {
    throw PlacementError("balance plan has " + std::to_string(plan.layers.size()) + " layers, the grids " +
                         std::to_string(grids.layers.size()));
  }
  PlacementTable next;
  next.epoch = current.epoch + 1;
  for (size_t l = 0; l < grids.layers.size(); ++l) {
    const LayerPlan& layer = plan.layers[l];
    if (layer.grid.workers != static_cast<int>(grids.hosts.size()) || layer.shares.size() != layer.grid.experts.size()) {
      throw PlacementError("balance plan of layer " + std::to_string(grids.layers[l]) + " has " +
                           std::to_string(layer.grid.workers) + " workers, expected " + std::to_string(grids.hosts.size()));
    }
    for (int w = 0; w < layer.grid.workers; ++w) {
      for (int s = 0; s < layer.grid.slots; ++s) {
        const int32_t expert = layer.grid.at(w, s);
        if (expert == kEmptySlot) continue;
        const float share = static_cast<float>(layer.shares[static_cast<size_t>(w) * layer.grid.slots + s]);
        next.assignments[ExpertKey{grids.layers[l], expert}].push_back({grids.hosts[w], share});
      }
    }
    for (int32_t expert = 0; expert < grids.experts[l]; ++expert) {
      if (!next.assignments.count(ExpertKey{grids.layers[l], expert})) {
        throw PlacementError("balance plan leaves expert " + std::to_string(expert) + " of layer " +
                             std::to_string(grids.layers[l]) + " without a replica");
      }
    }
  }
  for (auto& [key, replicas] : next.assignments) {
    float total = 0.f;
    for (const auto& replica : replicas) total += replica.share;
    if (total <= 0.f) {
      next.set_equal_shares(key);
    } else {
      for (auto& replica : replicas) replica.share /= total;
    }
  }
  for (PlacedWorker worker : workers) {
    if (worker.state != WorkerState::Draining) {
      worker.state = next.experts_on(worker.id).empty() ? WorkerState::Joining : WorkerState::Active;
    }
    next.workers.push_back(std::move(worker));
  }
  next.normalise();
  return next;
}

}  // namespace moe
