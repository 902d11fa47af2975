// Capacity-true placement: a lost worker on a full cluster is re-homed by evicting surplus replicas (the
// least loaded first), a cluster truly short of slots gets the best partial placement (the hottest experts
// served) and full service again when a worker joins; no planner exceeds a worker's slots or memory; the
// balancer's copy bounds (replica budget, --replicas).
#include <gtest/gtest.h>

#include <numeric>
#include <set>

#include "runtime/model/synthetic_model.h"
#include "runtime/placement/balance_bounds.h"
#include "runtime/placement/initial_placement.h"
#include "runtime/placement/placement_capacity.h"
#include "runtime/placement/placement_check.h"
#include "runtime/placement/placement_error.h"
#include "runtime/placement/reassign_lost.h"
#include "tests/unit/placement/placement_test_util.h"

namespace moe {
namespace {

struct Fixture {
  ModelSpec spec = synthetic_model_spec(synthetic_preset("tiny"));  // 2 layers x 8 experts
  ExpertCatalog catalog = expert_catalog(spec, 4);
};

std::vector<WorkerCapacity> without(std::vector<WorkerCapacity> workers, uint32_t id) {
  std::erase_if(workers, [&](const WorkerCapacity& w) { return w.id == id; });
  return workers;
}

// The cluster: 3 workers x 8 slots, 16 experts placed once, every spare slot a replica (8/8/8).
PlacementTable full_cluster(const Fixture& f, const std::vector<WorkerCapacity>& workers) {
  PlacementTable table = initial_placement(f.catalog, workers, 1);
  for (const auto& worker : workers) {
    for (const auto& expert : f.catalog.experts) {
      if (table.experts_on(worker.id).size() >= worker.slots) break;
      if (table.hosts(worker.id, expert.key)) continue;
      table.assignments[expert.key].push_back({worker.id, 1.f});
      table.set_equal_shares(expert.key);
    }
  }
  table.normalise();
  return table;
}

// Loads: expert e of layer l takes 100 - 10 * e - l tokens (expert 0 the hottest).
std::map<ExpertKey, double> falling_loads(const Fixture& f) {
  std::map<ExpertKey, double> loads;
  for (const auto& expert : f.catalog.experts) loads[expert.key] = 100.0 - 10.0 * expert.key.expert - expert.key.layer;
  return loads;
}

TEST(CapacityPlacement, LostWorkerOnAFullClusterIsReHomedByEvictingSurplusReplicas) {
  Fixture f;
  const auto workers = test::workers(3, 0, 8);
  const PlacementTable before = full_cluster(f, workers);
  for (const auto& worker : workers) ASSERT_EQ(before.experts_on(worker.id).size(), 8u);
  const auto loads = falling_loads(f);
  for (uint32_t lost : {1u, 2u, 3u}) {
    PlacementTable after = reassign_lost(before, {lost}, without(workers, lost), f.catalog, loads);
    check_placement(after);
    check_capacity(after, without(workers, lost), f.catalog);
    EXPECT_EQ(unplaced_experts(after, f.catalog), std::vector<ExpertKey>{}) << "worker " << lost << " lost";
    EXPECT_EQ(after.find_worker(lost), nullptr);
    // Every surviving sole copy stayed where it was.
    for (const auto& [key, replicas] : before.assignments) {
      if (replicas.size() == 1 && replicas[0].worker_id != lost) {
        EXPECT_EQ(after.assignments.at(key), replicas) << expert_name(key);
      }
    }
  }
}

TEST(CapacityPlacement, EvictionTakesTheLeastLoadedReplicasFirst) {
  Fixture f;
  const auto workers = test::workers(3, 0, 8);
  const PlacementTable before = full_cluster(f, workers);
  const auto loads = falling_loads(f);
  PlacementTable after = reassign_lost(before, {1}, without(workers, 1), f.catalog, loads);
  // Evicted: replicated experts of `before` that lost a copy on a survivor. Kept: those still replicated.
  double hottest_evicted = -1.0, coldest_kept = 1e300;
  for (const auto& [key, replicas] : before.assignments) {
    size_t on_survivors = 0;
    for (const auto& r : replicas) on_survivors += r.worker_id != 1;
    const size_t now = after.assignments.at(key).size();
    if (on_survivors >= 2 && now < on_survivors) hottest_evicted = std::max(hottest_evicted, loads.at(key) / on_survivors);
    if (now >= 2) coldest_kept = std::min(coldest_kept, loads.at(key) / now);
  }
  ASSERT_GE(hottest_evicted, 0.0) << "nothing was evicted";
  EXPECT_LE(hottest_evicted, coldest_kept);
}

TEST(CapacityPlacement, TrulyShortServesTheHottestExpertsAndRecoversWhenAWorkerJoins) {
  Fixture f;
  const auto workers = test::workers(3, 0, 6);  // 18 slots for 16 experts: 6 / 5 / 5
  const PlacementTable before = initial_placement(f.catalog, workers, 1);
  ASSERT_EQ(before.experts_on(1).size(), 6u);
  const auto loads = falling_loads(f);
  const auto survivors = without(workers, 1);
  PlacementTable partial = reassign_lost(before, {1}, survivors, f.catalog, loads);  // 12 slots left
  check_placement(partial);
  check_capacity(partial, survivors, f.catalog);
  const auto missing = unplaced_experts(partial, f.catalog);
  ASSERT_EQ(missing.size(), 4u);
  // The orphans that found a place are hotter than every one that did not.
  double coldest_served = 1e300, hottest_missing = -1.0;
  for (const ExpertKey& key : before.experts_on(1)) {
    if (partial.assignments.count(key)) coldest_served = std::min(coldest_served, loads.at(key));
  }
  for (const ExpertKey& key : missing) hottest_missing = std::max(hottest_missing, loads.at(key));
  EXPECT_LT(hottest_missing, coldest_served);
  EXPECT_EQ(experts_text(missing, 2).rfind("4 experts: (layer ", 0), 0u) << experts_text(missing, 2);
  EXPECT_NE(experts_text(missing, 2).find("... (2 more)"), std::string::npos) << experts_text(missing, 2);

  // A worker joins: the next plan (no dead worker) places the rest on it.
  auto grown = survivors;
  grown.push_back({4, "127.0.0.1:7504", 0, 8});
  PlacementTable full = reassign_lost(partial, {}, grown, f.catalog, loads);
  EXPECT_EQ(full.epoch, partial.epoch + 1);
  EXPECT_EQ(unplaced_experts(full, f.catalog), std::vector<ExpertKey>{});
  EXPECT_EQ(full.experts_on(4), missing);
  EXPECT_EQ(full.find_worker(4)->state, WorkerState::Active);
  check_capacity(full, grown, f.catalog);
}

TEST(CapacityPlacement, MemoryLimitsEvictionAndPlacementToo) {
  Fixture f;
  const uint64_t bytes = f.catalog.experts[0].bytes;
  auto workers = test::workers(3, 8 * bytes, 0);  // memory for 8 experts each, slots unlimited
  const PlacementTable before = full_cluster(f, test::workers(3, 0, 8));
  PlacementTable after = reassign_lost(before, {2}, without(workers, 2), f.catalog, falling_loads(f));
  check_capacity(after, without(workers, 2), f.catalog);
  EXPECT_EQ(unplaced_experts(after, f.catalog), std::vector<ExpertKey>{});
}

TEST(CapacityPlacement, CheckCapacityNamesTheWorkerAndBothNumbers) {
  Fixture f;
  const PlacementTable table = full_cluster(f, test::workers(3, 0, 8));
  EXPECT_NO_THROW(check_capacity(table, test::workers(3, 0, 8), f.catalog));
  try {
    check_capacity(table, test::workers(3, 0, 7), f.catalog);
    FAIL() << "8 copies fit 7 slots";
  } catch (const PlacementError& e) {
    EXPECT_NE(std::string(e.what()).find("worker 1 (127.0.0.1:7501) 8 expert copies, more than its 7 slots"),
              std::string::npos)
        << e.what();
  }
  const uint64_t bytes = f.catalog.experts[0].bytes;
  EXPECT_THROW(check_capacity(table, test::workers(3, 8 * bytes - 1, 0), f.catalog), PlacementError);
}

TEST(CopyBounds, TrimsAFullGridToTheBudgetKeepingTheHotReplicas) {
  // 3 workers x 8 slots, every expert of 8 on every worker (the scale-out bug's grid).
  SlotGrid grid(3, 8);
  for (int w = 0; w < 3; ++w)
    for (int s = 0; s < 8; ++s) grid.at(w, s) = s;
  const std::vector<double> loads = {80, 10, 10, 10, 10, 10, 10, 10};
  fit_copy_bounds(grid, loads, {1, 12});  // budget 1.5 x 8
  const std::vector<int> counts = copy_counts(grid, 8);
  EXPECT_EQ(std::accumulate(counts.begin(), counts.end(), 0), 12);
  EXPECT_EQ(counts[0], 3) << "the hot expert keeps a copy on every worker";
  for (int e = 0; e < 8; ++e) EXPECT_GE(counts[e], 1);
}

TEST(CopyBounds, TopsUpExpertsBelowTheMinimumAndNeverTrimsBelowIt) {
  SlotGrid grid(3, 4);
  for (int e = 0; e < 8; ++e) grid.at(e % 3, e / 3) = e;  // one copy each, 4 slots free
  const std::vector<double> loads = {1, 1, 1, 1, 1, 1, 1, 100};
  fit_copy_bounds(grid, loads, {2, 12});
  std::vector<int> counts = copy_counts(grid, 8);
  // 12 slots, minimum 2 copies for 8 experts is 16: the hottest get their second copies first.
  EXPECT_EQ(std::accumulate(counts.begin(), counts.end(), 0), 12);
  EXPECT_EQ(counts[7], 2);
  SlotGrid doubled(4, 4);
  for (int e = 0; e < 8; ++e) doubled.at(e % 4, e / 4) = e, doubled.at((e + 1) % 4, 2 + e / 4) = e;
  fit_copy_bounds(doubled, loads, {2, 8});  // a budget below the minimum: the minimum wins
  counts = copy_counts(doubled, 8);
  for (int e = 0; e < 8; ++e) EXPECT_EQ(counts[e], 2);
}

}  // namespace
}  // namespace moe
