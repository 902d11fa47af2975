// The interface shared by the single-process LocalEngine and the cluster's ClusterClient:
// one MoE layer's forward, hidden states in, layer output (routed + shared experts) out.
#pragma once

#include <cstdint>

#include "runtime/model/model_spec.h"
#include "runtime/model/tensor.h"
#include "runtime/routing/router.h"

namespace moe {

class MoeLayerExecutor {
 public:
  virtual ~MoeLayerExecutor() = default;
  virtual const ModelSpec& spec() const = 0;
  // x: [T, hidden]. Returns [T, hidden]. If routing_out is given it receives the routing decision.
  // Throws ModelError on a dense or unknown layer, std::invalid_argument on a wrong hidden size.
  virtual Matrix forward(int32_t layer, const Matrix& x, RoutingResult* routing_out = nullptr) = 0;
};

}  // namespace moe
