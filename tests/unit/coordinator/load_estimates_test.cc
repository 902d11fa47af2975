// Unit tests of coordinator/load_estimates.h: the per-(worker, expert) EWMA of tokens per second from
// heartbeat windows, and the expected worker loads / imbalance of a hand-built placement under given loads.
#include <gtest/gtest.h>

#include <cmath>

#include "coordinator/load_estimates.h"

namespace moe {
namespace {

constexpr double kEps = 1e-9;

TEST(LoadEstimates, FirstWindowGivesTokensPerSecondWithoutHistory) {
  LoadEstimates estimates(0.3);
  estimates.add_window(1, 2000, {{{0, 0}, 100}, {{0, 1}, 50}});
  const auto loads = estimates.per_expert();
  ASSERT_EQ(loads.size(), 2u);
  EXPECT_NEAR(loads.at({0, 0}), 50.0, kEps);  // 100 tokens / 2 s
  EXPECT_NEAR(loads.at({0, 1}), 25.0, kEps);
}

TEST(LoadEstimates, LaterWindowsMoveTheAverageByAlpha) {
  LoadEstimates estimates(0.5);
  estimates.add_window(1, 1000, {{{0, 0}, 100}});
  estimates.add_window(1, 500, {{{0, 0}, 100}});  // now 200/s: 0.5 * 200 + 0.5 * 100
  EXPECT_NEAR(estimates.per_expert().at({0, 0}), 150.0, kEps);
  estimates.add_window(1, 4000, {{{0, 0}, 200}});  // now 50/s: 0.5 * 50 + 0.5 * 150
  EXPECT_NEAR(estimates.per_expert().at({0, 0}), 100.0, kEps);
}

TEST(LoadEstimates, DefaultAlphaIsPointThree) {
  LoadEstimates estimates;
  estimates.add_window(1, 1000, {{{2, 3}, 50}});
  estimates.add_window(1, 1000, {{{2, 3}, 150}});
  EXPECT_NEAR(estimates.per_expert().at({2, 3}), 0.3 * 150 + 0.7 * 50, kEps);
}

TEST(LoadEstimates, UnreportedExpertDecaysTowardZero) {
  LoadEstimates estimates(0.3);
  estimates.add_window(1, 1000, {{{0, 0}, 1000}, {{0, 1}, 10}});
  estimates.add_window(1, 1000, {{{0, 1}, 10}});  // expert 0 not reported: counts as 0 tokens
  EXPECT_NEAR(estimates.per_expert().at({0, 0}), 700.0, kEps);
  EXPECT_NEAR(estimates.per_expert().at({0, 1}), 10.0, kEps);
  for (int i = 0; i < 19; ++i) estimates.add_window(1, 1000, {});  // empty windows decay everything
  const auto loads = estimates.per_expert();
  EXPECT_NEAR(loads.at({0, 0}), 1000.0 * std::pow(0.7, 20), 1e-6);
  EXPECT_NEAR(loads.at({0, 1}), 10.0 * std::pow(0.7, 19), 1e-9);
  EXPECT_LT(loads.at({0, 0}), 1.0);
  EXPECT_GE(loads.at({0, 0}), 0.0);
}

TEST(LoadEstimates, DeadWorkersRatesOrderTheirOrphansUntilALiveWorkerServesThem) {
  LoadEstimates estimates(0.5);
  estimates.add_window(1, 1000, {{{0, 0}, 100}, {{0, 1}, 10}});
  estimates.add_window(2, 1000, {{{0, 1}, 30}});
  estimates.forget_worker(1);  // worker 1 died
  EXPECT_EQ(estimates.per_expert().count({0, 0}), 0u);
  auto with_departed = estimates.per_expert_with_departed();
  EXPECT_DOUBLE_EQ(with_departed.at({0, 0}), 100.0);
  EXPECT_DOUBLE_EQ(with_departed.at({0, 1}), 30.0);  // the live estimate is larger
  estimates.add_window(2, 1000, {{{0, 0}, 20}});      // re-homed and served again: live rates take over
  EXPECT_DOUBLE_EQ(estimates.per_expert_with_departed().at({0, 0}), 20.0);
}

TEST(LoadEstimates, ZeroLengthWindowIsIgnored) {
  LoadEstimates estimates(0.3);
  estimates.add_window(1, 0, {{{0, 0}, 100}});
  EXPECT_TRUE(estimates.per_expert().empty()) << "a window of 0 ms created an estimate";
  estimates.add_window(1, 1000, {{{0, 0}, 100}});
  estimates.add_window(1, 0, {});  // would decay to 70 if it counted
  estimates.add_window(1, 0, {{{0, 0}, 999}, {{0, 5}, 1}});
  const auto loads = estimates.per_expert();
  ASSERT_EQ(loads.size(), 1u);
  EXPECT_NEAR(loads.at({0, 0}), 100.0, kEps);
}

TEST(LoadEstimates, ReplicasOnSeveralWorkersAddUpToTheLogicalExpert) {
  LoadEstimates estimates(0.3);
  estimates.add_window(1, 1000, {{{0, 0}, 30}, {{1, 2}, 8}});
  estimates.add_window(2, 2000, {{{0, 0}, 140}});
  const auto loads = estimates.per_expert();
  ASSERT_EQ(loads.size(), 2u);
  EXPECT_NEAR(loads.at({0, 0}), 30.0 + 70.0, kEps);
  EXPECT_NEAR(loads.at({1, 2}), 8.0, kEps);
}

TEST(LoadEstimates, AWindowOfOneWorkerLeavesTheOthersAlone) {
  LoadEstimates estimates(0.3);
  estimates.add_window(1, 1000, {{{0, 0}, 100}});
  estimates.add_window(2, 1000, {{{0, 1}, 40}});
  estimates.add_window(2, 1000, {});  // decays worker 2 only
  const auto loads = estimates.per_expert();
  EXPECT_NEAR(loads.at({0, 0}), 100.0, kEps);
  EXPECT_NEAR(loads.at({0, 1}), 28.0, kEps);
}

TEST(LoadEstimates, ForgetWorkerDropsOnlyItsShare) {
  LoadEstimates estimates(0.3);
  estimates.add_window(1, 1000, {{{0, 0}, 30}, {{0, 1}, 5}});
  estimates.add_window(2, 1000, {{{0, 0}, 70}});
  estimates.forget_worker(1);
  auto loads = estimates.per_expert();
  ASSERT_EQ(loads.size(), 1u) << "expert (0,1) was only on the forgotten worker";
  EXPECT_NEAR(loads.at({0, 0}), 70.0, kEps);
  estimates.forget_worker(42);  // unknown: no effect
  EXPECT_EQ(estimates.per_expert(), loads);
  estimates.forget_worker(2);
  EXPECT_TRUE(estimates.per_expert().empty());
  // A forgotten worker that comes back starts without history.
  estimates.add_window(1, 1000, {{{0, 1}, 90}});
  EXPECT_NEAR(estimates.per_expert().at({0, 1}), 90.0, kEps);
}

// Layer 0: expert 0 on workers 1 (0.25) and 2 (0.75), expert 1 on 2, expert 2 on 3, expert 3 on 3.
// Layer 1: expert 0 on 1, expert 1 on 3 (worker 2 hosts nothing of layer 1).
PlacementTable sample_table() {
  PlacementTable table;
  table.epoch = 4;
  table.workers = {{1, "a:1", WorkerState::Active}, {2, "b:2", WorkerState::Active}, {3, "c:3", WorkerState::Active}};
  table.assignments[{0, 0}] = {{1, 0.25f}, {2, 0.75f}};
  table.assignments[{0, 1}] = {{2, 1.f}};
  table.assignments[{0, 2}] = {{3, 1.f}};
  table.assignments[{0, 3}] = {{3, 1.f}};
  table.assignments[{1, 0}] = {{1, 1.f}};
  table.assignments[{1, 1}] = {{3, 1.f}};
  return table;
}

// (0,3) has no estimate (counts as 0); (0,9) and (5,0) are not in the table (ignored).
std::map<ExpertKey, double> sample_loads() {
  return {{{0, 0}, 100.0}, {{0, 1}, 40.0}, {{0, 2}, 60.0}, {{0, 9}, 1000.0},
          {{1, 0}, 10.0},  {{1, 1}, 30.0}, {{5, 0}, 77.0}};
}

TEST(ExpectedLoads, EachReplicaTakesItsShareOfTheExpertsLoad) {
  const auto per_worker = expected_worker_loads(sample_table(), sample_loads(), 0);
  ASSERT_EQ(per_worker.size(), 3u);
  EXPECT_NEAR(per_worker.at(1), 25.0, kEps);         // 0.25 * 100
  EXPECT_NEAR(per_worker.at(2), 75.0 + 40.0, kEps);  // 0.75 * 100 + 40
  EXPECT_NEAR(per_worker.at(3), 60.0 + 0.0, kEps);   // 60 + (0,3) without estimate
}

TEST(ExpectedLoads, OnlyWorkersHostingTheLayerAppear) {
  const auto per_worker = expected_worker_loads(sample_table(), sample_loads(), 1);
  ASSERT_EQ(per_worker.size(), 2u);
  EXPECT_EQ(per_worker.count(2), 0u);
  EXPECT_NEAR(per_worker.at(1), 10.0, kEps);
  EXPECT_NEAR(per_worker.at(3), 30.0, kEps);
  EXPECT_TRUE(expected_worker_loads(sample_table(), sample_loads(), 7).empty());
}

TEST(ExpectedLoads, ImbalanceIsMaxOverMeanOfTheHostingWorkers) {
  const PlacementTable table = sample_table();
  const auto loads = sample_loads();
  EXPECT_NEAR(expected_imbalance(table, loads, 0), 115.0 / (200.0 / 3.0), kEps);  // 1.725
  EXPECT_NEAR(expected_imbalance(table, loads, 1), 30.0 / 20.0, kEps);           // mean over 2 workers, not 3
  EXPECT_NEAR(max_expected_imbalance(table, loads, {0, 1}), 1.725, kEps);
  EXPECT_NEAR(max_expected_imbalance(table, loads, {1}), 1.5, kEps);
}

TEST(ExpectedLoads, LayerWithoutLoadOrWithoutExpertsCountsAsBalanced) {
  const PlacementTable table = sample_table();
  EXPECT_DOUBLE_EQ(expected_imbalance(table, {}, 0), 1.0);
  EXPECT_DOUBLE_EQ(expected_imbalance(table, {{{0, 3}, 0.0}}, 0), 1.0);
  EXPECT_DOUBLE_EQ(expected_imbalance(table, sample_loads(), 7), 1.0);
  EXPECT_DOUBLE_EQ(max_expected_imbalance(table, sample_loads(), {}), 1.0);
  EXPECT_DOUBLE_EQ(max_expected_imbalance(PlacementTable{}, sample_loads(), {0, 1}), 1.0);
}

TEST(ExpectedLoads, EvenSplitOfAHotExpertIsPerfectlyBalanced) {
  PlacementTable table;
  table.assignments[{0, 0}] = {{1, 0.5f}, {2, 0.5f}};
  table.assignments[{0, 1}] = {{1, 1.f}};
  table.assignments[{0, 2}] = {{2, 1.f}};
  const std::map<ExpertKey, double> loads{{{0, 0}, 80.0}, {{0, 1}, 10.0}, {{0, 2}, 10.0}};
  EXPECT_NEAR(expected_imbalance(table, loads, 0), 1.0, kEps);
  table.assignments[{0, 0}] = {{1, 1.f}};  // the whole hot expert on worker 1: 90 vs 10
  EXPECT_NEAR(expected_imbalance(table, loads, 0), 90.0 / 50.0, kEps);
}

}  // namespace
}  // namespace moe
