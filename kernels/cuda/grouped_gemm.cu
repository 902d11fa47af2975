// The prefill path: grouped GEMMs over the expert-sorted rows on tensor cores (mma.sync m16n8k16 bf16,
// fp32 accumulators), ldmatrix from padded shared memory, a 4-stage cp.async pipeline.
//
// One block computes a BM x 128 tile: BM (128, 64 or 32) sorted rows of one expert (a tile from
// launch_route's list, built with the same row count) times 128 weight rows, K in steps of 32. Four
// warps in 2 x 2, each (BM/2) x 64. Small BM for experts with few rows: the weights are streamed once
// per tile either way, and a 128-row tile over 30 rows would issue 4x the tensor-core work.
//   gate/up: the 128 weight rows are 64 gate rows and the same 64 up rows, interleaved in blocks of 32,
//            so every warp holds gate and up of the same 32 columns and writes h = silu(gate) * up
//            (bf16) directly; A rows are gathered from x_bf16 by token, no permuted copy of x.
//   down:    the 128 weight rows are 128 output columns; the epilogue multiplies by the routing weight
//            and adds into out[token] with atomics (un-permute and top-k reduction fused).
// Grid: 1-D over (tile bound x column tiles) in groups of 8 row tiles (L2 reuse); blocks past the real
// tile count or past their expert's width return at once, so empty experts cost nothing.
#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/device_utils.cuh"
#include "kernels/cuda/kernel_api.h"

namespace moe::cuda {
namespace {

constexpr int kBN = 128;  // weight rows per block
constexpr int kBK = 32;
constexpr int kStages = 4;
constexpr int kThreads = 128;
constexpr int kStride = kBK + 8;  // shared row stride in elements: 80 bytes, ldmatrix conflict-free
constexpr int kGroupM = 8;
constexpr int kBLoadsPerThread = kBN * (kBK / 8) / kThreads;  // 16-byte chunks of B per thread: 4

static_assert(kPadK % kBK == 0, "K padding must be a multiple of the K step");
static_assert(kBLoadsPerThread == 4, "load mapping below assumes 4 B chunks per thread");

// Shape constants of one row-tile size.
template <int kBM>
struct TileShape {
  static_assert(kBM == 32 || kBM == 64 || kBM == 128, "row tiles of 32, 64 or 128");
  static constexpr int kStageElems = (kBM + kBN) * kStride;
  static constexpr int kSmemBytes = kStages * kStageElems * 2;  // 81920 / 61440 / 51200
  static constexpr int kALoadsPerThread = kBM * (kBK / 8) / kThreads;  // 4 / 2 / 1
  static constexpr int kWarpRows = kBM / 2;                          // 2 x 2 warps
  static constexpr int kFragsM = kWarpRows / 16;                     // m16 fragments per warp: 4 / 2 / 1
};

enum class Stage { kGateUp, kDown };

struct TileCoord {
  int m;
  int n;
};

// Triton-style grouped ordering: kGroupM row tiles share each column tile while they run together.
__device__ __forceinline__ TileCoord tile_coord(int pid, int m_tiles, int n_tiles) {
  const int in_group = kGroupM * n_tiles;
  const int group = pid / in_group;
  const int first_m = group * kGroupM;
  const int group_m = min(m_tiles - first_m, kGroupM);
  const int local = pid - group * in_group;
  return {first_m + local % group_m, local / group_m};
}

template <Stage kStage, int kBM>
__global__ void __launch_bounds__(kThreads) grouped_gemm_kernel(ExpertLayerArgs args, RoutingWorkspace ws,
                                                                int m_tiles, int n_tiles) {
  using Shape = TileShape<kBM>;
  constexpr int kStageElems = Shape::kStageElems;
  constexpr int kFragsM = Shape::kFragsM;
  const TileCoord tc = tile_coord(blockIdx.x, m_tiles, n_tiles);
  if (tc.m >= *ws.num_tiles) return;
  const int expert = ws.tile_expert[tc.m];
  const int row0 = ws.tile_row[tc.m];
  const int rows = min(kBM, ws.offsets[expert + 1] - row0);
  const ExpertDeviceEntry entry = args.experts[expert];

  // gate/up: n0 is the first h column (64 per block); down: the first output column (128 per block).
  const int n0 = kStage == Stage::kGateUp ? tc.n * (kBN / 2) : tc.n * kBN;
  if (kStage == Stage::kGateUp && n0 >= entry.inter_padded) return;
  const int K = kStage == Stage::kGateUp ? static_cast<int>(args.hidden_padded) : entry.inter_padded;
  const int num_k_tiles = K / kBK;

  extern __shared__ __align__(16) uint16_t smem[];
  const int tid = threadIdx.x;
  const int chunk_col = (tid & 3) * 8;  // element offset of this thread's 16-byte chunk within a K step

  // Global row pointers of the A rows and the 4 B rows this thread copies (row = tid / 4 + 32 * i).
  const uint16_t* a_src[Shape::kALoadsPerThread];
  bool a_valid[Shape::kALoadsPerThread];
  const uint16_t* b_src[kBLoadsPerThread];
  bool b_valid[kBLoadsPerThread];
#pragma unroll
  for (int i = 0; i < Shape::kALoadsPerThread; ++i) {
    const int r = tid / 4 + 32 * i;
    a_valid[i] = r < rows;
    if (kStage == Stage::kGateUp) {
      const int token = a_valid[i] ? ws.sorted_token[row0 + r] : 0;
      a_src[i] = args.x_bf16 + static_cast<int64_t>(token) * args.hidden_padded;
    } else {
      const int row = a_valid[i] ? row0 + r : 0;
      a_src[i] = args.h + static_cast<int64_t>(row) * args.inter_padded_max;
    }
  }
#pragma unroll
  for (int i = 0; i < kBLoadsPerThread; ++i) {
    const int r = tid / 4 + 32 * i;
    if (kStage == Stage::kGateUp) {
      const int col = n0 + (r >> 6) * 32 + (r & 31);  // interleaved: 32 gate, 32 up, 32 gate, 32 up
      b_valid[i] = col < entry.inter;
      const uint16_t* matrix = ((r >> 5) & 1) ? entry.up : entry.gate;
      b_src[i] = matrix + static_cast<int64_t>(b_valid[i] ? col : 0) * K;
    } else {
      const int col = n0 + r;
      b_valid[i] = col < args.hidden;
      b_src[i] = entry.down + static_cast<int64_t>(b_valid[i] ? col : 0) * K;
    }
  }

  auto load_stage = [&](int stage, int k_tile) {
    uint16_t* a_dst = smem + stage * kStageElems;
    uint16_t* b_dst = a_dst + kBM * kStride;
    const int k = k_tile * kBK + chunk_col;
#pragma unroll
    for (int i = 0; i < Shape::kALoadsPerThread; ++i) {
      const int r = tid / 4 + 32 * i;
      cp_async_16(a_dst + r * kStride + chunk_col, a_src[i] + k, a_valid[i]);
    }
#pragma unroll
    for (int i = 0; i < kBLoadsPerThread; ++i) {
      const int r = tid / 4 + 32 * i;
      cp_async_16(b_dst + r * kStride + chunk_col, b_src[i] + k, b_valid[i]);
    }
  };

  const int lane = tid & 31;
  const int warp = tid >> 5;
  const int warp_m = (warp & 1) * Shape::kWarpRows;
  const int warp_n = (warp >> 1) * 64;

  float acc[kFragsM][8][4];
#pragma unroll
  for (int mi = 0; mi < kFragsM; ++mi)
#pragma unroll
    for (int nj = 0; nj < 8; ++nj)
#pragma unroll
      for (int q = 0; q < 4; ++q) acc[mi][nj][q] = 0.f;

#pragma unroll
  for (int s = 0; s < kStages - 1; ++s) {
    if (s < num_k_tiles) load_stage(s, s);
    cp_async_commit();
  }

  for (int kt = 0; kt < num_k_tiles; ++kt) {
    cp_async_wait<kStages - 2>();  // tile kt has landed (for this thread's copies) ...
    __syncthreads();               // ... and for everyone's; all are done with tile kt - 1's stage
    const int prefetch = kt + kStages - 1;
    if (prefetch < num_k_tiles) load_stage(prefetch % kStages, prefetch);
    cp_async_commit();

    const uint16_t* a_tile = smem + (kt % kStages) * kStageElems;
    const uint16_t* b_tile = a_tile + kBM * kStride;
#pragma unroll
    for (int kk = 0; kk < kBK; kk += 16) {
      uint32_t a_frag[kFragsM][4];
#pragma unroll
      for (int mi = 0; mi < kFragsM; ++mi) {
        const int r = warp_m + mi * 16 + (lane & 15);
        const int c = kk + (lane >> 4) * 8;
        ldmatrix_x4(a_frag[mi], a_tile + r * kStride + c);
      }
      uint32_t b_frag[8][2];
#pragma unroll
      for (int nj = 0; nj < 8; nj += 2) {
        const int r = warp_n + nj * 8 + (lane & 7) + ((lane >> 4) << 3);
        const int c = kk + ((lane >> 3) & 1) * 8;
        uint32_t regs[4];
        ldmatrix_x4(regs, b_tile + r * kStride + c);
        b_frag[nj][0] = regs[0];
        b_frag[nj][1] = regs[1];
        b_frag[nj + 1][0] = regs[2];
        b_frag[nj + 1][1] = regs[3];
      }
#pragma unroll
      for (int mi = 0; mi < kFragsM; ++mi)
#pragma unroll
        for (int nj = 0; nj < 8; ++nj) mma_bf16_16816(acc[mi][nj], a_frag[mi], b_frag[nj][0], b_frag[nj][1]);
    }
  }
  cp_async_wait<0>();

  // Accumulator (mi, nj, q): row warp_m + mi*16 + lane/4 + 8*(q/2), column warp_n + nj*8 + (lane%4)*2 + q%2.
  const int group = lane >> 2;
  const int pair = (lane & 3) * 2;
  if constexpr (kStage == Stage::kGateUp) {
    // Warp columns warp_n..+63 are gate (nj 0..3) then up (nj 4..7) of h columns n0 + warp_n/2 + 0..31.
#pragma unroll
    for (int mi = 0; mi < kFragsM; ++mi)
#pragma unroll
      for (int half = 0; half < 2; ++half) {
        const int r = warp_m + mi * 16 + group + 8 * half;
        if (r >= rows) continue;
        uint16_t* h_row = args.h + static_cast<int64_t>(row0 + r) * args.inter_padded_max;
#pragma unroll
        for (int nj = 0; nj < 4; ++nj) {
          const int col = n0 + warp_n / 2 + nj * 8 + pair;
          const float v0 = silu(acc[mi][nj][2 * half]) * acc[mi][nj + 4][2 * half];
          const float v1 = silu(acc[mi][nj][2 * half + 1]) * acc[mi][nj + 4][2 * half + 1];
          *reinterpret_cast<uint32_t*>(h_row + col) = pack_bf16x2(v0, v1);
        }
      }
  } else {
    const bool paired = (args.hidden & 1) == 0 && (reinterpret_cast<uintptr_t>(args.out) & 7) == 0;
#pragma unroll
    for (int mi = 0; mi < kFragsM; ++mi)
#pragma unroll
      for (int half = 0; half < 2; ++half) {
        const int r = warp_m + mi * 16 + group + 8 * half;
        if (r >= rows) continue;
        const int token = ws.sorted_token[row0 + r];
        const float weight = ws.sorted_weight[row0 + r];
        float* out_row = args.out + static_cast<int64_t>(token) * args.hidden;
#pragma unroll
        for (int nj = 0; nj < 8; ++nj) {
          const int col = n0 + warp_n + nj * 8 + pair;
          const float v0 = weight * acc[mi][nj][2 * half];
          const float v1 = weight * acc[mi][nj][2 * half + 1];
          if (col + 1 < args.hidden) {
            atomic_add_pair(out_row + col, v0, v1, paired);
          } else if (col < args.hidden) {
            atomicAdd(out_row + col, v0);
          }
        }
      }
  }
}

template <Stage kStage, int kBM>
void launch_grouped_rows(const ExpertLayerArgs& args, const RoutingWorkspace& ws, cudaStream_t stream) {
  const int64_t m_tiles = tile_bound(args.num_assignments, args.num_experts, kBM);
  const int64_t n_tiles = kStage == Stage::kGateUp ? args.inter_padded_max / (kBN / 2)
                                                   : (args.hidden + kBN - 1) / kBN;
  const int64_t blocks = m_tiles * n_tiles;
  if (blocks == 0) return;
  if (blocks > 0x7fffffff) {
    throw std::invalid_argument("cuda backend: grouped GEMM grid of " + std::to_string(blocks) + " blocks (" +
                                std::to_string(m_tiles) + " row tiles of " + std::to_string(kBM) + " x " +
                                std::to_string(n_tiles) + " column tiles) exceeds the launch limit");
  }
  grouped_gemm_kernel<kStage, kBM><<<static_cast<unsigned>(blocks), kThreads, TileShape<kBM>::kSmemBytes, stream>>>(
      args, ws, static_cast<int>(m_tiles), static_cast<int>(n_tiles));
  MOE_CUDA_CHECK(cudaGetLastError());
}

template <Stage kStage>
void launch_grouped(const ExpertLayerArgs& args, const RoutingWorkspace& ws, TileRows tile_rows, cudaStream_t stream) {
  switch (tile_rows) {
    case TileRows::k32:
      return launch_grouped_rows<kStage, 32>(args, ws, stream);
    case TileRows::k64:
      return launch_grouped_rows<kStage, 64>(args, ws, stream);
    case TileRows::k128:
      return launch_grouped_rows<kStage, 128>(args, ws, stream);
  }
  throw std::invalid_argument("cuda backend: unknown grouped-GEMM tile rows " + std::to_string(tile_rows_value(tile_rows)));
}

template <Stage kStage, int kBM>
void allow_dynamic_smem() {
  MOE_CUDA_CHECK(cudaFuncSetAttribute(grouped_gemm_kernel<kStage, kBM>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                      TileShape<kBM>::kSmemBytes));
}

}  // namespace

void configure_kernels() {
  allow_dynamic_smem<Stage::kGateUp, 32>();
  allow_dynamic_smem<Stage::kGateUp, 64>();
  allow_dynamic_smem<Stage::kGateUp, 128>();
  allow_dynamic_smem<Stage::kDown, 32>();
  allow_dynamic_smem<Stage::kDown, 64>();
  allow_dynamic_smem<Stage::kDown, 128>();
}

void launch_grouped_gate_up(const ExpertLayerArgs& args, const RoutingWorkspace& ws, TileRows tile_rows,
                            cudaStream_t stream) {
  launch_grouped<Stage::kGateUp>(args, ws, tile_rows, stream);
}

void launch_grouped_down(const ExpertLayerArgs& args, const RoutingWorkspace& ws, TileRows tile_rows,
                         cudaStream_t stream) {
  launch_grouped<Stage::kDown>(args, ws, tile_rows, stream);
}

}  // namespace moe::cuda
