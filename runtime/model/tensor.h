// A plain owned f32 matrix [rows, cols], row-major: the activations type of the runtime.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace moe {

struct Matrix {
  int64_t rows = 0;
  int64_t cols = 0;
  std::vector<float> data;

  Matrix() = default;
  Matrix(int64_t r, int64_t c) : rows(r), cols(c), data(static_cast<size_t>(r * c), 0.f) {}
  float* row(int64_t r) { return data.data() + r * cols; }
  const float* row(int64_t r) const { return data.data() + r * cols; }
};

}  // namespace moe
