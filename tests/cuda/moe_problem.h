// Random MoE-layer problems for the CUDA backend tests and their double-precision reference:
// experts with bf16 (or f32/f16) weights, activations, routing, and
//   ref[t, :] = Σ_{a : a.token == t} a.weight · down( silu(gate·x[t]) ⊙ (up·x[t]) )
// computed from the stored weights (widened exactly) and the f32 activations, in double.
#pragma once

#include <cstdint>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "runtime/core/dtype.h"
#include "runtime/core/expert_types.h"

namespace moe::cuda_test {

// One expert's weights in a chosen dtype (stored as raw 16- or 32-bit words).
struct TestExpert {
  int64_t hidden = 0;
  int64_t inter = 0;
  DType dtype = DType::BF16;
  std::vector<uint32_t> gate32, up32, down32;  // F32
  std::vector<uint16_t> gate16, up16, down16;  // BF16 / F16

  ExpertWeightsView view() const;
  // Element (r, c) of a matrix widened to double.
  double gate(int64_t r, int64_t c) const;
  double up(int64_t r, int64_t c) const;
  double down(int64_t r, int64_t c) const;
};

TestExpert random_expert(int64_t hidden, int64_t inter, DType dtype, std::mt19937_64& rng);

struct RoutingSpec {
  int64_t num_tokens = 0;
  int32_t top_k = 1;
  std::vector<int32_t> candidates;  // experts the router may pick (distinct per token)
  double unrouted_fraction = 0;     // share of tokens given no assignment at all
};

// Top-k distinct experts per token drawn from `candidates`, softmax-like positive weights.
std::vector<TokenAssignment> random_routing(const RoutingSpec& spec, std::mt19937_64& rng);

std::vector<float> random_activations(int64_t rows, int64_t hidden, std::mt19937_64& rng);

// Reference rows `rows` of the layer output: [rows.size()][hidden].
std::vector<std::vector<double>> reference_rows(const std::map<int32_t, TestExpert>& experts,
                                                const std::vector<float>& x, int64_t hidden,
                                                const std::vector<TokenAssignment>& assignments,
                                                const std::vector<int64_t>& rows);

// All rows when there are at most `max_rows`, else `max_rows` random ones (always including 0 and T-1).
std::vector<int64_t> sample_rows(int64_t num_tokens, int64_t max_rows, std::mt19937_64& rng);

struct Comparison {
  double relative_error = 0;      // ||got - ref|| / ||ref|| over the compared rows
  double worst_row_error = 0;     // the same per row, the worst one (rows whose ref is 0 excluded)
  int64_t nonfinite = 0;          // NaN/inf values in got (unwritten output stays NaN-poisoned)
  int64_t nonzero_in_empty = 0;   // non-zero values in rows whose reference is exactly zero
  std::string describe() const;
};

Comparison compare_rows(const std::vector<float>& got, int64_t hidden, const std::vector<int64_t>& rows,
                        const std::vector<std::vector<double>>& ref);

// Seed from MOE_TEST_SEED if set, else fresh; tests print it on failure.
uint64_t test_seed();

}  // namespace moe::cuda_test
