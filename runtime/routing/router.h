// The router of one MoE layer: scores, top-k selection and routing weights exactly as HF transformers
// computes them for each family (ARCHITECTURE.md, "Routing families"), plus the shared expert's weight.
#pragma once

#include <cstdint>
#include <vector>

#include "runtime/model/layer_source.h"
#include "runtime/model/model_spec.h"
#include "runtime/model/tensor.h"

namespace moe {

struct RoutingResult {
  int64_t num_tokens = 0;
  int32_t top_k = 0;
  std::vector<int32_t> topk_ids;      // [T, K], in order of decreasing selection score
  std::vector<float> topk_weights;    // [T, K]
  std::vector<float> shared_weights;  // [T] weight of the shared expert; empty if the model has none
};

class Router {
 public:
  // Copies what it needs; throws ModelError when the weights do not fit the spec.
  Router(const ModelSpec& spec, RouterWeights weights);
  // x: [T, hidden]. Throws std::invalid_argument on a wrong hidden size. deterministic: the logits and
  // the shared-expert gate of each token computed alone (router_logits_rowwise), so a token's routing
  // does not depend on the other tokens of the call.
  RoutingResult route(const Matrix& x, bool deterministic = false) const;
  const ModelSpec& spec() const { return spec_; }
  // The weights it routes with (f32), e.g. for a host to check that it runs the same router.
  const RouterWeights& weights() const { return weights_; }

 private:
  ModelSpec spec_;
  RouterWeights weights_;
};

}  // namespace moe
