// combine_partial: scatter-add one worker's per-token partial sums into the layer output; combine_rows:
// the deterministic mode's fixed-order sum.
#include "runtime/routing/combine.h"

#include <algorithm>
#include <numeric>
#include <stdexcept>
#include <vector>
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

void combine_rows(std::span<const TokenAssignment> assignments, std::span<const float> rows, Matrix& out) {
  const size_t hidden = static_cast<size_t>(out.cols);
  if (out.rows < 0 || out.cols < 0 || out.data.size() != static_cast<size_t>(out.rows * out.cols)) {
    throw std::invalid_argument("combine_rows: output matrix [" + std::to_string(out.rows) + ", " +
                                std::to_string(out.cols) + "] holds " + std::to_string(out.data.size()) + " values");
  }
  if (rows.size() != assignments.size() * hidden) {
    throw std::invalid_argument("combine_rows: rows has " + std::to_string(rows.size()) + " values, expected " +
                                std::to_string(assignments.size()) + " assignments x hidden " + std::to_string(hidden) +
                                " = " + std::to_string(assignments.size() * hidden));
  }
  for (size_t a = 0; a < assignments.size(); ++a) {
    if (assignments[a].token < 0 || assignments[a].token >= out.rows) {
      throw std::invalid_argument("combine_rows: assignment " + std::to_string(a) + " names token " +
                                  std::to_string(assignments[a].token) + ", output has " + std::to_string(out.rows) +
                                  " rows");
    }
  }
  // The order: by token, then expert id.
  std::vector<size_t> order(assignments.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    const TokenAssignment &x = assignments[a], &y = assignments[b];
    return x.token != y.token ? x.token < y.token : x.expert < y.expert;
  });
  std::fill(out.data.begin(), out.data.end(), 0.f);
  for (size_t i = 0; i < order.size(); ++i) {
    const TokenAssignment& a = assignments[order[i]];
    if (i > 0) {
      const TokenAssignment& prev = assignments[order[i - 1]];
      if (prev.token == a.token && prev.expert == a.expert)
        throw std::invalid_argument("combine_rows: token " + std::to_string(a.token) + " has expert " +
                                    std::to_string(a.expert) + " twice (assignments " + std::to_string(order[i - 1]) +
                                    " and " + std::to_string(order[i]) + ")");
    }
    float* dst = out.row(a.token);
    const float* src = rows.data() + order[i] * hidden;
    for (size_t h = 0; h < hidden; ++h) dst[h] += src[h];
  }
}

}  // namespace moe
