// Top-k selection over one row of scores, with a fixed order for ties so routing is deterministic.
//
// torch.topk on CPU sorts (value, index) pairs with std::partial_sort / std::nth_element on the value
// alone, so the order of equal values is whatever that unstable sort leaves (in practice usually the
// lower index first). We pin it: higher score first, equal scores by lower expert index first, and NaN
// ranks above every number (as torch.topk does, for numpy compatibility).
#pragma once

#include <cstdint>

namespace moe {

// Writes the indices of the k largest of scores[0..n) to out_ids[0..k), in decreasing order.
// Requires 1 <= k <= n (the caller checks).
void select_topk(const float* scores, int32_t n, int32_t k, int32_t* out_ids);

// True when score a at index ia ranks before score b at index ib in select_topk's order.
bool ranks_before(float a, int32_t ia, float b, int32_t ib);

}  // namespace moe
