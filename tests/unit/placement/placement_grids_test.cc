// Unit tests of runtime/placement/placement_grids.h: layer sizes of a catalog, the most experts per layer on
// a host, a placement table as per-layer slot grids and a balancer plan back as the next epoch's table
// (round trip, share normalisation, worker states, errors).
#include <gtest/gtest.h>

#include "runtime/placement/placement_error.h"
#include "runtime/placement/placement_grids.h"

namespace moe {
namespace {

ExpertCatalog catalog_of(const std::vector<ExpertKey>& keys) {
  ExpertCatalog out;
  for (const auto& key : keys) out.experts.push_back({key, 64});
  return out;
}

// Layers 0 and 1, experts 0..3 each.
ExpertCatalog two_layer_catalog() {
  std::vector<ExpertKey> keys;
  for (int32_t layer = 0; layer < 2; ++layer)
    for (int32_t expert = 0; expert < 4; ++expert) keys.push_back({layer, expert});
  return catalog_of(keys);
}

// Epoch 3. Layer 0: worker 1 holds 0, 1 (0.25), 3; worker 2 holds 1 (0.75), 2.
//          Layer 1: worker 1 holds 0; worker 2 holds 1, 2, 3.
PlacementTable sample_table() {
  PlacementTable table;
  table.epoch = 3;
  table.workers = {{1, "a:1", WorkerState::Active}, {2, "b:2", WorkerState::Active}};
  table.assignments[{0, 0}] = {{1, 1.f}};
  table.assignments[{0, 1}] = {{1, 0.25f}, {2, 0.75f}};
  table.assignments[{0, 2}] = {{2, 1.f}};
  table.assignments[{0, 3}] = {{1, 1.f}};
  table.assignments[{1, 0}] = {{1, 1.f}};
  table.assignments[{1, 1}] = {{2, 1.f}};
  table.assignments[{1, 2}] = {{2, 1.f}};
  table.assignments[{1, 3}] = {{2, 1.f}};
  return table;
}

SlotGrid grid_of(int workers, int slots, std::vector<int32_t> experts) {
  SlotGrid grid(workers, slots);
  EXPECT_EQ(experts.size(), grid.experts.size());
  grid.experts = std::move(experts);
  return grid;
}

// A plan that keeps every slot of `grids`, each slot with the share its replica has in `table`.
BalancePlan keep_everything(const LayerGrids& grids, const PlacementTable& table) {
  BalancePlan plan;
  for (size_t l = 0; l < grids.layers.size(); ++l) {
    LayerPlan layer;
    layer.grid = grids.grids[l];
    layer.shares.assign(layer.grid.experts.size(), 0.0);
    for (int w = 0; w < layer.grid.workers; ++w) {
      for (int s = 0; s < layer.grid.slots; ++s) {
        const int32_t expert = layer.grid.at(w, s);
        if (expert == kEmptySlot) continue;
        for (const auto& replica : table.assignments.at({grids.layers[l], expert}))
          if (replica.worker_id == grids.hosts[w]) layer.shares[static_cast<size_t>(w) * layer.grid.slots + s] = replica.share;
      }
    }
    plan.layers.push_back(std::move(layer));
  }
  return plan;
}

TEST(LayerSizes, CountsExpertsPerLayerInAscendingLayerOrder) {
  const auto sizes = layer_sizes(catalog_of({{3, 2}, {1, 0}, {3, 0}, {1, 4}, {1, 1}, {3, 1}, {1, 3}, {1, 2}}));
  EXPECT_EQ(sizes, (std::vector<std::pair<int32_t, int>>{{1, 5}, {3, 3}}));
  EXPECT_TRUE(layer_sizes(ExpertCatalog{}).empty());
}

TEST(LayerSizes, RejectsIdsThatAreNotZeroToNMinusOne) {
  EXPECT_THROW(layer_sizes(catalog_of({{0, 0}, {0, 2}})), PlacementError);          // gap
  EXPECT_THROW(layer_sizes(catalog_of({{0, 1}, {0, 2}})), PlacementError);          // no 0
  EXPECT_THROW(layer_sizes(catalog_of({{0, 0}, {0, 0}, {0, 1}})), PlacementError);  // duplicate
  EXPECT_THROW(layer_sizes(catalog_of({{0, 0}, {5, -1}})), PlacementError);         // negative id
}

TEST(MaxExpertsPerLayer, CountsOnlyTheGivenHosts) {
  PlacementTable table = sample_table();
  table.assignments[{0, 0}].push_back({9, 0.f});
  table.assignments[{0, 2}].push_back({9, 0.f});
  table.assignments[{1, 1}].push_back({9, 0.f});
  EXPECT_EQ(max_experts_per_layer(table, {1, 2}), 3);
  EXPECT_EQ(max_experts_per_layer(table, {1}), 3);  // layer 0: 0, 1, 3
  EXPECT_EQ(max_experts_per_layer(table, {9}), 2);  // layer 0: 0, 2; layer 1: 1
  EXPECT_EQ(max_experts_per_layer(table, {7}), 0);
  EXPECT_EQ(max_experts_per_layer(table, {}), 0);
  EXPECT_EQ(max_experts_per_layer(PlacementTable{}, {1, 2}), 0);
}

TEST(PlacementToGrids, LaysEachHostsExpertsOutInAscendingSlots) {
  const LayerGrids grids = placement_to_grids(sample_table(), two_layer_catalog(), {1, 2}, 3);
  EXPECT_EQ(grids.layers, (std::vector<int32_t>{0, 1}));
  EXPECT_EQ(grids.experts, (std::vector<int>{4, 4}));
  EXPECT_EQ(grids.hosts, (std::vector<uint32_t>{1, 2}));
  ASSERT_EQ(grids.grids.size(), 2u);
  EXPECT_EQ(grids.grids[0], grid_of(2, 3, {0, 1, 3, /**/ 1, 2, kEmptySlot}));
  EXPECT_EQ(grids.grids[1], grid_of(2, 3, {0, kEmptySlot, kEmptySlot, /**/ 1, 2, 3}));
}

TEST(PlacementToGrids, RowsFollowTheOrderOfHostsAndSkipOtherWorkers) {
  PlacementTable table = sample_table();
  table.assignments[{0, 2}].push_back({9, 0.5f});  // worker 9 is not a host: left out
  const LayerGrids grids = placement_to_grids(table, two_layer_catalog(), {2, 1}, 4);
  EXPECT_EQ(grids.hosts, (std::vector<uint32_t>{2, 1}));
  EXPECT_EQ(grids.grids[0], grid_of(2, 4, {1, 2, kEmptySlot, kEmptySlot, /**/ 0, 1, 3, kEmptySlot}));
  EXPECT_EQ(grids.grids[1], grid_of(2, 4, {1, 2, 3, kEmptySlot, /**/ 0, kEmptySlot, kEmptySlot, kEmptySlot}));
}

TEST(PlacementToGrids, ExpertsOnlyOnOtherWorkersLeaveNoSlot) {
  // Host 2 only: experts 0 and 3 of layer 0 (only on worker 1) are absent from the grid.
  const LayerGrids grids = placement_to_grids(sample_table(), two_layer_catalog(), {2}, 3);
  EXPECT_EQ(grids.grids[0], grid_of(1, 3, {1, 2, kEmptySlot}));
  EXPECT_EQ(grids.grids[1], grid_of(1, 3, {1, 2, 3}));
  // An empty table gives empty grids of the catalog's layers.
  const LayerGrids empty = placement_to_grids(PlacementTable{}, two_layer_catalog(), {4, 5}, 2);
  EXPECT_EQ(empty.layers, (std::vector<int32_t>{0, 1}));
  EXPECT_EQ(empty.grids[0], SlotGrid(2, 2));
  EXPECT_EQ(empty.grids[1], SlotGrid(2, 2));
}

TEST(PlacementToGrids, RejectsTooFewSlotsNoHostsAndSlotsBelowOne) {
  const PlacementTable table = sample_table();
  const ExpertCatalog catalog = two_layer_catalog();
  EXPECT_THROW(placement_to_grids(table, catalog, {1, 2}, 2), PlacementError);  // worker 1: 3 of layer 0
  EXPECT_NO_THROW(placement_to_grids(table, catalog, {2}, 3));
  EXPECT_THROW(placement_to_grids(table, catalog, {}, 3), PlacementError);
  EXPECT_THROW(placement_to_grids(table, catalog, {1, 2}, 0), PlacementError);
  EXPECT_THROW(placement_to_grids(table, catalog, {1, 2}, -1), PlacementError);
  try {
    placement_to_grids(table, catalog, {1, 2}, 2);
  } catch (const PlacementError& e) {
    EXPECT_NE(std::string(e.what()).find("worker 1"), std::string::npos) << e.what();
  }
}

TEST(GridsToPlacement, PlanKeepingEverySlotReproducesTheAssignments) {
  const PlacementTable current = sample_table();
  const LayerGrids grids = placement_to_grids(current, two_layer_catalog(), {1, 2}, 3);
  const PlacementTable next = grids_to_placement(keep_everything(grids, current), grids, current, current.workers);
  EXPECT_EQ(next.epoch, 4u);
  EXPECT_EQ(next.assignments, current.assignments);
  EXPECT_EQ(next.workers, current.workers);
}

TEST(GridsToPlacement, RoundTripWithReversedHostOrderAlsoReproducesTheAssignments) {
  const PlacementTable current = sample_table();
  const LayerGrids grids = placement_to_grids(current, two_layer_catalog(), {2, 1}, 4);
  const PlacementTable next = grids_to_placement(keep_everything(grids, current), grids, current, current.workers);
  EXPECT_EQ(next.assignments, current.assignments) << "replicas must come back ascending by worker id";
}

TEST(GridsToPlacement, SharesOfAnExpertAreNormalisedToOne) {
  const PlacementTable current = sample_table();
  const LayerGrids grids = placement_to_grids(current, two_layer_catalog(), {1, 2}, 3);
  BalancePlan plan = keep_everything(grids, current);
  plan.layers[0].shares[1] = 3.0;  // worker 1's copy of expert 1 of layer 0
  plan.layers[0].shares[3] = 1.0;  // worker 2's copy
  plan.layers[1].shares[0] = 5.0;  // the only copy of (1, 0)
  const PlacementTable next = grids_to_placement(plan, grids, current, current.workers);
  EXPECT_EQ(next.assignments.at({0, 1}), (std::vector<Replica>{{1, 0.75f}, {2, 0.25f}}));
  EXPECT_EQ(next.assignments.at({1, 0}), (std::vector<Replica>{{1, 1.f}}));
  plan.layers[0].shares[1] = 0.0;
  plan.layers[0].shares[3] = 0.0;  // no share at all: equal shares
  const PlacementTable equal = grids_to_placement(plan, grids, current, current.workers);
  EXPECT_EQ(equal.assignments.at({0, 1}), (std::vector<Replica>{{1, 0.5f}, {2, 0.5f}}));
}

TEST(GridsToPlacement, WorkerStatesFollowWhatTheyHostExceptDraining) {
  const PlacementTable current = sample_table();
  const LayerGrids grids = placement_to_grids(current, two_layer_catalog(), {1, 2}, 3);
  // Given in descending id: 3 hosts nothing, 2 is draining but still hosts, 1 was joining and hosts.
  const std::vector<PlacedWorker> workers = {{3, "c:3", WorkerState::Active},
                                             {2, "b:2", WorkerState::Draining},
                                             {1, "a:1", WorkerState::Joining},
                                             {4, "d:4", WorkerState::Draining}};
  const PlacementTable next = grids_to_placement(keep_everything(grids, current), grids, current, workers);
  EXPECT_EQ(next.workers, (std::vector<PlacedWorker>{{1, "a:1", WorkerState::Active},
                                                     {2, "b:2", WorkerState::Draining},
                                                     {3, "c:3", WorkerState::Joining},
                                                     {4, "d:4", WorkerState::Draining}}));
}

TEST(GridsToPlacement, MovedSlotsShowUpInTheNextTable) {
  const PlacementTable current = sample_table();
  const LayerGrids grids = placement_to_grids(current, two_layer_catalog(), {1, 2}, 3);
  BalancePlan plan = keep_everything(grids, current);
  plan.layers[1].grid.at(0, 1) = 3;  // layer 1: a copy of expert 3 on worker 1 ...
  plan.layers[1].shares[1] = 1.0;    // ... taking as much as worker 2's copy
  const PlacementTable next = grids_to_placement(plan, grids, current, current.workers);
  EXPECT_EQ(next.assignments.at({1, 3}), (std::vector<Replica>{{1, 0.5f}, {2, 0.5f}}));
  EXPECT_EQ(current.gained_by(1, next), (std::vector<ExpertKey>{{1, 3}}));
  EXPECT_TRUE(current.gained_by(2, next).empty());
}

TEST(GridsToPlacement, RejectsAPlanThatLeavesAnExpertOutOrHasTheWrongShape) {
  const PlacementTable current = sample_table();
  const LayerGrids grids = placement_to_grids(current, two_layer_catalog(), {1, 2}, 3);
  const BalancePlan good = keep_everything(grids, current);

  BalancePlan missing = good;
  missing.layers[1].grid.at(0, 0) = kEmptySlot;  // (1, 0) had its only copy there
  EXPECT_THROW(grids_to_placement(missing, grids, current, current.workers), PlacementError);

  BalancePlan one_layer = good;
  one_layer.layers.pop_back();
  EXPECT_THROW(grids_to_placement(one_layer, grids, current, current.workers), PlacementError);

  BalancePlan wrong_workers = good;
  wrong_workers.layers[0].grid = SlotGrid(3, 2);
  wrong_workers.layers[0].shares.assign(6, 1.0);
  EXPECT_THROW(grids_to_placement(wrong_workers, grids, current, current.workers), PlacementError);

  BalancePlan wrong_shares = good;
  wrong_shares.layers[0].shares.pop_back();
  EXPECT_THROW(grids_to_placement(wrong_shares, grids, current, current.workers), PlacementError);
}

}  // namespace
}  // namespace moe
