// ExpertMath on the CPU backend, on both of its paths (streaming kernels for few tokens, sgemm for many):
// gpt-oss's clamped SwiGLU with gate/up/down biases, and llama4's routing weight applied to the input,
// against a naive double-precision reference written from HF's formulas.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "kernels/cpu/cpu_backend.h"
#include "tests/unit/kernels/reference_expert.h"

namespace moe {
namespace {

constexpr int64_t kHidden = 48, kInter = 80;  // 80: more than one 64-row streaming block

struct Case {
  ExpertMath math;
  bool biases = false;
};

// y += out_w · (down · act(w_in · gate·x + bg, w_in · up·x + bu) + bd)
void reference(const test::RandomExpert& e, const std::vector<double>& b, const ExpertMath& m, const float* x,
               double weight, double* y) {
  const double in = m.weight_scales_input ? weight : 1.0, out = m.weight_scales_input ? 1.0 : weight;
  std::vector<double> act(kInter);
  for (int64_t i = 0; i < kInter; ++i) {
    double g = 0, u = 0;
    for (int64_t h = 0; h < kHidden; ++h) {
      g += e.gate.exact[i * kHidden + h] * x[h];
      u += e.up.exact[i * kHidden + h] * x[h];
    }
    g = g * in + (b.empty() ? 0 : b[i]);
    u = u * in + (b.empty() ? 0 : b[kInter + i]);
    if (m.activation == ExpertActivation::SiluGlu) {
      act[i] = g / (1 + std::exp(-g)) * u;
    } else {
      g = std::min<double>(g, m.swiglu_limit);
      u = std::clamp<double>(u, -m.swiglu_limit, m.swiglu_limit);
      act[i] = (u + 1) * g / (1 + std::exp(-m.swiglu_alpha * g));
    }
  }
  for (int64_t h = 0; h < kHidden; ++h) {
    double s = b.empty() ? 0 : b[2 * kInter + h];
    for (int64_t i = 0; i < kInter; ++i) s += e.down.exact[h * kInter + i] * act[i];
    y[h] += out * s;
  }
}

// first_default: expert 0 has the default math and no biases (so kernels amx/avx512bf16 pack it and run it
// in the same forward as expert 1 on the blas path).
void check(const Case& c, int max_streaming_tokens, int64_t tokens, CpuKernel kernel = CpuKernel::Auto,
           bool first_default = false) {
  std::mt19937 rng(7);
  std::vector<test::RandomExpert> experts;
  for (int i = 0; i < 2; ++i) experts.emplace_back(DType::F32, kHidden, kInter, rng);
  std::vector<std::vector<float>> biases(2);  // [gate I | up I | down H] per expert
  std::uniform_real_distribution<float> uni(-1.f, 1.f);
  CpuBackendOptions options;
  options.threads = 1;
  options.max_streaming_tokens = max_streaming_tokens;
  options.kernel = kernel;
  CpuBackend backend(options);
  std::vector<ExpertMath> maths(2, c.math);
  if (first_default) maths[0] = ExpertMath{};
  for (int e = 0; e < 2; ++e) {
    ExpertWeightsView v = experts[e].view();
    v.math = maths[e];
    if (c.biases && !(first_default && e == 0)) {
      biases[e].resize(2 * kInter + kHidden);
      for (float& b : biases[e]) b = uni(rng);
      v.gate_bias = {DType::F32, biases[e].data(), kInter};
      v.up_bias = {DType::F32, biases[e].data() + kInter, kInter};
      v.down_bias = {DType::F32, biases[e].data() + 2 * kInter, kHidden};
    }
    backend.load_expert({0, e}, v);
  }
  // Inputs large enough that the clamp is reached (limit 1.5 below).
  std::vector<float> x = test::random_tokens(tokens, kHidden, rng);
  for (float& v : x) v *= 3.f;
  std::vector<TokenAssignment> assignments;
  std::uniform_real_distribution<float> w(0.2f, 1.5f);
  for (int32_t t = 0; t < tokens; ++t)
    for (int32_t e = 0; e < 2; ++e) assignments.push_back({t, e, w(rng)});
  std::vector<float> out(tokens * kHidden);
  backend.forward(0, x.data(), tokens, kHidden, assignments, out.data());

  std::vector<double> want(tokens * kHidden, 0.0);
  for (const auto& a : assignments) {
    std::vector<double> b(biases[a.expert].begin(), biases[a.expert].end());
    reference(experts[a.expert], b, maths[a.expert], x.data() + a.token * kHidden, a.weight, want.data() + a.token * kHidden);
  }
  double num = 0, den = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    num = std::max(num, std::abs(out[i] - want[i]));
    den = std::max(den, std::abs(want[i]));
  }
  EXPECT_LT(num / den, 1e-5) << "tokens " << tokens << ", streaming up to " << max_streaming_tokens;
}

ExpertMath clamped() {
  ExpertMath m;
  m.activation = ExpertActivation::ClampedSwiglu;
  m.swiglu_alpha = 1.702f;
  m.swiglu_limit = 1.5f;
  return m;
}

ExpertMath input_scaled() {
  ExpertMath m;
  m.weight_scales_input = true;
  return m;
}

TEST(ExpertMath, ClampedSwigluWithBiasesOnBothPaths) {
  for (int streaming : {48, 0}) check({clamped(), true}, streaming, 5);
  check({clamped(), true}, 48, 60);  // more tokens than the streaming limit: sgemm
}

TEST(ExpertMath, WeightScalingTheInputOnBothPaths) {
  for (int streaming : {48, 0}) check({input_scaled(), false}, streaming, 5);
  check({input_scaled(), false}, 48, 60);
}

TEST(ExpertMath, PackedAndBlasExpertsInOneForward) {
  for (CpuKernel kernel : {CpuKernel::Amx, CpuKernel::Avx512Bf16}) {
    if ((kernel == CpuKernel::Amx && !amx_available()) || (kernel == CpuKernel::Avx512Bf16 && !avx512bf16_available()))
      continue;
    for (int64_t tokens : {5, 60}) check({clamped(), true}, 48, tokens, kernel, true);
    check({input_scaled(), false}, 48, 5, kernel, true);
  }
}

TEST(ExpertMath, BiasesMustComeAsAFullSet) {
  std::mt19937 rng(1);
  test::RandomExpert e(DType::F32, kHidden, kInter, rng);
  std::vector<float> b(kInter, 0.f);
  ExpertWeightsView v = e.view();
  v.gate_bias = {DType::F32, b.data(), kInter};
  CpuBackend backend;
  try {
    backend.load_expert({0, 0}, v);
    ADD_FAILURE() << "a gate bias without up and down biases was accepted";
  } catch (const std::invalid_argument& err) {
    EXPECT_NE(std::string(err.what()).find("up bias has 0 values, expected 80"), std::string::npos) << err.what();
  }
}

}  // namespace
}  // namespace moe
