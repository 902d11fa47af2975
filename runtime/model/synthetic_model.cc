// SyntheticLayerSource and its presets: weights generated per tensor from a counter-based hash.
#include "runtime/model/synthetic_model.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <set>

#include "runtime/model/model_error.h"
#include "runtime/model/safetensors_file.h"

namespace moe {
namespace {

// What a generated tensor is; part of its hash key.
enum class TensorKind : uint64_t { ExpertGate = 1, ExpertUp = 2, ExpertDown = 3, Router = 4, Bias = 5, SharedGate = 6 };

uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

uint64_t tensor_key(uint64_t seed, int32_t layer, int32_t expert, TensorKind kind) {
  uint64_t k = splitmix64(seed);
  k = splitmix64(k ^ static_cast<uint32_t>(layer));
  k = splitmix64(k ^ (static_cast<uint64_t>(static_cast<uint32_t>(expert)) << 8));
  return splitmix64(k ^ static_cast<uint64_t>(kind));
}

// Element i of a tensor: uniform in [-bound, bound).
inline float uniform_value(uint64_t key, uint64_t i, float bound) {
  const uint64_t r = splitmix64(key + i * 0xd1b54a32d192ed03ull);
  const float u = static_cast<float>(r >> 40) * (1.0f / 16777216.0f);  // [0, 1), 24 bits
  return (2.f * u - 1.f) * bound;
}

// Fills n elements of `dtype` at dst.
void generate(uint64_t key, size_t n, float bound, DType dtype, std::byte* dst) {
  switch (dtype) {
    case DType::F32:
      for (size_t i = 0; i < n; ++i) {
        float v = uniform_value(key, i, bound);
        std::memcpy(dst + 4 * i, &v, 4);
      }
      return;
    case DType::BF16:
    case DType::F16:
      for (size_t i = 0; i < n; ++i) {
        float v = uniform_value(key, i, bound);
        const uint16_t h = dtype == DType::BF16 ? f32_to_bf16(v) : f32_to_f16(v);
        std::memcpy(dst + 2 * i, &h, 2);
      }
      return;
  }
}

// f32 values as stored in `dtype` and widened back (what a reader of the stored tensor sees).
std::vector<float> generate_floats(uint64_t key, size_t n, float bound, DType dtype) {
  std::vector<std::byte> bytes(n * dtype_size(dtype));
  generate(key, n, bound, dtype, bytes.data());
  std::vector<float> out(n);
  convert_to_f32(dtype, bytes.data(), out.data(), n);
  return out;
}

float init_bound(int64_t fan_in) { return std::sqrt(3.f / static_cast<float>(fan_in)); }  // std 1/sqrt(fan_in)

SyntheticModelOptions tiny_base(ModelFamily family) {
  SyntheticModelOptions o;
  o.family = family;
  o.hidden = 64;
  o.dtype = DType::F32;
  return o;
}

}  // namespace

std::vector<std::string> synthetic_preset_names() {
  return {"default", "tiny", "tiny-mixtral", "tiny-qwen2", "tiny-qwen3", "tiny-deepseek", "wire", "wire-4096"};
}

SyntheticModelOptions synthetic_preset(const std::string& name) {
  if (name == "default") {
    SyntheticModelOptions o;  // mixtral 1024 / 3584, 8 experts, top-2, 2 layers
    o.dtype = DType::BF16;
    return o;
  }
  if (name == "wire") {
    // Wide activations, almost no expert compute: what a forward costs in transport alone.
    SyntheticModelOptions o;
    o.hidden = 2048;
    o.intermediate = 8;
    return o;
  }
  if (name == "wire-4096") {
    // "wire" at a large model's hidden size (4096): what a call of many tokens costs in transport.
    SyntheticModelOptions o;
    o.hidden = 4096;
    o.intermediate = 8;
    return o;
  }
  if (name == "tiny" || name == "tiny-mixtral") {
    SyntheticModelOptions o = tiny_base(ModelFamily::Mixtral);
    o.intermediate = 128;
    return o;
  }
  if (name == "tiny-qwen2") {
    SyntheticModelOptions o = tiny_base(ModelFamily::Qwen2Moe);
    o.intermediate = 32;
    o.experts = 12;
    o.top_k = 4;
    o.shared_expert = true;
    o.shared_intermediate = 80;
    o.norm_topk_prob = false;
    return o;
  }
  if (name == "tiny-qwen3") {
    SyntheticModelOptions o = tiny_base(ModelFamily::Qwen3Moe);
    o.intermediate = 32;
    o.experts = 16;
    o.top_k = 4;
    o.layers = 3;
    o.dense_layers = {1};
    return o;
  }
  if (name == "tiny-deepseek") {
    SyntheticModelOptions o = tiny_base(ModelFamily::DeepseekV3);
    o.intermediate = 32;
    o.experts = 16;
    o.top_k = 4;
    o.layers = 3;
    o.dense_layers = {0};
    o.shared_expert = true;
    o.n_group = 4;
    o.topk_group = 2;
    o.routed_scaling_factor = 2.5f;
    return o;
  }
  std::string known;
  for (const std::string& n : synthetic_preset_names()) known += (known.empty() ? "" : ", ") + n;
  throw ModelError("unknown synthetic model preset '" + name + "' (known: " + known + ")");
}

ModelSpec synthetic_model_spec(const SyntheticModelOptions& o) {
  auto fail = [&](const std::string& what) {
    throw ModelError(std::string("synthetic ") + family_name(o.family) + " model: " + what);
  };
  ModelSpec s;
  s.family = o.family;
  s.hidden_size = o.hidden;
  s.moe_intermediate_size = o.intermediate;
  s.num_experts = o.experts;
  s.top_k = o.top_k;
  s.norm_topk_prob = o.norm_topk_prob;
  s.num_hidden_layers = o.layers;
  std::set<int32_t> dense(o.dense_layers.begin(), o.dense_layers.end());
  for (int32_t l : dense)
    if (l < 0 || l >= o.layers) fail("dense layer " + std::to_string(l) + " is outside [0, " + std::to_string(o.layers) + ")");
  for (int32_t l = 0; l < o.layers; ++l)
    if (!dense.count(l)) s.moe_layers.push_back(l);
  switch (o.family) {
    case ModelFamily::Mixtral:
      if (!dense.empty()) fail("every mixtral layer is MoE; dense_layers must be empty");
      if (!o.norm_topk_prob) fail("mixtral always renormalises the top-k weights; norm_topk_prob must be true");
      if (o.shared_expert) fail("mixtral has no shared expert");
      break;
    case ModelFamily::Qwen3Moe:
      if (o.shared_expert) fail("qwen3_moe has no shared expert");
      break;
    case ModelFamily::Qwen2Moe:
      break;
    case ModelFamily::DeepseekV3:
      for (int32_t l = 0; l < static_cast<int32_t>(dense.size()); ++l)
        if (!dense.count(l)) fail("deepseek_v3 dense layers must be a prefix 0..k-1 (first_k_dense_replace)");
      s.n_group = o.n_group;
      s.topk_group = o.topk_group;
      s.routed_scaling_factor = o.routed_scaling_factor;
      break;
  }
  if (o.family != ModelFamily::DeepseekV3 && (o.n_group != 1 || o.topk_group != 1 || o.routed_scaling_factor != 1.f))
    fail("n_group, topk_group and routed_scaling_factor apply to deepseek_v3 only");
  if (o.shared_expert) {
    s.has_shared_expert = true;
    s.shared_intermediate_size = o.shared_intermediate > 0 ? o.shared_intermediate : o.intermediate;
    s.shared_expert_gated = o.family == ModelFamily::Qwen2Moe;
    if (o.family == ModelFamily::DeepseekV3 && s.shared_intermediate_size % o.intermediate != 0)
      fail("deepseek_v3 shared expert size " + std::to_string(s.shared_intermediate_size) +
           " must be a multiple of the expert size " + std::to_string(o.intermediate));
  }
  if (o.family != ModelFamily::Mixtral) s.dense_intermediate_size = 3 * o.intermediate;
  validate_model_spec(s);
  return s;
}

SyntheticLayerSource::SyntheticLayerSource(SyntheticModelOptions options)
    : options_(std::move(options)), spec_(synthetic_model_spec(options_)) {}

std::unique_ptr<SyntheticLayerSource> SyntheticLayerSource::from_preset(const std::string& name, uint64_t seed) {
  SyntheticModelOptions o = synthetic_preset(name);
  o.seed = seed;
  return std::make_unique<SyntheticLayerSource>(std::move(o));
}

RouterWeights SyntheticLayerSource::router_weights(int32_t layer) const {
  spec_.require_moe_layer(layer);
  const int64_t e = spec_.num_experts, h = spec_.hidden_size;
  const float bound = init_bound(h);
  RouterWeights w;
  w.gate.rows = e;
  w.gate.cols = h;
  w.gate.data = generate_floats(tensor_key(options_.seed, layer, -1, TensorKind::Router), e * h, bound, options_.dtype);
  if (spec_.family == ModelFamily::DeepseekV3)
    w.correction_bias = generate_floats(tensor_key(options_.seed, layer, -1, TensorKind::Bias), e, 0.1f, DType::F32);
  if (spec_.family == ModelFamily::Qwen2Moe && spec_.has_shared_expert)
    w.shared_gate = generate_floats(tensor_key(options_.seed, layer, -1, TensorKind::SharedGate), h, bound, options_.dtype);
  return w;
}

ExpertWeights SyntheticLayerSource::expert_weights(int32_t layer, int32_t expert) const {
  spec_.require_moe_layer(layer);
  if (expert < 0 || expert >= spec_.experts_per_layer())
    throw ModelError("expert " + std::to_string(expert) + " is out of range: layer " + std::to_string(layer) +
                     " has experts 0.." + std::to_string(spec_.experts_per_layer() - 1));
  const int64_t h = spec_.hidden_size;
  const int64_t i = spec_.intermediate_of(expert);
  const DType dt = options_.dtype;
  const size_t n = static_cast<size_t>(h * i);
  auto buffer = std::make_shared<std::vector<std::byte>>(3 * n * dtype_size(dt));
  std::byte* gate = buffer->data();
  std::byte* up = gate + n * dtype_size(dt);
  std::byte* down = up + n * dtype_size(dt);
  generate(tensor_key(options_.seed, layer, expert, TensorKind::ExpertGate), n, init_bound(h), dt, gate);
  generate(tensor_key(options_.seed, layer, expert, TensorKind::ExpertUp), n, init_bound(h), dt, up);
  generate(tensor_key(options_.seed, layer, expert, TensorKind::ExpertDown), n, init_bound(i), dt, down);
  ExpertWeights w;
  w.view.gate = WeightMatrixView{dt, gate, i, h};
  w.view.up = WeightMatrixView{dt, up, i, h};
  w.view.down = WeightMatrixView{dt, down, h, i};
  w.owner = std::shared_ptr<const void>(buffer, buffer.get());
  return w;
}

}  // namespace moe
