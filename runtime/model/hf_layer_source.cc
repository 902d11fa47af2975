// HfLayerSource: router and expert weights of one MoE layer read from an HF checkpoint.
#include "runtime/model/hf_layer_source.h"

#include "runtime/model/model_error.h"

namespace moe {
namespace {

std::string shape_string(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

WeightMatrixView matrix_view(const TensorView& t) {
  return WeightMatrixView{t.dtype, t.data, t.shape[0], t.shape[1]};
}

// Keeps the files behind one expert's three tensors mapped (they may live in different shards).
struct ExpertFiles {
  std::shared_ptr<const SafetensorsFile> gate, up, down;
};

}  // namespace

HfLayerSource::HfLayerSource(const std::filesystem::path& model_dir)
    : spec_(load_model_spec(model_dir)), checkpoint_(model_dir) {}

TensorView HfLayerSource::checked(const std::string& name, std::vector<int64_t> expected_shape) const {
  TensorView t = checkpoint_.find(name);
  if (t.shape != expected_shape)
    throw ModelError("tensor '" + name + "' has shape " + t.shape_string() + ", expected " +
                     shape_string(expected_shape) + " (in " + checkpoint_.dir().string() + ")");
  return t;
}

RouterWeights HfLayerSource::router_weights(int32_t layer) const {
  spec_.require_moe_layer(layer);
  const int64_t e = spec_.num_experts, h = spec_.hidden_size;
  RouterWeights w;
  w.gate = tensor_to_matrix(checked(spec_.router_weight_name(layer), {e, h}));
  if (spec_.family == ModelFamily::DeepseekV3)
    w.correction_bias = tensor_to_floats(checked(spec_.correction_bias_name(layer), {e}));
  if (spec_.family == ModelFamily::Qwen2Moe && spec_.has_shared_expert)
    w.shared_gate = tensor_to_floats(checked(spec_.shared_gate_name(layer), {1, h}));
  return w;
}

ExpertWeights HfLayerSource::expert_weights(int32_t layer, int32_t expert) const {
  spec_.require_moe_layer(layer);
  const int64_t h = spec_.hidden_size;
  const int64_t i = spec_.intermediate_of(expert);
  TensorView gate = checked(spec_.expert_weight_name(layer, expert, ExpertProj::Gate), {i, h});
  TensorView up = checked(spec_.expert_weight_name(layer, expert, ExpertProj::Up), {i, h});
  TensorView down = checked(spec_.expert_weight_name(layer, expert, ExpertProj::Down), {h, i});
  ExpertWeights w;
  w.view = ExpertWeightsView{matrix_view(gate), matrix_view(up), matrix_view(down)};
  w.owner = std::make_shared<const ExpertFiles>(ExpertFiles{gate.file, up.file, down.file});
  return w;
}

}  // namespace moe
