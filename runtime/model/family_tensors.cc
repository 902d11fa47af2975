// Checkpoint tensor names of each family's MoE block, as its released checkpoints (and HF transformers'
// save_pretrained) spell them.
#include <string>

#include "runtime/model/model_error.h"
#include "runtime/model/model_spec.h"

namespace moe {
namespace {

std::string layer_prefix(int32_t layer) { return "model.layers." + std::to_string(layer) + "."; }

// The MoE block's module path inside a decoder layer.
const char* block_of(ModelFamily f) {
  switch (f) {
    case ModelFamily::Mixtral:
    case ModelFamily::MinimaxM2: return "block_sparse_moe.";
    case ModelFamily::Llama4Text: return "feed_forward.";
    default: return "mlp.";
  }
}

bool mixtral_names(ModelFamily f) { return f == ModelFamily::Mixtral || f == ModelFamily::MinimaxM2; }

}  // namespace

std::string ModelSpec::router_weight_name(int32_t layer) const {
  const char* gate = family == ModelFamily::GptOss || family == ModelFamily::Llama4Text ? "router.weight" : "gate.weight";
  return layer_prefix(layer) + block_of(family) + gate;
}

std::string ModelSpec::correction_bias_name(int32_t layer) const {
  if (!has_router_bias())
    throw ModelError(std::string("a router bias exists only in deepseek_v3/v32, glm4_moe, minimax_m2, ernie4_5_moe and "
                                 "gpt_oss models, not ") + family_name(family));
  const std::string p = layer_prefix(layer) + block_of(family);
  switch (family) {
    case ModelFamily::MinimaxM2: return p + "e_score_correction_bias";
    case ModelFamily::Ernie45Moe: return p + "moe_statics.e_score_correction_bias";
    case ModelFamily::GptOss: return p + "router.bias";
    default: return p + "gate.e_score_correction_bias";
  }
}

std::string ModelSpec::shared_gate_name(int32_t layer) const {
  if (!has_shared_expert || !shared_expert_gated)
    throw ModelError(std::string("shared_expert_gate exists only in qwen2_moe/qwen3_next models with a shared expert, not ") +
                     family_name(family));
  return layer_prefix(layer) + block_of(family) + "shared_expert_gate.weight";
}

std::string ModelSpec::expert_weight_name(int32_t layer, int32_t expert, ExpertProj proj) const {
  if (expert < 0 || expert >= experts_per_layer())
    throw ModelError("expert " + std::to_string(expert) + " is out of range (" + std::to_string(num_experts) +
                     " routed experts" + (has_shared_expert ? " + shared expert " + std::to_string(num_experts) : "") +
                     ")");
  if (fused_expert(expert))
    throw ModelError(std::string(family_name(family)) + " stores routed experts fused per layer; expert " +
                     std::to_string(expert) + " has no tensor of its own (see fused_expert_name)");
  const bool shared = expert == num_experts;
  const std::string p = layer_prefix(layer) + block_of(family);
  if (mixtral_names(family)) {
    const char* w = proj == ExpertProj::Gate ? "w1" : proj == ExpertProj::Up ? "w3" : "w2";
    return p + "experts." + std::to_string(expert) + "." + w + ".weight";
  }
  const char* proj_name = proj == ExpertProj::Gate ? "gate_proj" : proj == ExpertProj::Up ? "up_proj" : "down_proj";
  std::string block;
  if (!shared) block = "experts." + std::to_string(expert) + ".";
  else if (family == ModelFamily::Qwen2Moe || family == ModelFamily::Qwen3Next || family == ModelFamily::Llama4Text)
    block = "shared_expert.";
  else block = "shared_experts.";
  return p + block + proj_name + ".weight";
}

std::string ModelSpec::fused_expert_name(int32_t layer, const std::string& what) const {
  if (layout() == ExpertLayout::PerExpert)
    throw ModelError(std::string(family_name(family)) + " stores each expert in its own tensors, not fused");
  return layer_prefix(layer) + block_of(family) + "experts." + what;
}

}  // namespace moe
