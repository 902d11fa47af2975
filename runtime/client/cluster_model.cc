// Decoding modelInfo into a ModelSpec and Routers (see cluster_model.h).
#include "runtime/client/cluster_model.h"

#include <nlohmann/json.hpp>

#include "runtime/model/model_error.h"
#include "runtime/wire/tensor_pack.h"
#include "runtime/wire/text_limits.h"
#include "runtime/wire/wire_error.h"

namespace moe {

const Router& ClusterModel::router(int32_t layer) const {
  spec.require_moe_layer(layer);
  auto it = routers.find(layer);
  if (it == routers.end()) throw ModelError("modelInfo has no router for MoE layer " + std::to_string(layer));
  return it->second;
}

namespace {

RouterWeights decode_router(const ModelSpec& spec, wire::RouterWeights::Reader r) {
  const std::string where = "modelInfo.routers[layer " + std::to_string(r.getLayer()) + "]";
  if (r.getNumExperts() != static_cast<uint32_t>(spec.num_experts) ||
      r.getHidden() != static_cast<uint32_t>(spec.hidden_size)) {
    throw ModelError(where + ": expected " + std::to_string(spec.num_experts) + " x " +
                     std::to_string(spec.hidden_size) + ", got " + std::to_string(r.getNumExperts()) + " x " +
                     std::to_string(r.getHidden()));
  }
  RouterWeights w;
  w.gate = Matrix(spec.num_experts, spec.hidden_size);
  unpack_tensor(r.getWeight(), wire::DType::F32, w.gate.data, where + ".weight");
  if (r.getScoreBias().size() > 0)
    w.correction_bias = unpack_tensor(r.getScoreBias(), wire::DType::F32, spec.num_experts, where + ".scoreBias");
  if (r.getSharedExpertGate().size() > 0)
    w.shared_gate =
        unpack_tensor(r.getSharedExpertGate(), wire::DType::F32, spec.hidden_size, where + ".sharedExpertGate");
  return w;
}

}  // namespace

ClusterModel decode_model_info(wire::ModelInfo::Reader info) {
  ClusterModel model;
  try {
    check_model_info_text(info, "the cluster's");
  } catch (const WireError& e) {
    throw ModelError(e.what());
  }
  nlohmann::json config;
  try {
    config = nlohmann::json::parse(std::string(info.getSpecJson().cStr()));
  } catch (const nlohmann::json::exception& e) {
    throw ModelError(std::string("modelInfo.specJson is not JSON: ") + e.what());
  }
  model.spec = parse_model_spec(config, "modelInfo.specJson");
  model.name = info.getName().cStr();
  model.weight_version = info.getWeightVersion() != 0 ? info.getWeightVersion() : 1;
  model.source = info.getSource().cStr();
  for (auto lv : info.getLayerVersions()) {
    if (!model.spec.is_moe_layer(lv.getLayer()) || lv.getVersion() == 0 ||
        !model.layer_versions.emplace(lv.getLayer(), lv.getVersion()).second) {
      throw ModelError("modelInfo.layerVersions gives layer " + std::to_string(lv.getLayer()) + " weight version " +
                       std::to_string(lv.getVersion()) + ": not a MoE layer, version 0, or listed twice");
    }
  }
  model.deterministic = info.getDeterministic();
  for (auto r : info.getRouters()) {
    const int32_t layer = r.getLayer();
    if (!model.spec.is_moe_layer(layer))
      throw ModelError("modelInfo has a router for layer " + std::to_string(layer) + ", which is not a MoE layer");
    if (model.routers.count(layer))
      throw ModelError("modelInfo has two routers for layer " + std::to_string(layer));
    model.routers.emplace(layer, Router(model.spec, decode_router(model.spec, r)));
  }
  for (int32_t layer : model.spec.moe_layers) {
    if (!model.routers.count(layer))
      throw ModelError("modelInfo has no router for MoE layer " + std::to_string(layer));
  }
  return model;
}

}  // namespace moe
