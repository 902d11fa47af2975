// The dense part of routing: router logits x·Wgᵀ and the shared-expert gate x·w, both in fp32.
#pragma once

#include <cstddef>  // tensor.h uses size_t without including it
#include <vector>

#include "runtime/model/tensor.h"

namespace moe {

// x: [T, H], gate: [E, H] -> [T, E] logits, one OpenBLAS sgemm (fp32 accumulate, like torch's
// F.linear in fp32). Shapes are checked by the caller.
Matrix router_logits(const Matrix& x, const Matrix& gate);

// x: [T, H], w: [H] -> [T] of sigmoid(x[t]·w) (Qwen2-MoE's shared_expert_gate weight).
std::vector<float> sigmoid_gate(const Matrix& x, const std::vector<float>& w);

// The deterministic mode's versions of both: each token's row computed alone, always by the same kernel
// (kernels/cpu/streaming_kernels.h, one token per call), so its bits do not depend on T (sgemm/sgemv
// pick kernels, blocking and threads by the row count).
Matrix router_logits_rowwise(const Matrix& x, const Matrix& gate);
std::vector<float> sigmoid_gate_rowwise(const Matrix& x, const std::vector<float>& w);

float sigmoid(float v);

}  // namespace moe
