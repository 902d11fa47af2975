// reassign_lost: drop the dead workers' replicas, then re-place exactly those, biggest first.
#include "runtime/placement/reassign_lost.h"

#include <algorithm>
#include <set>
#include <string>

#include "runtime/placement/capacity_tracker.h"
#include "runtime/placement/initial_placement.h"
#include "runtime/placement/placement_check.h"
#include "runtime/placement/placement_error.h"

namespace moe {

PlacementTable reassign_lost(const PlacementTable& table, const std::vector<uint32_t>& dead,
                             const std::vector<WorkerCapacity>& survivors, const ExpertCatalog& catalog) {
  const std::set<uint32_t> dead_ids(dead.begin(), dead.end());
  for (const auto& survivor : survivors) {
    if (dead_ids.count(survivor.id)) {
      throw PlacementError("worker " + std::to_string(survivor.id) + " is listed both as dead and as a survivor");
    }
  }
  PlacementTable next = table;
  next.epoch = table.epoch + 1;
  std::erase_if(next.workers, [&](const PlacedWorker& w) { return dead_ids.count(w.id) > 0; });

  // One entry per lost replica (an expert twice when two of its holders died).
  std::vector<CatalogExpert> lost;
  for (auto& [key, replicas] : next.assignments) {
    const size_t before = replicas.size();
    std::erase_if(replicas, [&](const Replica& r) { return dead_ids.count(r.worker_id) > 0; });
    for (size_t i = replicas.size(); i < before; ++i) lost.push_back({key, catalog.bytes_of(key)});
  }

  CapacityTracker tracker(survivors);
  tracker.add_existing(next, catalog);
  std::string dead_text;
  for (uint32_t id : dead_ids) dead_text += (dead_text.empty() ? "" : ", ") + std::to_string(id);
  for (const auto& expert : placement_order(std::move(lost))) {
    auto& replicas = next.assignments[expert.key];
    std::set<uint32_t> holders;
    for (const auto& replica : replicas) holders.insert(replica.worker_id);
    auto worker = tracker.pick(expert.bytes, holders);
    if (worker) {
      tracker.take(*worker, expert.bytes);
      replicas.push_back({*worker, 1.f});
    } else if (replicas.empty()) {
      throw PlacementError("cannot reassign expert " + expert_name(expert.key) + " (" + std::to_string(expert.bytes) +
                           " bytes) lost with worker(s) " + dead_text + ": no survivor can take it: " + tracker.describe());
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
