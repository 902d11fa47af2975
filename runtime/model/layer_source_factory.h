// Opens the LayerSource a user names on a command line: an HF checkpoint folder or a synthetic preset.
#pragma once

#include <memory>
#include <string>

#include "runtime/model/layer_source.h"

namespace moe {

struct ModelRef {
  std::string model_dir;       // HF checkpoint folder; wins when set
  std::string synthetic;       // synthetic preset name (see synthetic_model.h)
  uint64_t synthetic_seed = 0;
  // "hf:DIR" / "synthetic:NAME:SEED": how a worker is told which model to load.
  std::string to_string() const;
  static ModelRef parse(const std::string& text);  // inverse of to_string; throws ModelError
};

// Throws ModelError when neither or an unknown preset is given. FP8/MXFP4 expert weights of an HF
// checkpoint are dequantized to F32 or BF16 as MOE_DEQUANT_DTYPE says (f32 | bf16; default f32).
std::unique_ptr<LayerSource> open_layer_source(const ModelRef& ref);
// The same with the dequantization dtype given (F32 or BF16; moectl forward --dequant-dtype).
std::unique_ptr<LayerSource> open_layer_source(const ModelRef& ref, DType dequant_dtype);

}  // namespace moe
