// The combine step: adds a worker's per-token partial sums back into the layer output.
#pragma once

#include <cstdint>
#include <span>

#include "runtime/model/tensor.h"

namespace moe {

// partial: [tokens.size(), hidden]; out[tokens[i], :] += partial[i, :].
// Throws std::invalid_argument on size mismatch or a token index out of range.
void combine_partial(std::span<const int32_t> tokens, std::span<const float> partial, Matrix& out);

}  // namespace moe
