// Deterministic, seeded synthetic MoE models of any family and size, for demos, benchmarks and tests.
//
// Every tensor is generated on its own from hash(seed, layer, expert, tensor kind, element index), so a
// worker regenerates exactly the experts it hosts, in any order, without generating the others, and
// every process that uses the same options sees bit-identical weights. Values are uniform with
// std 1/sqrt(fan_in) (the scale of an HF init), rounded to the options' dtype; router weights are rounded
// the same way, and DeepSeek correction biases (uniform in [-0.1, 0.1]) stay f32.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "runtime/core/dtype.h"
#include "runtime/model/layer_source.h"

namespace moe {

struct SyntheticModelOptions {
  ModelFamily family = ModelFamily::Mixtral;
  int64_t hidden = 1024;
  int64_t intermediate = 3584;          // per routed expert
  int32_t experts = 8;                  // routed experts per MoE layer
  int32_t top_k = 2;
  int32_t layers = 2;                   // num_hidden_layers
  std::vector<int32_t> dense_layers;    // non-MoE layers: qwen any, deepseek a prefix 0..k-1, mixtral none
  bool shared_expert = false;           // qwen2_moe (sigmoid-gated) or deepseek_v3 (weight 1) only
  int64_t shared_intermediate = 0;      // 0: same as `intermediate`; deepseek: a multiple of it
  bool norm_topk_prob = true;           // mixtral: must stay true
  int32_t n_group = 1;                  // deepseek_v3 grouping
  int32_t topk_group = 1;
  float routed_scaling_factor = 1.f;
  DType dtype = DType::F32;             // storage dtype of expert and router weights
  uint64_t seed = 0;
};

// Named presets:
//   "default"        mixtral, hidden 1024, intermediate 3584, 8 experts, top-2, 2 layers, BF16
//   "tiny"           mixtral, hidden 64, intermediate 128, 8 experts, top-2, 2 layers, F32
//   "tiny-mixtral"   same as "tiny"
//   "tiny-qwen2"     qwen2_moe, 12 experts top-4, shared expert 80, norm_topk_prob false, 2 layers
//   "tiny-qwen3"     qwen3_moe, 16 experts top-4, 3 layers, layer 1 dense
//   "tiny-deepseek"  deepseek_v3, 16 experts top-4, 4 groups keep 2, scaling 2.5, shared expert, layer 0 dense
//   "wire"           mixtral, hidden 2048, intermediate 8, 8 experts, top-2, F32: wide tokens, trivial
//                    experts, for measuring what the cluster's transport costs
//   "wire-4096"      the same at hidden 4096 (calls of many tokens, split over the frame limit)
// All tiny presets: hidden 64, F32, seed 0. Throws ModelError naming the known presets.
SyntheticModelOptions synthetic_preset(const std::string& name);
std::vector<std::string> synthetic_preset_names();

// The ModelSpec of a synthetic model; throws ModelError on inconsistent options.
ModelSpec synthetic_model_spec(const SyntheticModelOptions& options);

class SyntheticLayerSource : public LayerSource {
 public:
  explicit SyntheticLayerSource(SyntheticModelOptions options);
  static std::unique_ptr<SyntheticLayerSource> from_preset(const std::string& name, uint64_t seed = 0);

  const ModelSpec& spec() const override { return spec_; }
  const SyntheticModelOptions& options() const { return options_; }
  RouterWeights router_weights(int32_t layer) const override;
  // Generates only this expert; `owner` holds the generated buffer.
  ExpertWeights expert_weights(int32_t layer, int32_t expert) const override;

 private:
  SyntheticModelOptions options_;
  ModelSpec spec_;
};

}  // namespace moe
