// Unit tests of the load balancer (runtime/placement/balancer.h) and its parts: slot grids, optimal shares,
// capacity, coverage, determinism, few moves on drift, and balance against the contiguous baseline.
#include <gtest/gtest.h>

#include <cmath>
#include <numeric>
#include <random>

#include "runtime/placement/balance_flow.h"
#include "runtime/placement/balance_grid.h"
#include "runtime/placement/balance_moves.h"
#include "runtime/placement/balance_shares.h"
#include "runtime/placement/balancer.h"
#include "runtime/placement/placement_error.h"

namespace moe {
namespace {

// Zipf(s) loads over a seeded random ranking of the experts.
std::vector<double> zipf_row(int experts, double s, uint32_t seed) {
  std::vector<int> rank(experts);
  std::iota(rank.begin(), rank.end(), 0);
  std::mt19937 rng(seed);
  std::shuffle(rank.begin(), rank.end(), rng);
  std::vector<double> row(experts);
  for (int e = 0; e < experts; ++e) row[e] = 1e5 * std::pow(rank[e] + 1, -s);
  return row;
}

std::vector<double> drift(const std::vector<double>& row, double amount, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> u(-amount, amount);
  std::vector<double> out = row;
  for (double& v : out) v *= 1.0 + u(rng);
  return out;
}

double sum_of(const std::vector<double>& v) { return std::accumulate(v.begin(), v.end(), 0.0); }

TEST(BalanceGrid, ContiguousPutsEightExpertsPerWorkerAndLeavesTheNinthSlotEmpty) {
  SlotGrid g = contiguous_grid(256, 32, 9);
  EXPECT_EQ(g.at(0, 0), 0);
  EXPECT_EQ(g.at(0, 7), 7);
  EXPECT_EQ(g.at(0, 8), kEmptySlot);
  EXPECT_EQ(g.at(31, 7), 255);
  EXPECT_THROW(contiguous_grid(10, 2, 4), PlacementError);
}

TEST(BalanceGrid, CopyCountsRejectsAnExpertTwiceOnOneWorker) {
  SlotGrid g(2, 2);
  g.at(0, 0) = 1;
  g.at(0, 1) = 1;
  EXPECT_THROW(copy_counts(g, 3), PlacementError);
  g.at(0, 1) = 5;
  EXPECT_THROW(copy_counts(g, 3), PlacementError);
}

TEST(BalanceShares, SplitsAReplicatedExpertToEvenOutTheWorkers) {
  // Worker 0: expert 0 (60) + expert 2 (copy); worker 1: expert 1 (20) + expert 2 (copy); expert 2 has 40.
  SlotGrid g(2, 2);
  g.at(0, 0) = 0, g.at(0, 1) = 2, g.at(1, 0) = 1, g.at(1, 1) = 2;
  std::vector<double> loads{60, 20, 40};
  std::vector<double> shares = optimal_shares(g, loads);
  EXPECT_DOUBLE_EQ(shares[0], 1.0);
  EXPECT_NEAR(shares[1], 0.0, 1e-4);  // worker 0 is at 60 already: expert 2 all on worker 1
  EXPECT_NEAR(shares[3], 1.0, 1e-4);
  std::vector<double> wl = worker_loads(g, loads, shares);
  EXPECT_NEAR(wl[0], 60.0, 1e-3);
  EXPECT_NEAR(wl[1], 60.0, 1e-3);
}

TEST(LayerFlow, FindsTheSmallestMaximumAndTheBottleneckSet) {
  // Worker 0 holds expert 0 (50) alone with expert 1 (10): 60 fixed, more than any split can give the others.
  SlotGrid g(3, 2);
  g.at(0, 0) = 0, g.at(0, 1) = 1, g.at(1, 0) = 2, g.at(1, 1) = 4, g.at(2, 0) = 3, g.at(2, 1) = 4;
  std::vector<double> loads{50, 10, 10, 10, 10};
  LayerFlow flow(g, loads);
  EXPECT_NEAR(flow.min_max_load(), 60.0, 1e-9);
  FlowCut cut = flow.route(40.0);
  EXPECT_NEAR(cut.unrouted, 20.0, 1e-9);
  EXPECT_EQ(cut.tight, (std::vector<bool>{true, false, false}));
  // Without the fixed overload: experts 2 and 4 shared so that the three workers can even out at 90 / 3.
  std::vector<double> even{20, 10, 10, 10, 40};
  LayerFlow balanced(g, even);
  EXPECT_NEAR(balanced.min_max_load(), 30.0, 1e-6);
}

TEST(RepairByMoves, WritesOneCopyOfTheHotExpertOverARedundantReplica) {
  SlotGrid g(3, 2);
  g.at(0, 0) = 0, g.at(0, 1) = 1, g.at(1, 0) = 2, g.at(1, 1) = 4, g.at(2, 0) = 3, g.at(2, 1) = 4;
  const SlotGrid original = g;
  std::vector<double> loads{50, 10, 10, 10, 10};
  // One changed slot: expert 0 over one copy of expert 4 splits 50 over two workers: max 35.
  EXPECT_EQ(repair_by_moves(g, original, loads, {36.0, 4}), 1);
  EXPECT_EQ(slots_changed(original, g), 1);
  for (int c : copy_counts(g, 5)) EXPECT_GE(c, 1);
  EXPECT_EQ(copy_counts(g, 5)[0], 2);
  LayerFlow flow(g, loads);
  EXPECT_NEAR(flow.min_max_load(), 35.0, 1e-6);
}

TEST(RepairByMoves, StopsAtTheBudgetOfChangedSlots) {
  SlotGrid g(3, 2);
  g.at(0, 0) = 0, g.at(0, 1) = 1, g.at(1, 0) = 2, g.at(1, 1) = 4, g.at(2, 0) = 3, g.at(2, 1) = 4;
  const SlotGrid original = g;
  std::vector<double> loads{50, 10, 10, 10, 10};
  EXPECT_EQ(repair_by_moves(g, original, loads, {36.0, 0}), 0);
  EXPECT_EQ(g, original);
}

class BalancerOnZipf : public ::testing::Test {
 protected:
  static constexpr int kExperts = 64, kWorkers = 8, kSlots = 9;
  std::vector<double> loads = zipf_row(kExperts, 1.2, 7);
  SlotGrid contiguous = contiguous_grid(kExperts, kWorkers, kSlots);
};

TEST_F(BalancerOnZipf, RespectsCapacityAndPlacesEveryExpertWithSharesSummingToOne) {
  LayerPlan plan = balance_layer(loads, contiguous);
  ASSERT_EQ(plan.grid.workers, kWorkers);
  ASSERT_EQ(plan.grid.slots, kSlots);
  ASSERT_EQ(plan.grid.experts.size(), static_cast<size_t>(kWorkers * kSlots));
  std::vector<int> counts = copy_counts(plan.grid, kExperts);  // also throws on duplicates per worker
  std::vector<double> share_sum(kExperts, 0.0);
  for (size_t i = 0; i < plan.grid.experts.size(); ++i) {
    if (plan.grid.experts[i] == kEmptySlot) continue;
    EXPECT_GE(plan.shares[i], 0.0);
    share_sum[plan.grid.experts[i]] += plan.shares[i];
  }
  for (int e = 0; e < kExperts; ++e) {
    EXPECT_GE(counts[e], 1) << "expert " << e;
    EXPECT_NEAR(share_sum[e], 1.0, 1e-9) << "expert " << e;
  }
  EXPECT_NEAR(sum_of(plan.worker_load), sum_of(loads), 1e-6 * sum_of(loads));
  EXPECT_EQ(plan.slots_changed, slots_changed(contiguous, plan.grid));
}

TEST_F(BalancerOnZipf, ReplicatesTheHottestExpertAndBeatsTheContiguousBaseline) {
  LayerPlan base = evaluate_layer(loads, contiguous, contiguous);
  LayerPlan plan = balance_layer(loads, contiguous);
  int hottest = static_cast<int>(std::max_element(loads.begin(), loads.end()) - loads.begin());
  EXPECT_GE(copy_counts(plan.grid, kExperts)[hottest], 2);
  EXPECT_GT(base.imbalance, 2.0);
  EXPECT_LE(plan.imbalance, 1.05);
}

TEST_F(BalancerOnZipf, IsDeterministic) {
  LayerPlan a = balance_layer(loads, contiguous);
  LayerPlan b = balance_layer(loads, contiguous);
  EXPECT_EQ(a.grid, b.grid);
  EXPECT_EQ(a.shares, b.shares);
}

TEST_F(BalancerOnZipf, LeavesABalancedPlanAloneWhenTheLoadsDoNotChange) {
  LayerPlan first = balance_layer(loads, contiguous);
  LayerPlan again = balance_layer(loads, first.grid);
  EXPECT_EQ(again.slots_changed, 0);
  EXPECT_EQ(again.grid, first.grid);
}

TEST(Balancer, ChangesFewSlotsOnDriftedLoadsAndStaysBalanced) {
  const int experts = 256, workers = 32, slots = 9, layers = 8;
  int changed = 0;
  for (int l = 0; l < layers; ++l) {
    std::vector<double> loads = zipf_row(experts, 1.2, 100 + l);
    LayerPlan first = balance_layer(loads, contiguous_grid(experts, workers, slots));
    LayerPlan second = balance_layer(drift(loads, 0.05, 200 + l), first.grid);
    EXPECT_LE(second.imbalance, 1.05) << "layer " << l;
    changed += second.slots_changed;
  }
  // A fresh plan rewrites most of a layer's 288 slots; a +-5% drift must cost a small fraction of that.
  EXPECT_LE(changed, layers * workers * slots / 20);
}

TEST(Balancer, ChangesAtMostFivePercentOfSlotsOnTwentyPercentDrift) {
  const int experts = 64, workers = 8, slots = 9, layers = 24;
  const BalancerOptions options;
  int changed = 0;
  for (int l = 0; l < layers; ++l) {
    for (double s : {1.2, 0.8}) {
      std::vector<double> loads = zipf_row(experts, s, 300 + l);
      LayerPlan first = balance_layer(loads, contiguous_grid(experts, workers, slots), options);
      LayerPlan second = balance_layer(drift(loads, 0.2, 400 + l), first.grid, options);
      EXPECT_LE(first.imbalance, 1.0 + options.tolerance + 1e-9) << "layer " << l << " zipf " << s;
      EXPECT_LE(second.imbalance, 1.0 + options.tolerance + 1e-9) << "layer " << l << " zipf " << s;
      changed += second.slots_changed;
    }
  }
  EXPECT_LE(changed, 2 * layers * workers * slots / 20);
}

TEST(Balancer, PlacesExpertsMissingFromTheCurrentGrid) {
  SlotGrid current(4, 3);  // empty
  std::vector<double> loads{5, 1, 1, 1, 1, 1, 1, 1, 1, 1};
  LayerPlan plan = balance_layer(loads, current);
  for (int c : copy_counts(plan.grid, 10)) EXPECT_GE(c, 1);
}

TEST(Balancer, RejectsMoreExpertsThanSlotsAndNegativeLoads) {
  EXPECT_THROW(balance_layer(std::vector<double>(13, 1.0), SlotGrid(4, 3)), PlacementError);
  std::vector<double> loads(4, 1.0);
  loads[2] = -1.0;
  EXPECT_THROW(balance_layer(loads, SlotGrid(2, 2)), PlacementError);
}

TEST(Balancer, BalanceLayersNeedsOneGridPerLayer) {
  std::vector<std::vector<double>> loads(2, std::vector<double>(4, 1.0));
  EXPECT_THROW(balance_layers(loads, {SlotGrid(2, 2)}), PlacementError);
}

}  // namespace
}  // namespace moe
