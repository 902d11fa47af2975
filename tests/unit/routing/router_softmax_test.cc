// Softmax routers (Mixtral, Qwen2-MoE, Qwen3-MoE) on hand-checkable logits, and Qwen2-MoE's shared gate.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "runtime/routing/router.h"
#include "tests/unit/routing/routing_test_util.h"

namespace moe {
namespace {

using test::identity_gate;
using test::make_spec;
using test::rows_of;

void expect_routing(const RoutingResult& r, int64_t t, const std::vector<int32_t>& ids,
                    const std::vector<double>& weights) {
  const int32_t K = r.top_k;
  for (int32_t j = 0; j < K; ++j) {
    EXPECT_EQ(r.topk_ids[t * K + j], ids[j]) << "token " << t << " slot " << j;
    EXPECT_NEAR(r.topk_weights[t * K + j], weights[j], 2e-7) << "token " << t << " slot " << j;
  }
}

TEST(MixtralRouter, SoftmaxTopkRenormalised) {
  Router router(make_spec(ModelFamily::Mixtral, 4, 4, 2), identity_gate(4));
  RoutingResult r = router.route(rows_of({{1.f, 3.f, 2.f, 0.f}, {0.f, 0.f, 0.f, 5.f}}));
  ASSERT_EQ(r.num_tokens, 2);
  ASSERT_EQ(r.top_k, 2);
  ASSERT_EQ(r.topk_ids.size(), 4u);
  // Token 0: experts 1 and 2; renormalised softmax over the chosen two is e^3/(e^3+e^2), e^2/(...).
  const double a = std::exp(3.0), b = std::exp(2.0);
  expect_routing(r, 0, {1, 2}, {a / (a + b), b / (a + b)});
  // Token 1: expert 3, then the lowest-index of the three tied experts.
  const double c = std::exp(5.0), d = 1.0;
  expect_routing(r, 1, {3, 0}, {c / (c + d), d / (c + d)});
  EXPECT_TRUE(r.shared_weights.empty());
}

TEST(MixtralRouter, RenormalisesEvenWhenSpecSaysOtherwise) {
  ModelSpec spec = make_spec(ModelFamily::Mixtral, 4, 4, 2);
  spec.norm_topk_prob = false;  // Mixtral's block always renormalises
  Router router(spec, identity_gate(4));
  RoutingResult r = router.route(rows_of({{1.f, 3.f, 2.f, 0.f}}));
  EXPECT_NEAR(r.topk_weights[0] + r.topk_weights[1], 1.0, 1e-6);
}

TEST(MixtralRouter, TiedLogitsPickLowerIndicesFirst) {
  Router router(make_spec(ModelFamily::Mixtral, 4, 4, 2), identity_gate(4));
  RoutingResult r = router.route(rows_of({{2.f, 2.f, 2.f, 1.f}, {1.f, 2.f, 2.f, 2.f}}));
  expect_routing(r, 0, {0, 1}, {0.5, 0.5});
  expect_routing(r, 1, {1, 2}, {0.5, 0.5});
}

std::vector<double> softmax(const std::vector<double>& v) {
  double sum = 0;
  for (double x : v) sum += std::exp(x);
  std::vector<double> p;
  for (double x : v) p.push_back(std::exp(x) / sum);
  return p;
}

TEST(QwenRouter, NormTopkProbOffKeepsSoftmaxProbabilities) {
  for (ModelFamily fam : {ModelFamily::Qwen2Moe, ModelFamily::Qwen3Moe}) {
    ModelSpec spec = make_spec(fam, 5, 5, 3);
    spec.norm_topk_prob = false;
    Router router(spec, identity_gate(5));
    RoutingResult r = router.route(rows_of({{0.5f, -1.f, 2.f, 1.5f, 0.f}}));
    const std::vector<double> p = softmax({0.5, -1, 2, 1.5, 0});
    expect_routing(r, 0, {2, 3, 0}, {p[2], p[3], p[0]});
    EXPECT_LT(r.topk_weights[0] + r.topk_weights[1] + r.topk_weights[2], 0.99f);
  }
}

TEST(QwenRouter, NormTopkProbOnRenormalises) {
  for (ModelFamily fam : {ModelFamily::Qwen2Moe, ModelFamily::Qwen3Moe}) {
    ModelSpec spec = make_spec(fam, 5, 5, 3);
    spec.norm_topk_prob = true;
    Router router(spec, identity_gate(5));
    RoutingResult r = router.route(rows_of({{0.5f, -1.f, 2.f, 1.5f, 0.f}}));
    const std::vector<double> p = softmax({0.5, -1, 2, 1.5, 0});
    const double s = p[2] + p[3] + p[0];
    expect_routing(r, 0, {2, 3, 0}, {p[2] / s, p[3] / s, p[0] / s});
  }
}

TEST(QwenRouter, Qwen2SharedExpertWeightIsSigmoidOfGate) {
  ModelSpec spec = make_spec(ModelFamily::Qwen2Moe, 3, 3, 1);
  spec.has_shared_expert = true;
  spec.shared_expert_gated = true;
  spec.shared_intermediate_size = 8;
  RouterWeights w = identity_gate(3);
  w.shared_gate = {0.5f, -2.f, 1.f};
  Router router(spec, w);
  RoutingResult r = router.route(rows_of({{1.f, 0.f, 0.f}, {0.f, 1.f, 3.f}, {0.f, 0.f, 0.f}}));
  ASSERT_EQ(r.shared_weights.size(), 3u);
  EXPECT_NEAR(r.shared_weights[0], test::sigmoid_d(0.5), 1e-7);
  EXPECT_NEAR(r.shared_weights[1], test::sigmoid_d(-2.0 + 3.0), 1e-7);
  EXPECT_NEAR(r.shared_weights[2], 0.5, 1e-7);
}

TEST(QwenRouter, NoSharedExpertMeansNoSharedWeights) {
  Router router(make_spec(ModelFamily::Qwen3Moe, 3, 3, 2), identity_gate(3));
  EXPECT_TRUE(router.route(rows_of({{1.f, 2.f, 3.f}})).shared_weights.empty());
}

TEST(Router, LogitsUseTheWholeGateMatrix) {
  // Non-identity gate: logits = x·Wgᵀ, checked by hand. x = [1, 2], Wg rows [1,0], [0,1], [1,1], [-1,3].
  ModelSpec spec = make_spec(ModelFamily::Mixtral, 2, 4, 4);
  RouterWeights w;
  w.gate = rows_of({{1.f, 0.f}, {0.f, 1.f}, {1.f, 1.f}, {-1.f, 3.f}});
  Router router(spec, w);
  RoutingResult r = router.route(rows_of({{1.f, 2.f}}));
  const std::vector<double> p = softmax({1, 2, 3, 5});
  expect_routing(r, 0, {3, 2, 1, 0}, {p[3], p[2], p[1], p[0]});
}

TEST(Router, EmptyBatchGivesEmptyResult) {
  ModelSpec spec = make_spec(ModelFamily::Qwen2Moe, 3, 3, 1);
  spec.has_shared_expert = true;
  spec.shared_expert_gated = true;
  RouterWeights w = identity_gate(3);
  w.shared_gate = {1.f, 1.f, 1.f};
  RoutingResult r = Router(spec, w).route(Matrix(0, 3));
  EXPECT_EQ(r.num_tokens, 0);
  EXPECT_TRUE(r.topk_ids.empty());
  EXPECT_TRUE(r.topk_weights.empty());
  EXPECT_TRUE(r.shared_weights.empty());
}

}  // namespace
}  // namespace moe
