// The one interface every expert compute backend implements (CPU reference, CUDA).
//
// An expert is the gated MLP  y = down( act(gate·x + bg) ⊙ (up·x + bu) ) + bd  (ExpertMath: SiLU GLU, or
// gpt-oss's clamped SwiGLU; biases are optional and zero when absent). An expert whose math says
// `weight_scales_input` (llama4) computes expert(w·x) and contributes it with weight 1.  A backend holds the weights of the
// experts it was given (converted once, at load, to its own format) and computes, for a batch of tokens
// of one layer, the weighted sum over the (token, expert, weight) assignments it is handed:
//     out[t, :] = Σ_{a : a.token == t} a.weight · expert_{layer, a.expert}(x[t, :])
// Shared experts are ordinary experts here (the caller gives them ids after the routed ones).
// kernels/ knows nothing of networking or models: only matrices.
#pragma once

#include <compare>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "kernels/dtype.h"

namespace moe {

// A row-major [rows, cols] matrix in some dtype, not owned.
struct WeightMatrixView {
  DType dtype = DType::F32;
  const void* data = nullptr;
  int64_t rows = 0;
  int64_t cols = 0;
};

// A vector of `size` elements in some dtype, not owned. data == nullptr: absent.
struct WeightVectorView {
  DType dtype = DType::F32;
  const void* data = nullptr;
  int64_t size = 0;
};

enum class ExpertActivation : uint8_t {
  SiluGlu = 0,        // silu(g) * u
  ClampedSwiglu = 1,  // gpt-oss: g = min(g, limit), u = clamp(u, -limit, limit), (u + 1) * g * sigmoid(alpha * g)
};

// What an expert computes besides its matrices. Part of the weights, so a worker needs no family code.
struct ExpertMath {
  ExpertActivation activation = ExpertActivation::SiluGlu;
  float swiglu_alpha = 1.702f;  // ClampedSwiglu only
  float swiglu_limit = 7.f;     // ClampedSwiglu only
  // llama4: the routing weight multiplies the expert's input (expert(w·x)), and the output is added
  // with weight 1. Otherwise the output is multiplied by w.
  bool weight_scales_input = false;
  bool is_default() const {
    return activation == ExpertActivation::SiluGlu && !weight_scales_input;
  }
};

// gate and up are [intermediate, hidden]; down is [hidden, intermediate] (HF Linear layout).
// Biases (gpt-oss) are [intermediate] (gate, up) and [hidden] (down), or absent.
struct ExpertWeightsView {
  WeightMatrixView gate;
  WeightMatrixView up;
  WeightMatrixView down;
  WeightVectorView gate_bias;
  WeightVectorView up_bias;
  WeightVectorView down_bias;
  ExpertMath math;
  bool has_biases() const { return gate_bias.data || up_bias.data || down_bias.data; }
};

inline const char* activation_name(ExpertActivation a) {
  return a == ExpertActivation::SiluGlu ? "silu_glu" : "clamped_swiglu";
}

struct ExpertKey {
  int32_t layer = 0;
  int32_t expert = 0;
  auto operator<=>(const ExpertKey&) const = default;
};

struct TokenAssignment {
  int32_t token = 0;   // row of x
  int32_t expert = 0;  // expert id within the layer
  float weight = 0.f;  // routing weight applied to this expert's output
};

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
