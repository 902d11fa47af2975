// The routers of the families added after the first four, on logits chosen exactly (identity gate):
// gpt_oss (top-k of logits + router bias, softmax over the k), llama4_text (top-k of logits, sigmoid
// weights), ernie4_5_moe (selection on softmax + bias, weights / max(Σ, norm_min)), minimax_m2 (sigmoid +
// correction bias, no groups, renormalised), and the shared-expert weights of qwen3_next / glm4_moe.
#include <gtest/gtest.h>

#include <cmath>

#include "runtime/routing/router.h"
#include "tests/unit/routing/routing_test_util.h"

namespace moe {
namespace {

using test::identity_gate;
using test::make_spec;
using test::rows_of;

TEST(RouterFamilies, GptOssTopkOfBiasedLogitsThenSoftmaxOverTheK) {
  ModelSpec s = make_spec(ModelFamily::GptOss, 4, 4, 2);
  RouterWeights w = identity_gate(4);
  w.correction_bias = {0.f, 0.f, 2.f, 0.f};  // lifts expert 2 above expert 0
  Router r(s, w);
  RoutingResult out = r.route(rows_of({{1.5f, 1.0f, 0.f, -3.f}}));
  ASSERT_EQ(out.topk_ids, (std::vector<int32_t>{2, 0}));
  const double e = std::exp(1.5 - 2.0);  // softmax over {2.0, 1.5}
  EXPECT_NEAR(out.topk_weights[0], 1.0 / (1.0 + e), 1e-6);
  EXPECT_NEAR(out.topk_weights[1], e / (1.0 + e), 1e-6);
}

TEST(RouterFamilies, Llama4SigmoidOfTheChosenLogits) {
  ModelSpec s = make_spec(ModelFamily::Llama4Text, 4, 4, 1);
  s.has_shared_expert = true;
  s.shared_intermediate_size = 8;
  Router r(s, identity_gate(4));
  RoutingResult out = r.route(rows_of({{0.5f, -1.f, 0.75f, 0.f}}));
  ASSERT_EQ(out.topk_ids, (std::vector<int32_t>{2}));
  EXPECT_NEAR(out.topk_weights[0], 1.0 / (1.0 + std::exp(-0.75)), 1e-6);
  ASSERT_EQ(out.shared_weights.size(), 1u);
  EXPECT_EQ(out.shared_weights[0], 1.f);  // ungated shared expert
}

TEST(RouterFamilies, ErnieSelectsOnBiasedSoftmaxAndClampsTheDenominator) {
  ModelSpec s = make_spec(ModelFamily::Ernie45Moe, 4, 4, 2);
  s.norm_min = 0.f;
  RouterWeights w = identity_gate(4);
  w.correction_bias = {0.f, 0.f, 0.f, 1.f};  // expert 3 chosen despite the lowest probability
  Router r(s, w);
  const std::vector<float> logits = {2.f, 1.f, 0.f, -1.f};
  RoutingResult out = r.route(rows_of({logits}));
  ASSERT_EQ(out.topk_ids, (std::vector<int32_t>{3, 0}));
  double z = 0;
  for (float l : logits) z += std::exp(l);
  const double p3 = std::exp(-1.0) / z, p0 = std::exp(2.0) / z;
  EXPECT_NEAR(out.topk_weights[0], p3 / (p3 + p0), 1e-6);
  EXPECT_NEAR(out.topk_weights[1], p0 / (p3 + p0), 1e-6);

  s.norm_min = 2.f;  // Σ < norm_min: divided by norm_min instead
  Router clamped(s, w);
  out = clamped.route(rows_of({logits}));
  EXPECT_NEAR(out.topk_weights[0], p3 / 2.0, 1e-6);
}

TEST(RouterFamilies, MinimaxSigmoidWithCorrectionBiasRenormalised) {
  ModelSpec s = make_spec(ModelFamily::MinimaxM2, 4, 4, 2);
  RouterWeights w = identity_gate(4);
  w.correction_bias = {0.f, 0.5f, 0.f, 0.f};
  Router r(s, w);
  RoutingResult out = r.route(rows_of({{1.f, 0.5f, 0.75f, -2.f}}));
  ASSERT_EQ(out.topk_ids, (std::vector<int32_t>{1, 0}));  // 0.62 + 0.5 beats 0.73
  const double a = test::sigmoid_d(0.5), b = test::sigmoid_d(1.0);
  EXPECT_NEAR(out.topk_weights[0], a / (a + b), 1e-6);
  EXPECT_NEAR(out.topk_weights[1], b / (a + b), 1e-6);
}

TEST(RouterFamilies, RouterBiasIsRequiredWhereTheFamilyHasOne) {
  EXPECT_THROW(Router(make_spec(ModelFamily::GptOss, 4, 4, 2), identity_gate(4)), std::exception);
  EXPECT_THROW(Router(make_spec(ModelFamily::Glm4Moe, 4, 4, 2), identity_gate(4)), std::exception);
}

}  // namespace
}  // namespace moe
