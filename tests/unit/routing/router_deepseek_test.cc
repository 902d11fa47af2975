// DeepSeek-V3 router: groups, 0.0 masking, correction bias in selection only, norm and scaling.
#include <gtest/gtest.h>

#include <vector>

#include "runtime/routing/router.h"
#include "tests/unit/routing/routing_test_util.h"

namespace moe {
namespace {

using test::logit_of;

// 8 experts in 4 groups of 2, keep 2 groups, top-2; identity gate so the logits are the input.
ModelSpec deepseek_spec(bool norm, float scale) {
  ModelSpec s = test::make_spec(ModelFamily::DeepseekV3, 8, 8, 2);
  s.n_group = 4;
  s.topk_group = 2;
  s.norm_topk_prob = norm;
  s.routed_scaling_factor = scale;
  s.has_shared_expert = true;
  s.shared_expert_gated = false;
  s.shared_intermediate_size = 8;
  return s;
}

struct Case {
  std::vector<double> scores;  // sigmoid outputs wanted
  std::vector<double> bias;
};

RoutingResult route_case(const ModelSpec& spec, const Case& c) {
  RouterWeights w = test::identity_gate(8);
  w.correction_bias.assign(c.bias.begin(), c.bias.end());
  std::vector<float> x;
  for (double s : c.scores) x.push_back(logit_of(s));
  return Router(spec, w).route(test::rows_of({x}));
}

void expect_like_reference(const ModelSpec& spec, const Case& c, const RoutingResult& r,
                           const std::vector<int32_t>& want_ids) {
  std::vector<double> logits;
  for (double s : c.scores) logits.push_back(logit_of(s));
  const test::Expected e = test::reference_deepseek(logits, c.bias, spec);
  ASSERT_EQ(e.ids, want_ids) << "the reference disagrees with the hand-worked ids";
  ASSERT_EQ(r.topk_ids, want_ids);
  for (size_t j = 0; j < want_ids.size(); ++j) EXPECT_NEAR(r.topk_weights[j], e.weights[j], 1e-6);
}

TEST(DeepseekRouter, GroupMaskingBeatsTheSingleBestExpert) {
  // Expert 0 has the highest score, but its group's top-2 sum (0.95 + 0.05 = 1.0) loses to groups
  // 1 (1.22) and 2 (1.13); without group masking expert 0 would be chosen first.
  const Case c{{0.95, 0.05, 0.62, 0.60, 0.58, 0.55, 0.10, 0.10}, std::vector<double>(8, 0.0)};
  const ModelSpec spec = deepseek_spec(true, 1.f);
  const RoutingResult r = route_case(spec, c);
  expect_like_reference(spec, c, r, {2, 3});
  EXPECT_NEAR(r.topk_weights[0], 0.62 / 1.22, 1e-6);
  EXPECT_NEAR(r.topk_weights[1], 0.60 / 1.22, 1e-6);

  ModelSpec no_masking = spec;
  no_masking.topk_group = no_masking.n_group;
  EXPECT_EQ(route_case(no_masking, c).topk_ids, (std::vector<int32_t>{0, 2}));
}

TEST(DeepseekRouter, MaskedExpertsScoreMinusInfinityEvenWhenKeptScoresAreNegative) {
  // Every bias is -1, so all kept choice scores are negative. HF (transformers 5.x, checked by the peer
  // test) masks dropped groups with -inf, so top-k still picks from the kept groups 1 and 2; masking
  // with 0.0 (older releases, and ../shared/ARCHITECTURE.md) would pick experts 0 and 1 instead.
  const Case c{{0.95, 0.05, 0.62, 0.60, 0.58, 0.55, 0.10, 0.10}, std::vector<double>(8, -1.0)};
  const ModelSpec spec = deepseek_spec(true, 1.f);
  const RoutingResult r = route_case(spec, c);
  expect_like_reference(spec, c, r, {2, 3});
  EXPECT_NEAR(r.topk_weights[0], 0.62 / 1.22, 1e-6);
  EXPECT_NEAR(r.topk_weights[1], 0.60 / 1.22, 1e-6);
}

TEST(DeepseekRouter, BiasSelectsButWeightsUseTheUnbiasedScore) {
  // Expert 3 (score 0.2) wins through its bias 0.8; its weight is 0.2, not 1.0.
  const Case c{{0.9, 0.1, 0.5, 0.2, 0.3, 0.3, 0.4, 0.1}, {0, 0, 0, 0.8, 0, 0, 0, 0}};
  const ModelSpec spec = deepseek_spec(true, 2.5f);
  const RoutingResult r = route_case(spec, c);
  expect_like_reference(spec, c, r, {3, 0});
  EXPECT_NEAR(r.topk_weights[0], 0.2 / 1.1 * 2.5, 1e-6);
  EXPECT_NEAR(r.topk_weights[1], 0.9 / 1.1 * 2.5, 1e-6);
}

TEST(DeepseekRouter, NormOffKeepsScoresTimesScalingFactor) {
  const Case c{{0.9, 0.1, 0.5, 0.2, 0.3, 0.3, 0.4, 0.1}, {0, 0, 0, 0.8, 0, 0, 0, 0}};
  const ModelSpec spec = deepseek_spec(false, 2.5f);
  const RoutingResult r = route_case(spec, c);
  expect_like_reference(spec, c, r, {3, 0});
  EXPECT_NEAR(r.topk_weights[0], 0.2 * 2.5, 1e-6);
  EXPECT_NEAR(r.topk_weights[1], 0.9 * 2.5, 1e-6);
}

TEST(DeepseekRouter, SharedExpertWeightIsOne) {
  const Case c{{0.9, 0.1, 0.5, 0.2, 0.3, 0.3, 0.4, 0.1}, std::vector<double>(8, 0.0)};
  const RoutingResult r = route_case(deepseek_spec(true, 1.f), c);
  EXPECT_EQ(r.shared_weights, std::vector<float>{1.f});
}

TEST(DeepseekRouter, TiedGroupScoresKeepLowerGroupIndices) {
  // Groups 0, 1 and 2 hold the same two scores (top-2 sums tie exactly); groups 0 and 1 are kept.
  // Top-3 over them: experts 1 and 2 (0.7, tied: lower index first), then expert 0 (0.3, ties 3).
  const Case c{{0.3, 0.7, 0.7, 0.3, 0.3, 0.7, 0.1, 0.2}, std::vector<double>(8, 0.0)};
  ModelSpec spec = deepseek_spec(true, 1.f);
  spec.top_k = 3;
  const RoutingResult r = route_case(spec, c);
  expect_like_reference(spec, c, r, {1, 2, 0});
}

}  // namespace
}  // namespace moe
