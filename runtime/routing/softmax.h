// The routers' softmax: fp32 probabilities from router logits (max subtracted, the sum in double), as
// the softmax-scored families compute them before choosing the top k.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>

namespace moe {

inline void softmax_into(const float* logits, int32_t n, float* probs) {
  const float max_logit = *std::max_element(logits, logits + n);
  double sum = 0.0;
  for (int32_t e = 0; e < n; ++e) {
    probs[e] = std::exp(logits[e] - max_logit);
    sum += probs[e];
  }
  const float inv_sum = static_cast<float>(1.0 / sum);
  for (int32_t e = 0; e < n; ++e) probs[e] *= inv_sum;
}

}  // namespace moe
