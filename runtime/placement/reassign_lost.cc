// reassign_lost: drop the dead workers' replicas, re-home the orphans (evicting surplus replicas where the
// survivors are full), then re-place the lost further copies where there is room.
#include "runtime/placement/reassign_lost.h"

#include <algorithm>
#include <optional>
#include <set>
#include <string>
#include <tuple>

#include "runtime/placement/capacity_tracker.h"
#include "runtime/placement/initial_placement.h"
#include "runtime/placement/placement_error.h"

namespace moe {

namespace {

double load_of(const std::map<ExpertKey, double>& loads, ExpertKey key) {
  auto it = loads.find(key);
  return it == loads.end() ? 0.0 : it->second;
}

// Highest load first, then biggest, then key.
void order_by_load(std::vector<CatalogExpert>& experts, const std::map<ExpertKey, double>& loads) {
  experts = placement_order(std::move(experts));
  std::stable_sort(experts.begin(), experts.end(), [&](const CatalogExpert& a, const CatalogExpert& b) {
    return load_of(loads, a.key) > load_of(loads, b.key);
  });
}

struct Eviction {
  ExpertKey victim;
  uint32_t worker_id = 0;
};

// The surplus replica whose eviction lets `expert` onto a tracked survivor: among the copies of experts with
// two or more replicas on survivors that can then hold `expert`, the lowest load per copy (then the most
// copies, then the highest key, then the lowest worker).
std::optional<Eviction> find_eviction(const PlacementTable& next, const CatalogExpert& expert, const CapacityTracker& tracker,
                                      const ExpertCatalog& catalog, const std::map<ExpertKey, double>& loads) {
  std::optional<Eviction> best;
  std::tuple<double, int, ExpertKey, uint32_t> best_score{};
  for (const auto& [key, replicas] : next.assignments) {
    if (replicas.size() < 2) continue;
    const double per_copy = load_of(loads, key) / static_cast<double>(replicas.size());
    for (const auto& replica : replicas) {
      if (!tracker.fits(replica.worker_id, expert.bytes, catalog.bytes_of(key), true)) continue;
      // Negated so that smaller is better throughout.
      auto score = std::make_tuple(per_copy, -static_cast<int>(replicas.size()), ExpertKey{-key.layer, -key.expert},
                                   replica.worker_id);
      if (!best || score < best_score) {
        best = Eviction{key, replica.worker_id};
        best_score = score;
      }
    }
  }
  return best;
}

}  // namespace

PlacementTable reassign_lost(const PlacementTable& table, const std::vector<uint32_t>& dead,
                             const std::vector<WorkerCapacity>& survivors, const ExpertCatalog& catalog,
                             const std::map<ExpertKey, double>& loads) {
  const std::set<uint32_t> dead_ids(dead.begin(), dead.end());
  for (const auto& survivor : survivors) {
    if (dead_ids.count(survivor.id)) {
      throw PlacementError("worker " + std::to_string(survivor.id) + " is listed both as dead and as a survivor");
    }
  }
  PlacementTable next = table;
  next.epoch = table.epoch + 1;
  std::erase_if(next.workers, [&](const PlacedWorker& w) { return dead_ids.count(w.id) > 0; });

  // Orphans (no replica left, or never placed) and the lost further copies of experts that keep one.
  std::vector<CatalogExpert> orphans, lost_copies;
  for (const auto& expert : catalog.experts) {
    auto it = next.assignments.find(expert.key);
    if (it == next.assignments.end()) {
      orphans.push_back(expert);
      continue;
    }
    auto& replicas = it->second;
    const size_t before = replicas.size();
    std::erase_if(replicas, [&](const Replica& r) { return dead_ids.count(r.worker_id) > 0; });
    if (replicas.empty()) {
      orphans.push_back(expert);
      for (size_t i = 1; i < before; ++i) lost_copies.push_back(expert);
    } else {
      for (size_t i = replicas.size(); i < before; ++i) lost_copies.push_back(expert);
    }
  }
  std::erase_if(next.assignments, [](const auto& entry) { return entry.second.empty(); });
  order_by_load(orphans, loads);
  order_by_load(lost_copies, loads);

  CapacityTracker tracker(survivors);
  tracker.add_existing(next, catalog);
  for (const auto& expert : orphans) {
    auto worker = tracker.pick(expert.bytes, {});
    if (!worker) {
      auto eviction = find_eviction(next, expert, tracker, catalog, loads);
      if (!eviction) continue;  // stays unplaced: capacity is short
      auto& victims = next.assignments.at(eviction->victim);
      std::erase_if(victims, [&](const Replica& r) { return r.worker_id == eviction->worker_id; });
      next.set_equal_shares(eviction->victim);
      tracker.release(eviction->worker_id, catalog.bytes_of(eviction->victim));
      worker = eviction->worker_id;
    }
    tracker.take(*worker, expert.bytes);
    next.assignments[expert.key].push_back({*worker, 1.f});
    next.set_equal_shares(expert.key);
  }
  for (const auto& expert : lost_copies) {
    auto it = next.assignments.find(expert.key);
    if (it == next.assignments.end()) continue;  // an orphan that found no room
    std::set<uint32_t> holders;
    for (const auto& replica : it->second) holders.insert(replica.worker_id);
    if (auto worker = tracker.pick(expert.bytes, holders)) {
      tracker.take(*worker, expert.bytes);
      it->second.push_back({*worker, 1.f});
    }
    next.set_equal_shares(expert.key);
  }

  for (const auto& survivor : tracker.workers()) {
    if (!next.find_worker(survivor.id)) next.workers.push_back({survivor.id, survivor.address, WorkerState::Joining});
  }
  for (auto& worker : next.workers) {
    if (worker.state == WorkerState::Joining && !next.experts_on(worker.id).empty()) worker.state = WorkerState::Active;
  }
  next.normalise();
  return next;
}

}  // namespace moe
