// Writes any LayerSource's MoE layers as an HF checkpoint directory: config.json (from the spec) plus
// model.safetensors, or `shards` files model-0000i-of-0000n.safetensors and model.safetensors.index.json.
// Only MoE-layer tensors are written (routers, correction biases, shared gates, experts, shared experts)
// under the family's real names, so HF transformers loads it (other weights initialised, with a warning)
// and HfLayerSource reads it back bit-exactly when `dtype` equals the source's storage dtype.
#pragma once

#include <filesystem>

#include "runtime/core/dtype.h"
#include "runtime/model/layer_source.h"

namespace moe {

// Creates `dir` if needed and removes weight files of an earlier write there. Router and expert weights
// are stored as `dtype`; deepseek correction biases as F32 (as in the real checkpoints). Experts
// are generated/read one at a time, so memory stays at one expert. Throws ModelError.
void write_hf_checkpoint(const LayerSource& source, const std::filesystem::path& dir, DType dtype, int shards = 1);

}  // namespace moe
