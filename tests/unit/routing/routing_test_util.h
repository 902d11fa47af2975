// Helpers for the routing tests: hand-built specs, router weights whose logits are chosen exactly,
// and a double-precision reference of every family's formula written independently of the runtime.
#pragma once

#include <algorithm>
#include <limits>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <vector>

#include "runtime/model/layer_source.h"
#include "runtime/model/model_spec.h"
#include "runtime/model/tensor.h"

namespace moe::test {

inline ModelSpec make_spec(ModelFamily family, int64_t hidden, int32_t experts, int32_t top_k) {
  ModelSpec s;
  s.family = family;
  s.hidden_size = hidden;
  s.moe_intermediate_size = 8;
  s.num_experts = experts;
  s.top_k = top_k;
  s.norm_topk_prob = true;
  s.num_hidden_layers = 1;
  s.moe_layers = {0};
  return s;
}

// Gate = identity [E, E]: the logits of a token are exactly its hidden state (hidden == E).
inline RouterWeights identity_gate(int32_t experts) {
  RouterWeights w;
  w.gate = Matrix(experts, experts);
  for (int32_t e = 0; e < experts; ++e) w.gate.row(e)[e] = 1.f;
  return w;
}

inline Matrix rows_of(const std::vector<std::vector<float>>& rows) {
  Matrix m(static_cast<int64_t>(rows.size()), static_cast<int64_t>(rows.at(0).size()));
  for (size_t r = 0; r < rows.size(); ++r) std::copy(rows[r].begin(), rows[r].end(), m.row(r));
  return m;
}

inline double sigmoid_d(double v) { return 1.0 / (1.0 + std::exp(-v)); }
inline float logit_of(double p) { return static_cast<float>(std::log(p / (1.0 - p))); }

// Expected routing of one token, in double precision.
struct Expected {
  std::vector<int32_t> ids;
  std::vector<double> weights;
};

// Indices of the k largest values, larger first, equal values lower index first.
inline std::vector<int32_t> reference_topk(const std::vector<double>& v, int32_t k) {
  std::vector<int32_t> idx(v.size());
  std::iota(idx.begin(), idx.end(), 0);
  std::stable_sort(idx.begin(), idx.end(), [&](int32_t a, int32_t b) { return v[a] > v[b]; });
  idx.resize(static_cast<size_t>(k));
  return idx;
}

inline Expected reference_softmax(const std::vector<double>& logits, int32_t k, bool normalize) {
  double mx = *std::max_element(logits.begin(), logits.end());
  std::vector<double> p(logits.size());
  double sum = 0;
  for (size_t e = 0; e < p.size(); ++e) sum += (p[e] = std::exp(logits[e] - mx));
  for (double& v : p) v /= sum;
  Expected out;
  out.ids = reference_topk(p, k);
  double chosen = 0;
  for (int32_t id : out.ids) chosen += p[id];
  for (int32_t id : out.ids) out.weights.push_back(normalize ? p[id] / chosen : p[id]);
  return out;
}

inline Expected reference_deepseek(const std::vector<double>& logits, const std::vector<double>& bias,
                                   const ModelSpec& s) {
  const size_t E = logits.size();
  const size_t gsize = E / static_cast<size_t>(s.n_group);
  std::vector<double> score(E), choice(E);
  for (size_t e = 0; e < E; ++e) {
    score[e] = sigmoid_d(logits[e]);
    choice[e] = score[e] + bias[e];
  }
  std::vector<double> group_score(static_cast<size_t>(s.n_group));
  for (size_t g = 0; g < group_score.size(); ++g) {
    std::vector<double> members(choice.begin() + g * gsize, choice.begin() + (g + 1) * gsize);
    std::sort(members.rbegin(), members.rend());
    group_score[g] = members[0] + members[1];
  }
  std::vector<int32_t> kept = reference_topk(group_score, s.topk_group);
  for (size_t e = 0; e < E; ++e) {
    if (std::find(kept.begin(), kept.end(), static_cast<int32_t>(e / gsize)) == kept.end()) {
      choice[e] = -std::numeric_limits<double>::infinity();
    }
  }
  Expected out;
  out.ids = reference_topk(choice, s.top_k);
  double sum = 0;
  for (int32_t id : out.ids) sum += score[id];
  for (int32_t id : out.ids) {
    double w = s.norm_topk_prob ? score[id] / (sum + 1e-20) : score[id];
    out.weights.push_back(w * s.routed_scaling_factor);
  }
  return out;
}

}  // namespace moe::test
