// LocalEngine: route, build the assignment list, run every expert on one backend.
#include "runtime/engine/local_engine.h"

#include <stdexcept>
#include <string>

#include "runtime/model/model_error.h"
#include "runtime/routing/combine.h"
#include "runtime/routing/dispatch_plan.h"

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
  const Router& r = router(layer);
  if (x.cols != spec_.hidden_size) {
    throw std::invalid_argument("hidden_states has hidden size " + std::to_string(x.cols) +
                                ", the model expects " + std::to_string(spec_.hidden_size));
  }
  RoutingResult routing = r.route(x, deterministic_);
  std::vector<TokenAssignment> assignments = make_assignments(routing, spec_);
  Matrix out(x.rows, x.cols);
  if (deterministic_) {
    std::vector<float> rows(assignments.size() * static_cast<size_t>(x.cols));
    if (!assignments.empty()) backend_->forward_rows(layer, x.data.data(), x.rows, x.cols, assignments, rows.data());
    combine_rows(assignments, rows, out);
  } else if (x.rows > 0) {
    backend_->forward(layer, x.data.data(), x.rows, x.cols, assignments, out.data.data());
  }
  if (routing_out) *routing_out = std::move(routing);
  return out;
}

}  // namespace moe
