// Unit tests of coordinator/rebalance_plan.h: plan_rebalance on a small hand-built catalog (2 layers x 4
// experts): coverage, epoch, lower imbalance under skew, scale-out to an empty host, drain, determinism,
// the slots-per-layer formula of the header, and its errors.
#include <gtest/gtest.h>

#include <set>

#include "coordinator/load_estimates.h"
#include "coordinator/rebalance_plan.h"
#include "runtime/placement/placement_error.h"

namespace moe {
namespace {

constexpr int32_t kLayers = 2;
constexpr int32_t kExperts = 4;

ExpertCatalog catalog() {
  ExpertCatalog out;
  for (int32_t layer = 0; layer < kLayers; ++layer)
    for (int32_t expert = 0; expert < kExperts; ++expert) out.experts.push_back({{layer, expert}, 1000});
  return out;
}

std::vector<WorkerCapacity> hosts(std::vector<uint32_t> ids, uint32_t slots = 0) {
  std::vector<WorkerCapacity> out;
  for (uint32_t id : ids) out.push_back({id, "10.0.0." + std::to_string(id) + ":7000", 0, slots});
  return out;
}

// Epoch 5, workers 1 and 2: experts 0,1 of every layer on worker 1, experts 2,3 on worker 2.
PlacementTable two_worker_table() {
  PlacementTable table;
  table.epoch = 5;
  table.workers = {{1, "10.0.0.1:7000", WorkerState::Active}, {2, "10.0.0.2:7000", WorkerState::Active}};
  for (int32_t layer = 0; layer < kLayers; ++layer)
    for (int32_t expert = 0; expert < kExperts; ++expert)
      table.assignments[{layer, expert}] = {{expert < 2 ? 1u : 2u, 1.f}};
  return table;
}

std::map<ExpertKey, double> uniform_loads(double each) {
  std::map<ExpertKey, double> out;
  for (const auto& expert : catalog().experts) out[expert.key] = each;
  return out;
}

// Every catalog expert has at least one replica, only on `allowed` workers, shares summing to 1; no worker
// holds more than `slots` experts of one layer; nothing outside the catalog.
void expect_valid(const PlacementTable& table, const std::set<uint32_t>& allowed, int slots) {
  const ExpertCatalog cat = catalog();
  EXPECT_EQ(table.assignments.size(), cat.experts.size());
  std::map<std::pair<int32_t, uint32_t>, int> per_layer;
  for (const auto& expert : cat.experts) {
    auto it = table.assignments.find(expert.key);
    ASSERT_NE(it, table.assignments.end()) << "expert " << expert.key.layer << "/" << expert.key.expert << " unplaced";
    ASSERT_FALSE(it->second.empty());
    float total = 0.f;
    std::set<uint32_t> seen;
    for (const auto& replica : it->second) {
      EXPECT_TRUE(allowed.count(replica.worker_id)) << "replica on worker " << replica.worker_id;
      EXPECT_TRUE(seen.insert(replica.worker_id).second) << "two replicas on worker " << replica.worker_id;
      EXPECT_GE(replica.share, 0.f);
      total += replica.share;
      ++per_layer[{expert.key.layer, replica.worker_id}];
    }
    EXPECT_NEAR(total, 1.f, 1e-5f);
  }
  for (const auto& [where, count] : per_layer) EXPECT_LE(count, slots) << "worker " << where.second;
}

TEST(RebalancePlan, PlacesEveryExpertInTheNextEpoch) {
  const PlacementTable current = two_worker_table();
  RebalanceResult result = plan_rebalance(current, catalog(), hosts({1, 2}), uniform_loads(10.0), 1.5);
  EXPECT_EQ(result.next.epoch, 6u);
  EXPECT_EQ(result.slots_per_layer, 3);
  expect_valid(result.next, {1, 2}, result.slots_per_layer);
  ASSERT_EQ(result.next.workers.size(), 2u);
  EXPECT_EQ(result.next.workers[0], (PlacedWorker{1, "10.0.0.1:7000", WorkerState::Active}));
  EXPECT_EQ(result.next.workers[1], (PlacedWorker{2, "10.0.0.2:7000", WorkerState::Active}));
}

TEST(RebalancePlan, BalancedPlacementIsKeptWithoutMoves) {
  const PlacementTable current = two_worker_table();
  RebalanceResult result = plan_rebalance(current, catalog(), hosts({1, 2}), uniform_loads(10.0), 1.0);
  EXPECT_EQ(result.slots_per_layer, 2);
  EXPECT_EQ(result.next.assignments, current.assignments);
  EXPECT_EQ(result.experts_moved, 0u);
  EXPECT_DOUBLE_EQ(result.imbalance_before, 1.0);
  EXPECT_NEAR(result.imbalance_after, 1.0, 1e-9);
}

TEST(RebalancePlan, SkewedLoadLowersTheImbalance) {
  const PlacementTable current = two_worker_table();
  auto loads = uniform_loads(10.0);
  loads[{0, 0}] = 1000.0;  // layer 0: worker 1 has 1010, worker 2 has 20
  RebalanceResult result = plan_rebalance(current, catalog(), hosts({1, 2}), loads, 1.5);
  EXPECT_NEAR(result.imbalance_before, 1010.0 * 2 / 1030.0, 1e-9);
  EXPECT_NEAR(result.imbalance_before, max_expected_imbalance(current, loads, {0, 1}), 1e-12);
  EXPECT_NEAR(result.imbalance_after, max_expected_imbalance(result.next, loads, {0, 1}), 1e-12);
  EXPECT_LT(result.imbalance_after, result.imbalance_before);
  // 3 slots per worker: expert 0 replicated on both workers can take the split 515 / 515.
  EXPECT_LT(result.imbalance_after, 1.05);
  EXPECT_GE(result.next.assignments.at({0, 0}).size(), 2u) << "the hot expert was not replicated";
  expect_valid(result.next, {1, 2}, result.slots_per_layer);
  EXPECT_GE(result.experts_moved, 1u);
}

TEST(RebalancePlan, ExpertsMovedCountsCopiesAHostLoadsAnew) {
  const PlacementTable current = two_worker_table();
  auto loads = uniform_loads(10.0);
  loads[{1, 3}] = 500.0;
  RebalanceResult result = plan_rebalance(current, catalog(), hosts({1, 2}), loads, 1.5);
  size_t gained = 0;
  for (const auto& [key, replicas] : result.next.assignments)
    for (const auto& replica : replicas)
      if (!current.hosts(replica.worker_id, key)) ++gained;
  EXPECT_EQ(result.experts_moved, gained);
  EXPECT_GE(gained, 1u);
}

TEST(RebalancePlan, EmptyNewHostReceivesExperts) {
  const PlacementTable current = two_worker_table();
  RebalanceResult result = plan_rebalance(current, catalog(), hosts({1, 2, 3}), uniform_loads(10.0), 1.5);
  EXPECT_EQ(result.slots_per_layer, 2);  // ceil(4 * 1.5 / 3)
  expect_valid(result.next, {1, 2, 3}, result.slots_per_layer);
  ASSERT_EQ(result.next.workers.size(), 3u);
  EXPECT_EQ(result.next.workers[2], (PlacedWorker{3, "10.0.0.3:7000", WorkerState::Active}));
  for (int32_t layer = 0; layer < kLayers; ++layer) {
    EXPECT_EQ(expected_worker_loads(result.next, uniform_loads(10.0), layer).count(3), 1u)
        << "new worker 3 got nothing of layer " << layer;
  }
  EXPECT_GE(result.experts_moved, 2u);
  EXPECT_DOUBLE_EQ(result.imbalance_before, 1.0);  // the old placement is even over its 2 hosts
  EXPECT_LT(result.imbalance_after, 1.05);         // 40 tokens over 3 workers x 2 slots
}

TEST(RebalancePlan, EmptyNewHostReceivesExpertsWithoutAnyTraffic) {
  // No estimates at all: every expert still counts (the 1% floor), so the new host is not left empty.
  const PlacementTable current = two_worker_table();
  RebalanceResult result = plan_rebalance(current, catalog(), hosts({1, 2, 3}), {}, 1.5);
  expect_valid(result.next, {1, 2, 3}, result.slots_per_layer);
  EXPECT_FALSE(result.next.experts_on(3).empty());
  EXPECT_EQ(result.next.find_worker(3)->state, WorkerState::Active);
  EXPECT_DOUBLE_EQ(result.imbalance_before, 1.0);
  EXPECT_DOUBLE_EQ(result.imbalance_after, 1.0);
}

TEST(RebalancePlan, WorkerLeftOutOfHostsEndsWithNothing) {
  // Epoch 9 over workers 1, 2, 3; worker 3 (draining) holds experts 3 of both layers.
  PlacementTable current;
  current.epoch = 9;
  current.workers = {{1, "10.0.0.1:7000", WorkerState::Active},
                     {2, "10.0.0.2:7000", WorkerState::Active},
                     {3, "10.0.0.3:7000", WorkerState::Draining}};
  for (int32_t layer = 0; layer < kLayers; ++layer) {
    current.assignments[{layer, 0}] = {{1, 1.f}};
    current.assignments[{layer, 1}] = {{1, 1.f}};
    current.assignments[{layer, 2}] = {{2, 1.f}};
    current.assignments[{layer, 3}] = {{3, 1.f}};
  }
  RebalanceResult result = plan_rebalance(current, catalog(), hosts({1, 2}), uniform_loads(10.0), 1.0);
  EXPECT_EQ(result.next.epoch, 10u);
  EXPECT_TRUE(result.next.experts_on(3).empty());
  EXPECT_EQ(result.next.find_worker(3), nullptr) << "a worker that is not a host stays in the table";
  expect_valid(result.next, {1, 2}, result.slots_per_layer);
  EXPECT_EQ(result.slots_per_layer, 2);
  EXPECT_GE(result.experts_moved, 2u);  // expert 3 of each layer loaded anew on 1 or 2
  // Before: workers 1, 2, 3 carry 20, 10, 10 of each layer.
  EXPECT_NEAR(result.imbalance_before, 20.0 * 3 / 40.0, 1e-9);
  EXPECT_NEAR(result.imbalance_after, 1.0, 1e-9);
}

TEST(RebalancePlan, SameInputsGiveTheSameResult) {
  const PlacementTable current = two_worker_table();
  auto loads = uniform_loads(10.0);
  loads[{0, 2}] = 300.0;
  loads[{1, 0}] = 120.0;
  loads[{1, 1}] = 0.0;
  const RebalanceResult a = plan_rebalance(current, catalog(), hosts({1, 2, 3}), loads, 1.5);
  const RebalanceResult b = plan_rebalance(current, catalog(), hosts({1, 2, 3}), loads, 1.5);
  EXPECT_EQ(a.next, b.next);
  EXPECT_EQ(a.experts_moved, b.experts_moved);
  EXPECT_EQ(a.imbalance_before, b.imbalance_before);
  EXPECT_EQ(a.imbalance_after, b.imbalance_after);
  EXPECT_EQ(a.slots_per_layer, b.slots_per_layer);
}

TEST(RebalancePlan, SlotsPerLayerFollowTheReplicaBudget) {
  const PlacementTable current = two_worker_table();
  const auto loads = uniform_loads(10.0);
  auto slots = [&](std::vector<uint32_t> ids, double budget, uint32_t offered = 0) {
    return plan_rebalance(current, catalog(), hosts(ids, offered), loads, budget).slots_per_layer;
  };
  EXPECT_EQ(slots({1, 2}, 1.0), 2);   // ceil(4 * 1 / 2)
  EXPECT_EQ(slots({1, 2}, 1.5), 3);   // ceil(4 * 1.5 / 2)
  EXPECT_EQ(slots({1, 2}, 1.2), 3);   // ceil(2.4)
  EXPECT_EQ(slots({1, 2, 3}, 1.5), 2);  // ceil(4 * 1.5 / 3) = 2 exactly, not 3
  EXPECT_EQ(slots({1, 2, 3}, 2.0), 3);  // ceil(8 / 3)
  EXPECT_EQ(slots({1, 2}, 0.5), 2);   // never below ceil(N / W)
  EXPECT_EQ(slots({3, 4, 5, 6, 7}, 1.0), 1);  // ceil(4 / 5); none of these hosts holds anything yet
  EXPECT_EQ(slots({1, 2}, 10.0), kExperts);   // a worker cannot hold more than every expert of a layer
}

TEST(RebalancePlan, CopiesAHostHoldsBeyondTheSlotsPerLayerAreDropped) {
  PlacementTable current = two_worker_table();
  current.assignments[{0, 2}] = {{1, 0.5f}, {2, 0.5f}};  // layer 0: worker 1 holds 0, 1, 2
  RebalanceResult result = plan_rebalance(current, catalog(), hosts({1, 2}), uniform_loads(10.0), 1.0);
  EXPECT_EQ(result.slots_per_layer, 2);  // what the budget gives, not what worker 1 holds today
  expect_valid(result.next, {1, 2}, 2);
  EXPECT_EQ(result.next.assignments.at({0, 2}), (std::vector<Replica>{{2, 1.f}}));  // the surplus replica went
}

TEST(RebalancePlan, SlotsPerLayerCappedByTheSmallestFiniteOffer) {
  const PlacementTable current = two_worker_table();
  const auto loads = uniform_loads(10.0);
  // 2 layers: an offer of 4 slots is 2 per layer, below the budget's 3.
  EXPECT_EQ(plan_rebalance(current, catalog(), hosts({1, 2}, 4), loads, 1.5).slots_per_layer, 2);
  // An offer of 2 (1 per layer) is below the minimum ceil(4 / 2) = 2: no plan fits, and the error says why.
  try {
    plan_rebalance(current, catalog(), hosts({1, 2}, 2), loads, 1.5);
    FAIL() << "planned 8 experts into 2 workers x 2 slots";
  } catch (const PlacementError& e) {
    EXPECT_NE(std::string(e.what()).find("worker 1 (10.0.0.1:7000) holds 1 per layer (2 slots over 2 layers"), std::string::npos)
        << e.what();
  }
  // The smallest finite offer counts; 0 means no limit.
  std::vector<WorkerCapacity> mixed = hosts({1, 2, 3});
  mixed[0].slots = 0;
  mixed[1].slots = 100;
  mixed[2].slots = 6;  // 3 per layer
  EXPECT_EQ(plan_rebalance(current, catalog(), mixed, loads, 10.0).slots_per_layer, 3);
  mixed[2].slots = 0;  // smallest finite offer is now 100 (50 per layer): the budget's cap at N wins
  EXPECT_EQ(plan_rebalance(current, catalog(), mixed, loads, 10.0).slots_per_layer, kExperts);
}

TEST(RebalancePlan, NoHostsIsAPlacementError) {
  EXPECT_THROW(plan_rebalance(two_worker_table(), catalog(), {}, uniform_loads(10.0), 1.0), PlacementError);
}

TEST(RebalancePlan, CatalogWithAGapInExpertIdsIsAPlacementError) {
  ExpertCatalog broken = catalog();
  broken.experts.erase(broken.experts.begin() + 1);  // layer 0: experts 0, 2, 3
  EXPECT_THROW(plan_rebalance(two_worker_table(), broken, hosts({1, 2}), uniform_loads(10.0), 1.0), PlacementError);
}

// Copies per layer and per worker (over all layers) of a table.
struct Copies {
  std::map<int32_t, int> per_layer;
  std::map<uint32_t, int> per_worker;
  std::map<ExpertKey, int> per_expert;
};

Copies count_copies(const PlacementTable& table) {
  Copies out;
  for (const auto& [key, replicas] : table.assignments) {
    out.per_layer[key.layer] += static_cast<int>(replicas.size());
    out.per_expert[key] = static_cast<int>(replicas.size());
    for (const auto& replica : replicas) ++out.per_worker[replica.worker_id];
  }
  return out;
}

TEST(RebalancePlan, ScaleOutFromOneWorkerHoldingEverythingStaysWithinTheReplicaBudget) {
  // The issue: --min-workers 1 put every expert on worker 1; workers 2 and 3 joined; --replica-budget 1.5
  // must not copy every expert onto every worker.
  PlacementTable current = two_worker_table();
  current.workers = {{1, "10.0.0.1:7000", WorkerState::Active}};
  for (auto& [key, replicas] : current.assignments) replicas = {{1, 1.f}};
  std::map<ExpertKey, double> loads;  // most experts without traffic, one hot
  loads[{0, 0}] = 100.0;
  loads[{1, 3}] = 100.0;
  const RebalanceResult result = plan_rebalance(current, catalog(), hosts({1, 2, 3}), loads, 1.5);
  expect_valid(result.next, {1, 2, 3}, result.slots_per_layer);
  const Copies copies = count_copies(result.next);
  for (const auto& [layer, n] : copies.per_layer) EXPECT_LE(n, 6) << "layer " << layer << ": ceil(1.5 x 4)";
  for (uint32_t id : {2u, 3u}) EXPECT_FALSE(result.next.experts_on(id).empty()) << "worker " << id << " got nothing";
  int everywhere = 0;
  for (const auto& [key, n] : copies.per_expert) everywhere += n == 3;
  EXPECT_LT(everywhere, static_cast<int>(copies.per_expert.size()));
}

TEST(RebalancePlan, NeverGivesAWorkerMoreCopiesThanItsDeclaredSlots) {
  // 2 layers x 8 experts on 3 workers with --slots 8 (4 per layer): the starting table puts 6 experts of
  // layer 0 on worker 1, more than its share per layer (but within its 8 slots).
  ExpertCatalog eight;
  for (int32_t layer = 0; layer < 2; ++layer)
    for (int32_t expert = 0; expert < 8; ++expert) eight.experts.push_back({{layer, expert}, 1000});
  PlacementTable current;
  current.epoch = 3;
  for (uint32_t id = 1; id <= 3; ++id) current.workers.push_back({id, "10.0.0." + std::to_string(id) + ":7000", WorkerState::Active});
  for (int32_t e = 0; e < 8; ++e) current.assignments[{0, e}] = {{e < 6 ? 1u : 2u, 1.f}};
  for (int32_t e = 0; e < 8; ++e) current.assignments[{1, e}] = {{e < 4 ? 2u : 3u, 1.f}};
  std::map<ExpertKey, double> loads;
  for (const auto& expert : eight.experts) loads[expert.key] = expert.key.expert == 0 ? 500.0 : 10.0;
  for (double budget : {1.0, 1.5, 3.0}) {
    const RebalanceResult result = plan_rebalance(current, eight, hosts({1, 2, 3}, 8), loads, budget);
    EXPECT_LE(result.slots_per_layer, 4);
    const Copies copies = count_copies(result.next);
    for (const auto& [id, n] : copies.per_worker) EXPECT_LE(n, 8) << "worker " << id << " at budget " << budget;
    EXPECT_EQ(copies.per_expert.size(), 16u);
  }
}

TEST(RebalancePlan, KeepsAtLeastReplicasCopiesOfEveryExpert) {
  const PlacementTable current = two_worker_table();
  std::map<ExpertKey, double> skewed = uniform_loads(1.0);
  skewed[{0, 0}] = 1000.0;
  for (double budget : {1.0, 1.5, 2.0}) {  // --replicas 2 wins over a smaller budget
    const RebalanceResult result = plan_rebalance(current, catalog(), hosts({1, 2, 3}), skewed, budget, 2);
    expect_valid(result.next, {1, 2, 3}, result.slots_per_layer);
    for (const auto& [key, n] : count_copies(result.next).per_expert) {
      EXPECT_GE(n, 2) << key.layer << "/" << key.expert << " at budget " << budget;
    }
  }
}

}  // namespace
}  // namespace moe
