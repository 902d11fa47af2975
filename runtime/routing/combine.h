// The combine step: adds a worker's per-token partial sums back into the layer output (default mode),
// or, in the deterministic mode, sums per-(token, expert) rows in one fixed order (combine_rows).
#pragma once

#include <cstdint>
#include <span>

#include "runtime/core/expert_types.h"
#include "runtime/model/tensor.h"

namespace moe {

// partial: [tokens.size(), hidden]; out[tokens[i], :] += partial[i, :].
// Throws std::invalid_argument on size mismatch or a token index out of range.
void combine_partial(std::span<const int32_t> tokens, std::span<const float> partial, Matrix& out);

// The deterministic combine, the one LocalEngine and ClusterClient both run: rows is
// [assignments.size(), hidden], row a the weighted output of assignment a (ExpertBackend::forward_rows,
// or a worker's per-assignment reply). out[t, :] = ((0 + row_e1) + row_e2) + ... in f32 over t's
// assignments in ascending expert id (shared experts, numbered after the routed ones, come last),
// whatever the order of `assignments`; every row of out is overwritten (zero for a token with none).
// Throws std::invalid_argument on size mismatch, a token out of range or a (token, expert) pair twice.
void combine_rows(std::span<const TokenAssignment> assignments, std::span<const float> rows, Matrix& out);

}  // namespace moe
