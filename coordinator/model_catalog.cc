// ModelCatalog: the model's spec and routers, read once at start.
#include "coordinator/model_catalog.h"

#include <cstring>
#include <optional>

#include <nlohmann/json.hpp>

#include "runtime/core/dtype.h"

namespace moe {

namespace {

capnp::Data::Reader float_blob(const std::vector<float>& values) {
  return capnp::Data::Reader(reinterpret_cast<const capnp::byte*>(values.data()), values.size() * sizeof(float));
}

}  // namespace

ModelCatalog::ModelCatalog(const ModelRef& ref, bool deterministic, uint64_t weight_version)
    : info_(std::make_unique<capnp::MallocMessageBuilder>()) {
  auto source = open_layer_source(ref);  // the spec within its bounds (validate_model_spec)
  spec_ = source->spec();
  name_ = ref.model_dir.empty() ? ref.synthetic : ref.model_dir;
  source_ = ref.to_string();
  // A router first: its shape is checked against the file's header before anything is allocated, so a
  // config that claims more experts (or a wider hidden size) than the checkpoint holds is refused before
  // the per-expert tables below grow with it (they stay within kMaxModelExperts in any case).
  std::optional<RouterWeights> first_router;
  if (!spec_.moe_layers.empty()) first_router = source->router_weights(spec_.moe_layers.front());
  // Workers hold expert weights in the checkpoint's dtype: its element size prices every expert.
  if (!spec_.moe_layers.empty()) {
    bytes_per_param_ = dtype_size(source->expert_weights(spec_.moe_layers.front(), 0).view.gate.dtype);
  }
  experts_ = expert_catalog(spec_, bytes_per_param_);

  auto info = info_->initRoot<wire::ModelInfo>();
  info.setSpecJson(model_spec_to_config(spec_).dump());
  info.setName(name_);
  info.setSource(source_);
  info.setDeterministic(deterministic);
  info.setWeightVersion(weight_version);
  auto routers = info.initRouters(static_cast<unsigned>(spec_.moe_layers.size()));
  for (unsigned i = 0; i < spec_.moe_layers.size(); ++i) {
    const int32_t layer = spec_.moe_layers[i];
    RouterWeights weights = i == 0 ? std::move(*first_router) : source->router_weights(layer);
    auto router = routers[i];
    router.setLayer(layer);
    router.setNumExperts(static_cast<uint32_t>(weights.gate.rows));
    router.setHidden(static_cast<uint32_t>(weights.gate.cols));
    router.setWeight(float_blob(weights.gate.data));
    router.setScoreBias(float_blob(weights.correction_bias));
    router.setSharedExpertGate(float_blob(weights.shared_gate));
  }
}

ModelCatalog::ModelCatalog(const ModelCatalog& base, const ModelCatalog& newer,
                           const std::map<int32_t, uint64_t>& layer_versions)
    : spec_(base.spec_),
      name_(base.name_),
      source_(base.source_),
      bytes_per_param_(base.bytes_per_param_),
      experts_(base.experts_),
      info_(std::make_unique<capnp::MallocMessageBuilder>()) {
  const auto from = base.info();
  auto info = info_->initRoot<wire::ModelInfo>();
  info.setSpecJson(from.getSpecJson());
  info.setName(from.getName());
  info.setSource(from.getSource());
  info.setDeterministic(from.getDeterministic());
  info.setWeightVersion(from.getWeightVersion());
  const auto base_routers = from.getRouters();
  const auto newer_routers = newer.info().getRouters();
  if (base_routers.size() != newer_routers.size()) {
    throw std::runtime_error("the two weight versions have " + std::to_string(base_routers.size()) + " and " +
                             std::to_string(newer_routers.size()) + " routers");
  }
  auto routers = info.initRouters(base_routers.size());
  for (unsigned i = 0; i < base_routers.size(); ++i) {
    const bool newer_layer = layer_versions.count(base_routers[i].getLayer()) != 0;
    routers.setWithCaveats(i, newer_layer ? newer_routers[i] : base_routers[i]);
  }
  auto list = info.initLayerVersions(static_cast<unsigned>(layer_versions.size()));
  unsigned l = 0;
  for (const auto& [layer, version] : layer_versions) {
    list[l].setLayer(layer);
    list[l++].setVersion(version);
  }
}

wire::ModelInfo::Reader ModelCatalog::info() const { return info_->getRoot<wire::ModelInfo>().asReader(); }

}  // namespace moe
