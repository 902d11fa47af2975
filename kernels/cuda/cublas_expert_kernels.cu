// The element-wise kernels of the cuBLAS prefill path (see cublas_expert_kernels.h): gather x rows to
// bf16 in expert-sorted order, SwiGLU between the two GEMMs, weighted scatter-add into out.
// Each kernel walks the rows with a grid-stride loop (one block per row at a time, int64 indices) and
// the columns of a row with its threads: 8 bf16 (16 bytes) or 2 f32 per thread and step.
#include <cuda_runtime.h>

#include <cstdint>
#include <stdexcept>
#include <string>

#include "kernels/cuda/cublas_expert_kernels.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/device_utils.cuh"

namespace moe::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = 1 << 16;

__device__ __forceinline__ float bf16_bits_to_f32(uint16_t bits) { return bf16_lo_to_f32(bits); }

// silu() of device_utils.cuh with the fast division: the IEEE division's slow-path call made ptxas
// spill the loop state around it. Differs by <= 2 ulp of f32 (far below bf16), 1 + e^-g = inf gives -0.
__device__ __forceinline__ float silu_fast(float g) { return __fdividef(g, 1.f + __expf(-g)); }

__device__ __forceinline__ uint4 pack_bf16x8(const float (&v)[8]) {
  return make_uint4(pack_bf16x2(v[0], v[1]), pack_bf16x2(v[2], v[3]), pack_bf16x2(v[4], v[5]),
                    pack_bf16x2(v[6], v[7]));
}

// vec_x: hidden % 4 == 0 and x 16-byte aligned (float4 loads of full chunks).
__global__ void __launch_bounds__(kThreads)
    gather_rows_bf16_kernel(const float* __restrict__ x, const int32_t* __restrict__ sorted_token, int64_t rows,
                            int64_t hidden, int64_t hidden_padded, uint16_t* __restrict__ xs, bool vec_x) {
  const int64_t chunks = hidden_padded / 8;
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const float* src = x + static_cast<int64_t>(sorted_token[r]) * hidden;
    uint4* dst = reinterpret_cast<uint4*>(xs + r * hidden_padded);
    for (int64_t ch = threadIdx.x; ch < chunks; ch += blockDim.x) {
      const int64_t c = ch * 8;
      float v[8];
      if (vec_x && c + 8 <= hidden) {
        const float4 a = *reinterpret_cast<const float4*>(src + c);
        const float4 b = *reinterpret_cast<const float4*>(src + c + 4);
        v[0] = a.x, v[1] = a.y, v[2] = a.z, v[3] = a.w;
        v[4] = b.x, v[5] = b.y, v[6] = b.z, v[7] = b.w;
      } else {
#pragma unroll
        for (int j = 0; j < 8; ++j) v[j] = c + j < hidden ? src[c + j] : 0.f;
      }
      dst[ch] = pack_bf16x8(v);
    }
  }
}

// The expert e with offsets[e] <= r < offsets[e + 1]: the largest e with offsets[e] <= r (offsets[0] == 0
// and r < offsets[num_experts], so that e has rows even when empty experts share its offset).
__device__ __forceinline__ int expert_of_row(const int32_t* __restrict__ offsets, int32_t num_experts, int64_t r) {
  int lo = 0;
  int hi = num_experts - 1;
  while (lo < hi) {
    const int mid = (lo + hi + 1) >> 1;
    if (offsets[mid] <= r) {
      lo = mid;
    } else {
      hi = mid - 1;
    }
  }
  return lo;
}

__global__ void __launch_bounds__(kThreads)
    swiglu_rows_kernel(const uint16_t* __restrict__ gu, int64_t ld_gu, const int32_t* __restrict__ offsets,
                       const ExpertDeviceEntry* __restrict__ experts, int32_t num_experts, int64_t rows,
                       uint16_t* __restrict__ h, int64_t ld_h) {
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const int e = expert_of_row(offsets, num_experts, r);
    const int inter = experts[e].inter;
    const int chunks = (experts[e].inter_padded + 7) / 8;
    const bool vec = (inter & 7) == 0;  // the up half starts 16-byte aligned
    const uint16_t* gate = gu + r * ld_gu;
    const uint16_t* up = gate + inter;
    uint4* dst = reinterpret_cast<uint4*>(h + r * ld_h);
    for (int ch = threadIdx.x; ch < chunks; ch += blockDim.x) {
      const int c = ch * 8;
      float v[8];
      if (vec && c + 8 <= inter) {
        const uint4 g = *reinterpret_cast<const uint4*>(gate + c);
        const uint4 u = *reinterpret_cast<const uint4*>(up + c);
        v[0] = silu_fast(bf16_lo_to_f32(g.x)) * bf16_lo_to_f32(u.x);
        v[1] = silu_fast(bf16_hi_to_f32(g.x)) * bf16_hi_to_f32(u.x);
        v[2] = silu_fast(bf16_lo_to_f32(g.y)) * bf16_lo_to_f32(u.y);
        v[3] = silu_fast(bf16_hi_to_f32(g.y)) * bf16_hi_to_f32(u.y);
        v[4] = silu_fast(bf16_lo_to_f32(g.z)) * bf16_lo_to_f32(u.z);
        v[5] = silu_fast(bf16_hi_to_f32(g.z)) * bf16_hi_to_f32(u.z);
        v[6] = silu_fast(bf16_lo_to_f32(g.w)) * bf16_lo_to_f32(u.w);
        v[7] = silu_fast(bf16_hi_to_f32(g.w)) * bf16_hi_to_f32(u.w);
      } else {
#pragma unroll
        for (int j = 0; j < 8; ++j) {
          v[j] = c + j < inter ? silu_fast(bf16_bits_to_f32(gate[c + j])) * bf16_bits_to_f32(up[c + j]) : 0.f;
        }
      }
      dst[ch] = pack_bf16x8(v);
    }
  }
}

// paired: hidden even, y/out 8-byte aligned and ld_y even (float2 loads, 8-byte atomics on sm_90).
__global__ void __launch_bounds__(kThreads)
    scatter_add_rows_kernel(const float* __restrict__ y, int64_t ld_y, const int32_t* __restrict__ sorted_token,
                            const float* __restrict__ sorted_weight, int64_t rows, int64_t hidden, float* out,
                            bool paired) {
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const float weight = sorted_weight[r];
    const float* src = y + r * ld_y;
    float* dst = out + static_cast<int64_t>(sorted_token[r]) * hidden;
    if (paired) {
      const int64_t pairs = hidden / 2;
      for (int64_t p = threadIdx.x; p < pairs; p += blockDim.x) {
        const float2 v = reinterpret_cast<const float2*>(src)[p];
        atomic_add_pair(dst + 2 * p, weight * v.x, weight * v.y, true);
      }
    } else {
      for (int64_t c = threadIdx.x; c < hidden; c += blockDim.x) atomicAdd(dst + c, weight * src[c]);
    }
  }
}

unsigned grid_for_rows(int64_t rows) { return static_cast<unsigned>(rows < kMaxBlocks ? rows : kMaxBlocks); }

bool aligned(const void* p, uintptr_t bytes) { return (reinterpret_cast<uintptr_t>(p) & (bytes - 1)) == 0; }

[[noreturn]] void throw_bad_layout(const char* kernel, const std::string& what) {
  throw std::logic_error(std::string("cublas expert kernels: ") + kernel + ": " + what);
}

}  // namespace

void launch_gather_rows_bf16(const float* x, const int32_t* sorted_token, int64_t rows, int64_t hidden,
                             int64_t hidden_padded, bf16_bits* xs, cudaStream_t stream) {
  if (rows <= 0) return;
  if (hidden <= 0 || hidden_padded < hidden || hidden_padded % 8 != 0 || !aligned(xs, 16)) {
    throw_bad_layout("gather", "hidden=" + std::to_string(hidden) + " hidden_padded=" + std::to_string(hidden_padded) +
                                   " (need hidden_padded % 8 == 0, >= hidden) and a 16-byte aligned xs");
  }
  const bool vec_x = hidden % 4 == 0 && aligned(x, 16);
  gather_rows_bf16_kernel<<<grid_for_rows(rows), kThreads, 0, stream>>>(x, sorted_token, rows, hidden, hidden_padded,
                                                                          xs, vec_x);
  MOE_CUDA_CHECK(cudaGetLastError());
}

void launch_swiglu_rows(const bf16_bits* gu, int64_t ld_gu, const int32_t* offsets, const ExpertDeviceEntry* experts,
                        int32_t num_experts, int64_t rows, bf16_bits* h, int64_t ld_h, cudaStream_t stream) {
  if (rows <= 0) return;
  if (num_experts <= 0 || ld_gu % 8 != 0 || ld_h % 8 != 0 || !aligned(gu, 16) || !aligned(h, 16)) {
    throw_bad_layout("swiglu", "num_experts=" + std::to_string(num_experts) + " ld_gu=" + std::to_string(ld_gu) +
                                   " ld_h=" + std::to_string(ld_h) +
                                   " (need strides % 8 == 0 and 16-byte aligned gu and h)");
  }
  swiglu_rows_kernel<<<grid_for_rows(rows), kThreads, 0, stream>>>(gu, ld_gu, offsets, experts, num_experts, rows, h,
                                                                     ld_h);
  MOE_CUDA_CHECK(cudaGetLastError());
}

void launch_scatter_add_rows(const float* y, int64_t ld_y, const int32_t* sorted_token, const float* sorted_weight,
                             int64_t rows, int64_t hidden, float* out, cudaStream_t stream) {
  if (rows <= 0) return;
  if (hidden <= 0 || ld_y < hidden) {
    throw_bad_layout("scatter", "hidden=" + std::to_string(hidden) + " ld_y=" + std::to_string(ld_y));
  }
  const bool paired = hidden % 2 == 0 && ld_y % 2 == 0 && aligned(y, 8) && aligned(out, 8);
  scatter_add_rows_kernel<<<grid_for_rows(rows), kThreads, 0, stream>>>(y, ld_y, sorted_token, sorted_weight, rows,
                                                                          hidden, out, paired);
  MOE_CUDA_CHECK(cudaGetLastError());
}

}  // namespace moe::cuda
