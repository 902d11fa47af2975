// The small kernels around the cuBLAS prefill path (CublasExpertPath): gather the expert-sorted rows of
// x as bf16, SwiGLU of the gate/up GEMM output, and the weighted scatter-add of the down GEMM output
// into out. Plain C++ (like kernel_api.h): the .cc includes it, cublas_expert_kernels.cu implements
// it. Every launcher only enqueues on `stream` and checks the launch; `rows == 0` launches nothing.
// Strides are in elements; every buffer is [rows][ld] row-major.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "kernels/cuda/kernel_api.h"

namespace moe::cuda {

// xs[r][c] = bf16(x[sorted_token[r]][c]) for c < hidden, 0 for hidden <= c < hidden_padded.
// x: [T][hidden] f32; xs: [rows][hidden_padded]. Needs hidden_padded % 8 == 0 and xs 16-byte aligned.
void launch_gather_rows_bf16(const float* x, const int32_t* sorted_token, int64_t rows, int64_t hidden,
                             int64_t hidden_padded, bf16_bits* xs, cudaStream_t stream);

// For every sorted row r < rows, with e its expert (offsets[e] <= r < offsets[e + 1], found on the
// device) and I_e, Ip_e from experts[e]:
//   h[r][c] = bf16(silu(gu[r][c]) * gu[r][I_e + c]) for c < I_e, 0 for I_e <= c < Ip_e.
// gu: [rows][ld_gu] bf16; h: [rows][ld_h] bf16. Needs ld_gu % 8 == 0, ld_h % 8 == 0, 16-byte aligned
// buffers and Ip_e <= ld_h.
void launch_swiglu_rows(const bf16_bits* gu, int64_t ld_gu, const int32_t* offsets, const ExpertDeviceEntry* experts,
                        int32_t num_experts, int64_t rows, bf16_bits* h, int64_t ld_h, cudaStream_t stream);

// out[sorted_token[r]][c] += sorted_weight[r] * y[r][c] for c < hidden (atomics: rows of different
// experts may share a token). y: [rows][ld_y] f32; out: [T][hidden] f32.
void launch_scatter_add_rows(const float* y, int64_t ld_y, const int32_t* sorted_token, const float* sorted_weight,
                             int64_t rows, int64_t hidden, float* out, cudaStream_t stream);

}  // namespace moe::cuda
