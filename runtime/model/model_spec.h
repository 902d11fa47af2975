// What one MoE model looks like to this runtime: the family, the sizes, which layers are MoE, how its
// router scores and its experts compute (RoutingKind, ExpertMath), and the checkpoint tensor names and
// layout of every MoE layer. Read from an HF `config.json` (see ARCHITECTURE.md). Families differ only
// in these fields (family_config.cc parses them, family_tensors.cc names the tensors): the engine, the
// cluster and the backends read the fields, never the family.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "runtime/core/expert_types.h"

namespace moe {

enum class ModelFamily {
  Mixtral, Qwen2Moe, Qwen3Moe, DeepseekV3,
  DeepseekV32, Glm4Moe, Qwen3Next, Olmoe, MinimaxM2, Ernie45Moe, GptOss, Llama4Text,
};
inline constexpr ModelFamily kAllFamilies[] = {
    ModelFamily::Mixtral,   ModelFamily::Qwen2Moe, ModelFamily::Qwen3Moe,   ModelFamily::DeepseekV3,
    ModelFamily::DeepseekV32, ModelFamily::Glm4Moe, ModelFamily::Qwen3Next, ModelFamily::Olmoe,
    ModelFamily::MinimaxM2, ModelFamily::Ernie45Moe, ModelFamily::GptOss,   ModelFamily::Llama4Text,
};

// How the router turns logits = x·Wgᵀ (+ router bias) into (expert, weight) pairs; see family_routing.h.
enum class RoutingKind {
  SoftmaxTopk,     // mixtral, qwen2/3_moe, qwen3_next, olmoe: softmax, top-k, optional renormalise
  GroupedSigmoid,  // deepseek_v3/v32, glm4_moe, minimax_m2: sigmoid, correction bias, groups, scaling
  BiasedSoftmax,   // ernie4_5_moe: softmax, top-k of softmax + bias, / max(Σ, moe_norm_min)
  TopkSoftmax,     // gpt_oss: top-k of the logits (with router bias), softmax over the k chosen
  SigmoidTopk,     // llama4_text: top-k of the logits, weight sigmoid(logit), applied to the expert input
};
const char* routing_name(RoutingKind k);

// Where a routed expert's matrices live in the checkpoint.
enum class ExpertLayout {
  PerExpert,         // experts.N.{gate,up,down} [I, H], [I, H], [H, I] (Linear layout)
  FusedHalves,       // llama4: experts.gate_up_proj [E, H, 2I] (gate = first I columns), down_proj [E, I, H]
  FusedInterleaved,  // gpt_oss: as FusedHalves but gate = even columns, up = odd; + biases [E, 2I], [E, H]
};

// Quantized expert weights as the real releases ship them.
enum class WeightQuant {
  None,
  Fp8Block,  // quant_method "fp8": F8_E4M3 weight + F32/BF16 weight_scale_inv [ceil(rows/b0), ceil(cols/b1)]
  Mxfp4,     // quant_method "mxfp4" (gpt_oss): *_blocks U8 [..., cols/32, 16] (e2m1 nibbles) + *_scales U8 (e8m0)
};

const char* family_name(ModelFamily f);              // "mixtral", "qwen2_moe", ...
ModelFamily parse_family(const std::string& model_type);  // throws ModelError on unknown types

enum class ExpertProj { Gate, Up, Down };

// Sane bounds a config must keep (validate_model_spec; parse_model_spec checks num_hidden_layers before
// it lists the MoE layers): far above any released MoE model, far below what would exhaust a machine's
// memory in the per-expert tables the coordinator and workers build before reading a weight.
constexpr int64_t kMaxModelLayers = 4096;
constexpr int64_t kMaxExpertsPerLayer = 65536;
constexpr int64_t kMaxModelExperts = 1 << 22;  // MoE layers x experts per layer
constexpr int64_t kMaxHiddenSize = 1 << 18;
constexpr int64_t kMaxIntermediateSize = 1 << 20;

struct ModelSpec {
  ModelFamily family = ModelFamily::Mixtral;
  int64_t hidden_size = 0;
  int64_t moe_intermediate_size = 0;   // per routed expert
  int32_t num_experts = 0;             // routed experts per MoE layer
  int32_t top_k = 0;
  bool norm_topk_prob = true;          // mixtral: always true
  // GroupedSigmoid only (n_group 1 = no groups)
  int32_t n_group = 1;
  int32_t topk_group = 1;
  float routed_scaling_factor = 1.f;
  float norm_min = 0.f;                // BiasedSoftmax: weights / max(Σ, norm_min)
  // shared expert: at most one (n_shared_experts are one fused MLP in the checkpoint)
  bool has_shared_expert = false;
  int64_t shared_intermediate_size = 0;
  bool shared_expert_gated = false;    // qwen2_moe/qwen3_next: weight sigmoid(x·w_gate); else weight 1
  float swiglu_alpha = 1.702f, swiglu_limit = 7.f;  // gpt_oss's clamped SwiGLU
  WeightQuant quant = WeightQuant::None;
  int64_t quant_block_rows = 0, quant_block_cols = 0;  // Fp8Block: weight_block_size
  int32_t num_hidden_layers = 0;
  std::vector<int32_t> moe_layers;     // ascending
  // HF "intermediate_size": the MLP of dense layers (qwen/deepseek). Only carried through to
  // model_spec_to_config; 0 = unknown (then the MoE size is written).
  int64_t dense_intermediate_size = 0;

  // The family's fixed traits (family_config.cc): how it routes, lays out and computes its experts.
  RoutingKind routing() const;
  // A bias vector [E] of the router: the correction bias of selection scores (GroupedSigmoid,
  // BiasedSoftmax) or the logit bias (TopkSoftmax, gpt_oss router.bias). RouterWeights::correction_bias.
  bool has_router_bias() const;
  ExpertLayout layout() const;
  bool expert_biases() const;  // gpt_oss: gate_up_proj_bias, down_proj_bias
  // What a routed expert computes (the shared expert is always the plain SiLU GLU).
  ExpertMath expert_math() const;

  bool is_moe_layer(int32_t layer) const;
  // Experts per MoE layer as the runtime numbers them: routed 0..E-1, then the shared expert as E.
  int32_t experts_per_layer() const { return num_experts + (has_shared_expert ? 1 : 0); }
  int32_t shared_expert_id() const { return num_experts; }
  int64_t intermediate_of(int32_t expert) const {
    return expert == num_experts ? shared_intermediate_size : moe_intermediate_size;
  }

  // Checkpoint tensor names (family_tensors.cc).
  std::string router_weight_name(int32_t layer) const;          // [E, hidden]
  std::string correction_bias_name(int32_t layer) const;        // the router bias: [E] ([1, E] for ernie)
  std::string shared_gate_name(int32_t layer) const;            // gated shared expert: [1, hidden]
  // A PerExpert routed expert or the shared expert (always per-expert Linear layout).
  std::string expert_weight_name(int32_t layer, int32_t expert, ExpertProj proj) const;
  // Fused layouts: "gate_up_proj", "down_proj", "gate_up_proj_bias", "down_proj_bias" of the layer.
  std::string fused_expert_name(int32_t layer, const std::string& what) const;
  // Fused layouts store routed experts in one tensor per layer; the shared expert never is.
  bool fused_expert(int32_t expert) const { return layout() != ExpertLayout::PerExpert && expert < num_experts; }
  // What expert `expert` computes: expert_math for routed experts, the plain SiLU GLU for the shared one.
  ExpertMath math_of(int32_t expert) const { return expert < num_experts ? expert_math() : ExpertMath{}; }

  // Throws ModelError when `layer` is out of range or dense (message names the MoE layers).
  void require_moe_layer(int32_t layer) const;
};

// Parses a config.json object. Throws ModelError (naming the key, and `source`, e.g. the file path) on
// missing/invalid fields or an inconsistent spec (top_k > experts, groups not dividing experts, ...).
// Optional keys take HF transformers' defaults: decoder_sparse_step 1, mlp_only_layers [],
// norm_topk_prob (qwen false, deepseek true), n_shared_experts 0 is "no shared expert".
ModelSpec parse_model_spec(const nlohmann::json& config);
ModelSpec parse_model_spec(const nlohmann::json& config, const std::string& source);
// Checks the invariants parse_model_spec guarantees (sizes > 0, top_k <= experts, grouping, layers in
// range and ascending, shared-expert fields consistent). Throws ModelError naming the offending field.
void validate_model_spec(const ModelSpec& spec);
ModelSpec load_model_spec(const std::filesystem::path& model_dir);  // reads DIR/config.json
// An HF-style config.json that parse_model_spec reads back to an equal spec and that HF transformers can
// instantiate (attention sizes are small made-up values: only the MoE layers matter to this runtime).
// Throws ModelError when the MoE layer set cannot be expressed in the family's config keys.
nlohmann::json model_spec_to_config(const ModelSpec& spec);

}  // namespace moe
