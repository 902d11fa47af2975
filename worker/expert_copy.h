// Owned copies of an expert's weights: what a worker keeps for peers (--no-shared-storage) and what it
// assembles from streamed chunks. f16 matrices are widened to f32 (exact), because the wire carries
// only f32 and bf16.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "runtime/model/layer_source.h"

namespace moe {

// One row-major matrix with its bytes.
struct OwnedMatrix {
  DType dtype = DType::F32;
  int64_t rows = 0;
  int64_t cols = 0;
  std::vector<std::byte> bytes;  // rows * cols * dtype_size(dtype)
};

// ExpertWeights viewing the three matrices, which it owns. Throws std::invalid_argument when a
// matrix's byte count does not match its shape and dtype.
ExpertWeights make_owned_weights(OwnedMatrix gate, OwnedMatrix up, OwnedMatrix down);

// `weights` unchanged when no matrix is f16; else an owned copy with the f16 matrices as f32.
ExpertWeights without_f16(ExpertWeights weights);

}  // namespace moe
