// The EPLB baseline of `moectl bench balance` (cli/bench_eplb.h) against worked examples, and
// run_bench_balance on a small shape printing EPLB's rows beside ours. Not a timing test.
#include "cli/bench_balance.h"
#include "cli/bench_eplb.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace moe {
namespace {

// EPLB's README example (DeepSeek, eplb.py): 12 experts in 4 groups, 16 replicas, 2 nodes, 8 GPUs;
// the second layer of its weight matrix gives this physical-to-logical map.
TEST(EplbBaseline, MatchesThePublishedHierarchicalExample) {
  const std::vector<double> loads{20, 107, 104, 64, 19, 197, 187, 157, 172, 86, 16, 27};
  const EplbLayer layer = eplb_layer(loads, 8, 2, EplbOptions{4, 2});
  EXPECT_EQ(layer.grid.experts, (std::vector<int32_t>{7, 10, 6, 8, 6, 11, 8, 9, 2, 4, 5, 1, 5, 0, 3, 1}));
}

// Global: the hottest expert is replicated until the slots are full, copies packed heaviest first onto
// the lightest worker with room: loads {10,1,1,1} on 2 x 3 slots -> expert 0 x3 (3.33 each); worker 0
// gets 3.33 + 3.33 + 1, worker 1 gets 3.33 + 1 + 1 -> max/mean = 7.667 / 6.5.
TEST(EplbBaseline, ReplicatesTheHottestThenPacksGreedily) {
  const EplbLayer layer = eplb_layer({10, 1, 1, 1}, 2, 3, EplbOptions{});
  EXPECT_EQ(std::count(layer.grid.experts.begin(), layer.grid.experts.end(), 0), 3);
  for (int32_t e : {1, 2, 3}) EXPECT_EQ(std::count(layer.grid.experts.begin(), layer.grid.experts.end(), e), 1);
  EXPECT_NEAR(layer.imbalance, (10.0 / 3 * 2 + 1) / 6.5, 1e-9);
}

TEST(EplbBaseline, RejectsShapesItCannotSplit) {
  EXPECT_THROW(eplb_layer({1, 2, 3}, 2, 1, EplbOptions{}), std::invalid_argument);             // 2 slots < 3 experts
  EXPECT_THROW(eplb_layer({1, 2, 3, 4}, 2, 2, EplbOptions{3, 1}), std::invalid_argument);      // 4 % 3 groups
  EXPECT_THROW(eplb_layer({1, 2, 3, 4}, 3, 2, EplbOptions{2, 2}), std::invalid_argument);      // 3 workers % 2 nodes
}

TEST(EplbBaseline, SlotsChangedIgnoresOrderInsideAWorker) {
  SlotGrid a(2, 2), b(2, 2);
  a.experts = {0, 1, 2, 3};
  b.experts = {1, 0, 2, 2};  // worker 0 reordered (free), worker 1: 3 -> 2 (one move)
  EXPECT_EQ(eplb_slots_changed(a, b), 1);
  EXPECT_EQ(eplb_slots_changed(a, a), 0);
}

TEST(BenchBalance, PrintsEplbBesideOurs) {
  BenchBalanceOptions o;
  o.layers = 3;
  o.experts = 32;
  o.workers = 8;
  o.slots = 5;
  o.pairs = 1;
  std::ostringstream out;
  ASSERT_EQ(run_bench_balance(o, out), 0);
  const std::string text = out.str();
  for (const char* want : {"EPLB hier", "EPLB global", "balancer", "contiguous", "8 expert groups packed onto 1 node(s)",
                           "vs EPLB (same run): mean imbalance"})
    EXPECT_NE(text.find(want), std::string::npos) << want << " in\n" << text;
  EXPECT_EQ(text.find("issue"), std::string::npos) << "no figure copied from an issue:\n" << text;
}

}  // namespace
}  // namespace moe
