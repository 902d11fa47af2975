// make_assignments, group_by_expert and plan_by_worker: order, shared expert, re-indexing, one copy of
// a token per worker, and errors.
#include "runtime/routing/dispatch_plan.h"

#include <gtest/gtest.h>

#include <map>
#include <random>
#include <stdexcept>
#include <vector>

#include "tests/unit/routing/routing_test_util.h"

namespace moe {
namespace {

bool same(const TokenAssignment& a, const TokenAssignment& b) {
  return a.token == b.token && a.expert == b.expert && a.weight == b.weight;
}

RoutingResult two_tokens_top2() {
  RoutingResult r;
  r.num_tokens = 2;
  r.top_k = 2;
  r.topk_ids = {3, 1, 0, 3};
  r.topk_weights = {0.7f, 0.3f, 0.6f, 0.4f};
  return r;
}

TEST(MakeAssignments, RoutedInRouterOrderThenNothingWithoutSharedExpert) {
  const ModelSpec spec = test::make_spec(ModelFamily::Mixtral, 4, 4, 2);
  const auto a = make_assignments(two_tokens_top2(), spec);
  const std::vector<TokenAssignment> want = {{0, 3, 0.7f}, {0, 1, 0.3f}, {1, 0, 0.6f}, {1, 3, 0.4f}};
  ASSERT_EQ(a.size(), want.size());
  for (size_t i = 0; i < a.size(); ++i) EXPECT_TRUE(same(a[i], want[i])) << "assignment " << i;
}

TEST(MakeAssignments, SharedExpertComesLastWithIdE) {
  ModelSpec spec = test::make_spec(ModelFamily::Qwen2Moe, 4, 4, 2);
  spec.has_shared_expert = true;
  spec.shared_expert_gated = true;
  RoutingResult r = two_tokens_top2();
  r.shared_weights = {0.25f, 0.75f};
  const auto a = make_assignments(r, spec);
  ASSERT_EQ(a.size(), 6u);
  EXPECT_TRUE(same(a[4], {0, 4, 0.25f}));
  EXPECT_TRUE(same(a[5], {1, 4, 0.75f}));
}

TEST(MakeAssignments, InconsistentRoutingThrows) {
  ModelSpec spec = test::make_spec(ModelFamily::Qwen2Moe, 4, 4, 2);
  RoutingResult r = two_tokens_top2();
  r.topk_weights.pop_back();
  EXPECT_THROW(make_assignments(r, spec), std::invalid_argument);
  r = two_tokens_top2();
  r.topk_ids[2] = 4;  // not a routed expert
  EXPECT_THROW(make_assignments(r, spec), std::invalid_argument);
  r = two_tokens_top2();
  spec.has_shared_expert = true;  // but no shared weights in the result
  EXPECT_THROW(make_assignments(r, spec), std::invalid_argument);
}

TEST(GroupByExpert, IndicesPerExpertInTokenOrder) {
  const std::vector<TokenAssignment> a = {{2, 1, 1.f}, {0, 1, 1.f}, {1, 0, 1.f}, {0, 2, 1.f},
                                          {1, 1, 1.f}, {2, 0, 1.f}};
  const auto g = group_by_expert(a, 4);
  ASSERT_EQ(g.size(), 4u);
  EXPECT_EQ(g[0], (std::vector<int32_t>{2, 5}));
  EXPECT_EQ(g[1], (std::vector<int32_t>{1, 4, 0}));
  EXPECT_EQ(g[2], (std::vector<int32_t>{3}));
  EXPECT_TRUE(g[3].empty());
}

TEST(GroupByExpert, UnknownExpertThrows) {
  const std::vector<TokenAssignment> a = {{0, 4, 1.f}};
  EXPECT_THROW(group_by_expert(a, 4), std::invalid_argument);
}

TEST(PlanByWorker, TokenSentOncePerWorkerEvenWithTwoExpertsThere) {
  // Experts 0,1 on worker 10; experts 2,3 on worker 20. Token 1 uses experts 0 and 1 (both on 10).
  const std::vector<TokenAssignment> a = {{0, 2, 0.5f}, {0, 0, 0.5f}, {1, 0, 0.6f}, {1, 1, 0.4f},
                                          {3, 3, 1.f}};
  const auto plan = plan_by_worker(a, [](size_t, const TokenAssignment& x) {
    return x.expert < 2 ? 10 : 20;
  });
  ASSERT_EQ(plan.size(), 2u);
  const WorkerShard& w10 = plan.at(10);
  EXPECT_EQ(w10.tokens, (std::vector<int32_t>{0, 1}));
  ASSERT_EQ(w10.assignments.size(), 3u);
  EXPECT_TRUE(same(w10.assignments[0], {0, 0, 0.5f}));
  EXPECT_TRUE(same(w10.assignments[1], {1, 0, 0.6f}));
  EXPECT_TRUE(same(w10.assignments[2], {1, 1, 0.4f}));
  const WorkerShard& w20 = plan.at(20);
  EXPECT_EQ(w20.tokens, (std::vector<int32_t>{0, 3}));
  ASSERT_EQ(w20.assignments.size(), 2u);
  EXPECT_TRUE(same(w20.assignments[0], {0, 2, 0.5f}));
  EXPECT_TRUE(same(w20.assignments[1], {1, 3, 1.f}));  // token 3 is row 1 of worker 20's list
}

TEST(PlanByWorker, CallbackSeesTheIndexToSpreadReplicas) {
  // One expert replicated on workers 0 and 1: alternate by assignment index.
  const std::vector<TokenAssignment> a = {{0, 5, 1.f}, {1, 5, 1.f}, {2, 5, 1.f}, {3, 5, 1.f}};
  const auto plan = plan_by_worker(a, [](size_t i, const TokenAssignment&) {
    return static_cast<int32_t>(i % 2);
  });
  EXPECT_EQ(plan.at(0).tokens, (std::vector<int32_t>{0, 2}));
  EXPECT_EQ(plan.at(1).tokens, (std::vector<int32_t>{1, 3}));
}

TEST(PlanByWorker, NegativeWorkerThrows) {
  const std::vector<TokenAssignment> a = {{0, 1, 1.f}};
  EXPECT_THROW(plan_by_worker(a, [](size_t, const TokenAssignment&) { return -1; }),
               std::invalid_argument);
}

TEST(PlanByWorker, EmptyAssignmentsGiveAnEmptyPlan) {
  EXPECT_TRUE(plan_by_worker({}, [](size_t, const TokenAssignment&) { return 0; }).empty());
}

TEST(PlanByWorker, ShardsCoverEveryAssignmentExactlyOnce) {
  std::mt19937 rng(11);
  std::uniform_int_distribution<int32_t> token(0, 49), expert(0, 15);
  std::vector<TokenAssignment> a;
  for (int i = 0; i < 400; ++i) a.push_back({token(rng), expert(rng), static_cast<float>(i)});
  const auto plan = plan_by_worker(a, [](size_t, const TokenAssignment& x) { return x.expert % 3; });
  size_t seen = 0;
  std::vector<int> hits(a.size(), 0);
  for (const auto& [w, shard] : plan) {
    for (size_t r = 1; r < shard.tokens.size(); ++r) EXPECT_LT(shard.tokens[r - 1], shard.tokens[r]);
    for (const TokenAssignment& s : shard.assignments) {
      EXPECT_EQ(s.expert % 3, w);
      const size_t original = static_cast<size_t>(s.weight);  // weights carry the original index
      ASSERT_LT(original, a.size());
      EXPECT_EQ(shard.tokens.at(s.token), a[original].token);
      EXPECT_EQ(s.expert, a[original].expert);
      ++hits[original];
      ++seen;
    }
  }
  EXPECT_EQ(seen, a.size());
  for (size_t i = 0; i < hits.size(); ++i) EXPECT_EQ(hits[i], 1) << "assignment " << i;
}

}  // namespace
}  // namespace moe
