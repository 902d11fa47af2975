// Small device helpers shared by the CUDA kernels: bf16 bit conversions, SiLU, warp sums and the
// sm_80+ primitives (cp.async, ldmatrix, mma.sync m16n8k16 bf16) written out in PTX.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace moe::cuda {

// bf16 is the top half of an f32: widening is a shift, exact.
__device__ __forceinline__ float bf16_lo_to_f32(uint32_t pair) { return __uint_as_float(pair << 16); }
__device__ __forceinline__ float bf16_hi_to_f32(uint32_t pair) { return __uint_as_float(pair & 0xffff0000u); }

// f32 -> bf16 bits, round to nearest even (NaN stays NaN).
__device__ __forceinline__ uint32_t f32_to_bf16_bits(float f) {
  uint32_t bits = __float_as_uint(f);
  if ((bits & 0x7f800000u) == 0x7f800000u && (bits & 0x007fffffu)) return (bits >> 16) | 0x40u;
  return (bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16;
}

__device__ __forceinline__ uint32_t pack_bf16x2(float lo, float hi) {
  return f32_to_bf16_bits(lo) | (f32_to_bf16_bits(hi) << 16);
}

// Dot product of 8 bf16 weights and 8 bf16 activations, both packed in a uint4, added to acc.
__device__ __forceinline__ float dot_bf16x8(const uint4& w, const uint4& x, float acc) {
  acc = fmaf(bf16_lo_to_f32(w.x), bf16_lo_to_f32(x.x), acc);
  acc = fmaf(bf16_hi_to_f32(w.x), bf16_hi_to_f32(x.x), acc);
  acc = fmaf(bf16_lo_to_f32(w.y), bf16_lo_to_f32(x.y), acc);
  acc = fmaf(bf16_hi_to_f32(w.y), bf16_hi_to_f32(x.y), acc);
  acc = fmaf(bf16_lo_to_f32(w.z), bf16_lo_to_f32(x.z), acc);
  acc = fmaf(bf16_hi_to_f32(w.z), bf16_hi_to_f32(x.z), acc);
  acc = fmaf(bf16_lo_to_f32(w.w), bf16_lo_to_f32(x.w), acc);
  acc = fmaf(bf16_hi_to_f32(w.w), bf16_hi_to_f32(x.w), acc);
  return acc;
}

__device__ __forceinline__ float silu(float g) { return g / (1.f + __expf(-g)); }

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

// Weights are read once: stream them past L1 (ld.global.cs).
__device__ __forceinline__ uint4 load_streaming(const void* p) { return __ldcs(static_cast<const uint4*>(p)); }

// 16-byte asynchronous global->shared copy; when !valid the 16 shared bytes are zero-filled and
// nothing is read (the address must still be a valid one).
__device__ __forceinline__ void cp_async_16(void* smem, const void* gmem, bool valid) {
  const uint32_t dst = static_cast<uint32_t>(__cvta_generic_to_shared(smem));
  const int src_bytes = valid ? 16 : 0;
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(gmem), "r"(src_bytes));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int kPending>
__device__ __forceinline__ void cp_async_wait() { asm volatile("cp.async.wait_group %0;\n" ::"n"(kPending)); }

// Four 8x8 b16 matrices from shared memory; lane l gives the address of row (l % 8) of matrix l / 8.
__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], const void* smem_row) {
  const uint32_t addr = static_cast<uint32_t>(__cvta_generic_to_shared(smem_row));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}

// d += a * b for a 16x16 (row) bf16 A fragment, a 16x8 (col) bf16 B fragment, f32 accumulators.
__device__ __forceinline__ void mma_bf16_16816(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// out[0..1] += v[0..1]; one 8-byte atomic on sm_90 when `paired` (address 8-byte aligned).
__device__ __forceinline__ void atomic_add_pair(float* out, float v0, float v1, bool paired) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  if (paired) {
    atomicAdd(reinterpret_cast<float2*>(out), make_float2(v0, v1));
    return;
  }
#else
  (void)paired;
#endif
  atomicAdd(out, v0);
  atomicAdd(out + 1, v1);
}

}  // namespace moe::cuda
