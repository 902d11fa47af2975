// Seeded N(0, 1) hidden states for the benchmarks' inputs (the same seed gives the same matrix).
#pragma once

#include <cstdint>
#include <random>

#include "runtime/model/tensor.h"

namespace moe {

inline Matrix random_tokens(int64_t rows, int64_t hidden, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.f, 1.f);
  Matrix x(rows, hidden);
  for (auto& v : x.data) v = normal(rng);
  return x;
}

}  // namespace moe
