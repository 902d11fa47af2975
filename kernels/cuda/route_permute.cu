// Device-side permutation of the assignments by expert (a counting sort in three launches: count,
// one-block scan, scatter) plus the lists the GEMM kernels are launched over, and the f32 -> bf16
// conversion of the activations. No host synchronisation: the grids of later kernels are sized by
// host-known bounds and read the real counts from device memory.
#include <cuda_runtime.h>

#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/device_utils.cuh"
#include "kernels/cuda/kernel_api.h"

namespace moe::cuda {
namespace {

constexpr int kScanThreads = 1024;

__device__ __forceinline__ bool assignment_is_valid(const DeviceAssignment& a, int64_t num_tokens,
                                                    const ExpertDeviceEntry* experts, int32_t num_experts) {
  return a.token >= 0 && a.token < num_tokens && a.expert >= 0 && a.expert < num_experts &&
         experts[a.expert].gate != nullptr;
}

__global__ void route_count_kernel(const DeviceAssignment* assignments, int64_t num_assignments, int64_t num_tokens,
                                   const ExpertDeviceEntry* experts, int32_t num_experts, RoutingWorkspace ws) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < num_assignments;
       i += int64_t{gridDim.x} * blockDim.x) {
    const DeviceAssignment a = assignments[i];
    if (assignment_is_valid(a, num_tokens, experts, num_experts)) {
      atomicAdd(&ws.counts[a.expert], 1);
    } else {
      *ws.invalid = 1;
    }
  }
}

// Exclusive scan over the 1024 threads of the block; returns this thread's prefix, *total the sum.
__device__ int block_exclusive_scan(int value, int* total) {
  __shared__ int warp_totals[kScanThreads / 32];
  const int lane = threadIdx.x & 31;
  const int warp = threadIdx.x >> 5;
  int inclusive = value;
#pragma unroll
  for (int offset = 1; offset < 32; offset <<= 1) {
    const int up = __shfl_up_sync(0xffffffffu, inclusive, offset);
    if (lane >= offset) inclusive += up;
  }
  if (lane == 31) warp_totals[warp] = inclusive;
  __syncthreads();
  if (warp == 0) {
    int t = warp_totals[lane];
#pragma unroll
    for (int offset = 1; offset < 32; offset <<= 1) {
      const int up = __shfl_up_sync(0xffffffffu, t, offset);
      if (lane >= offset) t += up;
    }
    warp_totals[lane] = t;  // inclusive prefix of warp totals
  }
  __syncthreads();
  const int warp_prefix = warp == 0 ? 0 : warp_totals[warp - 1];
  *total = warp_totals[kScanThreads / 32 - 1];
  __syncthreads();  // warp_totals is reused by the next call
  return warp_prefix + inclusive - value;
}

// One block: offsets, the tile list (expert, first row) and the list of experts with rows.
__global__ void __launch_bounds__(kScanThreads) route_scan_kernel(int32_t num_experts, int tile_rows,
                                                                    RoutingWorkspace ws) {
  const int per_thread = (num_experts + kScanThreads - 1) / kScanThreads;
  const int begin = min(num_experts, static_cast<int>(threadIdx.x) * per_thread);
  const int end = min(num_experts, begin + per_thread);
  int rows = 0, tiles = 0, nonempty = 0;
  for (int e = begin; e < end; ++e) {
    const int c = ws.counts[e];
    rows += c;
    tiles += (c + tile_rows - 1) / tile_rows;
    nonempty += c > 0;
  }
  int total_rows, total_tiles, total_active;
  int row = block_exclusive_scan(rows, &total_rows);
  int tile = block_exclusive_scan(tiles, &total_tiles);
  int active = block_exclusive_scan(nonempty, &total_active);
  for (int e = begin; e < end; ++e) {
    const int c = ws.counts[e];
    ws.offsets[e] = row;
    for (int first = 0; first < c; first += tile_rows) {
      ws.tile_expert[tile] = e;
      ws.tile_row[tile] = row + first;
      ++tile;
    }
    if (c > 0) ws.active[active++] = e;
    row += c;
  }
  if (threadIdx.x == 0) {
    ws.offsets[num_experts] = total_rows;
    *ws.num_tiles = total_tiles;
    *ws.num_active = total_active;
  }
}

__global__ void route_scatter_kernel(const DeviceAssignment* assignments, int64_t num_assignments, int64_t num_tokens,
                                     const ExpertDeviceEntry* experts, int32_t num_experts, RoutingWorkspace ws) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < num_assignments;
       i += int64_t{gridDim.x} * blockDim.x) {
    const DeviceAssignment a = assignments[i];
    if (!assignment_is_valid(a, num_tokens, experts, num_experts)) continue;
    const int pos = ws.offsets[a.expert] + atomicAdd(&ws.cursors[a.expert], 1);
    ws.sorted_token[pos] = a.token;
    ws.sorted_weight[pos] = a.weight;
  }
}

__global__ void convert_rows_kernel(const float* x, int64_t rows, int64_t hidden, int64_t hidden_padded,
                                    uint16_t* x_bf16) {
  const int64_t pairs_per_row = hidden_padded / 2;
  const int64_t total = rows * pairs_per_row;
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < total; i += int64_t{gridDim.x} * blockDim.x) {
    const int64_t r = i / pairs_per_row;
    const int64_t c = (i - r * pairs_per_row) * 2;
    const float* src = x + r * hidden;
    const float lo = c < hidden ? src[c] : 0.f;
    const float hi = c + 1 < hidden ? src[c + 1] : 0.f;
    reinterpret_cast<uint32_t*>(x_bf16 + r * hidden_padded)[c / 2] = pack_bf16x2(lo, hi);
  }
}

int grid_for(int64_t work, int threads) {
  const int64_t blocks = (work + threads - 1) / threads;
  return static_cast<int>(blocks < 1 ? 1 : (blocks > 65536 ? 65536 : blocks));
}

}  // namespace

void launch_route(const DeviceAssignment* assignments, int64_t num_assignments, int64_t num_tokens,
                  const ExpertDeviceEntry* experts, int32_t num_experts, const RoutingWorkspace& ws,
                  TileRows tile_rows, cudaStream_t stream) {
  constexpr int kThreads = 256;
  const int grid = grid_for(num_assignments, kThreads);
  route_count_kernel<<<grid, kThreads, 0, stream>>>(assignments, num_assignments, num_tokens, experts, num_experts, ws);
  MOE_CUDA_CHECK(cudaGetLastError());
  route_scan_kernel<<<1, kScanThreads, 0, stream>>>(num_experts, tile_rows_value(tile_rows), ws);
  MOE_CUDA_CHECK(cudaGetLastError());
  route_scatter_kernel<<<grid, kThreads, 0, stream>>>(assignments, num_assignments, num_tokens, experts, num_experts,
                                                      ws);
  MOE_CUDA_CHECK(cudaGetLastError());
}

void launch_convert_rows_to_bf16(const float* x, int64_t rows, int64_t hidden, int64_t hidden_padded,
                                 bf16_bits* x_bf16, cudaStream_t stream) {
  constexpr int kThreads = 256;
  convert_rows_kernel<<<grid_for(rows * (hidden_padded / 2), kThreads), kThreads, 0, stream>>>(
      x, rows, hidden, hidden_padded, x_bf16);
  MOE_CUDA_CHECK(cudaGetLastError());
}

}  // namespace moe::cuda
