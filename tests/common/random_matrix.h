// Seeded random activations for tests: a rows x hidden Matrix of N(0, 1) values (std::mt19937), the
// same values for the same seed in every test that uses it.
#pragma once

#include <cstdint>
#include <random>

#include "runtime/model/tensor.h"

namespace moe::test {

inline Matrix random_input(int64_t rows, int64_t hidden, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.f, 1.f);
  Matrix x(rows, hidden);
  for (auto& v : x.data) v = normal(rng);
  return x;
}

}  // namespace moe::test
