// LayerSource over an HF checkpoint directory (config.json + safetensors). Per-expert F32/BF16/F16
// weights are zero-copy views into the mapped files; fused layouts (llama4, gpt_oss) are rearranged
// into an owned copy in the stored dtype; FP8 block and MXFP4 weights are dequantized once, at load,
// into `dequant_dtype` (F32 default, or BF16: MOE_DEQUANT_DTYPE=bf16). Every tensor's shape is checked
// against the ModelSpec on access; a quantized tensor without its scales, or with scales of the wrong
// shape, or an FP8 tensor in a checkpoint without quantization_config is refused with one line.
#pragma once

#include <filesystem>

#include "runtime/model/checkpoint.h"
#include "runtime/model/layer_source.h"

namespace moe {

struct HfLayerSourceOptions {
  DType dequant_dtype = DType::F32;  // what FP8/MXFP4 weights are dequantized to: F32 or BF16
  // From MOE_DEQUANT_DTYPE (f32 | bf16; unset: f32). Throws ModelError on another value.
  static HfLayerSourceOptions from_env();
};

class HfLayerSource : public LayerSource {
 public:
  // Reads DIR/config.json and indexes the weights. Throws ModelError on a missing directory, config or
  // weights (shards themselves are opened on first use).
  explicit HfLayerSource(const std::filesystem::path& model_dir, const HfLayerSourceOptions& options = {});

  const ModelSpec& spec() const override { return spec_; }
  // gate [E, H]; deepseek e_score_correction_bias [E] (any supported dtype); qwen2 shared gate [1, H].
  RouterWeights router_weights(int32_t layer) const override;
  // gate/up [I, H] and down [H, I] in their stored dtype; `owner` keeps the files mapped.
  ExpertWeights expert_weights(int32_t layer, int32_t expert) const override;

  const Checkpoint& checkpoint() const { return checkpoint_; }

 private:
  TensorView checked(const std::string& name, std::vector<int64_t> expected_shape) const;
  ExpertWeights per_expert(int32_t layer, int32_t expert) const;
  ExpertWeights fused_expert(int32_t layer, int32_t expert) const;

  ModelSpec spec_;
  Checkpoint checkpoint_;
  HfLayerSourceOptions options_;
};

}  // namespace moe
