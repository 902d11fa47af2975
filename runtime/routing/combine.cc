// combine_partial: scatter-add one worker's per-token partial sums into the layer output.
#include "runtime/routing/combine.h"

#include <stdexcept>
#include <string>

namespace moe {

void combine_partial(std::span<const int32_t> tokens, std::span<const float> partial, Matrix& out) {
  const size_t hidden = static_cast<size_t>(out.cols);
  if (out.rows < 0 || out.cols < 0 || out.data.size() != static_cast<size_t>(out.rows * out.cols)) {
    throw std::invalid_argument("combine: output matrix [" + std::to_string(out.rows) + ", " +
                                std::to_string(out.cols) + "] holds " +
                                std::to_string(out.data.size()) + " values");
  }
  if (partial.size() != tokens.size() * hidden) {
    throw std::invalid_argument("combine: partial has " + std::to_string(partial.size()) +
                                " values, expected " + std::to_string(tokens.size()) +
                                " tokens x hidden " + std::to_string(hidden) + " = " +
                                std::to_string(tokens.size() * hidden));
  }
  for (size_t i = 0; i < tokens.size(); ++i) {
    if (tokens[i] < 0 || tokens[i] >= out.rows) {
      throw std::invalid_argument("combine: partial row " + std::to_string(i) + " names token " +
                                  std::to_string(tokens[i]) + ", output has " +
                                  std::to_string(out.rows) + " rows");
    }
  }
  for (size_t i = 0; i < tokens.size(); ++i) {
    float* dst = out.row(tokens[i]);
    const float* src = partial.data() + i * hidden;
    for (size_t h = 0; h < hidden; ++h) dst[h] += src[h];
  }
}

}  // namespace moe
