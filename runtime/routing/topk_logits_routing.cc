// Routing that selects on the raw logits (gpt_oss, llama4_text) or on biased softmax scores (ernie4_5_moe),
// as HF transformers 5.24's GptOssTopKRouter, Llama4Router and Ernie4_5_MoeTopKRouter compute them.
#include <algorithm>
#include <cmath>
#include <vector>

#include "runtime/routing/softmax.h"
#include "runtime/routing/family_routing.h"
#include "runtime/routing/router_logits.h"
#include "runtime/routing/topk.h"

namespace moe {

void route_biased_softmax(const float* logits, const float* bias, int32_t num_experts, int32_t top_k, float norm_min,
                          int32_t* out_ids, float* out_weights) {
  thread_local std::vector<float> probs, choice;
  probs.resize(static_cast<size_t>(num_experts));
  choice.resize(static_cast<size_t>(num_experts));
  softmax_into(logits, num_experts, probs.data());
  for (int32_t e = 0; e < num_experts; ++e) choice[e] = probs[e] + bias[e];
  select_topk(choice.data(), num_experts, top_k, out_ids);
  float chosen = 0.f;
  for (int32_t j = 0; j < top_k; ++j) chosen += (out_weights[j] = probs[out_ids[j]]);
  const float denom = std::max(chosen, norm_min);
  for (int32_t j = 0; j < top_k; ++j) out_weights[j] /= denom;
}

void route_topk_logits(const float* logits, const float* bias, int32_t num_experts, int32_t top_k, bool use_sigmoid,
                       int32_t* out_ids, float* out_weights) {
  thread_local std::vector<float> scores;
  scores.assign(logits, logits + num_experts);
  if (bias)
    for (int32_t e = 0; e < num_experts; ++e) scores[e] += bias[e];
  select_topk(scores.data(), num_experts, top_k, out_ids);
  if (use_sigmoid) {
    for (int32_t j = 0; j < top_k; ++j) out_weights[j] = sigmoid(scores[out_ids[j]]);
    return;
  }
  const float top = scores[out_ids[0]];  // the largest: select_topk orders decreasing
  double sum = 0.0;
  for (int32_t j = 0; j < top_k; ++j) sum += (out_weights[j] = std::exp(scores[out_ids[j]] - top));
  const float inv = static_cast<float>(1.0 / sum);
  for (int32_t j = 0; j < top_k; ++j) out_weights[j] *= inv;
}

}  // namespace moe
