// DeepSeek-V3 grouped sigmoid routing, as HF's DeepseekV3MoE.route_tokens_to_experts (transformers 5.24,
// checked by tests/peer; ../shared/ARCHITECTURE.md's "0.0, not -inf" is what older releases did):
//   scores = sigmoid(logits); choice = scores + e_score_correction_bias;
//   group_scores = choice.view(n_group, E/n_group).topk(2).sum(); keep topk_group groups;
//   choice.masked_fill(~mask, -inf); ids = topk(choice, top_k); w = scores.gather(ids);
//   if norm_topk_prob: w /= w.sum() + 1e-20;  w *= routed_scaling_factor.
#include <limits>
#include <vector>

#include "runtime/routing/family_routing.h"
#include "runtime/routing/router_logits.h"
#include "runtime/routing/topk.h"

namespace moe {

void route_grouped_sigmoid(const float* logits, const float* correction_bias, const ModelSpec& spec,
                           int32_t* out_ids, float* out_weights) {
  const int32_t num_experts = spec.num_experts;
  const int32_t group_size = num_experts / spec.n_group;
  thread_local std::vector<float> scores, choice, group_scores;
  thread_local std::vector<int32_t> scratch_ids, kept_groups;
  thread_local std::vector<char> keep;
  scores.resize(static_cast<size_t>(num_experts));
  choice.resize(static_cast<size_t>(num_experts));
  group_scores.resize(static_cast<size_t>(spec.n_group));
  scratch_ids.resize(2);
  kept_groups.resize(static_cast<size_t>(spec.topk_group));

  for (int32_t e = 0; e < num_experts; ++e) {
    scores[e] = sigmoid(logits[e]);
    choice[e] = scores[e] + correction_bias[e];
  }

  if (spec.topk_group < spec.n_group) {
    for (int32_t g = 0; g < spec.n_group; ++g) {
      const float* group = choice.data() + static_cast<size_t>(g) * group_size;
      select_topk(group, group_size, 2, scratch_ids.data());
      group_scores[g] = group[scratch_ids[0]] + group[scratch_ids[1]];
    }
    select_topk(group_scores.data(), spec.n_group, spec.topk_group, kept_groups.data());
    keep.assign(static_cast<size_t>(spec.n_group), 0);
    for (int32_t g : kept_groups) keep[g] = 1;
    for (int32_t g = 0; g < spec.n_group; ++g) {
      if (keep[g]) continue;
      for (int32_t e = g * group_size; e < (g + 1) * group_size; ++e)
        choice[e] = -std::numeric_limits<float>::infinity();
    }
  }

  select_topk(choice.data(), num_experts, spec.top_k, out_ids);
  float sum = 0.f;
  for (int32_t j = 0; j < spec.top_k; ++j) {
    out_weights[j] = scores[out_ids[j]];
    sum += out_weights[j];
  }
  const float denom = spec.norm_topk_prob ? sum + 1e-20f : 1.f;
  for (int32_t j = 0; j < spec.top_k; ++j) {
    out_weights[j] = out_weights[j] / denom * spec.routed_scaling_factor;
  }
}

}  // namespace moe
