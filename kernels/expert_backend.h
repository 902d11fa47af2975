// The one interface every expert compute backend implements (CPU reference, CUDA).
//
// An expert is the gated MLP  y = down( act(gate·x + bg) ⊙ (up·x + bu) ) + bd  (ExpertMath: SiLU GLU, or
// gpt-oss's clamped SwiGLU; biases are optional and zero when absent). An expert whose math says
// `weight_scales_input` (llama4) computes expert(w·x) and contributes it with weight 1.  A backend holds the weights of the
// experts it was given (converted once, at load, to its own format) and computes, for a batch of tokens
// of one layer, the weighted sum over the (token, expert, weight) assignments it is handed:
//     out[t, :] = Σ_{a : a.token == t} a.weight · expert_{layer, a.expert}(x[t, :])
// Shared experts are ordinary experts here (the caller gives them ids after the routed ones).
// kernels/ knows nothing of networking or models: only matrices. The types it shares with the rest
// (weight views, ExpertKey, TokenAssignment) are in runtime/core/expert_types.h.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "runtime/core/expert_types.h"

namespace moe {

class ExpertBackend {
 public:
  virtual ~ExpertBackend() = default;

  virtual std::string name() const = 0;

  // Copies (and converts) the expert's weights; the views need not outlive the call.
  // Throws std::invalid_argument when shapes are inconsistent (the message names them).
  virtual void load_expert(ExpertKey key, const ExpertWeightsView& weights) = 0;
  virtual void unload_expert(ExpertKey key) = 0;
  virtual bool has_expert(ExpertKey key) const = 0;
  // Bytes of expert weights this backend holds (host or device memory).
  virtual size_t resident_bytes() const = 0;

  // x: [num_tokens, hidden] f32, out: [num_tokens, hidden] f32, overwritten (rows with no assignment
  // are zero). Every assignment must name a loaded expert of `layer` with this hidden size, else
  // std::invalid_argument. Safe to call from several threads at once.
  virtual void forward(int32_t layer, const float* x, int64_t num_tokens, int64_t hidden,
                       std::span<const TokenAssignment> assignments, float* out) = 0;

  // The deterministic mode's entry point: rows: [assignments.size(), hidden] f32, overwritten; row a is
  // assignment a's weighted output alone, a.weight · expert(x[a.token]) (+ its down bias inside the
  // weight; expert(a.weight · x) for weight_scales_input), never summed with another assignment's. Each
  // row's bits depend only on x[a.token], the expert's weights and a.weight: not on the other rows,
  // their number or their order (per-row invariant kernels, no row-count dependent path, blocking or
  // split-K). The caller combines the rows (runtime/routing/combine.h: combine_rows). Same checks and
  // errors as forward().
  virtual void forward_rows(int32_t layer, const float* x, int64_t num_tokens, int64_t hidden,
                            std::span<const TokenAssignment> assignments, float* rows) = 0;
};

// CPU reference backend (OpenBLAS, fp32). threads <= 0: OpenBLAS's default.
std::unique_ptr<ExpertBackend> make_cpu_backend(int threads = 0);

}  // namespace moe
