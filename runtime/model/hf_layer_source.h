// LayerSource over an HF checkpoint directory (config.json + safetensors). Expert weights are zero-copy
// views into the mapped files; every tensor's shape is checked against the ModelSpec on access.
#pragma once

#include <filesystem>

#include "runtime/model/checkpoint.h"
#include "runtime/model/layer_source.h"

namespace moe {

class HfLayerSource : public LayerSource {
 public:
  // Reads DIR/config.json and indexes the weights. Throws ModelError on a missing directory, config or
  // weights (shards themselves are opened on first use).
  explicit HfLayerSource(const std::filesystem::path& model_dir);

  const ModelSpec& spec() const override { return spec_; }
  // gate [E, H]; deepseek e_score_correction_bias [E] (any supported dtype); qwen2 shared gate [1, H].
  RouterWeights router_weights(int32_t layer) const override;
  // gate/up [I, H] and down [H, I] in their stored dtype; `owner` keeps the files mapped.
  ExpertWeights expert_weights(int32_t layer, int32_t expert) const override;

  const Checkpoint& checkpoint() const { return checkpoint_; }

 private:
  TensorView checked(const std::string& name, std::vector<int64_t> expected_shape) const;

  ModelSpec spec_;
  Checkpoint checkpoint_;
};

}  // namespace moe
