// MoeLayer: one MoE layer's forward, the front end LocalEngine and ClusterClient share: check the layer
// and the hidden size, route, build the (token, expert) assignments, and hand them to a Dispatcher,
// which computes the experts somewhere (one backend here, workers of a cluster) and combines them into
// the layer output. Errors are the ones every MoeLayerExecutor gives (moe_layer_executor.h).
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "runtime/core/expert_types.h"
#include "runtime/model/model_spec.h"
#include "runtime/model/tensor.h"
#include "runtime/routing/router.h"

namespace moe {

// Computes and combines one layer's assignments: returns out[t, :] = Σ_{a.token == t} a.weight ·
// expert_{layer, a.expert}(x[t, :]) ([x.rows, x.cols]; zero rows for tokens with no assignment).
class Dispatcher {
 public:
  virtual ~Dispatcher() = default;
  virtual Matrix dispatch(int32_t layer, const Matrix& x, const std::vector<TokenAssignment>& assignments) = 0;
};

class MoeLayer {
 public:
  // The router of a MoE layer; throws ModelError for a dense, unknown or not loaded layer.
  using RouterOf = std::function<const Router&(int32_t layer)>;

  // spec and what router_of reads must outlive the MoeLayer. deterministic: per-row routing (the
  // dispatcher runs in the same mode).
  MoeLayer(const ModelSpec& spec, RouterOf router_of, bool deterministic);

  // The layer's router, after checking x: ModelError for a dense or unknown layer (from router_of),
  // std::invalid_argument for a wrong hidden size.
  const Router& check(int32_t layer, const Matrix& x) const;

  // check, route, assignments, dispatch. routing_out (when given) receives the routing decision once
  // the dispatcher has returned; nothing is written when it throws.
  Matrix forward(int32_t layer, const Matrix& x, Dispatcher& dispatcher, RoutingResult* routing_out = nullptr) const;

 private:
  const ModelSpec& spec_;
  RouterOf router_of_;
  bool deterministic_ = false;
};

}  // namespace moe
