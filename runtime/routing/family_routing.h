// Scores -> (top-k ids, weights) for each routing family, one token row at a time, exactly as HF
// transformers' MoE blocks compute them (ARCHITECTURE.md, "Routing families"). Ids come out in order
// of decreasing selection score; ties as in topk.h.
#pragma once

#include <cstdint>

#include "runtime/model/model_spec.h"

namespace moe {

// Mixtral, Qwen2-MoE, Qwen3-MoE: p = softmax(logits) in fp32, top-k of p, and p at the chosen experts
// divided by their sum when `normalize` (Mixtral always; Qwen only with norm_topk_prob).
void route_softmax_topk(const float* logits, int32_t num_experts, int32_t top_k, bool normalize,
                        int32_t* out_ids, float* out_weights);

// DeepSeek-V3: s = sigmoid(logits); choice = s + bias; group score = sum of the two largest choice
// scores of each of n_group equal groups; the choice scores of all but the topk_group best groups are
// set to 0.0 (not -inf, as HF does, so a masked expert can still beat negative scores); top-k of the
// masked choice scores; weights = s at the chosen experts, / (Σ + 1e-20) if norm_topk_prob,
// × routed_scaling_factor.
void route_grouped_sigmoid(const float* logits, const float* correction_bias, const ModelSpec& spec,
                           int32_t* out_ids, float* out_weights);

}  // namespace moe

namespace moe {

// ernie4_5_moe: p = softmax(logits); top-k of p + bias; weights = p at the chosen experts
// / max(Σ, norm_min).
void route_biased_softmax(const float* logits, const float* bias, int32_t num_experts, int32_t top_k, float norm_min,
                          int32_t* out_ids, float* out_weights);

// gpt_oss: top-k of (logits + bias) (bias may be null), weights = softmax over the k chosen values.
// llama4_text (sigmoid = true, no bias): top-k of the logits, weights = sigmoid of the chosen logits.
void route_topk_logits(const float* logits, const float* bias, int32_t num_experts, int32_t top_k, bool sigmoid,
                       int32_t* out_ids, float* out_weights);

}  // namespace moe
