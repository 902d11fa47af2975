// The deterministic mode's property check, shared by the LocalEngine and cluster tests: random batches
// that mix a fixed probe token (at one to three random rows) with other tokens; every output row of the
// probe is compared bit for bit with the probe's solo output. Returns what it saw, so a test can require
// no difference (deterministic mode) or print the differences (default mode).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <random>
#include <sstream>
#include <string>

#include "runtime/model/tensor.h"

namespace moe::test {

struct ProbeRun {
  int batches = 0;
  int rows_checked = 0;
  int rows_differing = 0;
  int batches_differing = 0;
  double max_abs_diff = 0;       // over differing rows
  std::string first_difference;  // "batch B (T tokens), probe at row R: N of H values differ, max |d| D"

  std::string summary() const {
    std::ostringstream s;
    s << rows_differing << " of " << rows_checked << " probe rows differ from the solo output, in " << batches_differing
      << " of " << batches << " batches; max |difference| " << max_abs_diff;
    if (!first_difference.empty()) s << "; first: " << first_difference;
    return s.str();
  }
};

struct ProbeBatchOptions {
  int batches = 200;
  int max_others = 64;  // other tokens per batch: uniform in [0, max_others]
};

// forward(x) -> output rows; other(rng) -> one other token [1, hidden]; before(b) runs before batch b
// (placement changes, ...).
inline ProbeRun run_probe_batches(const std::function<Matrix(const Matrix&)>& forward, const Matrix& probe,
                                  const Matrix& solo, std::mt19937& rng, const ProbeBatchOptions& options,
                                  const std::function<Matrix(std::mt19937&)>& other,
                                  const std::function<void(int)>& before = {}) {
  ProbeRun run;
  const int64_t hidden = probe.cols;
  for (int b = 0; b < options.batches; ++b) {
    if (before) before(b);
    const int others = std::uniform_int_distribution<int>(0, options.max_others)(rng);
    const int copies = std::uniform_int_distribution<int>(1, 3)(rng);
    const int64_t T = others + copies;
    std::vector<bool> is_probe(static_cast<size_t>(T), false);
    for (int c = 0; c < copies; ++c) is_probe[static_cast<size_t>(c)] = true;
    std::shuffle(is_probe.begin(), is_probe.end(), rng);
    Matrix x(T, hidden);
    for (int64_t t = 0; t < T; ++t) {
      const Matrix row = is_probe[static_cast<size_t>(t)] ? probe : other(rng);
      std::copy_n(row.row(0), hidden, x.row(t));
    }
    const Matrix y = forward(x);
    bool batch_differs = false;
    for (int64_t t = 0; t < T; ++t) {
      if (!is_probe[static_cast<size_t>(t)]) continue;
      ++run.rows_checked;
      if (std::memcmp(y.row(t), solo.row(0), static_cast<size_t>(hidden) * sizeof(float)) == 0) continue;
      ++run.rows_differing;
      batch_differs = true;
      int values = 0;
      double max_d = 0;
      for (int64_t h = 0; h < hidden; ++h) {
        const double d = std::abs(static_cast<double>(y.row(t)[h]) - solo.row(0)[h]);
        values += y.row(t)[h] != solo.row(0)[h];
        max_d = std::max(max_d, d);
      }
      run.max_abs_diff = std::max(run.max_abs_diff, max_d);
      if (run.first_difference.empty()) {
        std::ostringstream s;
        s << "batch " << b << " (" << T << " tokens), probe at row " << t << ": " << values << " of " << hidden
          << " values differ, max |d| " << max_d;
        run.first_difference = s.str();
      }
    }
    run.batches_differing += batch_differs;
    ++run.batches;
  }
  return run;
}

}  // namespace moe::test
