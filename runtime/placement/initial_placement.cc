// initial_placement: capacity check with a named shortfall, then greedy least-loaded packing.
#include "runtime/placement/initial_placement.h"

#include <algorithm>
#include <limits>
#include <set>
#include <string>

#include "runtime/placement/capacity_tracker.h"
#include "runtime/placement/placement_check.h"
#include "runtime/placement/placement_error.h"

namespace moe {

namespace {

// Throws when the totals alone show the cluster is too small.
void check_totals(const ExpertCatalog& catalog, const std::vector<WorkerCapacity>& workers, size_t copies) {
  const uint64_t needed_slots = catalog.experts.size() * copies;
  uint64_t needed_bytes = 0;
  for (const auto& expert : catalog.experts) needed_bytes += expert.bytes * copies;
  uint64_t offered_slots = 0, offered_bytes = 0;
  bool unlimited_slots = false, unlimited_bytes = false;
  for (const auto& worker : workers) {
    unlimited_slots |= worker.slots == 0;
    unlimited_bytes |= worker.memory_bytes == 0;
    offered_slots += worker.slots;
    offered_bytes += worker.memory_bytes;
  }
  const std::string what = std::to_string(catalog.experts.size()) + " experts x " + std::to_string(copies) + " replicas";
  if (!unlimited_slots && offered_slots < needed_slots) {
    throw PlacementError("the cluster cannot hold the model: it needs " + std::to_string(needed_slots) +
                         " expert slots (" + what + "), the " + std::to_string(workers.size()) + " workers offer " +
                         std::to_string(offered_slots) + " (short by " + std::to_string(needed_slots - offered_slots) + ")");
  }
  if (!unlimited_bytes && offered_bytes < needed_bytes) {
    throw PlacementError("the cluster cannot hold the model: it needs " + std::to_string(needed_bytes) +
                         " bytes of expert weights (" + what + "), the " + std::to_string(workers.size()) +
                         " workers offer " + std::to_string(offered_bytes) + " (short by " +
                         std::to_string(needed_bytes - offered_bytes) + ")");
  }
}

}  // namespace

std::vector<CatalogExpert> placement_order(std::vector<CatalogExpert> experts) {
  std::stable_sort(experts.begin(), experts.end(), [](const CatalogExpert& a, const CatalogExpert& b) {
    if (a.bytes != b.bytes) return a.bytes > b.bytes;
    return a.key < b.key;
  });
  return experts;
}

PlacementTable initial_placement(const ExpertCatalog& catalog, const std::vector<WorkerCapacity>& workers, int replicas) {
  if (replicas < 1) throw PlacementError("replicas must be at least 1, got " + std::to_string(replicas));
  if (workers.empty()) {
    throw PlacementError("cannot place " + std::to_string(catalog.experts.size()) + " experts: no workers");
  }
  std::set<uint32_t> ids;
  for (const auto& worker : workers) {
    if (!ids.insert(worker.id).second) throw PlacementError("worker id " + std::to_string(worker.id) + " given twice");
  }
  const size_t copies = std::min(static_cast<size_t>(replicas), workers.size());
  check_totals(catalog, workers, copies);

  CapacityTracker tracker(workers);
  PlacementTable table;
  table.epoch = 1;
  for (const auto& expert : placement_order(catalog.experts)) {
    std::set<uint32_t> holders;
    for (size_t copy = 0; copy < copies; ++copy) {
      auto worker = tracker.pick(expert.bytes, holders);
      if (!worker) {
        throw PlacementError("the cluster cannot hold the model: no worker can take replica " + std::to_string(copy + 1) +
                             " of " + std::to_string(copies) + " of expert " + expert_name(expert.key) + " (" +
                             std::to_string(expert.bytes) + " bytes): " + tracker.describe());
      }
      tracker.take(*worker, expert.bytes);
      holders.insert(*worker);
      table.assignments[expert.key].push_back({*worker, 1.f});
    }
    table.set_equal_shares(expert.key);
  }
  for (const auto& worker : tracker.workers()) {
    const bool hosts = !table.experts_on(worker.id).empty();
    table.workers.push_back({worker.id, worker.address, hosts ? WorkerState::Active : WorkerState::Joining});
  }
  table.normalise();
  return table;
}

PlacementTable initial_placement(const ModelSpec& spec, size_t bytes_per_param,
                                 const std::vector<WorkerCapacity>& workers, int replicas) {
  return initial_placement(expert_catalog(spec, bytes_per_param), workers, replicas);
}

}  // namespace moe
