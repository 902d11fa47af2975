// What a client learns from the coordinator's modelInfo: the ModelSpec (from specJson) and one Router
// per MoE layer (from the router blobs), so routing runs locally on the client.
#pragma once

#include <cstdint>
#include <map>
#include <string>

#include "runtime/model/model_spec.h"
#include "runtime/routing/router.h"
#include "runtime/wire/moe.capnp.h"

namespace moe {

struct ClusterModel {
  ModelSpec spec;
  std::string name;
  std::string source;
  std::map<int32_t, Router> routers;  // keyed by MoE layer
  bool deterministic = false;         // ModelInfo.deterministic: forward in the deterministic mode
  uint64_t weight_version = 1;        // the weights these routers belong to (update-weights)
  std::map<int32_t, uint64_t> layer_versions;  // a layer-by-layer update: layers routed in another version

  // The weight version `layer`'s router (and experts) belong to.
  uint64_t version_of(int32_t layer) const {
    auto it = layer_versions.find(layer);
    return it == layer_versions.end() ? weight_version : it->second;
  }

  // Throws ModelError when `layer` is dense, out of range, or has no router.
  const Router& router(int32_t layer) const;
};

// Throws ModelError / WireError naming the field when the spec does not parse, a blob has the wrong
// size, or a MoE layer has no router (or a router names a dense layer).
ClusterModel decode_model_info(wire::ModelInfo::Reader info);

}  // namespace moe
