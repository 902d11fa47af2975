// Where the weights of MoE layers come from: an HF checkpoint on disk or the seeded synthetic generator.
// Workers load single experts through it, so a source never materialises more than it is asked for.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "runtime/core/expert_types.h"
#include "runtime/model/model_spec.h"
#include "runtime/model/tensor.h"

namespace moe {

// Router-side weights of one MoE layer, converted to f32.
struct RouterWeights {
  Matrix gate;                           // [E, hidden]
  std::vector<float> correction_bias;    // deepseek_v3: [E]; else empty
  std::vector<float> shared_gate;        // qwen2_moe with shared expert: [hidden]; else empty
};

// The weights of one expert. `view` points into storage kept alive by `owner` (an mmap'd file or a
// buffer); it is valid as long as this object lives.
struct ExpertWeights {
  ExpertWeightsView view;
  std::shared_ptr<const void> owner;
};

class LayerSource {
 public:
  virtual ~LayerSource() = default;
  virtual const ModelSpec& spec() const = 0;
  // Both throw ModelError on a dense layer, an unknown expert, a missing tensor (named) or a shape
  // mismatch (name, expected, got).
  virtual RouterWeights router_weights(int32_t layer) const = 0;
  virtual ExpertWeights expert_weights(int32_t layer, int32_t expert) const = 0;
};

}  // namespace moe
