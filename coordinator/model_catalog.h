// What the coordinator knows of the model: the spec, the ModelInfo reply (specJson, router weights of
// every MoE layer as f32, name, source) built once, and the experts to place with their bytes.
#pragma once

#include <map>
#include <memory>
#include <string>

#include <capnp/message.h>

#include "runtime/model/layer_source_factory.h"
#include "runtime/model/model_spec.h"
#include "runtime/placement/expert_catalog.h"
#include "runtime/wire/moe.capnp.h"

namespace moe {

class ModelCatalog {
 public:
  // Opens the model (throws ModelError as open_layer_source does) and reads its routers.
  // deterministic: ModelInfo.deterministic. The ModelInfo names `weight_version` (update-weights: a new
  // checkpoint of the same shapes is a new version).
  explicit ModelCatalog(const ModelRef& ref, bool deterministic = false, uint64_t weight_version = 1);
  // A layer-by-layer update-weights under way: `base`'s model (its version, source, experts) whose
  // ModelInfo has `newer`'s router for each layer of `layer_versions` and lists them (ModelInfo.layerVersions).
  ModelCatalog(const ModelCatalog& base, const ModelCatalog& newer, const std::map<int32_t, uint64_t>& layer_versions);

  const ModelSpec& spec() const { return spec_; }
  const std::string& name() const { return name_; }
  const std::string& source() const { return source_; }  // the ModelRef string workers load from
  const ExpertCatalog& experts() const { return experts_; }
  size_t bytes_per_param() const { return bytes_per_param_; }
  wire::ModelInfo::Reader info() const;  // valid while this object lives

 private:
  ModelSpec spec_;
  std::string name_;
  std::string source_;
  size_t bytes_per_param_ = 4;
  ExpertCatalog experts_;
  std::unique_ptr<capnp::MallocMessageBuilder> info_;
};

}  // namespace moe
