// ModelSpec: parsing an HF config.json of the four supported families, tensor names, and writing an
// HF-style config.json back (used by the synthetic checkpoint writer).
#include "runtime/model/model_spec.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "runtime/model/model_error.h"

namespace moe {
namespace {

using nlohmann::json;

std::string join_layers(const std::vector<int32_t>& layers) {
  if (layers.empty()) return "none";
  std::string out;
  for (size_t i = 0; i < layers.size(); ++i) {
    if (i) out += ", ";
    out += std::to_string(layers[i]);
  }
  return out;
}

// Typed access to config keys; every failure names the key and where the config came from.
class ConfigReader {
 public:
  ConfigReader(const json& config, std::string source, std::string model_type)
      : config_(config), source_(std::move(source)), model_type_(std::move(model_type)) {}

  bool has(const std::string& key) const { return config_.contains(key) && !config_.at(key).is_null(); }

  int64_t integer(const std::string& key, int64_t min_value) const {
    if (!has(key)) fail("missing key '" + key + "'");
    return integer_value(key, config_.at(key), min_value);
  }
  int64_t integer_or(const std::string& key, int64_t min_value, int64_t fallback) const {
    return has(key) ? integer_value(key, config_.at(key), min_value) : fallback;
  }
  bool boolean_or(const std::string& key, bool fallback) const {
    if (!has(key)) return fallback;
    const json& v = config_.at(key);
    if (!v.is_boolean()) fail("key '" + key + "' must be true or false, got " + v.dump());
    return v.get<bool>();
  }
  double number_or(const std::string& key, double fallback) const {
    if (!has(key)) return fallback;
    const json& v = config_.at(key);
    if (!v.is_number() || !std::isfinite(v.get<double>()))
      fail("key '" + key + "' must be a finite number, got " + v.dump());
    return v.get<double>();
  }
  std::vector<int32_t> integer_list_or_empty(const std::string& key) const {
    std::vector<int32_t> out;
    if (!has(key)) return out;
    const json& v = config_.at(key);
    if (!v.is_array()) fail("key '" + key + "' must be a list of layer indices, got " + v.dump());
    for (const json& item : v) out.push_back(static_cast<int32_t>(integer_value(key, item, 0)));
    return out;
  }

  [[noreturn]] void fail(const std::string& what) const {
    throw ModelError(source_ + ": " + what + " (model_type " + model_type_ + ")");
  }

 private:
  int64_t integer_value(const std::string& key, const json& v, int64_t min_value) const {
    bool integral = v.is_number_integer() ||
                    (v.is_number_float() && std::isfinite(v.get<double>()) &&
                     v.get<double>() == std::floor(v.get<double>()) && std::abs(v.get<double>()) < 1e15);
    if (!integral) fail("key '" + key + "' must be an integer, got " + v.dump());
    int64_t value = v.is_number_float() ? static_cast<int64_t>(v.get<double>()) : v.get<int64_t>();
    if (value < min_value || value > INT32_MAX)
      fail("key '" + key + "' must be in [" + std::to_string(min_value) + ", " + std::to_string(INT32_MAX) +
           "], got " + v.dump());
    return value;
  }

  const json& config_;
  std::string source_;
  std::string model_type_;
};

void parse_mixtral(const ConfigReader& r, ModelSpec& s) {
  s.moe_intermediate_size = r.integer("intermediate_size", 1);
  s.num_experts = static_cast<int32_t>(r.integer("num_local_experts", 1));
  s.norm_topk_prob = true;
  for (int32_t l = 0; l < s.num_hidden_layers; ++l) s.moe_layers.push_back(l);
}

void parse_qwen(const ConfigReader& r, ModelSpec& s) {
  s.moe_intermediate_size = r.integer("moe_intermediate_size", 1);
  // Hub checkpoints say num_experts; transformers 5 saves Qwen3-MoE's as num_local_experts (attribute_map).
  s.num_experts = static_cast<int32_t>(r.has("num_experts") || !r.has("num_local_experts")
                                           ? r.integer("num_experts", 1)
                                           : r.integer("num_local_experts", 1));
  s.norm_topk_prob = r.boolean_or("norm_topk_prob", false);
  s.dense_intermediate_size = r.integer_or("intermediate_size", 1, 0);
  int64_t step = r.integer_or("decoder_sparse_step", 1, 1);
  std::vector<int32_t> mlp_only = r.integer_list_or_empty("mlp_only_layers");
  std::set<int32_t> dense(mlp_only.begin(), mlp_only.end());
  for (int32_t l = 0; l < s.num_hidden_layers; ++l)
    if (!dense.count(l) && (l + 1) % step == 0) s.moe_layers.push_back(l);
  if (s.family == ModelFamily::Qwen2Moe) {
    s.shared_intermediate_size = r.integer("shared_expert_intermediate_size", 0);
    s.has_shared_expert = s.shared_intermediate_size > 0;
    s.shared_expert_gated = s.has_shared_expert;
  }
}

void parse_deepseek(const ConfigReader& r, ModelSpec& s) {
  s.moe_intermediate_size = r.integer("moe_intermediate_size", 1);
  s.num_experts = static_cast<int32_t>(r.integer("n_routed_experts", 1));
  s.norm_topk_prob = r.boolean_or("norm_topk_prob", true);
  s.n_group = static_cast<int32_t>(r.integer_or("n_group", 1, 1));
  s.topk_group = static_cast<int32_t>(r.integer_or("topk_group", 1, 1));
  s.routed_scaling_factor = static_cast<float>(r.number_or("routed_scaling_factor", 1.0));
  s.dense_intermediate_size = r.integer_or("intermediate_size", 1, 0);
  int64_t n_shared = r.integer_or("n_shared_experts", 0, 0);
  s.has_shared_expert = n_shared > 0;
  s.shared_intermediate_size = s.moe_intermediate_size * n_shared;
  s.shared_expert_gated = false;
  int64_t first_dense = r.integer("first_k_dense_replace", 0);
  for (int32_t l = static_cast<int32_t>(first_dense); l < s.num_hidden_layers; ++l) s.moe_layers.push_back(l);
}

std::string layer_prefix(int32_t layer) { return "model.layers." + std::to_string(layer) + "."; }

// Attention sizes for a config HF can instantiate; this runtime never reads them.
int64_t head_dim_for(int64_t hidden) {
  for (int64_t d : {64, 32, 16, 8, 4, 2})
    if (hidden % d == 0) return d;
  return 1;
}

}  // namespace

const char* family_name(ModelFamily f) {
  switch (f) {
    case ModelFamily::Mixtral: return "mixtral";
    case ModelFamily::Qwen2Moe: return "qwen2_moe";
    case ModelFamily::Qwen3Moe: return "qwen3_moe";
    case ModelFamily::DeepseekV3: return "deepseek_v3";
  }
  return "?";
}

ModelFamily parse_family(const std::string& model_type) {
  for (ModelFamily f : {ModelFamily::Mixtral, ModelFamily::Qwen2Moe, ModelFamily::Qwen3Moe, ModelFamily::DeepseekV3})
    if (model_type == family_name(f)) return f;
  throw ModelError("unknown model_type '" + model_type + "' (supported: mixtral, qwen2_moe, qwen3_moe, deepseek_v3)");
}

bool ModelSpec::is_moe_layer(int32_t layer) const {
  return std::binary_search(moe_layers.begin(), moe_layers.end(), layer);
}

void ModelSpec::require_moe_layer(int32_t layer) const {
  if (layer < 0 || layer >= num_hidden_layers)
    throw ModelError("layer " + std::to_string(layer) + " is out of range (model has " +
                     std::to_string(num_hidden_layers) + " layers; MoE layers: " + join_layers(moe_layers) + ")");
  if (!is_moe_layer(layer))
    throw ModelError("layer " + std::to_string(layer) + " is not an MoE layer (MoE layers: " +
                     join_layers(moe_layers) + ")");
}

std::string ModelSpec::router_weight_name(int32_t layer) const {
  return layer_prefix(layer) + (family == ModelFamily::Mixtral ? "block_sparse_moe.gate.weight" : "mlp.gate.weight");
}

std::string ModelSpec::correction_bias_name(int32_t layer) const {
  if (family != ModelFamily::DeepseekV3)
    throw ModelError(std::string("e_score_correction_bias exists only in deepseek_v3 models, not ") + family_name(family));
  return layer_prefix(layer) + "mlp.gate.e_score_correction_bias";
}

std::string ModelSpec::shared_gate_name(int32_t layer) const {
  if (family != ModelFamily::Qwen2Moe || !has_shared_expert)
    throw ModelError(std::string("shared_expert_gate exists only in qwen2_moe models with a shared expert, not ") +
                     family_name(family));
  return layer_prefix(layer) + "mlp.shared_expert_gate.weight";
}

std::string ModelSpec::expert_weight_name(int32_t layer, int32_t expert, ExpertProj proj) const {
  if (expert < 0 || expert >= experts_per_layer())
    throw ModelError("expert " + std::to_string(expert) + " is out of range (" + std::to_string(num_experts) +
                     " routed experts" + (has_shared_expert ? " + shared expert " + std::to_string(num_experts) : "") +
                     ")");
  const bool shared = expert == num_experts;
  if (family == ModelFamily::Mixtral) {
    const char* w = proj == ExpertProj::Gate ? "w1" : proj == ExpertProj::Up ? "w3" : "w2";
    return layer_prefix(layer) + "block_sparse_moe.experts." + std::to_string(expert) + "." + w + ".weight";
  }
  const char* p = proj == ExpertProj::Gate ? "gate_proj" : proj == ExpertProj::Up ? "up_proj" : "down_proj";
  std::string block;
  if (!shared) block = "mlp.experts." + std::to_string(expert) + ".";
  else if (family == ModelFamily::DeepseekV3) block = "mlp.shared_experts.";
  else block = "mlp.shared_expert.";
  return layer_prefix(layer) + block + p + ".weight";
}

void validate_model_spec(const ModelSpec& s) {
  auto fail = [&](const std::string& what) {
    throw ModelError(std::string("invalid ") + family_name(s.family) + " model spec: " + what);
  };
  if (s.hidden_size <= 0) fail("hidden_size must be > 0, got " + std::to_string(s.hidden_size));
  auto at_most = [&](const char* key, int64_t value, int64_t bound) {
    if (value > bound) fail(std::string(key) + " " + std::to_string(value) + " is over the bound of " + std::to_string(bound));
  };
  at_most("hidden_size", s.hidden_size, kMaxHiddenSize);
  at_most("num_hidden_layers", s.num_hidden_layers, kMaxModelLayers);
  at_most("num_experts", s.num_experts, kMaxExpertsPerLayer);
  at_most("moe_intermediate_size", s.moe_intermediate_size, kMaxIntermediateSize);
  at_most("shared_intermediate_size", s.shared_intermediate_size, kMaxIntermediateSize);
  at_most("MoE layers x experts", static_cast<int64_t>(s.moe_layers.size()) * s.num_experts, kMaxModelExperts);
  if (s.moe_intermediate_size <= 0)
    fail("moe_intermediate_size must be > 0, got " + std::to_string(s.moe_intermediate_size));
  if (s.num_experts <= 0) fail("num_experts must be > 0, got " + std::to_string(s.num_experts));
  if (s.top_k <= 0 || s.top_k > s.num_experts)
    fail("num_experts_per_tok must be in [1, " + std::to_string(s.num_experts) + "], got " + std::to_string(s.top_k));
  if (s.num_hidden_layers <= 0) fail("num_hidden_layers must be > 0, got " + std::to_string(s.num_hidden_layers));
  if (s.moe_layers.empty()) fail("no MoE layers among " + std::to_string(s.num_hidden_layers) + " layers");
  for (size_t i = 0; i < s.moe_layers.size(); ++i) {
    if (s.moe_layers[i] < 0 || s.moe_layers[i] >= s.num_hidden_layers)
      fail("MoE layer " + std::to_string(s.moe_layers[i]) + " is outside [0, " + std::to_string(s.num_hidden_layers) + ")");
    if (i > 0 && s.moe_layers[i] <= s.moe_layers[i - 1]) fail("MoE layers are not ascending: " + join_layers(s.moe_layers));
  }
  if (s.has_shared_expert && s.shared_intermediate_size <= 0)
    fail("shared expert with intermediate size " + std::to_string(s.shared_intermediate_size));
  if (s.has_shared_expert && s.family != ModelFamily::Qwen2Moe && s.family != ModelFamily::DeepseekV3)
    fail("this family has no shared expert");
  if (s.has_shared_expert && s.shared_expert_gated != (s.family == ModelFamily::Qwen2Moe))
    fail("shared expert gating must be sigmoid for qwen2_moe and none for deepseek_v3");
  if (s.family == ModelFamily::DeepseekV3) {
    if (s.n_group <= 0 || s.num_experts % s.n_group != 0)
      fail("n_group " + std::to_string(s.n_group) + " must divide n_routed_experts " + std::to_string(s.num_experts));
    if (s.num_experts / s.n_group < 2 && s.n_group > 1)
      fail("each of the n_group " + std::to_string(s.n_group) + " groups needs >= 2 experts, has " +
           std::to_string(s.num_experts / s.n_group));
    if (s.topk_group <= 0 || s.topk_group > s.n_group)
      fail("topk_group must be in [1, n_group " + std::to_string(s.n_group) + "], got " + std::to_string(s.topk_group));
    int64_t selectable = static_cast<int64_t>(s.topk_group) * (s.num_experts / s.n_group);
    if (s.top_k > selectable)
      fail("num_experts_per_tok " + std::to_string(s.top_k) + " exceeds the " + std::to_string(selectable) +
           " experts in topk_group groups");
    if (!(s.routed_scaling_factor > 0.f) || !std::isfinite(s.routed_scaling_factor))
      fail("routed_scaling_factor must be > 0, got " + std::to_string(s.routed_scaling_factor));
  }
}

ModelSpec parse_model_spec(const nlohmann::json& config) { return parse_model_spec(config, "config.json"); }

ModelSpec parse_model_spec(const nlohmann::json& config, const std::string& source) {
  if (!config.is_object()) throw ModelError(source + ": expected a JSON object, got " + std::string(config.type_name()));
  if (!config.contains("model_type")) throw ModelError(source + ": missing key 'model_type'");
  if (!config.at("model_type").is_string())
    throw ModelError(source + ": key 'model_type' must be a string, got " + config.at("model_type").dump());
  const std::string model_type = config.at("model_type").get<std::string>();
  ModelSpec s;
  try {
    s.family = parse_family(model_type);
  } catch (const ModelError& e) {
    throw ModelError(source + ": " + e.what());
  }
  ConfigReader r(config, source, model_type);
  s.hidden_size = r.integer("hidden_size", 1);
  s.num_hidden_layers = static_cast<int32_t>(r.integer("num_hidden_layers", 1));
  if (s.num_hidden_layers > kMaxModelLayers) {  // before the families list their MoE layers
    throw ModelError(source + ": num_hidden_layers " + std::to_string(s.num_hidden_layers) + " is over the bound of " +
                     std::to_string(kMaxModelLayers));
  }
  s.top_k = static_cast<int32_t>(r.integer("num_experts_per_tok", 1));
  switch (s.family) {
    case ModelFamily::Mixtral: parse_mixtral(r, s); break;
    case ModelFamily::Qwen2Moe:
    case ModelFamily::Qwen3Moe: parse_qwen(r, s); break;
    case ModelFamily::DeepseekV3: parse_deepseek(r, s); break;
  }
  try {
    validate_model_spec(s);
  } catch (const ModelError& e) {
    throw ModelError(source + ": " + e.what());
  }
  return s;
}

ModelSpec load_model_spec(const std::filesystem::path& model_dir) {
  std::error_code ec;
  if (!std::filesystem::is_directory(model_dir, ec))
    throw ModelError("model directory " + model_dir.string() + " does not exist or is not a directory");
  const std::filesystem::path path = model_dir / "config.json";
  std::ifstream in(path);
  if (!in) throw ModelError("model directory " + model_dir.string() + " has no readable config.json");
  nlohmann::json config;
  try {
    config = nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    throw ModelError(path.string() + ": not valid JSON: " + e.what());
  }
  return parse_model_spec(config, path.string());
}

nlohmann::json model_spec_to_config(const ModelSpec& s) {
  validate_model_spec(s);
  const int64_t head_dim = head_dim_for(s.hidden_size);
  const int64_t heads = s.hidden_size / head_dim;
  const int64_t dense = s.dense_intermediate_size > 0 ? s.dense_intermediate_size : s.moe_intermediate_size;
  json c = {
      {"model_type", family_name(s.family)},
      {"hidden_size", s.hidden_size},
      {"num_hidden_layers", s.num_hidden_layers},
      {"num_experts_per_tok", s.top_k},
      {"num_attention_heads", heads},
      {"num_key_value_heads", heads},
      {"head_dim", head_dim},
      {"hidden_act", "silu"},
      {"vocab_size", 128},
      {"max_position_embeddings", 4096},
      {"rms_norm_eps", 1e-6},
      {"rope_theta", 10000.0},
      {"tie_word_embeddings", false},
      {"initializer_range", 0.02},
      {"use_cache", true},
  };
  std::set<int32_t> moe(s.moe_layers.begin(), s.moe_layers.end());
  switch (s.family) {
    case ModelFamily::Mixtral:
      if (static_cast<int32_t>(s.moe_layers.size()) != s.num_hidden_layers)
        throw ModelError("mixtral configs make every layer MoE; spec has MoE layers " + join_layers(s.moe_layers) +
                         " of " + std::to_string(s.num_hidden_layers));
      c["architectures"] = {"MixtralForCausalLM"};
      c["intermediate_size"] = s.moe_intermediate_size;
      c["num_local_experts"] = s.num_experts;
      c["router_aux_loss_coef"] = 0.001;
      c["output_router_logits"] = false;
      break;
    case ModelFamily::Qwen2Moe:
    case ModelFamily::Qwen3Moe: {
      const bool qwen2 = s.family == ModelFamily::Qwen2Moe;
      c["architectures"] = {qwen2 ? "Qwen2MoeForCausalLM" : "Qwen3MoeForCausalLM"};
      c["intermediate_size"] = dense;
      c["moe_intermediate_size"] = s.moe_intermediate_size;
      c["num_experts"] = s.num_experts;
      c["norm_topk_prob"] = s.norm_topk_prob;
      c["decoder_sparse_step"] = 1;
      json mlp_only = json::array();
      for (int32_t l = 0; l < s.num_hidden_layers; ++l)
        if (!moe.count(l)) mlp_only.push_back(l);
      c["mlp_only_layers"] = mlp_only;
      c["router_aux_loss_coef"] = 0.001;
      c["output_router_logits"] = false;
      if (qwen2) c["shared_expert_intermediate_size"] = s.has_shared_expert ? s.shared_intermediate_size : 0;
      break;
    }
    case ModelFamily::DeepseekV3: {
      const int32_t first = s.moe_layers.front();
      if (static_cast<int32_t>(s.moe_layers.size()) != s.num_hidden_layers - first)
        throw ModelError("deepseek_v3 configs make layers >= first_k_dense_replace MoE; spec has MoE layers " +
                         join_layers(s.moe_layers) + " of " + std::to_string(s.num_hidden_layers));
      int64_t n_shared = 0;
      if (s.has_shared_expert) {
        if (s.shared_intermediate_size % s.moe_intermediate_size != 0)
          throw ModelError("deepseek_v3 shared expert size " + std::to_string(s.shared_intermediate_size) +
                           " is not a multiple of moe_intermediate_size " + std::to_string(s.moe_intermediate_size));
        n_shared = s.shared_intermediate_size / s.moe_intermediate_size;
      }
      c["architectures"] = {"DeepseekV3ForCausalLM"};
      c["intermediate_size"] = dense;
      c["moe_intermediate_size"] = s.moe_intermediate_size;
      c["n_routed_experts"] = s.num_experts;
      c["n_shared_experts"] = n_shared;
      c["first_k_dense_replace"] = first;
      c["n_group"] = s.n_group;
      c["topk_group"] = s.topk_group;
      c["routed_scaling_factor"] = s.routed_scaling_factor;
      c["norm_topk_prob"] = s.norm_topk_prob;
      c["topk_method"] = "noaux_tc";
      c["scoring_func"] = "sigmoid";
      c["q_lora_rank"] = std::max<int64_t>(8, s.hidden_size / 2);
      c["kv_lora_rank"] = std::max<int64_t>(8, s.hidden_size / 4);
      c["qk_nope_head_dim"] = head_dim;
      c["qk_rope_head_dim"] = std::max<int64_t>(2, head_dim / 2);
      c["v_head_dim"] = head_dim;
      c["head_dim"] = std::max<int64_t>(2, head_dim / 2);  // HF: the rope part
      c["num_nextn_predict_layers"] = 0;
      break;
    }
  }
  return c;
}

}  // namespace moe
