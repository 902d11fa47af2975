// reassign_lost: only the dead workers' replicas move, balanced onto survivors, replicas stay distinct,
// and an expert nobody can take is named.
#include <gtest/gtest.h>

#include <set>

#include "runtime/model/synthetic_model.h"
#include "runtime/placement/initial_placement.h"
#include "runtime/placement/placement_capacity.h"
#include "runtime/placement/placement_check.h"
#include "runtime/placement/placement_error.h"
#include "runtime/placement/reassign_lost.h"
#include "tests/unit/placement/placement_test_util.h"

namespace moe {
namespace {

struct Fixture {
  ModelSpec spec = synthetic_model_spec(synthetic_preset("tiny"));
  ExpertCatalog catalog = expert_catalog(spec, 4);
};

std::vector<WorkerCapacity> without(std::vector<WorkerCapacity> workers, uint32_t id) {
  std::erase_if(workers, [&](const WorkerCapacity& w) { return w.id == id; });
  return workers;
}

TEST(ReassignLost, MovesOnlyTheDeadWorkersExpertsAndBalances) {
  Fixture f;
  auto workers = test::workers(3);
  PlacementTable before = initial_placement(f.catalog, workers, 1);
  PlacementTable after = reassign_lost(before, {2}, without(workers, 2), f.catalog);
  EXPECT_EQ(after.epoch, before.epoch + 1);
  EXPECT_EQ(after.find_worker(2), nullptr);
  check_placement(after);
  for (const auto& [key, replicas] : before.assignments) {
    ASSERT_EQ(after.assignments.at(key).size(), 1u);
    if (replicas[0].worker_id != 2) {
      EXPECT_EQ(after.assignments.at(key)[0].worker_id, replicas[0].worker_id) << "a surviving replica moved";
    } else {
      EXPECT_NE(after.assignments.at(key)[0].worker_id, 2u);
    }
  }
  auto tally = test::tally(after, f.catalog);
  EXPECT_EQ(tally[1].experts + tally[3].experts, 16u);
  EXPECT_LE(std::max(tally[1].experts, tally[3].experts) - std::min(tally[1].experts, tally[3].experts), 1u);
}

TEST(ReassignLost, KeepsReplicasDistinctAndDropsOnlyWhenNoSurvivorCanTakeOne) {
  Fixture f;
  auto three = test::workers(3);
  PlacementTable before = initial_placement(f.catalog, three, 2);
  PlacementTable after = reassign_lost(before, {1}, without(three, 1), f.catalog);
  for (const auto& [key, replicas] : after.assignments) {
    ASSERT_EQ(replicas.size(), 2u);
    EXPECT_NE(replicas[0].worker_id, replicas[1].worker_id);
    EXPECT_FLOAT_EQ(replicas[0].share, 0.5f);
  }
  // Two workers, two replicas each, one dies: the survivor already holds every expert.
  auto two = test::workers(2);
  PlacementTable both = initial_placement(f.catalog, two, 2);
  PlacementTable alone = reassign_lost(both, {2}, without(two, 2), f.catalog);
  for (const auto& [key, replicas] : alone.assignments) {
    ASSERT_EQ(replicas.size(), 1u);
    EXPECT_EQ(replicas[0].worker_id, 1u);
    EXPECT_FLOAT_EQ(replicas[0].share, 1.f);
  }
}

TEST(ReassignLost, NewSurvivorTakesTheLostExpertsAndBecomesActive) {
  Fixture f;
  auto workers = test::workers(2);
  PlacementTable before = initial_placement(f.catalog, workers, 1);
  auto survivors = without(workers, 2);
  survivors.push_back({4, "127.0.0.1:7504", 0, 0});
  PlacementTable after = reassign_lost(before, {2}, survivors, f.catalog);
  EXPECT_EQ(after.experts_on(4), before.experts_on(2));  // the empty worker is the least loaded
  EXPECT_EQ(after.experts_on(1), before.experts_on(1));
  ASSERT_NE(after.find_worker(4), nullptr);
  EXPECT_EQ(after.find_worker(4)->state, WorkerState::Active);
}

TEST(ReassignLost, LeavesUnplacedWhatNoSurvivorCanTake) {
  Fixture f;
  auto workers = test::workers(2, 0, 8);
  PlacementTable before = initial_placement(f.catalog, workers, 1);  // both full, no replica to evict
  PlacementTable after = reassign_lost(before, {1}, without(workers, 1), f.catalog);
  check_placement(after);
  check_capacity(after, without(workers, 1), f.catalog);
  EXPECT_EQ(unplaced_experts(after, f.catalog), before.experts_on(1));
  EXPECT_EQ(after.experts_on(2), before.experts_on(2));
}

TEST(ReassignLost, Deterministic) {
  Fixture f;
  auto workers = test::workers(4);
  PlacementTable before = initial_placement(f.catalog, workers, 2);
  auto survivors = without(without(workers, 2), 3);
  EXPECT_EQ(reassign_lost(before, {2, 3}, survivors, f.catalog), reassign_lost(before, {3, 2}, survivors, f.catalog));
  EXPECT_THROW(reassign_lost(before, {2}, workers, f.catalog), PlacementError);  // 2 both dead and survivor
}

}  // namespace
}  // namespace moe
