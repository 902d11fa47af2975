// Forward scratch memory (see forward_workspace.h).
#include "kernels/cuda/forward_workspace.h"

#include <algorithm>

namespace moe::cuda {

ForwardWorkspace::ForwardWorkspace() {
  invalid_.reserve(sizeof(int32_t));
  MOE_CUDA_CHECK(cudaMemset(invalid_.data(), 0, sizeof(int32_t)));
  MOE_CUDA_CHECK(cudaDeviceSynchronize());
}

void ForwardWorkspace::reserve(const WorkspaceShape& s) {
  const int64_t experts = std::max<int64_t>(s.num_experts, 1);
  const int64_t assignments = std::max<int64_t>(s.num_assignments, 1);
  const int64_t tiles = tile_bound(assignments, experts, kMinTileRows);  // enough for every TileRows
  const int64_t active = std::min(experts, assignments);
  // meta: counts[E] cursors[E] | offsets[E+1] num_tiles num_active | tile_expert[tiles] tile_row[tiles]
  //       | active[min(E, A)] | sorted_token[A]. counts and cursors first: one memset clears both.
  const int64_t ints = 2 * experts + (experts + 3) + 2 * tiles + active + assignments;
  meta_.reserve(static_cast<size_t>(ints) * sizeof(int32_t));
  sorted_weight_.reserve(static_cast<size_t>(assignments) * sizeof(float));
  x_bf16_.reserve(static_cast<size_t>(std::max<int64_t>(s.num_tokens, 1) * s.hidden_padded) * 2);
  h_.reserve(static_cast<size_t>(assignments * s.inter_padded_max) * 2);

  int32_t* p = static_cast<int32_t*>(meta_.data());
  routing_.counts = p;
  p += experts;
  routing_.cursors = p;
  p += experts;
  routing_.offsets = p;
  p += experts + 1;
  routing_.num_tiles = p++;
  routing_.num_active = p++;
  routing_.tile_expert = p;
  p += tiles;
  routing_.tile_row = p;
  p += tiles;
  routing_.active = p;
  p += active;
  routing_.sorted_token = p;
  routing_.sorted_weight = static_cast<float*>(sorted_weight_.data());
  routing_.invalid = invalid_flag();
}

}  // namespace moe::cuda
