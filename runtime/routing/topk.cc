// Top-k selection with the tie rule documented in topk.h.
#include "runtime/routing/topk.h"

#include <cmath>

namespace moe {

bool ranks_before(float a, int32_t ia, float b, int32_t ib) {
  const bool nan_a = std::isnan(a);
  const bool nan_b = std::isnan(b);
  if (nan_a != nan_b) return nan_a;
  if (!nan_a && a != b) return a > b;
  return ia < ib;
}

void select_topk(const float* scores, int32_t n, int32_t k, int32_t* out_ids) {
  // Insertion into a sorted list of k: k is small (<= 16 in real models), n a few hundred at most.
  int32_t filled = 0;
  for (int32_t i = 0; i < n; ++i) {
    if (filled == k && !ranks_before(scores[i], i, scores[out_ids[k - 1]], out_ids[k - 1])) continue;
    int32_t pos = filled < k ? filled++ : k - 1;
    while (pos > 0 && ranks_before(scores[i], i, scores[out_ids[pos - 1]], out_ids[pos - 1])) {
      out_ids[pos] = out_ids[pos - 1];
      --pos;
    }
    out_ids[pos] = i;
  }
}

}  // namespace moe
