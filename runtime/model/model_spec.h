// What one MoE model looks like to this runtime: the family, the sizes, which layers are MoE, and the
// checkpoint tensor names of every MoE layer. Read from an HF `config.json` (see ARCHITECTURE.md).
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace moe {

enum class ModelFamily { Mixtral, Qwen2Moe, Qwen3Moe, DeepseekV3 };

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
  // deepseek_v3 only
  int32_t n_group = 1;
  int32_t topk_group = 1;
  float routed_scaling_factor = 1.f;
  // shared expert: at most one (DeepSeek's n_shared_experts are one fused MLP in the checkpoint)
  bool has_shared_expert = false;
  int64_t shared_intermediate_size = 0;
  bool shared_expert_gated = false;    // qwen2_moe: weight sigmoid(x·w_gate); deepseek: weight 1
  int32_t num_hidden_layers = 0;
  std::vector<int32_t> moe_layers;     // ascending
  // HF "intermediate_size": the MLP of dense layers (qwen/deepseek). Only carried through to
  // model_spec_to_config; 0 = unknown (then the MoE size is written).
  int64_t dense_intermediate_size = 0;

  bool is_moe_layer(int32_t layer) const;
  // Experts per MoE layer as the runtime numbers them: routed 0..E-1, then the shared expert as E.
  int32_t experts_per_layer() const { return num_experts + (has_shared_expert ? 1 : 0); }
  int32_t shared_expert_id() const { return num_experts; }
  int64_t intermediate_of(int32_t expert) const {
    return expert == num_experts ? shared_intermediate_size : moe_intermediate_size;
  }

  // Checkpoint tensor names.
  std::string router_weight_name(int32_t layer) const;          // [E, hidden]
  std::string correction_bias_name(int32_t layer) const;        // deepseek: [E]
  std::string shared_gate_name(int32_t layer) const;            // qwen2_moe: [1, hidden]
  // expert may be the shared expert id.
  std::string expert_weight_name(int32_t layer, int32_t expert, ExpertProj proj) const;

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
