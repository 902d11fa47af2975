// MoeLayer: the routing front end of one MoE layer (see moe_layer.h).
#include "runtime/engine/moe_layer.h"

#include <stdexcept>
#include <string>
#include <utility>

#include "runtime/routing/dispatch_plan.h"

namespace moe {

MoeLayer::MoeLayer(const ModelSpec& spec, RouterOf router_of, bool deterministic)
    : spec_(spec), router_of_(std::move(router_of)), deterministic_(deterministic) {}

const Router& MoeLayer::check(int32_t layer, const Matrix& x) const {
  const Router& r = router_of_(layer);
  if (x.cols != spec_.hidden_size) {
    throw std::invalid_argument("hidden_states has hidden size " + std::to_string(x.cols) +
                                ", the model expects " + std::to_string(spec_.hidden_size));
  }
  return r;
}

Matrix MoeLayer::forward(int32_t layer, const Matrix& x, Dispatcher& dispatcher, RoutingResult* routing_out) const {
  const Router& r = check(layer, x);
  RoutingResult routing = r.route(x, deterministic_);
  const std::vector<TokenAssignment> assignments = make_assignments(routing, spec_);
  Matrix out = dispatcher.dispatch(layer, x, assignments);
  if (routing_out) *routing_out = std::move(routing);
  return out;
}

}  // namespace moe
