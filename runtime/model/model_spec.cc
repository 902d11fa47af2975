// ModelSpec: family names, validation, parsing an HF config.json (the per-family keys are in
// family_config.cc) and writing an HF-style config.json back (synthetic writer, modelInfo.specJson).
#include "runtime/model/model_spec.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "runtime/model/family_config.h"
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
    case ModelFamily::DeepseekV32: return "deepseek_v32";
    case ModelFamily::Glm4Moe: return "glm4_moe";
    case ModelFamily::Qwen3Next: return "qwen3_next";
    case ModelFamily::Olmoe: return "olmoe";
    case ModelFamily::MinimaxM2: return "minimax_m2";
    case ModelFamily::Ernie45Moe: return "ernie4_5_moe";
    case ModelFamily::GptOss: return "gpt_oss";
    case ModelFamily::Llama4Text: return "llama4_text";
  }
  return "?";
}

const char* routing_name(RoutingKind k) {
  switch (k) {
    case RoutingKind::SoftmaxTopk: return "softmax_topk";
    case RoutingKind::GroupedSigmoid: return "grouped_sigmoid";
    case RoutingKind::BiasedSoftmax: return "biased_softmax";
    case RoutingKind::TopkSoftmax: return "topk_softmax";
    case RoutingKind::SigmoidTopk: return "sigmoid_topk";
  }
  return "?";
}

ModelFamily parse_family(const std::string& model_type) {
  std::string supported;
  for (ModelFamily f : kAllFamilies) {
    if (model_type == family_name(f)) return f;
    supported += (supported.empty() ? "" : ", ") + std::string(family_name(f));
  }
  throw ModelError("unknown model_type '" + model_type + "' (supported: " + supported + ")");
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
  const bool gated_family = s.family == ModelFamily::Qwen2Moe || s.family == ModelFamily::Qwen3Next;
  if (s.has_shared_expert && (s.family == ModelFamily::Mixtral || s.family == ModelFamily::Qwen3Moe ||
                              s.family == ModelFamily::Olmoe || s.family == ModelFamily::MinimaxM2 ||
                              s.family == ModelFamily::GptOss))
    fail("this family has no shared expert");
  if (s.has_shared_expert && s.shared_expert_gated != gated_family)
    fail("shared expert gating must be sigmoid for qwen2_moe/qwen3_next and none for other families");
  if (s.routing() == RoutingKind::BiasedSoftmax && !(s.norm_min >= 0.f))
    fail("moe_norm_min must be >= 0, got " + std::to_string(s.norm_min));
  if (s.family == ModelFamily::GptOss &&
      (!(s.swiglu_limit > 0.f) || !std::isfinite(s.swiglu_alpha)))
    fail("swiglu_limit must be > 0 and swiglu_alpha finite, got " + std::to_string(s.swiglu_limit) +
         " and " + std::to_string(s.swiglu_alpha));
  if (s.routing() == RoutingKind::GroupedSigmoid) {
    if (s.n_group <= 0 || s.num_experts % s.n_group != 0)
      fail("n_group " + std::to_string(s.n_group) + " must divide the " + std::to_string(s.num_experts) +
           " routed experts");
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
  parse_family_config(r, s);
  parse_quantization_config(r, s);
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
  write_family_config(s, c);
  return c;
}

}  // namespace moe
