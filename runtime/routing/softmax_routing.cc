// Softmax top-k routing (Mixtral, Qwen2-MoE, Qwen3-MoE), as HF:
//   routing_weights = softmax(router_logits, dtype=float); topk; [/= sum].
#include <algorithm>
#include <cmath>
#include <vector>

#include "runtime/routing/softmax.h"
#include "runtime/routing/family_routing.h"
#include "runtime/routing/topk.h"

namespace moe {

void route_softmax_topk(const float* logits, int32_t num_experts, int32_t top_k, bool normalize,
                        int32_t* out_ids, float* out_weights) {
  // Selection is on the fp32 probabilities, not the logits, so that ties created by rounding in the
  // softmax are broken the same way torch.topk on the probabilities would see them.
  thread_local std::vector<float> probs;
  probs.resize(static_cast<size_t>(num_experts));
  softmax_into(logits, num_experts, probs.data());

  select_topk(probs.data(), num_experts, top_k, out_ids);
  float chosen_sum = 0.f;
  for (int32_t j = 0; j < top_k; ++j) {
    out_weights[j] = probs[out_ids[j]];
    chosen_sum += out_weights[j];
  }
  if (normalize) {
    const float denom = chosen_sum;
    for (int32_t j = 0; j < top_k; ++j) out_weights[j] /= denom;
  }
}

}  // namespace moe
