// The whole host-side API of the CUDA kernels (DeepEP's habit): the data they share, their launch
// constants and one launcher per kernel. Plain C++: the backend (.cc) includes it, the .cu files
// implement it. Every launcher only enqueues on `stream` and checks the launch.
//
// Layout conventions (the backend guarantees them):
//   - A layer has one hidden size H, stored padded to Hp = round_up(H, kPadK) with zero columns.
//   - Expert e has intermediate size I_e, padded to Ip_e = round_up(I_e, kPadK). Its slot holds
//     gate [I_e][Hp], up [I_e][Hp], down [H][Ip_e], bf16, row-major, padding columns zero.
//   - x_bf16 is [T][Hp] (padding zero); h is [A][Ip_max], rows in expert-sorted order, columns
//     [0, Ip_e) written for the row's expert (those past I_e are zero).
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace moe::cuda {

using bf16_bits = uint16_t;  // bf16 values as raw bits

// Same layout as moe::TokenAssignment (the backend static_asserts it and passes those arrays as these).
struct DeviceAssignment {
  int32_t token;
  int32_t expert;
  float weight;
};

constexpr int kPadK = 64;          // K padding of every weight and activation row
constexpr int kGemvMaxTokens = 16; // the decode path streams weights once per this many tokens

// Rows (tokens of one expert) per grouped-GEMM tile: 128 when experts get many rows, 64 or 32 when they
// get few (a 128-row tile over 30 rows would issue 4x the tensor-core work that is needed).
enum class TileRows : int { k32 = 32, k64 = 64, k128 = 128 };
constexpr int kMinTileRows = 32;
inline int tile_rows_value(TileRows rows) { return static_cast<int>(rows); }

// One expert's weights on the device, indexed by expert id; gate == nullptr: not loaded.
struct ExpertDeviceEntry {
  const bf16_bits* gate = nullptr;
  const bf16_bits* up = nullptr;
  const bf16_bits* down = nullptr;
  int32_t inter = 0;         // I_e
  int32_t inter_padded = 0;  // Ip_e
};

// Device workspace of one forward, sized by the backend (counts for E experts, A assignments).
struct RoutingWorkspace {
  int32_t* counts = nullptr;        // [E]   zeroed before route_count
  int32_t* cursors = nullptr;       // [E]   zeroed before route_count
  int32_t* invalid = nullptr;       // [1]   set to 1 when an assignment was skipped (not reset here)
  int32_t* offsets = nullptr;       // [E+1] start of each expert's rows in the sorted order
  int32_t* tile_expert = nullptr;   // [tile bound] expert of each tile (tile_rows rows, see launch_route)
  int32_t* tile_row = nullptr;      // [tile bound] first sorted row of each tile
  int32_t* num_tiles = nullptr;     // [1]
  int32_t* active = nullptr;        // [min(E, A)] experts with at least one row
  int32_t* num_active = nullptr;    // [1]
  int32_t* sorted_token = nullptr;  // [A]
  float* sorted_weight = nullptr;   // [A]
};

// Upper bound of the number of `tile_rows`-row tiles for A assignments over E experts.
inline int64_t tile_bound(int64_t num_assignments, int64_t num_experts, int tile_rows) {
  int64_t nonempty = num_assignments < num_experts ? num_assignments : num_experts;
  return (num_assignments + tile_rows - 1) / tile_rows + nonempty;
}

// Once per device, before the first launch on it (raises the GEMM kernels' shared-memory limit).
void configure_kernels();

// Counting sort of the assignments by expert (skipping invalid ones) and the tile/active lists; the
// tiles hold `tile_rows` rows each (the grouped GEMMs must be launched with the same TileRows).
void launch_route(const DeviceAssignment* assignments, int64_t num_assignments, int64_t num_tokens,
                  const ExpertDeviceEntry* experts, int32_t num_experts, const RoutingWorkspace& ws,
                  TileRows tile_rows, cudaStream_t stream);

// x_bf16[t][c] = bf16(x[t][c]) for c < hidden, 0 for hidden <= c < hidden_padded.
void launch_convert_rows_to_bf16(const float* x, int64_t rows, int64_t hidden, int64_t hidden_padded,
                                 bf16_bits* x_bf16, cudaStream_t stream);

struct ExpertLayerArgs {
  const ExpertDeviceEntry* experts = nullptr;
  int32_t num_experts = 0;
  int64_t num_tokens = 0;
  int64_t num_assignments = 0;
  int64_t hidden = 0;            // H
  int64_t hidden_padded = 0;     // Hp
  int64_t inter_padded_max = 0;  // Ip_max over the layer's experts: row stride of h
  const bf16_bits* x_bf16 = nullptr;
  bf16_bits* h = nullptr;
  float* out = nullptr;  // [T][H], zeroed before the down kernels (they accumulate)
};

// Prefill path: tensor-core grouped GEMMs (mma.sync), tile list from launch_route with the same tile_rows.
void launch_grouped_gate_up(const ExpertLayerArgs& args, const RoutingWorkspace& ws, TileRows tile_rows,
                            cudaStream_t stream);
void launch_grouped_down(const ExpertLayerArgs& args, const RoutingWorkspace& ws, TileRows tile_rows,
                         cudaStream_t stream);

// Decode path: one warp per weight row streams it once per kGemvMaxTokens rows of its expert.
void launch_gemv_gate_up(const ExpertLayerArgs& args, const RoutingWorkspace& ws, cudaStream_t stream);
void launch_gemv_down(const ExpertLayerArgs& args, const RoutingWorkspace& ws, cudaStream_t stream);

}  // namespace moe::cuda
