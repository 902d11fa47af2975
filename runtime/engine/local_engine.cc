// LocalEngine: a MoeLayer over a LocalDispatcher (every expert on one backend), with the routers it loaded.
#include "runtime/engine/local_engine.h"

#include <string>

#include "runtime/engine/local_dispatcher.h"
#include "runtime/engine/moe_layer.h"
#include "runtime/model/model_error.h"

namespace moe {

LocalEngine::LocalEngine(const LayerSource& source, std::unique_ptr<ExpertBackend> backend,
                         const LocalEngineOptions& options)
    : spec_(source.spec()), backend_(std::move(backend)), deterministic_(options.deterministic) {
  std::vector<int32_t> layers = options.layers.empty() ? spec_.moe_layers : options.layers;
  for (int32_t layer : layers) {
    spec_.require_moe_layer(layer);
    routers_.emplace(layer, Router(spec_, source.router_weights(layer)));
    for (int32_t e = 0; e < spec_.experts_per_layer(); ++e) {
      ExpertWeights w = source.expert_weights(layer, e);
      backend_->load_expert({layer, e}, w.view);
    }
  }
}

const Router& LocalEngine::router(int32_t layer) const {
  auto it = routers_.find(layer);
  if (it == routers_.end()) {
    spec_.require_moe_layer(layer);
    throw ModelError("MoE layer " + std::to_string(layer) + " is not loaded in this engine");
  }
  return it->second;
}

Matrix LocalEngine::forward(int32_t layer, const Matrix& x, RoutingResult* routing_out) {
  MoeLayer moe_layer(spec_, [this](int32_t l) -> const Router& { return router(l); }, deterministic_);
  LocalDispatcher dispatcher(*backend_, deterministic_);
  return moe_layer.forward(layer, x, dispatcher, routing_out);
}

}  // namespace moe
