// The decode path (few tokens per expert): memory-bound, so each weight row is streamed from device
// memory once, 16 bytes per lane, and dotted with up to kGemvMaxTokens activation rows of its expert
// (those stay in L1/L2). One warp per weight row; blockIdx.y walks the list of experts that have rows,
// so experts without tokens launch nothing.
//   gate/up: h[row][i] = bf16(silu(gate_i . x) * (up_i . x)); rows i in [I_e, Ip_e) get 0.
//   down:    out[token][j] += weight * (down_j . h[row]) (atomics: a token's k experts add up).
#include <cuda_runtime.h>

#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/device_utils.cuh"
#include "kernels/cuda/kernel_api.h"

namespace moe::cuda {
namespace {

constexpr int kWarps = 8;
constexpr int kThreads = kWarps * 32;
constexpr int kTokens = kGemvMaxTokens;

__global__ void __launch_bounds__(kThreads) gemv_gate_up_kernel(ExpertLayerArgs args, RoutingWorkspace ws) {
  const int lane = threadIdx.x & 31;
  const int row = blockIdx.x * kWarps + (threadIdx.x >> 5);
  const int num_active = *ws.num_active;
  const int64_t x_stride = args.hidden_padded;
  const int64_t h_stride = args.inter_padded_max;
  const int chunks = static_cast<int>(args.hidden_padded / 8);
  for (int ai = blockIdx.y; ai < num_active; ai += gridDim.y) {
    const int expert = ws.active[ai];
    const ExpertDeviceEntry entry = args.experts[expert];
    if (row >= entry.inter_padded) continue;
    const int begin = ws.offsets[expert];
    const int count = ws.offsets[expert + 1] - begin;
    if (row >= entry.inter) {  // padding column of h: the down projection reads it
      for (int p = lane; p < count; p += 32) args.h[(begin + p) * h_stride + row] = 0;
      continue;
    }
    const uint4* gate_row = reinterpret_cast<const uint4*>(entry.gate + static_cast<int64_t>(row) * x_stride);
    const uint4* up_row = reinterpret_cast<const uint4*>(entry.up + static_cast<int64_t>(row) * x_stride);
    for (int base = 0; base < count; base += kTokens) {
      const int n = min(kTokens, count - base);
      const uint4* x = reinterpret_cast<const uint4*>(args.x_bf16);
      uint32_t x_row[kTokens];  // row offsets in uint4 units (32-bit: fewer registers than pointers)
      float acc_gate[kTokens];
      float acc_up[kTokens];
#pragma unroll
      for (int t = 0; t < kTokens; ++t) {
        const int token = ws.sorted_token[begin + base + min(t, n - 1)];
        x_row[t] = static_cast<uint32_t>(token) * static_cast<uint32_t>(chunks);
        acc_gate[t] = 0.f;
        acc_up[t] = 0.f;
      }
#pragma unroll 2
      for (int c = lane; c < chunks; c += 32) {
        const uint4 g = load_streaming(gate_row + c);
        const uint4 u = load_streaming(up_row + c);
#pragma unroll
        for (int t = 0; t < kTokens; ++t) {
          if (t < n) {
            const uint4 xv = x[x_row[t] + c];
            acc_gate[t] = dot_bf16x8(g, xv, acc_gate[t]);
            acc_up[t] = dot_bf16x8(u, xv, acc_up[t]);
          }
        }
      }
#pragma unroll
      for (int t = 0; t < kTokens; ++t) {
        if (t < n) {
          const float g = warp_sum(acc_gate[t]);
          const float u = warp_sum(acc_up[t]);
          if (lane == t) args.h[(begin + base + t) * h_stride + row] = static_cast<uint16_t>(f32_to_bf16_bits(silu(g) * u));
        }
      }
    }
  }
}

__global__ void __launch_bounds__(kThreads) gemv_down_kernel(ExpertLayerArgs args, RoutingWorkspace ws) {
  const int lane = threadIdx.x & 31;
  const int col = blockIdx.x * kWarps + (threadIdx.x >> 5);  // output column = row of down
  if (col >= args.hidden) return;
  const int num_active = *ws.num_active;
  const int64_t h_stride = args.inter_padded_max;
  for (int ai = blockIdx.y; ai < num_active; ai += gridDim.y) {
    const int expert = ws.active[ai];
    const ExpertDeviceEntry entry = args.experts[expert];
    const int begin = ws.offsets[expert];
    const int count = ws.offsets[expert + 1] - begin;
    const int chunks = entry.inter_padded / 8;
    const uint4* down_row = reinterpret_cast<const uint4*>(entry.down + static_cast<int64_t>(col) * entry.inter_padded);
    for (int base = 0; base < count; base += kTokens) {
      const int n = min(kTokens, count - base);
      const uint4* h = reinterpret_cast<const uint4*>(args.h);
      uint32_t h_row[kTokens];  // row offsets in uint4 units
      float acc[kTokens];
#pragma unroll
      for (int t = 0; t < kTokens; ++t) {
        h_row[t] = static_cast<uint32_t>(begin + base + min(t, n - 1)) * static_cast<uint32_t>(h_stride / 8);
        acc[t] = 0.f;
      }
#pragma unroll 2
      for (int c = lane; c < chunks; c += 32) {
        const uint4 d = load_streaming(down_row + c);
#pragma unroll
        for (int t = 0; t < kTokens; ++t) {
          if (t < n) acc[t] = dot_bf16x8(d, h[h_row[t] + c], acc[t]);
        }
      }
#pragma unroll
      for (int t = 0; t < kTokens; ++t) {
        if (t < n) {
          const float y = warp_sum(acc[t]);
          if (lane == t) {
            const int p = begin + base + t;
            atomicAdd(args.out + static_cast<int64_t>(ws.sorted_token[p]) * args.hidden + col, ws.sorted_weight[p] * y);
          }
        }
      }
    }
  }
}

dim3 gemv_grid(int64_t rows, const ExpertLayerArgs& args) {
  const int64_t bound = args.num_assignments < args.num_experts ? args.num_assignments : args.num_experts;
  return dim3(static_cast<unsigned>((rows + kWarps - 1) / kWarps),
              static_cast<unsigned>(bound < 1 ? 1 : (bound > 65535 ? 65535 : bound)));
}

}  // namespace

void launch_gemv_gate_up(const ExpertLayerArgs& args, const RoutingWorkspace& ws, cudaStream_t stream) {
  if (args.num_assignments == 0) return;
  gemv_gate_up_kernel<<<gemv_grid(args.inter_padded_max, args), kThreads, 0, stream>>>(args, ws);
  MOE_CUDA_CHECK(cudaGetLastError());
}

void launch_gemv_down(const ExpertLayerArgs& args, const RoutingWorkspace& ws, cudaStream_t stream) {
  if (args.num_assignments == 0) return;
  gemv_down_kernel<<<gemv_grid(args.hidden, args), kThreads, 0, stream>>>(args, ws);
  MOE_CUDA_CHECK(cudaGetLastError());
}

}  // namespace moe::cuda
