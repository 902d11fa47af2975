// The hand-written kernels alone: rows_dot_tokens against a double-precision dot product for every
// token count up to 13 (all chunk remainders), row ranges not multiples of the row block, and lengths
// around the vector width; silu_mul against the exact formula across its whole range.
#include "kernels/cpu/streaming_kernels.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <stdexcept>
#include <vector>

namespace moe {
namespace {

TEST(RowsDotTokens, MatchesDoubleDotProducts) {
  std::mt19937 rng(17);
  std::uniform_real_distribution<float> uni(-1.f, 1.f);
  for (int64_t k : {1, 15, 16, 17, 33, 100}) {
    const int64_t rows = 23, ldw = k + 3;  // padded rows: ldw != k
    std::vector<float> w(static_cast<size_t>(rows * ldw));
    for (float& v : w) v = uni(rng);
    for (int n = 1; n <= 13; ++n) {
      std::vector<float> x(static_cast<size_t>(n * k));
      for (float& v : x) v = uni(rng);
      std::vector<const float*> tokens;
      for (int j = 0; j < n; ++j) tokens.push_back(x.data() + j * k);
      const int64_t row_begin = 2, row_end = 21, ldc = 30;
      std::vector<float> c(static_cast<size_t>(n * ldc), -7.f);
      rows_dot_tokens(w.data(), ldw, row_begin, row_end, tokens.data(), n, k, c.data(), ldc);
      for (int j = 0; j < n; ++j)
        for (int64_t r = row_begin; r < row_end; ++r) {
          double ref = 0;
          for (int64_t i = 0; i < k; ++i) ref += static_cast<double>(w[static_cast<size_t>(r * ldw + i)]) * x[static_cast<size_t>(j * k + i)];
          ASSERT_NEAR(c[static_cast<size_t>(j * ldc + r - row_begin)], ref, 1e-5 * (1 + std::sqrt(static_cast<double>(k))))
              << "k " << k << ", n " << n << ", token " << j << ", row " << r;
        }
      // Columns past row_end - row_begin are not written.
      EXPECT_EQ(c[static_cast<size_t>(row_end - row_begin)], -7.f);
    }
  }
}

TEST(RowsDotTokens, RejectsZeroTokens) {
  float w = 1.f;
  EXPECT_THROW(rows_dot_tokens(&w, 1, 0, 1, nullptr, 0, 1, &w, 1), std::invalid_argument);
}

TEST(SiluMul, MatchesExactFormulaAcrossTheRange) {
  std::vector<float> gate, up;
  for (float g = -120.f; g <= 120.f; g += 0.0371f) {
    gate.push_back(g);
    up.push_back(0.5f + 0.001f * g);
  }
  gate.push_back(0.f);
  up.push_back(3.f);
  std::vector<float> act(gate.size());
  silu_mul(gate.data(), up.data(), act.data(), static_cast<int64_t>(gate.size()));
  for (size_t i = 0; i < gate.size(); ++i) {
    const double g = gate[i];
    const double ref = g / (1.0 + std::exp(-g)) * up[i];
    ASSERT_NEAR(act[i], ref, 1e-6 * std::abs(ref) + 1e-30) << "gate " << g;
  }
}

}  // namespace
}  // namespace moe
