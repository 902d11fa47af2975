// Each family's config.json keys, as HF transformers 5.24's configuration classes read them (defaults
// included), mapped onto the generic ModelSpec fields; and the same keys written back.
#include "runtime/model/family_config.h"

#include <algorithm>
#include <set>
#include <string>

#include <nlohmann/json.hpp>

#include "runtime/model/model_error.h"

namespace moe {

using nlohmann::json;

namespace {

std::string join(const std::vector<int32_t>& layers) {
  std::string out;
  for (size_t i = 0; i < layers.size(); ++i) out += (i ? ", " : "") + std::to_string(layers[i]);
  return out.empty() ? "none" : out;
}

// The first of `keys` the config holds (HF attribute maps: a family may save either spelling).
std::string key_of(const ConfigReader& r, std::initializer_list<const char*> keys) {
  for (const char* k : keys)
    if (r.has(k)) return k;
  return *keys.begin();
}

void all_layers_moe(ModelSpec& s) {
  for (int32_t l = 0; l < s.num_hidden_layers; ++l) s.moe_layers.push_back(l);
}

void parse_mixtral(const ConfigReader& r, ModelSpec& s) {
  s.moe_intermediate_size = r.integer("intermediate_size", 1);
  s.num_experts = static_cast<int32_t>(r.integer("num_local_experts", 1));
  s.norm_topk_prob = true;
  all_layers_moe(s);
}

// qwen2_moe, qwen3_moe, qwen3_next: MoE unless in mlp_only_layers, every decoder_sparse_step-th layer.
void parse_qwen(const ConfigReader& r, ModelSpec& s) {
  s.moe_intermediate_size = r.integer("moe_intermediate_size", 1);
  s.num_experts = static_cast<int32_t>(r.integer(key_of(r, {"num_experts", "num_local_experts"}), 1));
  s.norm_topk_prob = r.boolean_or("norm_topk_prob", s.family == ModelFamily::Qwen3Next);
  s.dense_intermediate_size = r.integer_or("intermediate_size", 1, 0);
  int64_t step = r.integer_or("decoder_sparse_step", 1, 1);
  std::vector<int32_t> mlp_only = r.integer_list_or_empty("mlp_only_layers");
  std::set<int32_t> dense(mlp_only.begin(), mlp_only.end());
  for (int32_t l = 0; l < s.num_hidden_layers; ++l)
    if (!dense.count(l) && (l + 1) % step == 0) s.moe_layers.push_back(l);
  if (s.family != ModelFamily::Qwen3Moe) {
    s.shared_intermediate_size = s.family == ModelFamily::Qwen3Next
                                     ? r.integer_or("shared_expert_intermediate_size", 0, 512)
                                     : r.integer("shared_expert_intermediate_size", 0);
    s.has_shared_expert = s.shared_intermediate_size > 0;
    s.shared_expert_gated = s.has_shared_expert;
  }
}

void parse_olmoe(const ConfigReader& r, ModelSpec& s) {
  s.moe_intermediate_size = r.integer("intermediate_size", 1);
  s.num_experts = static_cast<int32_t>(r.integer(key_of(r, {"num_experts", "num_local_experts"}), 1));
  s.norm_topk_prob = r.boolean_or("norm_topk_prob", false);
  all_layers_moe(s);
}

// deepseek_v3, deepseek_v32, glm4_moe: sigmoid + correction bias + groups, shared experts, dense first.
void parse_deepseek(const ConfigReader& r, ModelSpec& s) {
  const bool v3 = s.family == ModelFamily::DeepseekV3, glm = s.family == ModelFamily::Glm4Moe;
  s.moe_intermediate_size = r.integer("moe_intermediate_size", 1);
  s.num_experts = static_cast<int32_t>(r.integer(key_of(r, {"n_routed_experts", "num_local_experts"}), 1));
  s.norm_topk_prob = r.boolean_or("norm_topk_prob", true);
  s.n_group = static_cast<int32_t>(r.integer_or("n_group", 1, v3 || glm ? 1 : 8));
  s.topk_group = static_cast<int32_t>(r.integer_or("topk_group", 1, v3 || glm ? 1 : 4));
  s.routed_scaling_factor = static_cast<float>(r.number_or("routed_scaling_factor", v3 || glm ? 1.0 : 2.5));
  s.dense_intermediate_size = r.integer_or("intermediate_size", 1, 0);
  int64_t n_shared = r.integer_or("n_shared_experts", 0, v3 ? 0 : 1);
  s.has_shared_expert = n_shared > 0;
  s.shared_intermediate_size = s.moe_intermediate_size * n_shared;
  if (s.family == ModelFamily::DeepseekV32 && r.has("mlp_layer_types")) {
    const json& types = r.config().at("mlp_layer_types");
    if (!types.is_array() || static_cast<int64_t>(types.size()) != s.num_hidden_layers)
      r.fail("key 'mlp_layer_types' must list \"dense\" or \"sparse\" for each of the " +
             std::to_string(s.num_hidden_layers) + " layers, got " + types.dump());
    for (int32_t l = 0; l < s.num_hidden_layers; ++l) {
      if (types[l] == "sparse") s.moe_layers.push_back(l);
      else if (types[l] != "dense") r.fail("mlp_layer_types[" + std::to_string(l) + "] is " + types[l].dump() +
                                           ", expected \"dense\" or \"sparse\"");
    }
    return;
  }
  int64_t first_dense = v3 ? r.integer("first_k_dense_replace", 0) : r.integer_or("first_k_dense_replace", 0, glm ? 1 : 3);
  for (int32_t l = static_cast<int32_t>(first_dense); l < s.num_hidden_layers; ++l) s.moe_layers.push_back(l);
}

// minimax_m2: sigmoid scores + correction bias, top-k, always renormalised; no groups, no scaling.
void parse_minimax(const ConfigReader& r, ModelSpec& s) {
  s.moe_intermediate_size = r.integer("intermediate_size", 1);
  s.num_experts = static_cast<int32_t>(r.integer(key_of(r, {"num_local_experts", "num_experts"}), 1));
  s.norm_topk_prob = true;
  all_layers_moe(s);
}

void parse_ernie(const ConfigReader& r, ModelSpec& s) {
  if (r.boolean_or("use_bias", false))
    r.fail("use_bias true (biases on the expert MLPs) is not supported for ernie4_5_moe");
  s.moe_intermediate_size = r.integer("moe_intermediate_size", 1);
  s.num_experts = static_cast<int32_t>(r.integer(key_of(r, {"moe_num_experts", "num_experts"}), 1));
  s.norm_topk_prob = true;
  s.norm_min = static_cast<float>(r.number_or("moe_norm_min", 1e-12));
  s.dense_intermediate_size = r.integer_or("intermediate_size", 1, 0);
  int64_t n_shared = r.integer_or("moe_num_shared_experts", 0, 0);
  s.has_shared_expert = n_shared > 0;
  s.shared_intermediate_size = s.moe_intermediate_size * n_shared;
  const int64_t start = r.integer_or("moe_layer_start_index", 0, 1);
  int64_t end = r.has("moe_layer_end_index") && r.config().at("moe_layer_end_index") == -1
                    ? s.num_hidden_layers - 1
                    : r.integer_or("moe_layer_end_index", 0, s.num_hidden_layers - 1);
  const int64_t interval = r.integer_or("moe_layer_interval", 1, 1);
  for (int32_t l = 0; l < s.num_hidden_layers; ++l)
    if ((l + 1) % interval == 0 && l >= start && l <= end) s.moe_layers.push_back(l);
}

void parse_gpt_oss(const ConfigReader& r, ModelSpec& s) {
  s.moe_intermediate_size = r.integer("intermediate_size", 1);
  s.num_experts = static_cast<int32_t>(r.integer(key_of(r, {"num_local_experts", "num_experts"}), 1));
  s.norm_topk_prob = true;
  s.swiglu_alpha = static_cast<float>(r.number_or("swiglu_alpha", 1.702));
  s.swiglu_limit = static_cast<float>(r.number_or("swiglu_limit", 7.0));
  all_layers_moe(s);
}

void parse_llama4(const ConfigReader& r, ModelSpec& s) {
  s.moe_intermediate_size = r.integer("intermediate_size", 1);
  s.num_experts = static_cast<int32_t>(r.integer("num_local_experts", 1));
  s.norm_topk_prob = false;
  s.has_shared_expert = true;
  s.shared_intermediate_size = s.moe_intermediate_size;
  s.dense_intermediate_size = r.integer_or("intermediate_size_mlp", 1, 0);
  if (r.has("moe_layers")) {
    s.moe_layers = r.integer_list_or_empty("moe_layers");
    std::sort(s.moe_layers.begin(), s.moe_layers.end());
  } else {
    const int64_t step = r.integer_or("interleave_moe_layer_step", 1, 1);
    for (int64_t l = step - 1; l < s.num_hidden_layers; l += step) s.moe_layers.push_back(static_cast<int32_t>(l));
  }
}

}  // namespace

RoutingKind ModelSpec::routing() const {
  switch (family) {
    case ModelFamily::DeepseekV3:
    case ModelFamily::DeepseekV32:
    case ModelFamily::Glm4Moe:
    case ModelFamily::MinimaxM2: return RoutingKind::GroupedSigmoid;
    case ModelFamily::Ernie45Moe: return RoutingKind::BiasedSoftmax;
    case ModelFamily::GptOss: return RoutingKind::TopkSoftmax;
    case ModelFamily::Llama4Text: return RoutingKind::SigmoidTopk;
    default: return RoutingKind::SoftmaxTopk;
  }
}

bool ModelSpec::has_router_bias() const {
  return routing() == RoutingKind::GroupedSigmoid || routing() == RoutingKind::BiasedSoftmax ||
         family == ModelFamily::GptOss;
}

ExpertLayout ModelSpec::layout() const {
  return family == ModelFamily::GptOss       ? ExpertLayout::FusedInterleaved
         : family == ModelFamily::Llama4Text ? ExpertLayout::FusedHalves
                                             : ExpertLayout::PerExpert;
}

bool ModelSpec::expert_biases() const { return family == ModelFamily::GptOss; }

ExpertMath ModelSpec::expert_math() const {
  ExpertMath m;
  if (family == ModelFamily::GptOss) {
    m.activation = ExpertActivation::ClampedSwiglu;
    m.swiglu_alpha = swiglu_alpha;
    m.swiglu_limit = swiglu_limit;
  }
  m.weight_scales_input = family == ModelFamily::Llama4Text;
  return m;
}

void parse_family_config(const ConfigReader& r, ModelSpec& s) {
  s.top_k = static_cast<int32_t>(r.integer(key_of(r, {"num_experts_per_tok", "moe_k"}), 1));
  switch (s.family) {
    case ModelFamily::Mixtral: parse_mixtral(r, s); break;
    case ModelFamily::Qwen2Moe:
    case ModelFamily::Qwen3Moe:
    case ModelFamily::Qwen3Next: parse_qwen(r, s); break;
    case ModelFamily::Olmoe: parse_olmoe(r, s); break;
    case ModelFamily::DeepseekV3:
    case ModelFamily::DeepseekV32:
    case ModelFamily::Glm4Moe: parse_deepseek(r, s); break;
    case ModelFamily::MinimaxM2: parse_minimax(r, s); break;
    case ModelFamily::Ernie45Moe: parse_ernie(r, s); break;
    case ModelFamily::GptOss: parse_gpt_oss(r, s); break;
    case ModelFamily::Llama4Text: parse_llama4(r, s); break;
  }
}

void parse_quantization_config(const ConfigReader& r, ModelSpec& s) {
  if (!r.has("quantization_config")) return;
  const json& q = r.config().at("quantization_config");
  if (!q.is_object() || !q.contains("quant_method") || !q.at("quant_method").is_string())
    r.fail("quantization_config must be an object with a string 'quant_method', got " + q.dump());
  const std::string method = q.at("quant_method").get<std::string>();
  if (method == "fp8") {
    const json& b = q.contains("weight_block_size") ? q.at("weight_block_size") : json();
    if (!b.is_array() || b.size() != 2 || !b[0].is_number_integer() || !b[1].is_number_integer() ||
        b[0].get<int64_t>() <= 0 || b[1].get<int64_t>() <= 0)
      r.fail("quantization_config (fp8) needs weight_block_size [rows, cols] of positive integers, got " +
             (q.contains("weight_block_size") ? q.at("weight_block_size").dump() : std::string("none")) +
             " (per-tensor FP8 is not supported)");
    if (s.layout() != ExpertLayout::PerExpert)
      r.fail("fp8 block-quantized weights are supported only for per-expert tensor layouts");
    s.quant = WeightQuant::Fp8Block;
    s.quant_block_rows = b[0].get<int64_t>();
    s.quant_block_cols = b[1].get<int64_t>();
  } else if (method == "mxfp4") {
    if (s.layout() != ExpertLayout::FusedInterleaved)
      r.fail("mxfp4 weights are supported only for gpt_oss's expert layout");
    s.quant = WeightQuant::Mxfp4;
  } else {
    r.fail("quantization_config.quant_method '" + method + "' is not supported (supported: fp8 with "
           "weight_block_size, mxfp4 for gpt_oss)");
  }
}

void write_family_config(const ModelSpec& s, json& c) {
  std::set<int32_t> moe(s.moe_layers.begin(), s.moe_layers.end());
  const int64_t dense = s.dense_intermediate_size > 0 ? s.dense_intermediate_size : s.moe_intermediate_size;
  auto all_moe = [&](const char* why) {
    if (static_cast<int32_t>(s.moe_layers.size()) != s.num_hidden_layers)
      throw ModelError(std::string(family_name(s.family)) + " configs make every layer MoE" + why +
                       "; spec has MoE layers " + join(s.moe_layers) + " of " + std::to_string(s.num_hidden_layers));
  };
  auto suffix_moe = [&]() {
    const int32_t first = s.moe_layers.front();
    if (static_cast<int32_t>(s.moe_layers.size()) != s.num_hidden_layers - first)
      throw ModelError(std::string(family_name(s.family)) + " configs make layers >= first_k_dense_replace MoE; "
                       "spec has MoE layers " + join(s.moe_layers) + " of " + std::to_string(s.num_hidden_layers));
    return first;
  };
  switch (s.family) {
    case ModelFamily::Mixtral:
      all_moe("");
      c["architectures"] = {"MixtralForCausalLM"};
      c["intermediate_size"] = s.moe_intermediate_size;
      c["num_local_experts"] = s.num_experts;
      break;
    case ModelFamily::Olmoe:
      all_moe("");
      c["architectures"] = {"OlmoeForCausalLM"};
      c["intermediate_size"] = s.moe_intermediate_size;
      c["num_experts"] = s.num_experts;
      c["norm_topk_prob"] = s.norm_topk_prob;
      break;
    case ModelFamily::MinimaxM2:
      all_moe("");
      c["architectures"] = {"MiniMaxM2ForCausalLM"};
      c["intermediate_size"] = s.moe_intermediate_size;
      c["num_local_experts"] = s.num_experts;
      break;
    case ModelFamily::GptOss:
      all_moe("");
      c["architectures"] = {"GptOssForCausalLM"};
      c["intermediate_size"] = s.moe_intermediate_size;
      c["num_local_experts"] = s.num_experts;
      c["swiglu_alpha"] = s.swiglu_alpha;
      c["swiglu_limit"] = s.swiglu_limit;
      break;
    case ModelFamily::Llama4Text:
      c["architectures"] = {"Llama4ForCausalLM"};
      c["intermediate_size"] = s.moe_intermediate_size;
      c["intermediate_size_mlp"] = dense;
      c["num_local_experts"] = s.num_experts;
      c["moe_layers"] = s.moe_layers;
      break;
    case ModelFamily::Qwen2Moe:
    case ModelFamily::Qwen3Moe:
    case ModelFamily::Qwen3Next: {
      c["architectures"] = {s.family == ModelFamily::Qwen2Moe   ? "Qwen2MoeForCausalLM"
                            : s.family == ModelFamily::Qwen3Moe ? "Qwen3MoeForCausalLM"
                                                                : "Qwen3NextForCausalLM"};
      c["intermediate_size"] = dense;
      c["moe_intermediate_size"] = s.moe_intermediate_size;
      c["num_experts"] = s.num_experts;
      c["norm_topk_prob"] = s.norm_topk_prob;
      c["decoder_sparse_step"] = 1;
      json mlp_only = json::array();
      for (int32_t l = 0; l < s.num_hidden_layers; ++l)
        if (!moe.count(l)) mlp_only.push_back(l);
      c["mlp_only_layers"] = mlp_only;
      if (s.family != ModelFamily::Qwen3Moe)
        c["shared_expert_intermediate_size"] = s.has_shared_expert ? s.shared_intermediate_size : 0;
      break;
    }
    case ModelFamily::Ernie45Moe: {
      const int32_t first = s.moe_layers.front(), last = s.moe_layers.back();
      if (static_cast<int32_t>(s.moe_layers.size()) != last - first + 1)
        throw ModelError("ernie4_5_moe configs make a contiguous range of layers MoE (interval 1 here); spec has " +
                         join(s.moe_layers));
      c["architectures"] = {"Ernie4_5_MoeForCausalLM"};
      c["intermediate_size"] = dense;
      c["moe_intermediate_size"] = s.moe_intermediate_size;
      c["moe_num_experts"] = s.num_experts;
      c["moe_k"] = s.top_k;
      c.erase("num_experts_per_tok");
      c["moe_layer_start_index"] = first;
      c["moe_layer_end_index"] = last;
      c["moe_layer_interval"] = 1;
      c["moe_norm_min"] = s.norm_min;
      c["use_bias"] = false;
      if (s.has_shared_expert && s.shared_intermediate_size % s.moe_intermediate_size != 0)
        throw ModelError("ernie4_5_moe shared expert size " + std::to_string(s.shared_intermediate_size) +
                         " is not a multiple of moe_intermediate_size " + std::to_string(s.moe_intermediate_size));
      c["moe_num_shared_experts"] = s.has_shared_expert ? s.shared_intermediate_size / s.moe_intermediate_size : 0;
      break;
    }
    case ModelFamily::DeepseekV3:
    case ModelFamily::DeepseekV32:
    case ModelFamily::Glm4Moe: {
      const int32_t first = suffix_moe();
      int64_t n_shared = 0;
      if (s.has_shared_expert) {
        if (s.shared_intermediate_size % s.moe_intermediate_size != 0)
          throw ModelError(std::string(family_name(s.family)) + " shared expert size " +
                           std::to_string(s.shared_intermediate_size) + " is not a multiple of moe_intermediate_size " +
                           std::to_string(s.moe_intermediate_size));
        n_shared = s.shared_intermediate_size / s.moe_intermediate_size;
      }
      c["architectures"] = {s.family == ModelFamily::DeepseekV3    ? "DeepseekV3ForCausalLM"
                            : s.family == ModelFamily::DeepseekV32 ? "DeepseekV32ForCausalLM"
                                                                   : "Glm4MoeForCausalLM"};
      c["intermediate_size"] = dense;
      c["moe_intermediate_size"] = s.moe_intermediate_size;
      c["n_routed_experts"] = s.num_experts;
      c["n_shared_experts"] = n_shared;
      c["first_k_dense_replace"] = first;
      c["n_group"] = s.n_group;
      c["topk_group"] = s.topk_group;
      c["routed_scaling_factor"] = s.routed_scaling_factor;
      c["norm_topk_prob"] = s.norm_topk_prob;
      if (s.family != ModelFamily::Glm4Moe) {
        const int64_t head_dim = c.at("head_dim").get<int64_t>();
        c["topk_method"] = "noaux_tc";
        c["scoring_func"] = "sigmoid";
        c["q_lora_rank"] = std::max<int64_t>(8, s.hidden_size / 2);
        c["kv_lora_rank"] = std::max<int64_t>(8, s.hidden_size / 4);
        c["qk_nope_head_dim"] = head_dim;
        c["qk_rope_head_dim"] = std::max<int64_t>(2, head_dim / 2);
        c["v_head_dim"] = head_dim;
        c["head_dim"] = std::max<int64_t>(2, head_dim / 2);  // HF: the rope part
        c["num_nextn_predict_layers"] = 0;
      }
      break;
    }
  }
  if (s.family == ModelFamily::Mixtral || s.family == ModelFamily::Qwen2Moe || s.family == ModelFamily::Qwen3Moe) {
    c["router_aux_loss_coef"] = 0.001;
    c["output_router_logits"] = false;
  }
}

}  // namespace moe
