// Test helpers for the kernel tests: random expert weights in F32/BF16/F16 views, and the naive
// double-precision reference of ExpertBackend::forward that the backends are compared against.
#pragma once

#include <cmath>
#include <cstdint>
#include <random>
#include <span>
#include <vector>

#include "kernels/expert_backend.h"

namespace moe::test {

// One weight matrix stored in `dtype`, plus its exact values in double.
struct RandomMatrix {
  DType dtype = DType::F32;
  int64_t rows = 0, cols = 0;
  std::vector<float> f32;
  std::vector<uint16_t> half;  // BF16 or F16 bits
  std::vector<double> exact;

  RandomMatrix(DType t, int64_t r, int64_t c, float scale, std::mt19937& rng) : dtype(t), rows(r), cols(c) {
    const size_t n = static_cast<size_t>(r * c);
    std::uniform_real_distribution<float> uni(-scale, scale);
    exact.resize(n);
    if (t == DType::F32) {
      f32.resize(n);
      for (size_t i = 0; i < n; ++i) exact[i] = f32[i] = uni(rng);
    } else if (t == DType::BF16) {
      half.resize(n);
      for (size_t i = 0; i < n; ++i) exact[i] = bf16_to_f32(half[i] = f32_to_bf16(uni(rng)));
    } else {  // random F16 bit patterns: any sign, magnitude in [2^-8, 2^-3), full mantissa
      half.resize(n);
      std::uniform_int_distribution<int> sign(0, 1), exp(7, 11), mant(0, 1023);
      for (size_t i = 0; i < n; ++i) {
        half[i] = static_cast<uint16_t>((sign(rng) << 15) | (exp(rng) << 10) | mant(rng));
        exact[i] = f16_to_f32(half[i]);
      }
    }
  }
  WeightMatrixView view() const {
    return {dtype, dtype == DType::F32 ? static_cast<const void*>(f32.data()) : half.data(), rows, cols};
  }
};

struct RandomExpert {
  RandomMatrix gate, up, down;
  RandomExpert(DType t, int64_t hidden, int64_t inter, std::mt19937& rng)
      : gate(t, inter, hidden, 1.f / std::sqrt(static_cast<float>(hidden)), rng),
        up(t, inter, hidden, 1.f / std::sqrt(static_cast<float>(hidden)), rng),
        down(t, hidden, inter, 1.f / std::sqrt(static_cast<float>(inter)), rng) {}
  ExpertWeightsView view() const { return {gate.view(), up.view(), down.view()}; }

  // y += weight * down(silu(gate x) * up x), all in double.
  void accumulate(const float* x, double weight, double* y) const {
    const int64_t inter = gate.rows, hidden = gate.cols;
    std::vector<double> act(static_cast<size_t>(inter));
    for (int64_t i = 0; i < inter; ++i) {
      double g = 0, u = 0;
      for (int64_t h = 0; h < hidden; ++h) {
        g += gate.exact[static_cast<size_t>(i * hidden + h)] * x[h];
        u += up.exact[static_cast<size_t>(i * hidden + h)] * x[h];
      }
      act[static_cast<size_t>(i)] = g / (1.0 + std::exp(-g)) * u;
    }
    for (int64_t h = 0; h < hidden; ++h) {
      double s = 0;
      for (int64_t i = 0; i < inter; ++i) s += down.exact[static_cast<size_t>(h * inter + i)] * act[static_cast<size_t>(i)];
      y[h] += weight * s;
    }
  }
};

inline std::vector<float> random_tokens(int64_t num_tokens, int64_t hidden, std::mt19937& rng) {
  std::uniform_real_distribution<float> uni(-1.f, 1.f);
  std::vector<float> x(static_cast<size_t>(num_tokens * hidden));
  for (float& v : x) v = uni(rng);
  return x;
}

// The reference forward: experts[id] for each assignment's expert id.
inline std::vector<double> reference_forward(const std::vector<const RandomExpert*>& experts, const float* x,
                                             int64_t num_tokens, int64_t hidden,
                                             std::span<const TokenAssignment> assignments) {
  std::vector<double> y(static_cast<size_t>(num_tokens * hidden), 0.0);
  for (const TokenAssignment& a : assignments)
    experts[static_cast<size_t>(a.expert)]->accumulate(x + a.token * hidden, a.weight, y.data() + a.token * hidden);
  return y;
}

}  // namespace moe::test
