// Opens an HF checkpoint or a synthetic preset from a ModelRef.
#include "runtime/model/layer_source_factory.h"

#include "runtime/model/hf_layer_source.h"
#include "runtime/model/model_error.h"
#include "runtime/model/synthetic_model.h"

namespace moe {

std::string ModelRef::to_string() const {
  if (!model_dir.empty()) return "hf:" + model_dir;
  return "synthetic:" + synthetic + ":" + std::to_string(synthetic_seed);
}

ModelRef ModelRef::parse(const std::string& text) {
  ModelRef ref;
  if (text.rfind("hf:", 0) == 0) {
    ref.model_dir = text.substr(3);
  } else if (text.rfind("synthetic:", 0) == 0) {
    std::string rest = text.substr(10);
    auto colon = rest.rfind(':');
    ref.synthetic = rest.substr(0, colon);
    if (colon != std::string::npos) {
      try {
        ref.synthetic_seed = std::stoull(rest.substr(colon + 1));
      } catch (const std::exception&) {
        throw ModelError("model reference '" + text + "' has a bad seed (want synthetic:NAME:SEED)");
      }
    }
  } else {
    throw ModelError("model reference '" + text + "' is neither hf:DIR nor synthetic:NAME:SEED");
  }
  if (ref.model_dir.empty() && ref.synthetic.empty()) throw ModelError("empty model reference '" + text + "'");
  return ref;
}

std::unique_ptr<LayerSource> open_layer_source(const ModelRef& ref) {
  return open_layer_source(ref, ref.model_dir.empty() ? DType::F32 : HfLayerSourceOptions::from_env().dequant_dtype);
}

std::unique_ptr<LayerSource> open_layer_source(const ModelRef& ref, DType dequant_dtype) {
  if (!ref.model_dir.empty()) return std::make_unique<HfLayerSource>(ref.model_dir, HfLayerSourceOptions{dequant_dtype});
  if (ref.synthetic.empty()) throw ModelError("no model given: pass --model DIR or --synthetic NAME");
  return SyntheticLayerSource::from_preset(ref.synthetic, ref.synthetic_seed);
}

}  // namespace moe
