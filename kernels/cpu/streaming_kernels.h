// Hand-written kernels of the CPU backend for what OpenBLAS does poorly: products of a weight matrix
// with a handful of tokens (decode), which must stream the weights once at memory bandwidth, and the
// SwiGLU activation. Each has clones for AVX-512, AVX2+FMA and baseline x86-64, chosen at run time
// (no -march flag: the binaries run on any x86-64).
#pragma once

#include <cstdint>

namespace moe {

// c[j * ldc + (r - row_begin)] = dot(w[r, 0:k], tokens[j][0:k]) for r in [row_begin, row_end) and
// j in [0, num_tokens); w is row-major with leading dimension ldw; num_tokens >= 1. Weights are read once.
void rows_dot_tokens(const float* w, int64_t ldw, int64_t row_begin, int64_t row_end,
                     const float* const* tokens, int num_tokens, int64_t k, float* c, int64_t ldc);

// act[i] = silu(gate[i]) * up[i] for i in [0, n), silu(g) = g / (1 + exp(-g)); relative error ~1e-7.
void silu_mul(const float* gate, const float* up, float* act, int64_t n);

}  // namespace moe
