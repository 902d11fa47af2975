// Shared helpers of the client tests: inputs (tests/common), an output comparison, and a LocalEngine reference.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <memory>

#include "kernels/expert_backend.h"
#include "runtime/engine/local_engine.h"
#include "runtime/model/synthetic_model.h"
#include "tests/common/random_matrix.h"

namespace moe::test {

// Largest per-row relative L2 error of `got` against `want`.
inline double max_row_relative_error(const Matrix& got, const Matrix& want) {
  EXPECT_EQ(got.rows, want.rows);
  EXPECT_EQ(got.cols, want.cols);
  double worst = 0;
  for (int64_t r = 0; r < want.rows && r < got.rows; ++r) {
    double diff = 0, norm = 0;
    for (int64_t c = 0; c < want.cols; ++c) {
      const double d = got.row(r)[c] - want.row(r)[c];
      diff += d * d;
      norm += double(want.row(r)[c]) * want.row(r)[c];
    }
    worst = std::max(worst, std::sqrt(diff) / std::max(std::sqrt(norm), 1e-12));
  }
  return worst;
}

inline std::unique_ptr<LocalEngine> local_engine(const LayerSource& source) {
  return std::make_unique<LocalEngine>(source, make_cpu_backend(1));
}

}  // namespace moe::test
