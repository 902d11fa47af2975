// Router: checks the router weights against the spec once, then per call computes the logits with one
// BLAS call and hands each token row to its family's selection (family_routing.h).
#include "runtime/routing/router.h"

#include <stdexcept>
#include <string>
#include <utility>

#include "runtime/model/model_error.h"
#include "runtime/routing/family_routing.h"
#include "runtime/routing/router_logits.h"

namespace moe {
namespace {

void require(bool ok, const std::string& what) {
  if (!ok) throw ModelError("router: " + what);
}

void check_spec(const ModelSpec& s) {
  const std::string fam = family_name(s.family);
  require(s.hidden_size > 0, fam + " hidden_size must be > 0, got " + std::to_string(s.hidden_size));
  require(s.num_experts > 0, fam + " num_experts must be > 0, got " + std::to_string(s.num_experts));
  require(s.top_k >= 1 && s.top_k <= s.num_experts,
          fam + " top_k must be in [1, num_experts=" + std::to_string(s.num_experts) + "], got " +
              std::to_string(s.top_k));
  if (s.routing() != RoutingKind::GroupedSigmoid) return;
  require(s.n_group >= 1 && s.num_experts % s.n_group == 0,
          fam + " n_group=" + std::to_string(s.n_group) + " must divide num_experts=" +
              std::to_string(s.num_experts));
  require(s.num_experts / s.n_group >= 2 || s.n_group == 1,
          fam + " groups need >= 2 experts each (group score = top-2 sum), got num_experts=" +
              std::to_string(s.num_experts) + " / n_group=" + std::to_string(s.n_group));
  require(s.topk_group >= 1 && s.topk_group <= s.n_group,
          fam + " topk_group must be in [1, n_group=" + std::to_string(s.n_group) + "], got " +
              std::to_string(s.topk_group));
}

void check_weights(const ModelSpec& s, const RouterWeights& w) {
  const std::string fam = family_name(s.family);
  require(w.gate.rows == s.num_experts && w.gate.cols == s.hidden_size &&
              w.gate.data.size() == static_cast<size_t>(w.gate.rows * w.gate.cols),
          fam + " gate weight: expected [" + std::to_string(s.num_experts) + ", " +
              std::to_string(s.hidden_size) + "], got [" + std::to_string(w.gate.rows) + ", " +
              std::to_string(w.gate.cols) + "] with " + std::to_string(w.gate.data.size()) +
              " values");
  const size_t want_bias = s.has_router_bias() ? static_cast<size_t>(s.num_experts) : 0;
  require(w.correction_bias.size() == want_bias,
          fam + " router bias: expected " + std::to_string(want_bias) + " values, got " +
              std::to_string(w.correction_bias.size()));
  const bool gated = s.has_shared_expert && s.shared_expert_gated;
  const size_t want_shared_gate = gated ? static_cast<size_t>(s.hidden_size) : 0;
  require(w.shared_gate.size() == want_shared_gate,
          fam + " shared_expert_gate: expected " + std::to_string(want_shared_gate) +
              " values, got " + std::to_string(w.shared_gate.size()));
}

}  // namespace

Router::Router(const ModelSpec& spec, RouterWeights weights)
    : spec_(spec), weights_(std::move(weights)) {
  check_spec(spec_);
  check_weights(spec_, weights_);
}

RoutingResult Router::route(const Matrix& x, bool deterministic) const {
  if (x.cols != spec_.hidden_size || x.rows < 0 ||
      x.data.size() != static_cast<size_t>(x.rows * x.cols)) {
    throw std::invalid_argument("router input: expected [T, " + std::to_string(spec_.hidden_size) +
                                "], got [" + std::to_string(x.rows) + ", " +
                                std::to_string(x.cols) + "] with " +
                                std::to_string(x.data.size()) + " values");
  }
  const int32_t E = spec_.num_experts;
  const int32_t K = spec_.top_k;
  RoutingResult r;
  r.num_tokens = x.rows;
  r.top_k = K;
  r.topk_ids.resize(static_cast<size_t>(x.rows * K));
  r.topk_weights.resize(static_cast<size_t>(x.rows * K));

  const Matrix logits = deterministic ? router_logits_rowwise(x, weights_.gate) : router_logits(x, weights_.gate);
  for (int64_t t = 0; t < x.rows; ++t) {
    int32_t* ids = r.topk_ids.data() + t * K;
    float* w = r.topk_weights.data() + t * K;
    const float* bias = weights_.correction_bias.empty() ? nullptr : weights_.correction_bias.data();
    switch (spec_.routing()) {
      case RoutingKind::GroupedSigmoid: route_grouped_sigmoid(logits.row(t), bias, spec_, ids, w); break;
      case RoutingKind::SoftmaxTopk:
        route_softmax_topk(logits.row(t), E, K, spec_.family == ModelFamily::Mixtral || spec_.norm_topk_prob, ids, w);
        break;
      case RoutingKind::BiasedSoftmax: route_biased_softmax(logits.row(t), bias, E, K, spec_.norm_min, ids, w); break;
      case RoutingKind::TopkSoftmax: route_topk_logits(logits.row(t), bias, E, K, false, ids, w); break;
      case RoutingKind::SigmoidTopk: route_topk_logits(logits.row(t), bias, E, K, true, ids, w); break;
    }
  }

  if (spec_.has_shared_expert) {
    r.shared_weights = spec_.shared_expert_gated ? (deterministic ? sigmoid_gate_rowwise(x, weights_.shared_gate)
                                                                 : sigmoid_gate(x, weights_.shared_gate))
                                                 : std::vector<float>(static_cast<size_t>(x.rows), 1.f);
  }
  return r;
}

}  // namespace moe
