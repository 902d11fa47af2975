// Every family on random weights and a large-enough batch against the double-precision reference in
// routing_test_util.h (logits recomputed in double, so the sgemm path is checked too).
#include <gtest/gtest.h>

#include <random>
#include <vector>

#include "runtime/routing/router.h"
#include "tests/unit/routing/routing_test_util.h"

namespace moe {
namespace {

struct RandomLayer {
  ModelSpec spec;
  RouterWeights weights;
  Matrix x;
};

RandomLayer random_layer(ModelSpec spec, int64_t tokens, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.f, 1.f);
  RandomLayer L{spec, {}, Matrix(tokens, spec.hidden_size)};
  L.weights.gate = Matrix(spec.num_experts, spec.hidden_size);
  const float scale = 1.f / std::sqrt(static_cast<float>(spec.hidden_size));
  for (float& v : L.weights.gate.data) v = normal(rng) * scale;
  for (float& v : L.x.data) v = normal(rng);
  if (spec.family == ModelFamily::DeepseekV3) {
    for (int32_t e = 0; e < spec.num_experts; ++e) L.weights.correction_bias.push_back(0.1f * normal(rng));
  }
  if (spec.has_shared_expert && spec.shared_expert_gated) {
    for (int64_t h = 0; h < spec.hidden_size; ++h) L.weights.shared_gate.push_back(scale * normal(rng));
  }
  return L;
}

std::vector<double> logits_in_double(const RandomLayer& L, int64_t t) {
  std::vector<double> out;
  for (int32_t e = 0; e < L.spec.num_experts; ++e) {
    double acc = 0;
    for (int64_t h = 0; h < L.spec.hidden_size; ++h) {
      acc += static_cast<double>(L.x.row(t)[h]) * L.weights.gate.row(e)[h];
    }
    out.push_back(acc);
  }
  return out;
}

void check_against_reference(const RandomLayer& L) {
  const RoutingResult r = Router(L.spec, L.weights).route(L.x);
  const int32_t K = L.spec.top_k;
  ASSERT_EQ(r.num_tokens, L.x.rows);
  ASSERT_EQ(r.topk_ids.size(), static_cast<size_t>(L.x.rows * K));
  for (int64_t t = 0; t < L.x.rows; ++t) {
    const std::vector<double> logits = logits_in_double(L, t);
    test::Expected e;
    if (L.spec.family == ModelFamily::DeepseekV3) {
      std::vector<double> bias(L.weights.correction_bias.begin(), L.weights.correction_bias.end());
      e = test::reference_deepseek(logits, bias, L.spec);
    } else {
      const bool norm = L.spec.family == ModelFamily::Mixtral || L.spec.norm_topk_prob;
      e = test::reference_softmax(logits, K, norm);
    }
    for (int32_t j = 0; j < K; ++j) {
      ASSERT_EQ(r.topk_ids[t * K + j], e.ids[j]) << "token " << t << " slot " << j;
      ASSERT_NEAR(r.topk_weights[t * K + j], e.weights[j], 1e-5 * std::max(1.0, e.weights[j]))
          << "token " << t << " slot " << j;
    }
    if (L.spec.has_shared_expert) {
      double gate = 0;
      for (int64_t h = 0; h < L.spec.hidden_size && L.spec.shared_expert_gated; ++h) {
        gate += static_cast<double>(L.x.row(t)[h]) * L.weights.shared_gate[h];
      }
      const double want = L.spec.shared_expert_gated ? test::sigmoid_d(gate) : 1.0;
      ASSERT_NEAR(r.shared_weights.at(t), want, 1e-5) << "token " << t;
    } else {
      ASSERT_TRUE(r.shared_weights.empty());
    }
  }
}

TEST(RouterReference, Mixtral) {
  check_against_reference(random_layer(test::make_spec(ModelFamily::Mixtral, 96, 8, 2), 300, 1));
}

TEST(RouterReference, Qwen2MoeWithGatedSharedExpertNormOff) {
  ModelSpec s = test::make_spec(ModelFamily::Qwen2Moe, 128, 60, 4);
  s.norm_topk_prob = false;
  s.has_shared_expert = true;
  s.shared_expert_gated = true;
  check_against_reference(random_layer(s, 257, 2));
}

TEST(RouterReference, Qwen3MoeNormOn) {
  ModelSpec s = test::make_spec(ModelFamily::Qwen3Moe, 64, 128, 8);
  s.norm_topk_prob = true;
  check_against_reference(random_layer(s, 200, 3));
}

TEST(RouterReference, DeepseekV3GroupedWithSharedExpert) {
  ModelSpec s = test::make_spec(ModelFamily::DeepseekV3, 112, 64, 8);
  s.n_group = 8;
  s.topk_group = 4;
  s.routed_scaling_factor = 2.5f;
  s.has_shared_expert = true;
  check_against_reference(random_layer(s, 300, 4));
}

TEST(RouterReference, DeepseekV3NormOffSingleGroup) {
  ModelSpec s = test::make_spec(ModelFamily::DeepseekV3, 48, 16, 4);
  s.n_group = 1;
  s.topk_group = 1;
  s.norm_topk_prob = false;
  s.routed_scaling_factor = 1.5f;
  check_against_reference(random_layer(s, 100, 5));
}

TEST(RouterReference, OneTokenAndManyTokensAgree) {
  // Routing a token alone or inside a batch gives the same experts (the sgemm shape must not matter).
  ModelSpec s = test::make_spec(ModelFamily::Qwen3Moe, 256, 32, 4);
  const RandomLayer L = random_layer(s, 64, 6);
  const Router router(L.spec, L.weights);
  const RoutingResult all = router.route(L.x);
  for (int64_t t = 0; t < L.x.rows; t += 7) {
    Matrix one(1, s.hidden_size);
    std::copy(L.x.row(t), L.x.row(t) + s.hidden_size, one.row(0));
    const RoutingResult r = router.route(one);
    for (int32_t j = 0; j < s.top_k; ++j) {
      EXPECT_EQ(r.topk_ids[j], all.topk_ids[t * s.top_k + j]);
      EXPECT_NEAR(r.topk_weights[j], all.topk_weights[t * s.top_k + j], 1e-6);
    }
  }
}

}  // namespace
}  // namespace moe
